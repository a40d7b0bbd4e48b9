"""The strict CuPy stand-in fails where CuPy fails, and agrees with NumPy everywhere else.

Each refusal tested here is one CuPy 14 makes (or a name CuPy lacks). If the stand-in stopped
refusing, layer code that only works on NumPy would pass the GPU-path tests unnoticed; if it
stopped agreeing with NumPy, correct layer code would fail them.
"""

import copy
import json
import operator
import pickle

import numpy as np
import pytest

from minifcn.testing import strict_cupy as scp

# The frozen CuPy facts, package data beside the stand-in (minifcn/testing/cupy_names.json).
NAMES = json.loads(scp._NAMES_FILE.read_text())
IMPLICIT = "Implicit conversion to a NumPy array is not allowed"
UNSUPPORTED = "Unsupported type <class 'numpy.ndarray'>"


def host(shape=(2, 3, 4), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def device(shape=(2, 3, 4), dtype=np.float32, seed=0):
    return scp.asarray(host(shape, dtype, seed))


def assert_same(got, expected):
    """``got`` (stand-in) equals ``expected`` (NumPy): type, dtype, shape and every value."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
        return
    assert isinstance(got, scp.ndarray), f"expected a stand-in array, got {type(got)}"
    expected = np.asarray(expected)
    result = got.get()
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------------------------------------
# The host boundary


@pytest.mark.parametrize("convert", [
    np.asarray,
    np.array,
    lambda a: np.array([a[0, 0, 0], a[0, 0, 1]]),
    lambda a: np.ascontiguousarray(a),
    lambda a: np.float32(a[0, 0, 0]),
], ids=["asarray", "array", "list-of-0d", "ascontiguousarray", "np.float32"])
def test_implicit_conversion_to_numpy_is_refused(convert):
    with pytest.raises(TypeError, match=IMPLICIT):
        convert(device())


def test_assigning_a_device_array_into_a_host_array_is_refused():
    target = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match=IMPLICIT):
        target[...] = device()[0]


def test_get_returns_a_numpy_copy():
    a = device()
    copied = a.get()
    assert type(copied) is np.ndarray
    np.testing.assert_array_equal(copied, host())
    copied[...] = 0
    assert float(abs(a).sum()) > 0
    out = np.empty((2, 3, 4), np.float32)
    assert a.get(out=out) is out
    np.testing.assert_array_equal(out, host())


def test_set_copies_host_data_in_and_checks_shape_and_dtype():
    a = scp.zeros((2, 3), dtype="float32")
    a.set(np.ones((2, 3), np.float32))
    assert_same(a, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError):
        a.set(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError):
        a.set(np.ones((2, 3), np.float64))


def test_asarray_copies_host_data_and_keeps_device_arrays():
    source = host()
    a = scp.asarray(source)
    source[...] = 0  # device memory never aliases the host array it came from
    assert_same(a, host())
    assert scp.asarray(a) is a
    assert_same(scp.asarray(a, dtype="float64"), host().astype(np.float64))
    assert_same(scp.asarray([1.0, 2.0]), np.asarray([1.0, 2.0]))
    assert_same(scp.asarray(3), np.asarray(3))
    assert_same(scp.array([[1, 2]], dtype="int32"), np.array([[1, 2]], dtype=np.int32))
    assert_same(scp.asarray([a[0, 0, 0], a[0, 0, 1]]), host()[0, 0, :2])


def test_asnumpy_and_get_array_module():
    a = device()
    assert type(scp.asnumpy(a)) is np.ndarray
    np.testing.assert_array_equal(scp.asnumpy(a), host())
    assert scp.asnumpy([1, 2]).tolist() == [1, 2]
    assert scp.get_array_module(a) is scp
    assert scp.get_array_module(host(), 1.0) is np
    assert scp.get_array_module(host(), a) is scp


@pytest.mark.parametrize(("call", "name"), [
    (np.exp, "exp"),
    (np.mean, "mean"),
    (np.sum, "sum"),
    (lambda a: np.maximum(a, 0), "maximum"),
    (lambda a: np.where(a > 0, a, 0), "where"),
    (lambda a: np.concatenate([a, a]), "concatenate"),
    (lambda a: np.pad(a, 1), "pad"),
    (lambda a: np.add.at(a, 0, 1), "add.at"),
    (lambda a: np.zeros_like(a), "zeros_like"),
])
def test_numpy_functions_on_device_arrays_are_refused(call, name):
    with pytest.raises(TypeError, match=rf"numpy\.{name} called on a device array; use xp\."):
        call(device())


def test_numpy_scalars_on_the_left_work_as_on_cupy():
    a = device()
    assert_same(np.float32(2) * a, np.float32(2) * host())
    assert_same(np.float64(1) - a, np.float64(1) - host())
    assert_same(np.float32(0) < a, np.float32(0) < host())
    with pytest.raises(TypeError, match=UNSUPPORTED):
        np.asarray(2.0, np.float32) * a  # a 0-d host array is still a host array


# ---------------------------------------------------------------------------------------------
# Mixing with host arrays and lists

FLOAT_OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
                   operator.mod, operator.pow, operator.lt, operator.le, operator.gt, operator.ge,
                   operator.eq, operator.ne]
INT_OPERATORS = [operator.and_, operator.or_, operator.xor, operator.lshift, operator.rshift]


@pytest.mark.parametrize("op", FLOAT_OPERATORS + INT_OPERATORS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("other", ["numpy", "list"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_operators_refuse_host_operands(op, other, side):
    dtype = np.int64 if op in INT_OPERATORS else np.float32
    a = scp.ones((3,), dtype=dtype)
    b = np.ones(3, dtype) if other == "numpy" else [1, 1, 1]
    with pytest.raises(TypeError, match="Unsupported type"):
        op(a, b) if side == "right" else op(b, a)


INT_SCALARS = [2, True, np.int64(2), np.uint8(2)]
SCALARS = INT_SCALARS + [2.0, np.float32(2), np.float64(2)]


@pytest.mark.parametrize(("op", "scalar"), [(op, s) for op in FLOAT_OPERATORS for s in SCALARS]
                         + [(op, s) for op in INT_OPERATORS for s in INT_SCALARS],
                         ids=lambda v: v.__name__ if callable(v) else repr(v))
def test_operators_take_python_and_numpy_scalars_as_numpy_does(op, scalar):
    dtype = np.int64 if op in INT_OPERATORS else np.float32
    values = np.array([1, 2, 3], dtype)
    a = scp.asarray(values)
    assert_same(op(a, scalar), op(values, scalar))
    assert_same(op(scalar, a), op(scalar, values))


def test_matmul_operator_refuses_host_operands():
    a = scp.ones((3, 3), dtype="float32")
    with pytest.raises(TypeError, match="Unsupported type"):
        a @ np.ones((3, 3), np.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        np.ones((3, 3), np.float32) @ a
    with pytest.raises(TypeError, match="Unsupported type"):
        a @ [[1.0] * 3] * 3


def test_in_place_operators_refuse_host_operands_on_either_side():
    a = scp.ones((3,), dtype="float32")
    with pytest.raises(TypeError, match="Unsupported type"):
        a += np.ones(3, np.float32)
    target = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        target += a


@pytest.mark.parametrize("call", [
    lambda a, h: scp.add(a, h),
    lambda a, h: scp.maximum(a, [0.0, 1.0, 2.0]),
    lambda a, h: scp.where(a > 0, a, h),
    lambda a, h: scp.where(a > 0, a, [0.0, 0.0, 0.0]),
    lambda a, h: scp.concatenate([a, h]),
    lambda a, h: scp.stack((a, [1.0, 2.0, 3.0])),
    lambda a, h: scp.matmul(a, h),
    lambda a, h: scp.dot(a, [1.0, 2.0, 3.0]),
    lambda a, h: scp.clip(a, h, 1.0),
    lambda a, h: scp.take_along_axis(a, np.zeros(3, np.int64), 0),
    lambda a, h: scp.zeros_like(h),
    lambda a, h: scp.einsum("i,i->", a, h),
    lambda a, h: scp.exp(h),
    lambda a, h: scp.add(a, 1, out=np.empty(3, np.float32)),
    lambda a, h: scp.sum(a, out=np.empty((), np.float32)),
    lambda a, h: scp.pad(a, 1, constant_values=h[:2]),
    lambda a, h: scp.delete(a, np.array([0])),
    lambda a, h: scp.histogram(a, bins=h),
], ids=["add", "maximum-list", "where", "where-list", "concatenate", "stack-list", "matmul",
        "dot-list", "clip", "take_along_axis", "zeros_like", "einsum", "exp", "ufunc-out",
        "sum-out", "pad-values", "delete-index", "histogram-bins"])
def test_namespace_functions_refuse_host_arrays_and_lists(call):
    with pytest.raises(TypeError, match="Unsupported type"):
        call(scp.ones((3,), dtype="float32"), np.ones(3, np.float32))


@pytest.mark.parametrize("index", [np.array([0, 1]), np.array([True, False, True]),
                                   (slice(None), np.array([0])), [np.int64(0), np.array(1)]],
                         ids=["int-array", "bool-array", "in-tuple", "array-in-list"])
def test_host_index_arrays_are_refused(index):
    a = scp.ones((3, 3), dtype="float32")
    with pytest.raises(TypeError, match="Unsupported type"):
        a[index]
    with pytest.raises(TypeError, match="Unsupported type"):
        a[index] = 0.0


@pytest.mark.parametrize("value", [np.zeros(3, np.float32), [0.0, 0.0, 0.0]],
                         ids=["numpy", "list"])
def test_assigning_host_data_into_a_device_array_is_refused(value):
    a = scp.ones((3, 3), dtype="float32")
    with pytest.raises(TypeError, match="Unsupported type"):
        a[0] = value


@pytest.mark.parametrize("index", [
    0, -1, slice(1, 3), (0, 1), (Ellipsis, 1), None, (slice(None), None), Ellipsis, [0, 2],
    (slice(None, None, -1), 0),
], ids=str)
def test_basic_and_list_indices_agree_with_numpy(index):
    values = host((3, 4))
    a = scp.asarray(values)
    assert_same(a[index], values[index])


def test_device_index_arrays_agree_with_numpy():
    values = host((4, 5))
    a = scp.asarray(values)
    rows = np.array([3, 0, 0])
    assert_same(a[scp.asarray(rows)], values[rows])
    assert_same(a[a > 0], values[values > 0])
    assert_same(a[scp.asarray(rows), scp.asarray(rows)], values[rows, rows])
    a[a < 0] = 0.0
    values[values < 0] = 0.0
    assert_same(a, values)


# ---------------------------------------------------------------------------------------------
# Reductions and 0-d arrays

REDUCTIONS = ["sum", "mean", "max", "min", "argmax", "argmin", "prod", "std", "var", "any", "all"]


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_return_0d_device_arrays(name):
    values = host()
    method_result = getattr(scp.asarray(values), name)()
    function_result = getattr(scp, name)(scp.asarray(values))
    for result in (method_result, function_result):
        assert isinstance(result, scp.ndarray) and result.ndim == 0
        assert_same(result, getattr(values, name)())
    assert_same(getattr(scp.asarray(values), name)(axis=1), getattr(values, name)(axis=1))


@pytest.mark.parametrize("name", ["count_nonzero", "array_equal", "allclose"])
def test_functions_numpy_answers_with_python_scalars_give_0d_arrays(name):
    a = device()
    args = (a,) if name == "count_nonzero" else (a, a)
    result = getattr(scp, name)(*args)
    assert isinstance(result, scp.ndarray) and result.ndim == 0
    assert result.item() == getattr(np, name)(*(host(),) * len(args))


def test_0d_arrays_have_no_index():
    a = device()
    with pytest.raises(TypeError):
        [1, 2, 3][a.argmax() % 3]
    with pytest.raises(TypeError):
        range(scp.asarray(np.int64(3)))
    with pytest.raises(TypeError):
        operator.index(a.argmax())
    with pytest.raises(TypeError):
        a[: a.argmax()]
    assert not hasattr(a.argmax(), "__index__")


def test_0d_arrays_convert_explicitly_on_the_host():
    values = host()
    total = scp.asarray(values).sum()
    assert float(total) == float(values.sum())
    assert int(scp.asarray(values).argmax()) == int(values.argmax())
    assert bool(total > -1e9)
    assert total.item() == values.sum().item()
    assert isinstance(total.item(), float)
    assert f"{total:.3f}" == f"{values.sum():.3f}"


def test_element_indexing_gives_a_0d_view():
    a = scp.zeros((2, 3), dtype="float32")
    element = a[1, 2]
    assert isinstance(element, scp.ndarray) and element.shape == ()
    element[...] = 7.0  # CuPy's element is a view of ``a``, NumPy's a scalar copy
    assert float(a[1, 2]) == 7.0


def test_array_protocols_and_attributes_agree_with_numpy():
    values = host()
    a = scp.asarray(values)
    assert len(a) == 2
    rows = list(a)
    assert all(isinstance(row, scp.ndarray) for row in rows)
    assert_same(rows[1], values[1])
    for name in ("shape", "dtype", "ndim", "size", "strides", "nbytes", "itemsize"):
        assert getattr(a, name) == getattr(values, name)
    assert_same(a.T, values.T)
    assert a.flags.c_contiguous and not a.T.flags.c_contiguous and a.T.flags["F_CONTIGUOUS"]
    with pytest.raises(AttributeError):
        _ = a.flags.writeable  # CuPy's flags have only c_contiguous, f_contiguous, owndata
    with pytest.raises(TypeError):
        iter(a.sum())
    with pytest.raises(TypeError):
        hash(a)


def test_copy_deepcopy_and_pickle_give_independent_device_arrays():
    a = device()
    for duplicate in (copy.copy(a), copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert isinstance(duplicate, scp.ndarray)
        duplicate[...] = 0
        assert_same(a, host())


# ---------------------------------------------------------------------------------------------
# Only CuPy's names, methods and keywords


@pytest.mark.parametrize("name", ["errstate", "seterr", "geterr", "nditer", "frompyfunc",
                                  "asmatrix", "fromregex"])
def test_numpy_only_names_are_absent(name):
    assert hasattr(np, name) and name not in NAMES["names"]["cupy"]
    with pytest.raises(AttributeError, match="cupy does not"):
        getattr(scp, name)


@pytest.mark.parametrize("name", ["resize", "setflags", "getfield", "to_device", "__index__",
                                  "__contains__", "__array_namespace__"])
def test_numpy_only_array_methods_are_absent(name):
    assert hasattr(np.ndarray, name) and name not in NAMES["names"]["cupy.ndarray"]
    with pytest.raises(AttributeError):
        getattr(device(), name)
    with pytest.raises(AttributeError):
        getattr(device().sum(), name)


@pytest.mark.parametrize("name", ["ElementwiseKernel", "RawKernel", "fuse", "c_", "fft"])
def test_cupy_only_names_say_they_are_not_emulated(name):
    assert name in NAMES["names"]["cupy"]
    with pytest.raises(AttributeError, match="does not emulate"):
        getattr(scp, name)


def test_public_names_of_the_module_are_all_cupy_names():
    public = {name for name in vars(scp) if not name.startswith("_")}
    assert public <= set(NAMES["names"]["cupy"]), sorted(public - set(NAMES["names"]["cupy"]))
    assert "ndarray" in public and "asarray" in public


def test_shared_numpy_objects_are_numpy_s_own():
    assert scp.float32 is np.float32 and scp.int64 is np.int64 and scp.float64 is np.float64
    assert scp.bool_ is np.bool_ and scp.dtype is np.dtype
    assert scp.finfo is np.finfo and scp.iinfo is np.iinfo
    assert scp.newaxis is None and scp.pi == np.pi
    assert scp.AxisError is np.exceptions.AxisError


@pytest.mark.parametrize(("call", "error"), [
    (lambda a: scp.lib.stride_tricks.as_strided(a, shape=(2,), strides=(4,), writeable=False),
     TypeError),
    (lambda a: scp.lib.stride_tricks.as_strided(a, (2,), (4,), subok=True), TypeError),
    (lambda a: scp.lib.stride_tricks.sliding_window_view(a, 2, writeable=True),
     NotImplementedError),
    (lambda a: scp.pad(a, 1, mode="median"), ValueError),
    (lambda a: scp.pad(a, 1, mode="reflect", constant_values=1.0), ValueError),
    (lambda a: scp.einsum("i->", a, out=scp.zeros((), dtype="float32")), TypeError),
    (lambda a: scp.einsum("i->", a, casting="unsafe"), TypeError),
    (lambda a: a.max(initial=0.0), TypeError),
    (lambda a: scp.sum(a, where=a > 0), TypeError),
    (lambda a: scp.maximum(a, 0.0, where=a > 0), TypeError),
    (lambda a: scp.reshape(a, shape=(2, 2)), TypeError),
    (lambda a: a.item(0), TypeError),
    (lambda a: scp.clip(a, min=0.0, max=1.0), TypeError),
    (lambda a: scp.zeros(a.sum().astype("int64")), TypeError),
    (lambda a: a.repeat(scp.asarray(2)), TypeError),
    (lambda a: a.sum(axis=scp.asarray(0)), TypeError),
])
def test_keywords_and_arguments_cupy_refuses_are_refused(call, error):
    with pytest.raises(error):
        call(scp.ones((4,), dtype="float32"))


def test_wrapped_functions_carry_cupy_s_signature():
    import inspect

    assert list(inspect.signature(scp.sum).parameters) == [
        name for name, _, _ in NAMES["signatures"]["cupy.sum"]]
    assert "subok" not in inspect.signature(scp.lib.stride_tricks.as_strided).parameters


# ---------------------------------------------------------------------------------------------
# Legitimate operations agree with NumPy: same values, dtypes and shapes


def run_both(call, *arrays):
    """``call(xp, *arrays)`` on NumPy and on the stand-in, results as (stand-in, NumPy)."""
    expected = call(np, *arrays)
    got = call(scp, *(scp.asarray(a) for a in arrays))
    return got, expected


INDICES = np.array([[[1], [0], [3]], [[2], [2], [0]]])
CASES = {
    "matmul": (lambda xp, a: xp.matmul(a, a.transpose(0, 2, 1)), host()),
    "matmul-operator": (lambda xp, a: a @ a.transpose(0, 2, 1), host()),
    "dot": (lambda xp, a: xp.dot(a[0], a[1].T), host()),
    "tensordot": (lambda xp, a: xp.tensordot(a, a, axes=([1, 2], [1, 2])), host()),
    "einsum": (lambda xp, a: xp.einsum("nij,nkj->nik", a, a), host()),
    "pad-constant": (lambda xp, a: xp.pad(a, ((0, 0), (1, 1), (2, 2))), host()),
    "pad-value": (lambda xp, a: xp.pad(a, 1, mode="constant", constant_values=-1.0), host()),
    "pad-edge": (lambda xp, a: xp.pad(a, 2, mode="edge"), host()),
    "pad-reflect": (lambda xp, a: xp.pad(a, 1, mode="reflect"), host()),
    "where": (lambda xp, a: xp.where(a > 0, a, 0.0), host()),
    "where-indices": (lambda xp, a: xp.where(a > 0), host()),
    "concatenate": (lambda xp, a: xp.concatenate([a, a * 2], axis=1), host()),
    "stack": (lambda xp, a: xp.stack((a, a + 1), axis=-1), host()),
    "broadcast_to": (lambda xp, a: xp.broadcast_to(a[:, :1], (2, 5, 4)), host()),
    "take_along_axis": (lambda xp, a, i: xp.take_along_axis(a, i, axis=2), host(), INDICES),
    "exp-log": (lambda xp, a: xp.log(xp.exp(a) + 1), host()),
    "maximum": (lambda xp, a: xp.maximum(a, 0), host()),
    "clip": (lambda xp, a: xp.clip(a, -0.5, 0.5), host()),
    "bincount": (lambda xp, i: xp.bincount(i.ravel(), minlength=6), INDICES),
    "bincount-weights": (lambda xp, i, w: xp.bincount(i.ravel(), weights=w.ravel()), INDICES,
                         host((2, 3, 1))),
    "ascontiguousarray": (lambda xp, a: xp.ascontiguousarray(a.transpose(2, 0, 1)), host()),
    "zeros_like": (lambda xp, a: xp.zeros_like(a, dtype=xp.float64), host()),
    "full": (lambda xp: xp.full((2, 3), 1.5, dtype=xp.float32),),
    "arange": (lambda xp: xp.arange(0, 1, 0.125, dtype=xp.float32),),
    "empty-shape": (lambda xp: xp.zeros(xp.empty((2, 3), dtype="float32").shape),),
    "isfinite": (lambda xp, a: xp.isfinite(a), np.array([0.0, np.inf, -np.inf, np.nan, 1e38])),
    "argmax-keepdims": (lambda xp, a: xp.argmax(a, axis=1, keepdims=True), host()),
    "sum-keepdims": (lambda xp, a: a.sum(axis=(0, 2), keepdims=True), host()),
    "mean-dtype": (lambda xp, a: a.mean(axis=0, dtype=xp.float64), host()),
    "reshape-transpose": (lambda xp, a: a.reshape(4, -1).T.reshape((3, 8)), host()),
    "astype": (lambda xp, a: (a * 10).astype(xp.int32), host()),
    "unique": (lambda xp, i: xp.unique(i, return_counts=True), INDICES),
    "nonzero": (lambda xp, a: (a > 0).nonzero(), host()),
    "softmax": (lambda xp, a: xp.exp(a - a.max(axis=1, keepdims=True))
                / xp.exp(a - a.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True), host()),
    "sliding_window_view": (lambda xp, a: xp.lib.stride_tricks.sliding_window_view(
        a, (2, 2), axis=(1, 2)), host()),
    "as_strided": (lambda xp, a: xp.lib.stride_tricks.as_strided(
        a, shape=(2, 2, 2, 3), strides=(48, 16, 16, 4)), host()),
    "norm": (lambda xp, a: xp.linalg.norm(a), host()),
    "divmod": (lambda xp, a: divmod(a, 0.3), host()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_legit_operations_agree_with_numpy(name):
    call, *arrays = CASES[name]
    got, expected = run_both(call, *arrays)
    assert_same(got, expected)


@pytest.mark.parametrize(("left", "right"), [
    (np.ones(3, np.float32), 2.0),
    (np.ones(3, np.float32), 2),
    (np.ones(3, np.float32), np.float64(2)),
    (np.ones(3, np.float32), np.ones(3, np.int64)),
    (np.ones(3, np.float32), np.ones(3, np.float16)),
    (np.ones(3, np.int32), 2.5),
    (np.ones(3, np.int8), 2),
    (np.ones(3, np.uint8), np.ones(3, np.int8)),
    (np.ones(3, np.int64), np.int32(2)),
    (np.ones(3, np.bool_), 1),
    (np.float32(1.0), np.ones(3, np.float64)),
], ids=str)
def test_dtype_promotion_is_numpy_2s(left, right):
    def lift(value):
        return scp.asarray(value) if isinstance(value, np.ndarray) else value

    def lift_0d(value):  # a NumPy scalar standing for a 0-d device array (a reduction result)
        return scp.asarray(value) if isinstance(value, np.ndarray | np.generic) else value

    for op in (operator.add, operator.mul, operator.truediv):
        assert_same(op(lift(left), lift(right)), op(left, right))
        assert_same(op(lift(right), lift(left)), op(right, left))
    zero_d = np.asarray(left)[()] if np.ndim(left) else left
    assert_same(lift_0d(zero_d) + lift(right), np.asarray(zero_d) + right)


# ---------------------------------------------------------------------------------------------
# Writing into arrays


def test_writes_through_views_reach_the_base_array():
    values = np.zeros((4, 6), np.float32)
    a = scp.asarray(values)
    a[...] = 1.0
    a[1:3] += scp.ones((2, 6), dtype="float32")
    a[:, ::2] *= 3
    row = a[0]
    row -= 1.0
    a.T[5] = 9.0
    window = a.reshape(2, 12)[1]
    window[:2] = -1.0
    expected = np.ones((4, 6), np.float32)
    expected[1:3] += 1
    expected[:, ::2] *= 3
    expected[0] -= 1
    expected.T[5] = 9
    expected.reshape(2, 12)[1, :2] = -1
    assert_same(a, expected)


def test_out_arguments_write_into_and_return_the_given_array():
    a = device()
    out = scp.empty((2, 3, 4), dtype="float32")
    assert scp.multiply(a, 2, out=out) is out
    assert_same(out, host() * 2)
    total = scp.empty((3, 4), dtype="float32")
    assert a.sum(axis=0, out=total) is total
    assert_same(total, host().sum(axis=0))
    target = scp.zeros((2, 3, 4), dtype="float64")
    scp.copyto(target, a)
    assert_same(target, host().astype(np.float64))


def test_in_place_casting_follows_numpy():
    a = scp.ones((3,), dtype="int64")
    with pytest.raises(TypeError):
        a += 1.5  # same_kind casting refuses float into int, on CuPy too


# ---------------------------------------------------------------------------------------------
# ufunc.at, reduce, accumulate


@pytest.mark.parametrize("name", ["add", "subtract", "maximum", "minimum", "bitwise_and",
                                  "bitwise_or", "bitwise_xor"])
def test_ufunc_at_works_where_cupy_has_it(name):
    dtype = np.int64 if name.startswith("bitwise") else np.float32
    values = np.arange(5, dtype=dtype)
    updates = np.array([3, 7, 1], dtype)
    index = np.array([0, 0, 4])
    a = scp.asarray(values)
    getattr(scp, name).at(a, scp.asarray(index), scp.asarray(updates))
    getattr(np, name).at(values, index, updates)
    assert_same(a, values)


@pytest.mark.parametrize("name", ["multiply", "divide", "power", "exp", "logaddexp", "fmax"])
def test_ufunc_at_is_not_implemented_elsewhere(name):
    with pytest.raises(NotImplementedError, match="is not supported yet"):
        getattr(scp, name).at(scp.ones((3,), dtype="float32"), 0)


def test_ufunc_at_refuses_host_indices():
    with pytest.raises(TypeError, match=UNSUPPORTED):
        scp.add.at(scp.zeros((3,), dtype="float32"), np.array([0, 1]), 1.0)


def test_ufunc_methods_exist_only_where_cupy_has_them():
    a = device()
    assert_same(scp.add.reduce(a, axis=1), np.add.reduce(host(), axis=1))
    assert_same(scp.multiply.accumulate(a, axis=2), np.multiply.accumulate(host(), axis=2))
    assert_same(scp.add.reduceat(a[0, 0], scp.asarray(np.array([0, 2]))),
                np.add.reduceat(host()[0, 0], [0, 2]))
    assert_same(scp.subtract.outer(a[0, 0], a[1, 1]), np.subtract.outer(host()[0, 0], host()[1, 1]))
    for call in (scp.maximum.reduce, scp.maximum.accumulate):
        with pytest.raises(NotImplementedError):
            call(a)
    with pytest.raises(AttributeError):
        _ = scp.add.identity  # NumPy's ufuncs have it, CuPy's do not
    assert scp.add.name == "cupy_add" and scp.add.nin == 2 and isinstance(scp.add, scp.ufunc)


def test_ufuncs_take_only_cupy_s_keywords():
    a = device()
    assert_same(scp.add(a, 1, dtype="float64"), np.add(host(), 1, dtype="float64"))
    with pytest.raises(TypeError, match="Wrong arguments"):
        scp.add(a, 1, where=a > 0)
    with pytest.raises(TypeError, match="Wrong arguments"):
        scp.exp(a, order="C")


# ---------------------------------------------------------------------------------------------
# Random numbers


def test_generator_has_exactly_cupy_s_methods():
    rng = scp.random.default_rng(0)
    for name in NAMES["names"]["cupy.random.Generator"]:
        assert callable(getattr(rng, name))


@pytest.mark.parametrize("name", ["permutation", "choice", "shuffle", "normal",
                                  "permuted", "bytes", "spawn", "bit_generator"])
def test_generator_lacks_what_cupy_s_lacks(name):
    assert name not in NAMES["names"]["cupy.random.Generator"]
    with pytest.raises(AttributeError):
        getattr(scp.random.default_rng(0), name)


def test_generator_draws_device_arrays_of_the_asked_dtype():
    rng = scp.random.default_rng(0)
    for draw in (rng.random((3, 4), dtype="float32"),
                 rng.standard_normal((3, 4), dtype=scp.float32),
                 rng.uniform(-1.0, 1.0, (3, 4), dtype="float32")):
        assert isinstance(draw, scp.ndarray) and draw.dtype == np.float32 and draw.shape == (3, 4)
    integers = rng.integers(0, 5, size=(10,))
    assert integers.dtype == np.int64 and int(integers.min()) >= 0 and int(integers.max()) < 5
    single = rng.random()
    assert isinstance(single, scp.ndarray) and single.ndim == 0
    out = scp.empty((2,), dtype="float64")
    assert rng.random((2,), out=out) is out


def test_same_seed_gives_the_same_numbers():
    first = scp.random.default_rng(7).standard_normal((5,), dtype="float32")
    second = scp.random.default_rng(7).standard_normal((5,), dtype="float32")
    assert_same(first, second.get())


def test_generator_refuses_numpy_keywords_cupy_lacks():
    with pytest.raises(TypeError):
        scp.random.default_rng(0).integers(0, 5, size=3, dtype="int64", extra=True)
    with pytest.raises(TypeError):
        scp.random.default_rng(0).standard_normal(3, dtype="float32", method="zig")


def test_random_namespace_offers_only_default_rng():
    assert callable(scp.random.default_rng)
    with pytest.raises(AttributeError, match="default_rng"):
        _ = scp.random.normal
    with pytest.raises(NotImplementedError):
        scp.random.Generator(None)


# ---------------------------------------------------------------------------------------------
# The frozen names are CuPy's


def test_frozen_names_hold_the_documented_differences():
    assert "__index__" not in NAMES["names"]["cupy.ndarray"]
    assert "resize" not in NAMES["names"]["cupy.ndarray"]
    assert {"__float__", "__int__", "__bool__", "item", "get"} <= set(
        NAMES["names"]["cupy.ndarray"])
    assert sorted(NAMES["ufunc_at"]) == ["add", "bitwise_and", "bitwise_or", "bitwise_xor",
                                         "maximum", "minimum", "subtract"]
    assert [p[0] for p in NAMES["signatures"]["cupy.lib.stride_tricks.as_strided"]] == [
        "x", "shape", "strides"]
    assert "put_along_axis" in NAMES["names"]["cupy"]


def test_frozen_names_match_the_installed_cupy():
    try:
        import cupy
    except ImportError as error:
        pytest.skip(f"CuPy is not importable here ({error}); the frozen cupy_names.json is "
                    f"checked wherever `pip install cupy-cuda12x` works (no GPU needed)")
    fresh = scp._collect_cupy_names()
    for space, names in NAMES["names"].items():
        missing = sorted(set(names) - set(fresh["names"][space]))
        assert not missing, f"{space} lost {missing} in CuPy {cupy.__version__}"
    changed = sorted(name for name, params in NAMES["signatures"].items()
                     if fresh["signatures"].get(name) != params)
    assert not changed, (f"signatures changed in CuPy {cupy.__version__}: {changed}; "
                         f"regenerate with `python -m minifcn.testing.strict_cupy`")
    if fresh["cupy_version"] == NAMES["cupy_version"]:
        assert fresh == NAMES, "regenerate with `python -m minifcn.testing.strict_cupy`"
