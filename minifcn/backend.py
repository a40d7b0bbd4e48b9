"""The one place that knows about array libraries.

Every other module asks this one for an array module (``xp``) and writes ``xp.zeros``,
``xp.matmul``, ... so that the same line runs on NumPy (CPU) and CuPy (GPU).

    xp = get_array_module(x)        # numpy or cupy, whichever owns x
    to_device(x, "gpu")             # copy a host array to the GPU
    to_numpy(x)                     # copy any array to the host

Devices are named ``"cpu"`` and ``"gpu"``. CuPy is imported only when a GPU is asked for
or a CuPy array is seen, so ``import minifcn`` stays light and works without CuPy.
Host-side code (data generation, metrics, file formats) takes NumPy from here as ``np``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

__all__ = [
    "np",
    "DEVICES",
    "DeviceUnavailableError",
    "Generator",
    "array_module",
    "cuda_runtime",
    "default_device",
    "derive_seed",
    "device_of",
    "get_array_module",
    "is_array",
    "manual_seed",
    "register_array_module",
    "resolve_dtype",
    "set_gpu",
    "to_device",
    "to_numpy",
    "use_gpu_module",
]

DEVICES = ("cpu", "gpu")
"""The device names: ``"cpu"`` (NumPy) and ``"gpu"`` (CuPy)."""
FLOAT_DTYPES = ("float32", "float64")

GPU_INSTALL_HINT = 'install CuPy with: pip install "minifcn[gpu]" (needs an NVIDIA GPU and CUDA 12)'


class DeviceUnavailableError(RuntimeError):
    """Raised when ``"gpu"`` is asked for on a machine that cannot provide one."""


# Array type -> (array module, device name). NumPy is always here; CuPy joins the first
# time one of its arrays is seen; the tests register a strict CuPy stand-in.
_ARRAY_TYPES: dict[type, tuple[object, str]] = {np.ndarray: (np, "cpu")}
_gpu_override: object | None = None


def register_array_module(array_type: type, module: object, device: str) -> None:
    """Teach the backend that arrays of ``array_type`` belong to ``module`` on ``device``."""
    if device not in DEVICES:
        raise ValueError(f"register_array_module: device must be one of {DEVICES}, got {device!r}")
    _ARRAY_TYPES[array_type] = (module, device)


@contextlib.contextmanager
def use_gpu_module(module: object) -> Iterator[None]:
    """Within the block, ``"gpu"`` means ``module`` (a CuPy stand-in in the tests and lessons);
    its ``module.ndarray`` arrays are registered as ``"gpu"`` arrays."""
    global _gpu_override
    register_array_module(module.ndarray, module, "gpu")
    previous, _gpu_override = _gpu_override, module
    try:
        yield
    finally:
        _gpu_override = previous


def _import_cupy():
    try:
        import cupy
    except Exception as error:  # not installed, or a broken CUDA install failing at import
        raise DeviceUnavailableError(f"device 'gpu' needs CuPy, which is not installed: "
                                     f"{GPU_INSTALL_HINT}") from error
    register_array_module(cupy.ndarray, cupy, "gpu")
    return cupy


def cuda_runtime():
    """``cupy.cuda`` (streams, events) with CuPy's NCCL bindings loaded as ``.nccl``
    (``.nccl.available`` says whether the NCCL library itself loaded): for the GPU
    collectives of :mod:`minifcn.distributed`."""
    _import_cupy()
    import cupy.cuda
    import cupy.cuda.nccl  # noqa: F401 -- makes cupy.cuda.nccl an attribute

    return cupy.cuda


def _gpu_module():
    if _gpu_override is not None:
        return _gpu_override
    cupy = _import_cupy()
    try:
        available = cupy.is_available()
    except Exception:  # a broken driver install raises instead of answering False
        available = False
    if not available:
        raise DeviceUnavailableError(f"device 'gpu' asked for, but CuPy sees no usable GPU "
                                     f"(no NVIDIA driver or device); run on 'cpu', or "
                                     f"{GPU_INSTALL_HINT}")
    return cupy


def _lookup(array_type: type) -> tuple[object, str] | None:
    entry = _ARRAY_TYPES.get(array_type)
    if entry is None and array_type.__module__.split(".")[0] == "cupy":
        _import_cupy()
        entry = _ARRAY_TYPES.get(array_type)
    return entry


def is_array(x: object) -> bool:
    """True for an array of any registered array library (NumPy, CuPy, the stand-in)."""
    return _lookup(type(x)) is not None


def get_array_module(*arrays: object):
    """The array module (``numpy`` or ``cupy``) that owns the given arrays.

    Arguments that are not arrays (None, Python numbers) are ignored. Arrays from two
    libraries in one call are a ``TypeError``: an operation cannot mix host and device.
    """
    found = None
    for x in arrays:
        entry = _lookup(type(x))
        if entry is None:
            continue
        if found is not None and entry[0] is not found[0]:
            raise TypeError(f"arrays from two devices in one operation: a {found[1]} array "
                            f"({found[2]}) and a {entry[1]} array ({type(x).__module__}."
                            f"{type(x).__name__}); move them to one device first "
                            f"(minifcn.backend.to_device)")
        if found is None:
            found = (entry[0], entry[1], f"{type(x).__module__}.{type(x).__name__}")
    return np if found is None else found[0]


def device_of(x: object) -> str:
    """``"cpu"`` or ``"gpu"``: where array ``x`` lives."""
    entry = _lookup(type(x))
    if entry is None:
        raise TypeError(f"device_of: expected an array, got {type(x).__name__}")
    return entry[1]


def array_module(device: str):
    """The array module for a device name: NumPy for ``"cpu"``, CuPy for ``"gpu"``."""
    if device == "cpu":
        return np
    if device == "gpu":
        return _gpu_module()
    raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")


def set_gpu(index: int) -> None:
    """Compute on GPU ``index`` from now on (CuPy's ``Device(index).use()``): a data-parallel
    run gives each rank on a machine its own GPU, its local rank's. A no-op for the strict
    stand-in, which has one."""
    cuda = getattr(_gpu_module(), "cuda", None)
    if cuda is not None:
        cuda.Device(int(index) % cuda.runtime.getDeviceCount()).use()


def default_device() -> str:
    """The device new modules are created on: ``$MINIFCN_DEVICE`` if set, else ``"cpu"``.

    Read each time a module is created, never once at import, so a script may set the
    variable after importing minifcn.
    """
    device = os.environ.get("MINIFCN_DEVICE", "cpu").strip().lower() or "cpu"
    if device not in DEVICES:
        raise ValueError(f"MINIFCN_DEVICE={device!r}: expected one of {DEVICES}")
    return device


def to_numpy(x):
    """A NumPy copy (or the array itself, if already NumPy) of any backend's array."""
    if isinstance(x, np.ndarray):
        return x
    if _lookup(type(x)) is not None:
        return x.get()  # CuPy's explicit device-to-host copy; the stand-in offers the same
    return np.asarray(x)


def to_device(x, device: str):
    """``x`` on ``device`` (``"cpu"`` or ``"gpu"``); no copy when it is already there."""
    xp = array_module(device)
    if _lookup(type(x)) is not None and get_array_module(x) is xp:
        return x
    host = to_numpy(x)
    return host if xp is np else xp.asarray(host)


def resolve_dtype(dtype) -> np.dtype:
    """A float dtype from ``None`` (float32), a name, or a dtype object; else ``ValueError``."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from error
    if resolved.name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {resolved.name}")
    return resolved


# ---------------------------------------------------------------------------------------
# Random numbers
#
# One seed source for the whole program (``manual_seed``), from which every module that
# needs randomness draws its own seed when it is created. Generators use only the three
# methods CuPy's Generator also has (random, standard_normal, integers), so the code that
# draws is the same on both devices; parameters are initialised on the host, so the same
# seed gives the same weights whichever device the model then moves to.

_seed_source = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Restart the seed source: after it, creating the same modules gives the same numbers."""
    global _seed_source
    _seed_source = np.random.default_rng(int(seed))


def _next_seed() -> int:
    return int(_seed_source.integers(0, 2**63 - 1))


def derive_seed(*keys: int) -> int:
    """One seed from several integers (a base seed, a split, an epoch): distinct key tuples
    give independent streams, unlike ``seed + offset``, where (0, 1) and (1, 0) collide."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class Generator:
    """A seeded random stream that follows the arrays it serves across devices.

    ``Generator(seed)`` is deterministic; ``Generator()`` draws its seed from the seed
    source that :func:`manual_seed` resets. One stream is kept per array module, each
    started from the same seed.
    """

    def __init__(self, seed: int | None = None):
        self.seed = _next_seed() if seed is None else int(seed)
        self._streams: dict[int, object] = {}

    def _stream(self, xp):
        key = id(xp)
        if key not in self._streams:
            self._streams[key] = xp.random.default_rng(self.seed)
        return self._streams[key]

    def random(self, shape, dtype="float32", xp=np):
        """Uniform numbers in [0, 1)."""
        return self._stream(xp).random(shape, dtype=dtype)

    def standard_normal(self, shape, dtype="float32", xp=np):
        """Normal numbers, mean 0 and standard deviation 1."""
        return self._stream(xp).standard_normal(shape, dtype=dtype)

    def uniform(self, low: float, high: float, shape, dtype="float32", xp=np):
        """Uniform numbers in [low, high), built from ``random`` (all CuPy's Generator has)."""
        # Python floats, so NumPy scalar bounds cannot promote a float32 draw to float64
        return self.random(shape, dtype, xp) * float(high - low) + float(low)

    def integers(self, low: int, high: int | None = None, size=None, xp=np):
        """Integers in [low, high), or in [0, low) without ``high``, as NumPy's."""
        return self._stream(xp).integers(low, high, size=size)

    def permutation(self, n: int):
        """A host permutation of ``range(n)``: CuPy's Generator has none, so always NumPy."""
        return np.argsort(self._stream(np).random(n), kind="stable")
