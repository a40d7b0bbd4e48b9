"""A strict CuPy stand-in for tests: NumPy arrays that fail where CuPy fails.

The developers' machines and CI have no NVIDIA GPU, so CuPy itself cannot run there (it
imports, but creating an array raises). Layer code is meant to be backend-neutral
(``xp = get_array_module(x)``, then ``xp.zeros``, ``xp.matmul``, ...), and most ways of breaking
that neutrality pass unnoticed on NumPy. This module is an array namespace shaped like ``cupy``
whose arrays wrap NumPy arrays and refuse what CuPy refuses, so running a layer on it on the CPU
shows whether it would run on a GPU::

    from minifcn.testing import strict_cupy as scp
    a = scp.asarray(np.ones((2, 3), np.float32))   # the explicit host -> device copy
    b = scp.matmul(a, a.T)                         # a scp.ndarray wrapping a NumPy array
    b.get()                                        # the explicit device -> host copy

What it catches, each with the exception CuPy raises (mostly ``TypeError``):

- implicit device -> host conversion: ``np.asarray(a)``, ``np.array([loss, loss])``,
  ``host[i] = a``;
- ``np.func(a)`` where ``xp.func(a)`` was meant: CuPy forwards many of these to itself and
  refuses others (``np.asarray(a)``, ``np.array(a)``), so the stand-in refuses them all and the
  rule stays simple: always ``xp``;
- NumPy arrays or lists used as array operands, index arrays or assigned values;
- reductions and element indexing give 0-d device arrays, which have no ``__index__``:
  ``some_list[a.argmax()]`` and ``range(a.sum())`` fail, ``int()``/``float()``/``.item()`` work;
- names, array methods, keyword arguments and Generator methods that CuPy 14.2 lacks, from the
  frozen lists in ``cupy_names.json`` (``np.errstate``, ``ndarray.resize``, ``rng.permutation``,
  ``x.max(initial=0)``, ``as_strided(..., writeable=False)``, ``ufunc(..., where=)``, ...);
- CuPy's known gaps: ``ufunc.at`` only for add, subtract, maximum, minimum and bitwise
  and/or/xor; ``reduce``/``accumulate`` only for add and multiply; no writeable
  ``sliding_window_view``; ``pad`` without ``median``; ``einsum`` without ``out``/``casting``;
- device arrays used where CuPy needs host integers (shapes, axes, repeats, pad widths).

It is stricter than CuPy in a few places, each a host <-> device transfer hidden in CuPy: NumPy
arrays are refused everywhere (CuPy copies some silently, e.g. as ``take`` indices or assigned
values), lists are refused as array operands (``xp.take(a, [0, 1])``; index a stand-in with a
list, as CuPy allows, or build the indices with ``xp``), and NumPy marks some views read-only
(``broadcast_to``, ``sliding_window_view``) that CuPy leaves writeable.

What it cannot check: speed, synchronisation costs (every ``float()``, ``.item()``, ``.get()`` is
one on a GPU), float rounding differences of GPU kernels (cuBLAS, atomics in ``add.at``), random
streams (CuPy draws other numbers from the same seed), custom kernels (``ElementwiseKernel``,
``RawKernel`` are absent here), memory limits, streams, and undefined behaviour that CuPy lets
through: out-of-bounds fancy indices wrap silently on CuPy but raise here, and which value wins a
duplicate-index assignment is undefined on CuPy.

Counting host transfers: every device -> host copy the stand-in serves (``.get()``,
``asnumpy``, ``float()``/``int()``/``bool()``/``complex()``, ``.item()``, ``.tolist()``, and
printing an array) is a synchronisation on a GPU. Inside ``with _count_host_transfers() as
transfers:``, ``transfers.count`` counts them and ``transfers.where`` names each (e.g.
``"float()"``), so a test can bound them (one training step: one, the loss display).

Every public attribute of this module is part of the fake ``cupy`` namespace, so imports and
helpers are private; ``python -m minifcn.testing.strict_cupy`` rewrites ``cupy_names.json``
(package data beside this file) from an installed CuPy (which imports without a GPU).

This is the one module of minifcn besides ``backend.py`` that imports NumPy: a stand-in for
CuPy has to wrap NumPy's arrays and call NumPy's functions. It is test tooling, never on a
layer's compute path. The ``xp`` fixture of minifcn's pytest plugin
(:mod:`minifcn.testing.plugin`) runs a test on it.

PYTEST_DONT_REWRITE: pytest rewrites the asserts of a plugin's package, which would add its
helper names to this module's namespace; the marker (these two words, anywhere in the module
docstring) keeps the namespace CuPy's.
"""

import functools as _functools
import importlib as _importlib
import inspect as _inspect
import json as _json
import re as _re
import sys as _sys
from pathlib import Path as _Path

import numpy as _np

_NAMES_FILE = _Path(__file__).with_name("cupy_names.json")

_IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

# What CuPy's elementwise kernels take besides device arrays (cupy/_core/_scalar.pyx).
_SCALARS = (bool, int, float, complex, _np.generic)

_Parameter = _inspect.Parameter


class _HostTransfers:
    """Device -> host transfers seen inside :func:`_count_host_transfers`."""

    def __init__(self):
        self.where: list[str] = []  # what each was: "float()", ".get()", ".item()", ...

    @property
    def count(self) -> int:
        return len(self.where)


_transfer_counters: list = []  # the counters of the enclosing ``with`` blocks


def _host_transfer(what: str) -> None:
    for counter in _transfer_counters:
        counter.where.append(what)


class _count_host_transfers:  # noqa: N801 (used like a function: ``with _count_...():``)
    """``with _count_host_transfers() as transfers:`` counts every device -> host transfer
    (see the module docstring) in the block; blocks may nest."""

    def __enter__(self) -> _HostTransfers:
        self._counter = _HostTransfers()
        _transfer_counters.append(self._counter)
        return self._counter

    def __exit__(self, *exc_info) -> None:
        _transfer_counters.remove(self._counter)


@_functools.cache
def _data() -> dict:
    """The frozen CuPy facts (read lazily, so that the file can be regenerated by this module)."""
    return _json.loads(_NAMES_FILE.read_text())


def _names(space: str) -> frozenset:
    return frozenset(_data()["names"][space])


class _Shown:
    """A default value known only by its text, so that signatures print as CuPy's do."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


@_functools.cache
def _signature(qualname: str) -> _inspect.Signature | None:
    """CuPy's signature of ``qualname`` as stored in the json."""
    params = _data()["signatures"].get(qualname)
    if params is None:
        return None
    return _inspect.Signature([
        _Parameter(name, getattr(_Parameter, kind),
                   default=_Parameter.empty if default is None else _Shown(default))
        for name, kind, default in params
    ])


def _unsupported(kind: type, what: str = "an array operand") -> TypeError:
    # CuPy's own message first (cupy/_core/_scalar.pyx), then why and what to do instead.
    return TypeError(f"Unsupported type {kind} (strict_cupy: CuPy refuses host arrays and "
                     f"lists as {what}; create it with xp or copy it over with xp.asarray)")


# ---------------------------------------------------------------------------------------------
# Arguments in, results out


def _operand(value):
    """The NumPy array behind an array operand: a stand-in array or a scalar, nothing else."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, _SCALARS):
        return value
    raise _unsupported(type(value))


def _unwrap(value, host_ok: bool = False):
    """``value`` with every stand-in array replaced by its NumPy array, in lists, tuples, dicts.

    A NumPy array anywhere in it is a hidden host -> device copy on CuPy (or a TypeError), so it
    is refused unless ``host_ok`` (the explicit transfers: ``asarray``, ``array``).
    """
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, _np.ndarray):
        if host_ok:
            return value
        raise _unsupported(type(value), "arguments")
    if isinstance(value, (list, tuple)):
        items = [_unwrap(item, host_ok) for item in value]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {key: _unwrap(item, host_ok) for key, item in value.items()}
    return value


def _from_numpy(array: _np.ndarray) -> "ndarray":
    wrapped = object.__new__(ndarray)
    wrapped._a = array
    return wrapped


def _wrap(result, out=None):
    """A NumPy result as CuPy returns it: arrays wrapped, NumPy scalars as 0-d arrays."""
    if isinstance(out, ndarray) and result is out._a:
        return out  # CuPy returns the very ``out`` array it was given
    if isinstance(result, _np.ndarray):
        return _from_numpy(result)
    if isinstance(result, _np.generic):
        return _from_numpy(_np.asarray(result))
    if isinstance(result, tuple):
        items = [_wrap(item) for item in result]
        return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
    if isinstance(result, list):
        return [_wrap(item) for item in result]
    return result


def _holds_device_array(value) -> bool:
    if isinstance(value, ndarray):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_device_array(v) for v in value)


# Parameters (by CuPy's names) that take one array: a device array or a scalar, never a host array
# or a list (CuPy: "Unsupported type"). Only the explicit transfers take host data.
_ARRAY_PARAMS = frozenset({
    "a", "b", "x", "y", "x1", "x2", "a1", "a2", "array", "arr", "arr1", "arr2", "ar", "ar1", "ar2",
    "ary", "m", "v", "A", "B", "X", "f", "condition", "a_min", "a_max", "min", "max", "values",
    "vals", "weights", "fweights", "aweights", "indices", "ind", "mask", "dst", "src", "xp", "fp",
    "sorter", "prepend", "append", "to_begin", "to_end", "test_elements",
})
# Parameters that take a sequence of arrays (concatenate's ``tup``, matmul's ``*args``, ...).
_SEQUENCE_PARAMS = frozenset({"tup", "arrays", "arys", "xi", "keys", "choices", "condlist",
                              "choicelist"})
_ARRAY_ARGS_FUNCTIONS = frozenset({"cupy.matmul", "cupy.broadcast_arrays", "cupy.ix_"})
# Parameters CuPy reads as host integers: a device array there fails on CuPy (no __index__).
_HOST_INT_PARAMS = frozenset({
    "shape", "newshape", "new_shape", "axis", "axes", "axis1", "axis2", "source", "destination",
    "reps", "repeats", "minlength", "N", "M", "k", "n", "num", "ndmin", "pad_width",
    "indices_or_sections", "kth", "decimals", "dims", "window_shape", "size", "shift",
})
# Functions whose "array" parameters take anything (they ask questions about their argument).
_UNCHECKED_FUNCTIONS = frozenset({
    "cupy.isscalar", "cupy.ndim", "cupy.shape", "cupy.size", "cupy.iscomplexobj",
    "cupy.isrealobj", "cupy.result_type", "cupy.can_cast", "cupy.min_scalar_type",
})
# NumPy answers these with a Python bool or int; CuPy with a 0-d device array.
_DEVICE_SCALAR_RESULTS = frozenset({"cupy.allclose", "cupy.array_equal", "cupy.array_equiv",
                                    "cupy.count_nonzero"})


def _check_argument(qualname: str, param: _Parameter, value) -> None:
    """Refuse ``value`` for ``param`` of CuPy's ``qualname`` where CuPy would."""
    name = param.name
    if value is None or param.kind is _Parameter.VAR_KEYWORD:
        return
    if name in _HOST_INT_PARAMS and _holds_device_array(value):
        raise TypeError(f"strict_cupy: {qualname}: {name}= got a device array where CuPy needs "
                        f"host integers; convert it with int() (a sync) or keep it on the host")
    if name == "out":
        outs = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(out, ndarray) for out in outs):
            raise _unsupported(type(value), "out=")
    elif name in _ARRAY_PARAMS:
        for item in value if param.kind is _Parameter.VAR_POSITIONAL else (value,):
            _operand(item)
    elif name in _SEQUENCE_PARAMS or (name == "args" and qualname in _ARRAY_ARGS_FUNCTIONS):
        if isinstance(value, ndarray):
            return  # an array is a sequence of its rows
        if not isinstance(value, (list, tuple)):
            raise _unsupported(type(value), "a sequence of arrays")
        for item in value:
            _operand(item)


