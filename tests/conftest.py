"""Shared test set-up: one backend fixture for every array library, hypothesis profiles.

Every layer test takes the ``bk`` fixture and runs once per backend:
- ``numpy``: the CPU path;
- ``strict``: the strict CuPy stand-in (``tests/strict_cupy.py``) posing as the GPU, which
  fails where CuPy fails (implicit host conversion, host/device mixing, NumPy-only names);
- ``cupy``: real CuPy, added only where ``cupy.is_available()``.
"""

from __future__ import annotations

import os

# PyTorch, the tests' oracle, keeps its OpenMP threads spinning after each call; on a busy
# two-core machine they wait at every parallel region for a descheduled partner (measured:
# 5-7x slower tests). libgomp reads this when PyTorch loads, later, in a fixture. Tests only:
# the library never touches the environment.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
from dataclasses import dataclass

import numpy as np
import pytest
import strict_cupy
from hypothesis import HealthCheck, settings

from minifcn import backend

_common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=20, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=300, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

backend.register_array_module(strict_cupy.ndarray, strict_cupy, "gpu")


def _real_cupy():
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.is_available() else None
    except Exception:
        return None


_CUPY = _real_cupy()
BACKEND_NAMES = ["numpy", "strict"] + (["cupy"] if _CUPY is not None else [])


@dataclass
class Backend:
    """One array library as the tests see it: build inputs with ``asarray`` from NumPy,
    read results back with ``numpy``; modules go to ``device``."""

    name: str
    xp: object
    device: str

    def asarray(self, host):
        return host if self.xp is np else self.xp.asarray(np.asarray(host))

    def numpy(self, array) -> np.ndarray:
        return backend.to_numpy(array)

    def owns(self, array) -> bool:
        """True when ``array`` belongs to this backend's array library."""
        return backend.is_array(array) and backend.get_array_module(array) is self.xp


@pytest.fixture(params=BACKEND_NAMES)
def bk(request):
    if request.param == "numpy":
        yield Backend("numpy", np, "cpu")
    elif request.param == "strict":
        with backend.use_gpu_module(strict_cupy):
            yield Backend("strict", strict_cupy, "gpu")
    else:
        yield Backend("cupy", _CUPY, "gpu")


@pytest.fixture
def torch():
    """PyTorch, the reference oracle of the tests; they skip where it is not installed."""
    return pytest.importorskip("torch", reason="PyTorch is the tests' reference oracle: "
                                               "pip install torch==2.13.0")


@pytest.fixture
def rng():
    """A fresh seeded NumPy generator for building test inputs on the host."""
    return np.random.default_rng(1234)
