"""minifcn's pytest plugin: run a test on every array library, with sensible hypothesis settings.

Installed with minifcn (entry point ``pytest11``: ``minifcn = "minifcn.testing.plugin"``), so
any project's tests get, with nothing in their conftest:

- the ``xp`` fixture: the test runs once per array library, and ``xp`` is its module:
  ``numpy``; ``strict``, the strict CuPy stand-in (:mod:`minifcn.testing.strict_cupy`) posing
  as the GPU, which fails where CuPy fails (implicit host conversion, mixing host and device
  arrays, ``np.`` where ``xp.`` was meant, names CuPy lacks); and ``cupy``, real CuPy, only
  where it imports and sees a GPU. Build inputs with ``xp.asarray(host_array)`` and read
  results with ``minifcn.to_numpy``; on ``strict`` (and ``cupy``) minifcn's ``"gpu"`` device is
  that library, so ``module.to("gpu")`` moves a layer there::

      def test_my_layer(xp):
          x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
          y = MyLayer().to("cpu" if xp is np else "gpu")(x)

- hypothesis profiles ``dev`` (20 examples), ``ci`` (20, derandomized: the same examples on
  every run) and ``thorough`` (300), each with ``deadline=None`` (layer code on a busy
  machine has no steady timing) and the health checks for function-scoped fixtures (``xp``
  is one) and slow data generation suppressed. ``HYPOTHESIS_PROFILE`` picks one, else ``ci``
  when ``CI`` is set, else ``dev``. A profile that a project's conftest loads wins (conftests
  are imported after plugins), as does ``--hypothesis-profile``. Without hypothesis installed
  the plugin registers no profiles and the ``xp`` fixture still works.

``pytest -p no:minifcn`` turns the plugin off.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

__all__ = ["BACKEND_NAMES", "HYPOTHESIS_PROFILES", "xp"]

# name -> max_examples and whether the examples are the same on every run
HYPOTHESIS_PROFILES = {"dev": (20, False), "ci": (20, True), "thorough": (300, False)}


def _register_hypothesis_profiles() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                        HealthCheck.too_slow])
    for name, (examples, derandomize) in HYPOTHESIS_PROFILES.items():
        extra = dict(derandomize=True, print_blob=True) if derandomize else {}
        settings.register_profile(name, max_examples=examples, **common, **extra)
    chosen = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
    # Another name is a profile of the project's own, registered later by its conftest.
    if chosen in HYPOTHESIS_PROFILES:
        settings.load_profile(chosen)


# At import, before any conftest: a project's own profile settings then override these.
_register_hypothesis_profiles()


def _real_cupy():
    """CuPy if it imports and sees a usable GPU, else None. Asked of minifcn's backend (the
    one module that imports CuPy), and only where CuPy is installed: a CPU-only environment
    pays nothing."""
    if importlib.util.find_spec("cupy") is None:
        return None
    from .. import backend

    try:
        return backend.array_module("gpu")
    except backend.DeviceUnavailableError:
        return None


_CUPY = _real_cupy()
BACKEND_NAMES = ["numpy", "strict"] + (["cupy"] if _CUPY is not None else [])


def pytest_configure(config) -> None:
    # Arrays of the stand-in count as "gpu" arrays everywhere, also outside the ``xp``
    # fixture (a test that builds one by hand still gets its array module from minifcn).
    from .. import backend
    from . import strict_cupy

    backend.register_array_module(strict_cupy.ndarray, strict_cupy, "gpu")


@pytest.fixture(params=BACKEND_NAMES)
def xp(request):
    """The array module a test runs on: numpy, the strict CuPy stand-in, or CuPy (with a GPU).

    On ``strict`` minifcn's ``"gpu"`` device means the stand-in for the test's duration.
    """
    from .. import backend

    if request.param == "numpy":
        yield backend.np
    elif request.param == "strict":
        from . import strict_cupy

        with backend.use_gpu_module(strict_cupy):
            yield strict_cupy
    else:
        yield _CUPY