def _call(qualname: str, func, /, *args, **kwargs):
    """Call NumPy's ``func`` as CuPy's ``qualname`` would be called, or fail as CuPy would."""
    signature = _signature(qualname)
    out = kwargs.get("out")
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"strict_cupy: {qualname}{signature}: {error} "
                            f"(CuPy's signature differs from NumPy's)") from None
        if qualname not in _UNCHECKED_FUNCTIONS:
            for name, value in bound.arguments.items():
                _check_argument(qualname, signature.parameters[name], value)
        out = bound.arguments.get("out")
    result = func(*_unwrap(args), **_unwrap(kwargs))
    if qualname in _DEVICE_SCALAR_RESULTS and isinstance(result, (bool, int)):
        result = _np.asarray(result)
    return _wrap(result, out)


def _function(qualname: str, numpy_func):
    """NumPy's ``numpy_func`` behind CuPy's name, signature and argument rules."""
    def call(*args, **kwargs):
        return _call(qualname, numpy_func, *args, **kwargs)

    call.__name__ = call.__qualname__ = qualname.rsplit(".", 1)[-1]
    call.__doc__ = f"strict_cupy: numpy's {numpy_func.__name__} called as {qualname}."
    signature = _signature(qualname)
    if signature is not None:
        call.__signature__ = signature
    return call


def _index_item(item):
    if isinstance(item, ndarray):
        return item._a
    if isinstance(item, _np.ndarray):
        raise _unsupported(type(item), "indices")
    if isinstance(item, list):
        # CuPy copies a list index to the device itself; it must hold only host integers.
        if not all(isinstance(v, (int, _np.integer)) for v in item):
            raise _unsupported(type(item), "indices")
    return item


def _index(key):
    """An index with stand-in arrays unwrapped; NumPy arrays in it are refused."""
    if isinstance(key, tuple):
        return tuple(_index_item(item) for item in key)
    return _index_item(key)


# ---------------------------------------------------------------------------------------------
# The array


