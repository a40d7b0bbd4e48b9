"""Dropout layers with PyTorch's names and arguments: ``Dropout``, ``Dropout2d``."""

from __future__ import annotations

from .. import checks
from ..backend import Generator, get_array_module, is_array
from ..functional.dropout import dropout2d_forward, dropout_backward, dropout_forward
from .module import Module

__all__ = ["Dropout", "Dropout2d"]


class Dropout(Module):
    """In training, zeroes each value with probability ``p`` and scales the rest by
    ``1 / (1 - p)``; in evaluation, the identity. Input of any shape, e.g. (N, C, H, W).

    The masks come from the layer's own ``generator`` (a :class:`minifcn.backend.Generator`),
    seeded from the seed source when not given: after ``minifcn.manual_seed(s)``, creating
    the same layers gives the same masks. Backward uses the mask of the last forward.
    """

    _forward = staticmethod(dropout_forward)

    def __init__(self, p: float = 0.5, inplace: bool = False,
                 generator: Generator | None = None):
        super().__init__()
        where = f"{type(self).__name__}(p={p!r})"
        self.p = checks.check_probability(where, p)
        self.inplace = checks.check_inplace(where, inplace)
        if generator is None:
            generator = Generator()
        elif not isinstance(generator, Generator):
            raise TypeError(f"{where}: generator must be a minifcn.backend.Generator or None, "
                            f"got {type(generator).__name__}")
        self.generator = generator
        self._where = where
        self._cache = None

    def _check_input(self, x) -> None:
        checks.check_input(self._where, x, ndim=None)

    def forward(self, x):
        """x: any shape -> y: same shape and dtype."""
        self._check_input(x)
        y, cache = self._forward(x, self.p, self.training, generator=self.generator)
        y = get_array_module(x).asarray(y)  # NumPy answers a 0-d x with a scalar: an array
        self._cache = (cache, tuple(y.shape), y.dtype)
        return y

    def backward(self, dy):
        """dy: the shape of y -> dx: the shape of x (masked and scaled as the forward was)."""
        checks.check_cache(self._where, self._cache)
        cache, shape, dtype = self._cache
        checks.check_grad(self._where, dy, shape, dtype)
        checks.check_same_device(self._where, dy, cache)
        dx = get_array_module(dy).asarray(dropout_backward(dy, cache))  # 0-d: as forward
        self._cache = None
        return dx

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Channel dropout: in training, zeroes each whole (sample, channel) map of an
    (N, C, H, W) input with probability ``p`` (mask (N, C, 1, 1)) and scales the rest by
    ``1 / (1 - p)``; in evaluation, the identity. Suits feature maps, whose neighbouring
    values are too correlated for element-wise dropout to regularize.

    A 3-D input is refused: PyTorch 2.13 reads (A, B, L) as (N, C, L) and drops whole rows
    (with a warning that a later release will read it as one (C, H, W) sample), so neither
    reading would surely do what was meant. Pass ``x[None]`` for one (C, H, W) sample."""

    _forward = staticmethod(dropout2d_forward)

    def _check_input(self, x) -> None:
        if is_array(x) and x.ndim == 3:
            raise ValueError(f"{self._where}: expected x of rank 4 (N, C, H, W), got x of shape "
                             f"{tuple(x.shape)}; a 3-D input is ambiguous (PyTorch 2.13 reads "
                             f"it as (N, C, L) with a deprecation warning), so minifcn refuses "
                             f"it: pass x[None] for one (C, H, W) sample")
        checks.check_input(self._where, x)
