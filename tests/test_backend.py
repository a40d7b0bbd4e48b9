"""minifcn.backend: array modules, devices, host <-> device copies, dtypes, seeds.

The GPU side is played by the strict CuPy stand-in (``strict_cupy``), registered as a "gpu"
array module; the real CuPy is only imported to check what happens on a machine without a GPU.
"""

import sys

import numpy as np
import pytest

from minifcn import backend
from minifcn.testing import strict_cupy as scp


@pytest.fixture(autouse=True)
def registered_stand_in(monkeypatch):
    """The stand-in registered as the "gpu" array module; backend state restored afterwards.

    The registry and the seed source are module state: the registry is swapped for a copy the
    test may change (``array_module("gpu")`` registers CuPy's ndarray when it imports CuPy), and
    the seed source that ``manual_seed`` replaces is put back, so other tests see neither.
    """
    monkeypatch.setattr(backend, "_ARRAY_TYPES", dict(backend._ARRAY_TYPES))
    monkeypatch.setattr(backend, "_seed_source", backend._seed_source)
    backend.register_array_module(scp.ndarray, scp, "gpu")


def host(shape=(2, 3), dtype=np.float32):
    return (np.arange(np.prod(shape)) % 5).astype(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Which module owns an array


def test_get_array_module_defaults_to_numpy():
    assert backend.get_array_module() is np
    assert backend.get_array_module(None, 3.0, "text", [1, 2]) is np
    assert backend.get_array_module(host(), None, host()) is np


def test_get_array_module_finds_the_stand_in():
    assert backend.get_array_module(scp.asarray(host())) is scp
    assert backend.get_array_module(None, scp.asarray(host()), 2.0, scp.zeros(3)) is scp


@pytest.mark.parametrize("order", ["host-first", "device-first"])
def test_mixing_host_and_device_arrays_is_a_type_error_naming_both(order):
    arrays = [host(), scp.asarray(host())]
    if order == "device-first":
        arrays.reverse()
    with pytest.raises(TypeError) as error:
        backend.get_array_module(None, *arrays)
    message = str(error.value)
    for part in ("cpu", "gpu", "numpy.ndarray", "strict_cupy.ndarray", "to_device"):
        assert part in message


def test_register_array_module_rejects_unknown_devices():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.register_array_module(scp.ndarray, scp, "tpu")


def test_is_array_and_device_of():
    assert backend.is_array(host()) and backend.is_array(scp.asarray(host()))
    assert not backend.is_array([1.0, 2.0]) and not backend.is_array(np.float32(1))
    assert backend.device_of(host()) == "cpu"
    assert backend.device_of(scp.asarray(host())) == "gpu"
    with pytest.raises(TypeError, match="expected an array, got list"):
        backend.device_of([1.0])


# ---------------------------------------------------------------------------------------------
# Host <-> device copies


def test_to_numpy_returns_host_arrays():
    values = host()
    assert backend.to_numpy(values) is values
    copied = backend.to_numpy(scp.asarray(values))
    assert type(copied) is np.ndarray and copied.dtype == np.float32
    np.testing.assert_array_equal(copied, values)
    np.testing.assert_array_equal(backend.to_numpy([1.0, 2.0]), np.array([1.0, 2.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_to_device_round_trips_through_the_stand_in(dtype):
    values = host((2, 3, 4), dtype)
    with backend.use_gpu_module(scp):
        on_device = backend.to_device(values, "gpu")
        assert isinstance(on_device, scp.ndarray) and on_device.dtype == dtype
        assert backend.to_device(on_device, "gpu") is on_device
        back = backend.to_device(on_device, "cpu")
    assert type(back) is np.ndarray and back.dtype == dtype
    np.testing.assert_array_equal(back, values)
    assert backend.to_device(values, "cpu") is values


def test_to_device_copies_so_host_and_device_do_not_alias():
    values = host()
    with backend.use_gpu_module(scp):
        on_device = backend.to_device(values, "gpu")
    values[...] = -1
    np.testing.assert_array_equal(backend.to_numpy(on_device), host())


def test_to_device_takes_lists():
    with backend.use_gpu_module(scp):
        on_device = backend.to_device([[1.0, 2.0]], "gpu")
    np.testing.assert_array_equal(on_device.get(), [[1.0, 2.0]])


def test_use_gpu_module_restores_the_previous_module_even_after_an_error():
    class Other:  # an array module: it has an array type, as CuPy does
        class ndarray:
            pass

    with backend.use_gpu_module(scp):
        with backend.use_gpu_module(Other):
            assert backend.array_module("gpu") is Other
        assert backend.array_module("gpu") is scp
        with pytest.raises(RuntimeError), backend.use_gpu_module(Other):
            raise RuntimeError("inside")
        assert backend.array_module("gpu") is scp


# ---------------------------------------------------------------------------------------------
# Devices


def test_array_module_cpu_is_numpy():
    assert backend.array_module("cpu") is np


@pytest.mark.parametrize("device", ["tpu", "cuda", "GPU", "", "cpu:0"])
def test_unknown_device_names_are_value_errors(device):
    with pytest.raises(ValueError, match="unknown device"):
        backend.array_module(device)


def test_gpu_without_a_usable_gpu_says_how_to_get_one():
    try:
        import cupy
    except ImportError as error:
        pytest.skip(f"CuPy is not importable here ({error}); the not-installed case is "
                    f"test_gpu_without_cupy_says_it_is_not_installed")
    if cupy.is_available():
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(backend.DeviceUnavailableError) as error:
        backend.array_module("gpu")
    assert "no usable GPU" in str(error.value)
    assert 'pip install "minifcn[gpu]"' in str(error.value)


def test_gpu_without_cupy_says_it_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes ``import cupy`` an ImportError
    with pytest.raises(backend.DeviceUnavailableError) as error:
        backend.array_module("gpu")
    assert "not installed" in str(error.value)
    assert 'pip install "minifcn[gpu]"' in str(error.value)
    with pytest.raises(backend.DeviceUnavailableError):
        backend.to_device(host(), "gpu")


def test_device_unavailable_is_a_runtime_error():
    assert issubclass(backend.DeviceUnavailableError, RuntimeError)


@pytest.mark.parametrize(("value", "device"), [
    (None, "cpu"), ("cpu", "cpu"), ("gpu", "gpu"), (" GPU ", "gpu"), ("Cpu", "cpu"), ("", "cpu"),
])
def test_default_device_reads_the_environment_at_call_time(monkeypatch, value, device):
    if value is None:
        monkeypatch.delenv("MINIFCN_DEVICE", raising=False)
    else:
        monkeypatch.setenv("MINIFCN_DEVICE", value)
    assert backend.default_device() == device


def test_default_device_follows_changes_after_import(monkeypatch):
    monkeypatch.setenv("MINIFCN_DEVICE", "cpu")
    assert backend.default_device() == "cpu"
    monkeypatch.setenv("MINIFCN_DEVICE", "gpu")
    assert backend.default_device() == "gpu"


@pytest.mark.parametrize("value", ["cuda", "tpu", "gpu0", "cpu,gpu"])
def test_default_device_rejects_bad_values(monkeypatch, value):
    monkeypatch.setenv("MINIFCN_DEVICE", value)
    with pytest.raises(ValueError, match="MINIFCN_DEVICE"):
        backend.default_device()


# ---------------------------------------------------------------------------------------------
# Dtypes


@pytest.mark.parametrize(("given", "expected"), [
    (None, np.float32), ("float32", np.float32), ("float64", np.float64), (np.float32, np.float32),
    (np.float64, np.float64), (np.dtype("float64"), np.float64), ("f4", np.float32),
    (scp.float32, np.float32),
])
def test_resolve_dtype_accepts_float32_and_float64(given, expected):
    resolved = backend.resolve_dtype(given)
    assert isinstance(resolved, np.dtype) and resolved == expected


@pytest.mark.parametrize("given", ["float16", "int32", np.int64, "bool", "nonsense", object(), 3])
def test_resolve_dtype_rejects_everything_else(given):
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.resolve_dtype(given)


# ---------------------------------------------------------------------------------------------
# Random numbers


def test_manual_seed_makes_new_generators_reproducible():
    backend.manual_seed(3)
    first = [backend.Generator().random((4,)) for _ in range(2)]
    backend.manual_seed(3)
    second = [backend.Generator().random((4,)) for _ in range(2)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # each generator draws its own seed
    backend.manual_seed(4)
    assert not np.array_equal(backend.Generator().random((4,)), first[0])


def test_an_explicit_seed_ignores_the_seed_source():
    backend.manual_seed(1)
    a = backend.Generator(11).standard_normal((5,))
    backend.manual_seed(2)
    b = backend.Generator(11).standard_normal((5,))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_generator_draws_the_asked_dtype_on_both_modules(dtype):
    generator = backend.Generator(0)
    for xp in (np, scp):
        for draw in (generator.random((3, 2), dtype, xp=xp),
                     generator.standard_normal((3, 2), dtype, xp=xp),
                     generator.uniform(-0.5, 0.5, (3, 2), dtype, xp=xp)):
            assert backend.get_array_module(draw) is xp
            assert draw.dtype == dtype and draw.shape == (3, 2)
        integers = generator.integers(0, 4, size=(6,), xp=xp)
        assert backend.get_array_module(integers) is xp and integers.dtype == np.int64


def test_generator_on_the_stand_in_is_reproducible_and_uses_only_cupy_s_methods():
    # The stand-in's Generator has only CuPy's methods, so drawing through it at all shows
    # that backend.Generator asks for nothing CuPy lacks.
    def draws(seed):
        generator = backend.Generator(seed)
        return [generator.random((4,), xp=scp), generator.standard_normal((4,), xp=scp),
                generator.uniform(1.0, 2.0, (4,), xp=scp), generator.integers(0, 9, (4,), xp=scp)]

    for a, b in zip(draws(5), draws(5), strict=True):
        np.testing.assert_array_equal(a.get(), b.get())
    uniform = draws(5)[2].get()
    assert (uniform >= 1.0).all() and (uniform < 2.0).all()


def test_streams_per_module_are_independent():
    generator = backend.Generator(9)
    generator.random((3,))  # drawing on NumPy does not move the stand-in's stream
    np.testing.assert_array_equal(generator.random((3,), xp=scp).get(),
                                  backend.Generator(9).random((3,), xp=scp).get())


def test_uniform_keeps_the_dtype_with_numpy_scalar_bounds():
    bound = np.sqrt(6.0 / 27)  # a NumPy float64, as Kaiming/Xavier bounds usually are
    draw = backend.Generator(0).uniform(-bound, bound, (3,), "float32")
    assert draw.dtype == np.float32


def test_permutation_is_a_reproducible_host_permutation():
    generator = backend.Generator(2)
    generator.random((3,), xp=scp)
    permutation = generator.permutation(10)
    assert type(permutation) is np.ndarray
    assert sorted(permutation.tolist()) == list(range(10))
    np.testing.assert_array_equal(permutation, backend.Generator(2).permutation(10))
    assert not np.array_equal(generator.permutation(10), permutation)