class _Flags:
    """``cupy.ndarray.flags``: only the three flags CuPy has (no ``writeable``, ``aligned``...)."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, flags):
        self.c_contiguous = flags.c_contiguous
        self.f_contiguous = flags.f_contiguous
        self.owndata = flags.owndata

    def __getitem__(self, key: str) -> bool:
        return getattr(self, {"C_CONTIGUOUS": "c_contiguous", "F_CONTIGUOUS": "f_contiguous",
                              "OWNDATA": "owndata"}[key])

    def __repr__(self) -> str:
        return (f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
                f"  OWNDATA : {self.owndata}")


def _binary(ufunc_name: str, reflected: bool = False):
    def operator(self, other):
        func = _resolve("cupy", ufunc_name)
        return func(other, self) if reflected else func(self, other)
    return operator


def _inplace(ufunc_name: str):
    def operator(self, other):
        _resolve("cupy", ufunc_name)(self, other, out=self)
        return self
    return operator


def _unary(ufunc_name: str):
    def operator(self):
        return _resolve("cupy", ufunc_name)(self)
    return operator


class ndarray:
    """``cupy.ndarray`` look-alike: a NumPy array (``_a``) behind CuPy's attributes and rules.

    Slices are stand-ins around NumPy views, so writes through them reach the base array.
    Methods are NumPy's, restricted to the names and keywords ``cupy.ndarray`` has.
    """

    __slots__ = ("_a",)
    __hash__ = None  # mutable, as in NumPy and CuPy

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("strict_cupy: ndarray(memptr=, strides=) is not emulated")
        self._a = _np.empty(shape, dtype=dtype, order=order)

    # --- the host boundary: refused implicitly, explicit with get/set -------------------------

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT_CONVERSION)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        left = inputs[0] if len(inputs) == 2 and inputs[1] is self else None
        if method == "__call__" and not kwargs and name in _OPERATOR_UFUNCS:
            # ``np.float32(2) * a`` arrives here: NumPy scalars try the ufunc before deferring.
            # Comparisons first make the scalar a 0-d array, which CuPy takes back as a scalar
            # (its workaround for numpy/numpy#12142). CuPy computes both on the device.
            if name in _COMPARISON_UFUNCS and isinstance(left, _np.ndarray) and left.ndim == 0:
                left = left[()]
            if isinstance(left, _SCALARS):
                return _resolve("cupy", name)(left, self)
        for value in inputs + tuple(kwargs.get("out", ())):
            if isinstance(value, _np.ndarray):
                raise _unsupported(type(value))
        suffix = "" if method == "__call__" else f".{method}"
        raise TypeError(f"strict_cupy: numpy.{name}{suffix} called on a device array; "
                        f"use xp.{name}{suffix}")

    def __array_function__(self, func, types, args, kwargs):
        if any(issubclass(t, _np.ndarray) for t in types):
            raise _unsupported(_np.ndarray)
        raise TypeError(f"strict_cupy: numpy.{func.__name__} called on a device array; "
                        f"use xp.{func.__name__}")

    def get(self, stream=None, order="C", out=None, blocking=True) -> _np.ndarray:
        """The device -> host copy."""
        _host_transfer(".get()")
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None) -> None:
        """The host -> device copy into this array (same shape and dtype, as CuPy demands)."""
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self._a.shape or arr.dtype != self._a.dtype:
            raise ValueError(f"set: shape/dtype mismatch: {arr.shape} {arr.dtype} into "
                             f"{self._a.shape} {self._a.dtype}")
        self._a[...] = arr

    # --- attributes ---------------------------------------------------------------------------

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: _from_numpy(self._a.T))
    mT = property(lambda self: _from_numpy(self._a.mT))
    real = property(lambda self: _from_numpy(self._a.real))
    imag = property(lambda self: _from_numpy(self._a.imag))
    base = property(lambda self: None if self._a.base is None else _wrap(self._a.base))
    flags = property(lambda self: _Flags(self._a.flags))

    def __getattr__(self, name: str):
        # Reached only for names the class does not define: CuPy's methods, served by NumPy's.
        if name.startswith("_") or name not in _names("cupy.ndarray"):
            hint = (" (strict_cupy: NumPy arrays have it, CuPy arrays do not)"
                    if hasattr(_np.ndarray, name) else "")
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'{hint}")
        method = getattr(self._a, name, None)
        if not callable(method):
            raise AttributeError(f"strict_cupy: cupy.ndarray.{name} exists in CuPy but the "
                                 f"stand-in does not emulate it")
        if name in ("item", "tolist"):  # device -> host
            _host_transfer(f".{name}()")
        return _functools.partial(_call, f"cupy.ndarray.{name}", method)

    # --- Python protocols that CuPy implements (no __index__, __round__, __contains__) --------

    def __repr__(self) -> str:
        _host_transfer("repr()")
        return repr(self._a)

    def __str__(self) -> str:
        _host_transfer("str()")
        return str(self._a)

    def __format__(self, spec: str) -> str:
        _host_transfer("format()")
        return self._a.__format__(spec)

    def __bool__(self) -> bool:
        _host_transfer("bool()")
        return bool(self._a)

    def __int__(self) -> int:
        _host_transfer("int()")
        return int(self._a)

    def __float__(self) -> float:
        _host_transfer("float()")
        return float(self._a)

    def __complex__(self) -> complex:
        _host_transfer("complex()")
        return complex(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        result = self._a[_index(key)]
        if isinstance(result, _np.generic):
            # NumPy gives a scalar copy, CuPy a 0-d view: a trailing Ellipsis makes NumPy agree.
            keys = key if isinstance(key, tuple) else (key,)
            if not any(k is Ellipsis for k in keys):
                result = self._a[_index(keys + (Ellipsis,))]
        return _wrap(result)

    def __setitem__(self, key, value) -> None:
        self._a[_index(key)] = _operand(value)

    def __copy__(self) -> "ndarray":
        return _from_numpy(self._a.copy())

    def __deepcopy__(self, memo) -> "ndarray":
        return _from_numpy(self._a.copy())

    def __reduce__(self):
        return _from_numpy, (self._a.copy(),)

    # --- operators: CuPy's ufuncs, so the same operand rules hold -----------------------------

    __add__, __radd__, __iadd__ = _binary("add"), _binary("add", True), _inplace("add")
    __sub__, __rsub__, __isub__ = (_binary("subtract"), _binary("subtract", True),
                                   _inplace("subtract"))
    __mul__, __rmul__, __imul__ = (_binary("multiply"), _binary("multiply", True),
                                   _inplace("multiply"))
    __truediv__, __rtruediv__, __itruediv__ = (_binary("true_divide"),
                                               _binary("true_divide", True),
                                               _inplace("true_divide"))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_binary("floor_divide"),
                                                  _binary("floor_divide", True),
                                                  _inplace("floor_divide"))
    __mod__, __rmod__, __imod__ = (_binary("remainder"), _binary("remainder", True),
                                   _inplace("remainder"))
    __pow__, __rpow__, __ipow__ = _binary("power"), _binary("power", True), _inplace("power")
    __lshift__, __rlshift__, __ilshift__ = (_binary("left_shift"), _binary("left_shift", True),
                                            _inplace("left_shift"))
    __rshift__, __rrshift__, __irshift__ = (_binary("right_shift"),
                                            _binary("right_shift", True),
                                            _inplace("right_shift"))
    __and__, __rand__, __iand__ = (_binary("bitwise_and"), _binary("bitwise_and", True),
                                   _inplace("bitwise_and"))
    __or__, __ror__, __ior__ = (_binary("bitwise_or"), _binary("bitwise_or", True),
                                _inplace("bitwise_or"))
    __xor__, __rxor__, __ixor__ = (_binary("bitwise_xor"), _binary("bitwise_xor", True),
                                   _inplace("bitwise_xor"))
    # CuPy has no __imatmul__: ``a @= b`` rebinds ``a`` to a new array, as here.
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", True)
    __divmod__, __rdivmod__ = _binary("divmod"), _binary("divmod", True)
    __eq__, __ne__ = _binary("equal"), _binary("not_equal")
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __neg__, __pos__ = _unary("negative"), _unary("positive")
    __abs__, __invert__ = _unary("absolute"), _unary("invert")


# NumPy ufuncs that Python operators map to (for numpy-scalar-on-the-left operations).
_COMPARISON_UFUNCS = frozenset({"equal", "not_equal", "less", "less_equal", "greater",
                                "greater_equal"})
_OPERATOR_UFUNCS = _COMPARISON_UFUNCS | {
    "add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power", "divmod",
    "left_shift", "right_shift", "bitwise_and", "bitwise_or", "bitwise_xor", "matmul",
}


# ---------------------------------------------------------------------------------------------
# Universal functions


class ufunc:
    """``cupy.ufunc`` look-alike around NumPy's ufunc of the same name.

    CuPy's ufuncs take only ``out``, ``dtype`` and ``casting``; their ``at`` works only where
    CuPy has a scatter kernel, ``reduce``/``accumulate`` only for add and multiply,
    ``reduceat`` only for add (cupy/_core/_kernel.pyx).
    """

    def __init__(self, name: str):
        self._np = getattr(_np, name)
        self._short = name
        self.name = self.__name__ = f"cupy_{name}"
        self.nin, self.nout, self.nargs = self._np.nin, self._np.nout, self._np.nargs

    @property
    def types(self) -> list:
        return self._np.types

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def __call__(self, *args, **kwargs):
        unknown = set(kwargs) - {"out", "dtype", "casting"}
        if unknown:
            raise TypeError(f"Wrong arguments {kwargs} (strict_cupy: CuPy's ufuncs take only "
                            f"out=, dtype= and casting=, not {sorted(unknown)})")
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        inputs = [_operand(value) for value in args[:self.nin]]
        outs, out_keyword = args[self.nin:], kwargs.pop("out", None)
        if outs and out_keyword is not None:
            raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
        outs = outs or out_keyword
        if outs is not None:
            outs = outs if isinstance(outs, tuple) else (outs,)
            if not all(isinstance(out, ndarray) for out in outs):
                raise _unsupported(type(outs), "out=")
            kwargs["out"] = tuple(out._a for out in outs)
        result = self._np(*inputs, **kwargs)
        if outs is not None:
            return outs[0] if self.nout == 1 else outs
        return _wrap(result)

    def at(self, a, indices, b=None) -> None:
        if self._short not in _data()["ufunc_at"]:
            raise NotImplementedError(f"`{self.name}.at` is not supported yet")
        if not isinstance(a, ndarray):
            raise _unsupported(type(a))
        if b is None:
            self._np.at(a._a, _index(indices))
        else:
            self._np.at(a._a, _index(indices), _operand(b))

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        _operand(array)  # CuPy would call a host array's own sum(): a silent host computation
        if self._short == "add":
            return array.sum(axis, dtype, out, keepdims)
        if self._short == "multiply":
            return array.prod(axis, dtype, out, keepdims)
        raise NotImplementedError(f"`{self.name}.reduce` is not supported yet")

    def accumulate(self, array, axis=0, dtype=None, out=None):
        _operand(array)
        if self._short == "add":
            return array.cumsum(axis, dtype, out)
        if self._short == "multiply":
            return array.cumprod(axis, dtype, out)
        raise NotImplementedError(f"`{self.name}.accumulate` is not supported yet")

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        if self._short != "add":
            raise NotImplementedError(f"`{self.name}.reduceat` is not supported yet")
        return _call("cupy.ufunc.reduceat", _np.add.reduceat, array, indices, axis, dtype, out)

    def outer(self, A, B, **kwargs):  # CuPy's parameter names
        for value in (A, B):
            if not isinstance(value, ndarray):
                raise _unsupported(type(value))
        return self(A.reshape(A.shape + (1,) * B.ndim), B, **kwargs)


# ---------------------------------------------------------------------------------------------
# Functions CuPy has that NumPy has not, or that need CuPy's own rules


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False) -> ndarray:
    """The explicit host -> device copy (a device array of the right dtype passes through)."""
    return _to_device(a, dtype, order, copy)


def asanyarray(a, dtype=None, order=None, *, copy=None, blocking=False) -> ndarray:
    return _to_device(a, dtype, order, copy)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    return _to_device(obj, dtype, order, copy or None, ndmin)


def _to_device(obj, dtype, order, copy, ndmin=0) -> ndarray:
    if isinstance(obj, ndarray):
        result = _np.array(obj._a, dtype=dtype, order=order, copy=copy, ndmin=ndmin)
        return obj if result is obj._a else _from_numpy(result)
    # Host data is always copied: device memory never aliases the host array it came from.
    return _from_numpy(_np.array(_unwrap(obj, host_ok=True), dtype=dtype, order=order,
                                 copy=True, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True) -> _np.ndarray:
    """The explicit device -> host copy; host data passes through."""
    if isinstance(a, ndarray):
        return a.get(stream, order, out, blocking)
    host = _np.asarray(a, order=order)
    if out is None:
        return host
    out[...] = host
    return out


def get_array_module(*args):
    """This module if any argument is a stand-in array, else NumPy (as cupy.get_array_module)."""
    if any(isinstance(arg, ndarray) for arg in args):
        return _sys.modules[__name__]
    return _np


def is_available() -> bool:
    """The stand-in's "device" (the CPU) is always there."""
    return True


