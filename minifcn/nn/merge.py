"""Layers that merge a skip connection: ``Add``, ``Concat`` and ``Crop``.

Unlike the other layers these take several inputs (``Add``, ``Concat``) or a second,
reference input (``Crop``), and their ``backward`` returns one gradient per array input::

    fuse = Add()
    y = fuse(upscore, crop(score_pool4, upscore))
    d_upscore, d_score_pool4_cropped = fuse.backward(dy)

The gradients ``Add`` and ``Concat`` return are ``dy`` itself or views into it: read them,
never write into them (see :mod:`minifcn.functional.merge`).
"""

from __future__ import annotations

from numbers import Integral

from ..backend import is_array
from ..checks import as_pair, check_cache, check_grad, check_same_device
from ..functional.merge import (
    add_backward,
    add_forward,
    center_crop_offset,
    concat_backward,
    concat_forward,
    crop_backward,
    crop_forward,
)
from .module import Module

__all__ = ["Add", "Concat", "Crop"]


def _check_arrays(where: str, xs, minimum: int) -> None:
    """At least ``minimum`` arrays, all of one dtype on one device."""
    if len(xs) < minimum:
        raise TypeError(f"{where}: expected {minimum} or more arrays, got {len(xs)}")
    for i, x in enumerate(xs):
        if not is_array(x):
            raise TypeError(f"{where}: input {i} is a {type(x).__name__}, not an array")
    check_same_device(where, *xs)
    for i, x in enumerate(xs[1:], start=1):
        if x.dtype != xs[0].dtype:
            raise TypeError(f"{where}: inputs 0 and {i} differ in dtype: {xs[0].dtype} and "
                            f"{x.dtype}; convert one of them (astype)")


class _Merge(Module):
    """Bookkeeping shared by the merge layers: the cache holds the functional cache and the
    output's shape and dtype, which ``backward`` checks ``dy`` against."""

    def __init__(self):
        super().__init__()
        self._cache = None

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _remember(self, y, cache):
        self._cache = (cache, tuple(y.shape), y.dtype)
        return y

    def _recall(self, dy):
        """The functional cache, after checking ``dy``; backward is once per forward."""
        check_cache(self._where, self._cache)
        cache, shape, dtype = self._cache
        check_grad(self._where, dy, shape, dtype)
        self._cache = None
        return cache


class Add(_Merge):
    """y = x_1 + x_2 + ... for two or more arrays of one shape (no broadcasting: a shape
    mismatch in a skip connection is a bug, so it is an error)."""

    def forward(self, *xs):
        """xs: two or more arrays of one shape -> y: that shape."""
        _check_arrays(self._where, xs, minimum=2)
        for i, x in enumerate(xs[1:], start=1):
            if x.shape != xs[0].shape:
                raise ValueError(f"{self._where}: inputs 0 and {i} differ in shape: "
                                 f"{tuple(xs[0].shape)} and {tuple(x.shape)} (crop one "
                                 f"first, e.g. with Crop)")
        return self._remember(*add_forward(*xs))

    def backward(self, dy):
        """dy: y's shape -> a tuple with ``dy`` itself once per input (read-only)."""
        return add_backward(dy, self._recall(dy))


class Concat(_Merge):
    """Join arrays along ``dim`` (``torch.cat``); ``dim=1`` stacks NCHW channels."""

    def __init__(self, dim: int = 1):
        super().__init__()
        if not isinstance(dim, Integral) or isinstance(dim, bool):
            raise TypeError(f"Concat(dim={dim!r}): dim must be an int")
        self.dim = int(dim)

    def forward(self, *xs):
        """xs: one or more arrays equal in every axis but ``dim`` -> y, joined along it."""
        where = self._where
        _check_arrays(where, xs, minimum=1)
        ndim = xs[0].ndim
        if not -ndim <= self.dim < ndim:
            raise ValueError(f"{where}: dim {self.dim} is out of range for inputs of rank "
                             f"{ndim} (shape {tuple(xs[0].shape)})")
        axis = self.dim % ndim
        for i, x in enumerate(xs[1:], start=1):
            if (x.ndim != ndim or x.shape[:axis] != xs[0].shape[:axis]
                    or x.shape[axis + 1:] != xs[0].shape[axis + 1:]):
                raise ValueError(f"{where}: inputs 0 and {i} must match in every axis but "
                                 f"{self.dim}, got shapes {tuple(xs[0].shape)} and "
                                 f"{tuple(x.shape)}")
        return self._remember(*concat_forward(xs, axis))

    def backward(self, dy):
        """dy: y's shape -> a tuple of gradients, one per input, views into ``dy``."""
        return concat_backward(dy, self._recall(dy))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Crop(_Merge):
    """Cut the last two axes of ``x`` (H, W) to a reference's size: ``y = x[..., top:top +
    OH, left:left + OW]``.

    ``offset=None`` centres the window (an odd margin leaves the extra pixel at the
    bottom/right); an int or a pair ``(top, left)`` fixes it, as Caffe's crop layer in the
    original FCN did: with its 100-pixel input padding, FCN-8s crops ``upscore8`` at offset
    31 and the pool4 and pool3 scores at 5 and 9 (``Crop(31)``, ``Crop(5)``, ``Crop(9)``).
    """

    def __init__(self, offset=None):
        super().__init__()
        where = f"Crop(offset={offset!r})"
        self.offset = None if offset is None else as_pair(where, "offset", offset, minimum=0)

    def forward(self, x, reference):
        """x (..., H, W) and reference: an array (..., OH, OW) or a size (OH, OW) ->
        y (..., OH, OW), a view of x. Only the reference's last two axes are used."""
        where = self._where
        if not is_array(x):
            raise TypeError(f"{where}: expected x to be an array, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"{where}: expected x of rank >= 2 (..., H, W), got x of shape "
                             f"{tuple(x.shape)}")
        if is_array(reference):
            if reference.ndim < 2:
                raise ValueError(f"{where}: expected a reference of rank >= 2 (..., H, W), "
                                 f"got shape {tuple(reference.shape)}")
            size = tuple(reference.shape[-2:])
        else:
            size = as_pair(where, "reference size", reference, minimum=1)
        H, W = x.shape[-2:]
        if size[0] > H or size[1] > W:
            raise ValueError(f"{where}: cannot crop x of shape {tuple(x.shape)} to "
                             f"{size[0]} x {size[1]}: larger than its {H} x {W}")
        offset = self.offset if self.offset is not None else center_crop_offset((H, W), size)
        if offset[0] + size[0] > H or offset[1] + size[1] > W:
            raise ValueError(f"{where}: offset {offset} is out of range for cropping x of "
                             f"shape {tuple(x.shape)} to {size[0]} x {size[1]}: top must be "
                             f"<= {H - size[0]} and left <= {W - size[1]}")
        return self._remember(*crop_forward(x, size, offset))

    def backward(self, dy):
        """dy (..., OH, OW) -> dx (..., H, W), zero outside the cropped window."""
        return crop_backward(dy, self._recall(dy))

    def extra_repr(self) -> str:
        return "" if self.offset is None else f"offset={self.offset}"
