"""Whether a forward keeps what its backward needs: ``minifcn.no_grad()``, as PyTorch's.

Training needs every layer to remember something from its forward (its input, im2col's
columns, a mask) until its backward. Prediction never runs a backward, so keeping any of it
only costs memory: on a 3-megapixel photo, FCN-8s's caches are gigabytes. Inside
``no_grad`` each layer forgets its cache the moment its forward returns, and each
activation is freed as soon as the last layer that reads it has run::

    with minifcn.no_grad():             # or @minifcn.no_grad() on a function
        scores = model(image)           # the same numbers, a fraction of the memory

    minifcn.is_grad_enabled()           # True outside, False inside
    with minifcn.set_grad_enabled(train_mode):   # either, by a flag
        ...

A backward inside ``no_grad``, or after a forward made inside it, is an error that names the
layer. The mode is per thread, as in PyTorch: ranks run as threads in the tests keep their
own.
"""

from __future__ import annotations

import functools
import threading

__all__ = ["NO_GRAD_CACHE", "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled"]


class _NoGradCache:
    """What a layer holds instead of its cache after a forward under ``no_grad``."""

    def __repr__(self) -> str:
        return "<no cache: the forward ran under minifcn.no_grad()>"


NO_GRAD_CACHE = _NoGradCache()

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad`` (or ``set_grad_enabled(False)``) on this thread."""
    return getattr(_state, "enabled", True)


def _set(mode: bool) -> None:
    _state.enabled = bool(mode)


class set_grad_enabled:
    """Turn gradients on or off: at once when called, and back as they were when used as a
    context manager (``with set_grad_enabled(False): ...``), as PyTorch's."""

    def __init__(self, mode: bool):
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled: mode must be True or False, got {mode!r}")
        self._previous = is_grad_enabled()
        _set(mode)

    def __enter__(self) -> set_grad_enabled:
        return self

    def __exit__(self, *exc_info) -> None:
        _set(self._previous)


class _GradMode:
    """A context manager and decorator that sets the grad mode to ``_mode`` inside."""

    _mode: bool

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        _set(self._mode)

    def __exit__(self, *exc_info) -> None:
        _set(self._previous)

    def __call__(self, function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            with type(self)():
                return function(*args, **kwargs)

        return wrapped


class no_grad(_GradMode):
    """Forwards keep no backward caches inside: ``with no_grad():`` or ``@no_grad()``.

    For evaluation and prediction: nothing is kept for a backward, so the memory of each
    layer's cache is freed at once. A backward after such a forward says why it cannot run.

    Example:

        >>> import numpy as np
        >>> import minifcn
        >>> from minifcn import nn
        >>> conv = nn.Conv2d(1, 1, kernel_size=1)
        >>> with minifcn.no_grad():
        ...     y = conv(np.ones((1, 1, 2, 2), dtype=np.float32))
        ...     minifcn.is_grad_enabled()
        False
        >>> minifcn.is_grad_enabled()
        True
        >>> conv.backward(np.ones_like(y))
        Traceback (most recent call last):
        ...
        RuntimeError: Conv2d(1->1, ...): backward after a forward made under
        minifcn.no_grad(), which kept nothing for it; run the forward outside no_grad
    """

    _mode = False


class enable_grad(_GradMode):
    """Gradients back on inside, within a ``no_grad`` block."""

    _mode = True