# CuPy 14.2's pad modes and their keywords (``allowed_kwargs`` in cupy/_padding/pad.py, where
# 'median' is commented out).
_PAD_KWARGS = {
    "empty": (), "edge": (), "wrap": (), "constant": ("constant_values",),
    "linear_ramp": ("end_values",), "maximum": ("stat_length",), "mean": ("stat_length",),
    "minimum": ("stat_length",), "reflect": ("reflect_type",), "symmetric": ("reflect_type",),
}


def pad(array, pad_width, mode="constant", **kwargs) -> ndarray:
    if callable(mode):
        raise NotImplementedError("strict_cupy: pad with a callable mode is not emulated")
    if mode not in _PAD_KWARGS:
        raise ValueError(f"mode '{mode}' is not supported")
    unsupported = set(kwargs) - set(_PAD_KWARGS[mode])
    if unsupported:
        raise ValueError(f"unsupported keyword arguments for mode '{mode}': {unsupported}")
    return _call("cupy.pad", _np.pad, array, pad_width, mode, **kwargs)


def einsum(*operands, **kwargs) -> ndarray:
    """CuPy's einsum takes only ``dtype`` and ``optimize`` (cupy/linalg/_einsum.py)."""
    unknown = set(kwargs) - {"dtype", "optimize"}
    if unknown:
        raise TypeError(f"Did not understand the following kwargs: {sorted(unknown)}")
    for operand in operands:
        is_sublist = isinstance(operand, list) and all(
            isinstance(v, int) or v is Ellipsis for v in operand)
        if not (isinstance(operand, str) or is_sublist):
            _operand(operand)
    return _call("cupy.einsum", _np.einsum, *operands, **kwargs)


