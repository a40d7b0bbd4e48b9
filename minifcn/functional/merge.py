"""The operations that merge a skip connection back into the main path: add, concat, crop.

Notation: N batch, C channels, H x W spatial size; OH x OW the size after a crop.

FCN adds coarse and fine score maps (after cropping the up-sampled one to the finer one's
size); U-Net concatenates encoder features to decoder features along the channels.

Aliasing: these backward passes hand out the upstream gradient ``dy`` itself (``add``) or
views into it (``concat``), without copying. That is safe because no layer in minifcn
writes into the arrays it is given (a rule every backward follows): the two branches of a
skip connection may read the same gradient but never modify it. Code that wants to modify a
gradient it received must copy it first. Likewise ``crop_forward`` returns a view of ``x``.
The preconditions (same shapes, offsets in range) are checked by the layers in
:mod:`minifcn.nn.merge`, which name themselves in the error.
"""

from __future__ import annotations

from .. import checks
from ..backend import get_array_module

__all__ = [
    "add_backward",
    "add_forward",
    "center_crop_offset",
    "concat_backward",
    "concat_forward",
    "crop_backward",
    "crop_forward",
]


def add_forward(*xs):
    """y = xs[0] + xs[1] + ...

    Args:
        xs: two or more arrays of one shape and dtype.

    Returns:
        y: a new array of that shape; cache (the number of inputs) for :func:`add_backward`.
    """
    if len(xs) < 2:
        raise ValueError(f"add_forward: expected two or more arrays, got {len(xs)}")
    checks.check_operands("add_forward", xs[0], ndim=None, floating=None,
                          **{f"xs[{i}]": (x, tuple(xs[0].shape)) for i, x in
                             enumerate(xs[1:], start=1)})
    y = xs[0] + xs[1]
    for x in xs[2:]:
        y += x  # y is our own fresh array: accumulating into it writes into no argument
    return y, len(xs)


def add_backward(dy, cache):
    """Gradient of :func:`add_forward`: every input receives ``dy`` unchanged.

    Returns:
        A tuple with one gradient per input, each the array ``dy`` itself (no copies; see
        the module docstring on aliasing).
    """
    return (dy,) * cache


def concat_forward(xs, dim: int = 1):
    """Join arrays along ``dim`` (``torch.cat``): channels for NCHW with the default.

    Args:
        xs: a sequence of arrays, e.g. (N, C_i, H, W), equal in every axis but ``dim``.
        dim: the axis to join along (negative counts from the end).

    Returns:
        y: e.g. (N, C_1 + C_2 + ..., H, W); cache for :func:`concat_backward`.
    """
    xs = list(xs)
    if not xs:
        raise ValueError("concat_forward: expected one or more arrays, got none")
    checks.check_operands("concat_forward", xs[0], ndim=None, floating=None)
    rank = xs[0].ndim
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        raise ValueError(f"concat_forward: dim={dim!r} is out of range for arrays of rank "
                         f"{rank} (expected a dimension in [{-rank}, {rank - 1}])")
    dim %= rank
    # every array the first's shape, but for its length along dim
    others = {f"xs[{i}]": (x, tuple(None if k == dim else n for k, n in enumerate(
        xs[0].shape))) for i, x in enumerate(xs[1:], start=1)}
    checks.check_operands("concat_forward", xs[0], ndim=None, floating=None, **others)
    xp = get_array_module(*xs)
    y = xp.concatenate(xs, axis=dim)
    return y, (dim, [x.shape[dim] for x in xs])


def concat_backward(dy, cache):
    """Gradient of :func:`concat_forward`: ``dy`` split back into the inputs' parts.

    Returns:
        A tuple of gradients, one per input in order, each a view into ``dy``.
    """
    dim, sizes = cache
    xp = get_array_module(dy)
    boundaries = [sum(sizes[:i]) for i in range(1, len(sizes))]
    return tuple(xp.split(dy, boundaries, axis=dim))


def center_crop_offset(input_size, output_size) -> tuple[int, int]:
    """(top, left) that centres an (OH, OW) window in (H, W); an odd margin leaves the extra
    pixel at the bottom/right, as ``(H - OH) // 2`` does."""
    return (input_size[0] - output_size[0]) // 2, (input_size[1] - output_size[1]) // 2


def crop_forward(x, size, offset):
    """Cut an (OH, OW) window out of the last two axes of ``x``, starting at ``offset``.

    Args:
        x: (..., H, W), e.g. (N, C, H, W) score maps or (N, H, W) labels.
        size: (OH, OW) with OH <= H, OW <= W.
        offset: (top, left) with 0 <= top <= H - OH, 0 <= left <= W - OW, e.g. from
            :func:`center_crop_offset`, or fixed as Caffe's FCN did.

    Returns:
        y: (..., OH, OW), a view of ``x``; cache for :func:`crop_backward`.
    """
    checks.check_operands("crop_forward", x, ndim=None, floating=None)
    if x.ndim < 2:
        raise ValueError(f"crop_forward: expected x (..., H, W), got x of shape "
                         f"{tuple(x.shape)}")
    H, W = x.shape[-2:]
    OH, OW = checks.as_pair("crop_forward", "size", size, minimum=0)
    top, left = checks.as_pair("crop_forward", "offset", offset, minimum=0)
    if top + OH > H or left + OW > W:
        raise ValueError(f"crop_forward: a ({OH}, {OW}) window at offset ({top}, {left}) "
                         f"reaches past x's ({H}, {W}) pixels")
    y = x[..., top:top + OH, left:left + OW]
    return y, (x.shape, (top, left))


def crop_backward(dy, cache):
    """Gradient of :func:`crop_forward`: ``dy`` placed back in a zero array of x's shape
    (the cut-away border had no effect on the output)."""
    x_shape, (top, left) = cache
    xp = get_array_module(dy)
    OH, OW = dy.shape[-2:]
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    dx[..., top:top + OH, left:left + OW] = dy
    return dx
