"""minifcn's own test set-up, on top of its pytest plugin (minifcn.testing.plugin).

The plugin (installed with minifcn, entry point ``pytest11``) gives the ``xp`` fixture, which
runs a test once per array library, and the hypothesis profiles. Every layer test here takes
``bk``, a thin wrapper over ``xp`` that also names the device and converts arrays:
- ``numpy``: the CPU path;
- ``strict``: the strict CuPy stand-in (``minifcn/testing/strict_cupy.py``) posing as the GPU,
  which fails where CuPy fails (implicit host conversion, host/device mixing, NumPy-only
  names);
- ``cupy``: real CuPy, added only where ``cupy.is_available()``.
"""

from __future__ import annotations

import os

# PyTorch, the tests' oracle, keeps its OpenMP threads spinning after each call; on a busy
# two-core machine they wait at every parallel region for a descheduled partner (measured:
# 5-7x slower tests). libgomp reads this when PyTorch loads, later, in a fixture. Tests only:
# the library never touches the environment.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
# `minifcn train` starts one rank per core by default (--workers auto). The tests call the
# command line in this process and check its files, in one process unless a test asks for
# ranks (tests/test_mpi.py says --workers N).
os.environ.setdefault("MINIFCN_WORKERS", "1")
from dataclasses import dataclass

import numpy as np
import pytest

from minifcn import backend
from minifcn.testing import strict_cupy

# pytester runs small user projects through the plugin (tests/test_testing.py)
pytest_plugins = ["pytester"]


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("minifcn"):
        raise pytest.UsageError("minifcn's pytest plugin is not registered: install minifcn "
                                "with its entry points, pip install -e \".[test]\"")


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


@pytest.fixture
def bk(xp):
    """The plugin's ``xp`` (numpy / strict / cupy) as a :class:`Backend`."""
    if xp is np:
        return Backend("numpy", np, "cpu")
    return Backend("strict" if xp is strict_cupy else "cupy", xp, "gpu")


@pytest.fixture
def torch():
    """PyTorch, the reference oracle of the tests; they skip where it is not installed."""
    return pytest.importorskip("torch", reason="PyTorch is the tests' reference oracle: "
                                               "pip install torch==2.13.0")


@pytest.fixture
def rng():
    """A fresh seeded NumPy generator for building test inputs on the host."""
    return np.random.default_rng(1234)