def _sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    if writeable:
        raise NotImplementedError("Writeable views are not supported.")
    return _call("cupy.lib.stride_tricks.sliding_window_view",
                 _np.lib.stride_tricks.sliding_window_view, x, window_shape, axis, subok=subok)


# ---------------------------------------------------------------------------------------------
# Random numbers


class _Generator:
    """``cupy.random.Generator`` look-alike backed by NumPy's: only CuPy's methods exist.

    The numbers are NumPy's; CuPy draws other numbers from the same seed, which no stand-in
    can reproduce, so tests must not compare random draws across backends.
    """

    __slots__ = ("_rng",)

    def __init__(self, bit_generator):
        raise NotImplementedError("strict_cupy: create generators with "
                                  "xp.random.default_rng(seed)")

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in _names("cupy.random.Generator"):
            hint = (" (strict_cupy: NumPy's Generator has it, CuPy's does not: draw it on the "
                    "host with NumPy, or build it from random/standard_normal/integers)"
                    if hasattr(_np.random.Generator, name) else "")
            raise AttributeError(f"'cupy.random.Generator' object has no attribute "
                                 f"'{name}'{hint}")
        qualname = f"cupy.random.Generator.{name}"
        method = getattr(self._rng, name)
        if name in _DRAWN_THEN_CAST:
            method = _drawn_then_cast(qualname, method)
        return _functools.partial(_call, qualname, lambda *a, **k: _np.asarray(method(*a, **k)))


# CuPy's Generator takes ``dtype`` in these, NumPy's does not: draw in float64, then cast.
_DRAWN_THEN_CAST = frozenset({"uniform", "beta"})


def _drawn_then_cast(qualname: str, method):
    def draw(*args, **kwargs):
        bound = _signature(qualname).bind(*args, **kwargs)
        dtype = bound.arguments.pop("dtype", _np.float64)
        return _np.asarray(method(*bound.args, **bound.kwargs)).astype(dtype, copy=False)
    return draw


def _default_rng(seed=None) -> _Generator:
    if isinstance(seed, (ndarray, _np.ndarray)):
        raise _unsupported(type(seed), "seeds")
    generator = object.__new__(_Generator)
    generator._rng = _np.random.default_rng(seed)
    return generator


# ---------------------------------------------------------------------------------------------
# Namespaces and name resolution


class _Namespace:
    """A CuPy submodule: explicit members first, then NumPy's functions behind CuPy's names."""

    def __init__(self, qualname: str, **members):
        self._qualname = qualname
        self.__dict__.update(members)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return _resolve(self._qualname, name)

    def __dir__(self) -> list:
        return sorted(_names(self._qualname))

    def __repr__(self) -> str:
        return f"<strict_cupy stand-in for module '{self._qualname}'>"


_NUMPY_MODULES = {"cupy": _np, "cupy.linalg": _np.linalg,
                  "cupy.lib.stride_tricks": _np.lib.stride_tricks}


@_functools.cache
def _resolve(space: str, name: str):
    """CuPy's ``space.name``: NumPy's object where CuPy shares it, else a checked wrapper."""
    qualname = f"{space}.{name}"
    data = _data()
    if name not in _names(space):
        numpy_module = _NUMPY_MODULES.get(space)
        hint = (f" (strict_cupy: numpy{space[4:]} has it, {space} does not)"
                if numpy_module is not None and hasattr(numpy_module, name) else "")
        raise AttributeError(f"module '{space}' has no attribute '{name}'{hint}")
    if qualname in data["numpy_objects"]:
        module, attribute = data["numpy_objects"][qualname]
        return _functools.reduce(getattr, attribute.split("."), _importlib.import_module(module))
    if qualname in data["constants"]:
        return float(data["constants"][qualname])
    numpy_func = getattr(_NUMPY_MODULES.get(space), name, None)
    if space == "cupy" and name in data["ufuncs"] and isinstance(numpy_func, _np.ufunc):
        return ufunc(name)
    # CuPy ufuncs that NumPy writes as plain functions (i0, sinc, fix) are wrapped as functions.
    if (qualname in data["functions"] or name in data["ufuncs"]) and callable(numpy_func):
        return _function(qualname, numpy_func)
    hint = "; draw numbers with random.default_rng(seed)" if space == "cupy.random" else ""
    raise AttributeError(f"strict_cupy: {qualname} exists in CuPy but the stand-in does not "
                         f"emulate it{hint}")


def __getattr__(name: str):
    return _resolve("cupy", name)


def __dir__() -> list:
    return sorted(_names("cupy"))


random = _Namespace("cupy.random", Generator=_Generator, default_rng=_default_rng)
linalg = _Namespace("cupy.linalg")
lib = _Namespace("cupy.lib", stride_tricks=_Namespace(
    "cupy.lib.stride_tricks", sliding_window_view=_sliding_window_view))


# ---------------------------------------------------------------------------------------------
# Regenerating cupy_names.json from an installed CuPy (no GPU needed)

_SPACES = ("cupy", "cupy.linalg", "cupy.random", "cupy.lib", "cupy.lib.stride_tricks")


def _doc_signature(obj) -> list | None:
    """Parameters from a Cython docstring's first line, e.g. ``sum(self, axis=None, ...)``."""
    first_line = (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
    match = _re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", first_line)
    if match is None:
        return None
    params, kind, depth, token = [], "POSITIONAL_OR_KEYWORD", 0, ""
    for char in match.group(1) + ",":
        depth += (char in "([{") - (char in ")]}")
        if char != "," or depth:
            token += char
            continue
        token, text = "", token.strip()
        if text in ("", "self"):
            continue
        if text == "*":
            kind = "KEYWORD_ONLY"
        elif text.startswith("**"):
            params.append([text[2:], "VAR_KEYWORD", None])
        elif text.startswith("*"):
            params.append([text[1:], "VAR_POSITIONAL", None])
            kind = "KEYWORD_ONLY"
        else:
            head, equals, default = text.partition("=")
            params.append([head.split()[-1], kind, default.strip() if equals else None])
    return params


def _python_signature(obj, drop_self: bool = False) -> list | None:
    try:
        parameters = list(_inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return _doc_signature(obj)
    if drop_self:
        parameters = parameters[1:]
    # Addresses in reprs (``<object object at 0x7f...>``) would change on every regeneration.
    return [[p.name, p.kind.name,
             None if p.default is p.empty else _re.sub(r" at 0x[0-9a-f]+", "", repr(p.default))]
            for p in parameters]


def _collect_cupy_names() -> dict:
    """The facts ``cupy_names.json`` freezes, read from the installed CuPy."""
    import __future__

    import cupy

    def public(obj, space):
        for name in dir(obj):
            value = getattr(obj, name)
            if name.startswith("_") or isinstance(value, __future__._Feature):
                continue
            # Submodules leak their imports (stride_tricks has ``np``); keep CuPy's own modules.
            if _inspect.ismodule(value) and not value.__name__.startswith("cupy"):
                continue
            yield name

    modules = {space: _functools.reduce(getattr, space.split(".")[1:], cupy) for space in _SPACES}
    data = {"cupy_version": cupy.__version__, "names": {}, "numpy_objects": {}, "constants": {},
            "functions": [], "ufuncs": [], "ufunc_at": [], "signatures": {}}
    for space, module in modules.items():
        data["names"][space] = sorted(public(module, space))
        for name in data["names"][space]:
            value, qualname = getattr(module, name), f"{space}.{name}"
            numpy_path = _numpy_path(value, name if space == "cupy" else None)
            if isinstance(value, cupy.ufunc):
                data["ufuncs"].append(name)
                if value._scatter_op is not None:
                    data["ufunc_at"].append(name)
            elif numpy_path is not None:
                data["numpy_objects"][qualname] = numpy_path
            elif isinstance(value, float):
                data["constants"][qualname] = repr(value)
            elif callable(value) and not isinstance(value, type):
                data["functions"].append(qualname)
                signature = _python_signature(value)
                if signature is not None:
                    data["signatures"][qualname] = signature
    classes = {"cupy.ndarray": cupy.ndarray, "cupy.random.Generator": cupy.random.Generator,
               "cupy.ufunc": cupy.ufunc}
    for space, cls in classes.items():
        # For the array every name counts, dunders included: __index__ must stay absent.
        names = dir(cls) if cls is cupy.ndarray else list(public(cls, space))
        data["names"][space] = sorted(names)
        for name in names:
            value = getattr(cls, name)
            if not name.startswith("_") and callable(value):
                signature = _python_signature(value, drop_self=True)
                if signature is not None:
                    data["signatures"][f"{space}.{name}"] = signature
    return data


def _numpy_path(value, name: str | None) -> list | None:
    """Where NumPy keeps ``value`` if CuPy re-exports NumPy's own object (dtypes, finfo, pi...).

    ``name`` is the top-level name to compare with (``vars``, not ``getattr``: NumPy warns on
    some removed names such as ``np.bytes``).
    """
    if name is not None and value is vars(_np).get(name, object()):
        return ["numpy", name]
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not (isinstance(module, str) and module.startswith("numpy") and qualname):
        return None
    try:
        found = _functools.reduce(getattr, qualname.split("."), _importlib.import_module(module))
    except (ImportError, AttributeError):
        return None
    return [module, qualname] if found is value else None


if __name__ == "__main__":
    _NAMES_FILE.write_text(_json.dumps(_collect_cupy_names(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {_NAMES_FILE}")
