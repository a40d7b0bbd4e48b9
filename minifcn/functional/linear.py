"""Fully connected (linear) layers and flattening, forward and backward.

Notation: N the rows (every leading dimension of ``x`` together, ``N = prod(*)``), I the
input features, O the output features. The weight has PyTorch's layout (O, I): row ``o``
holds the weights of output feature ``o``. A linear layer and its gradients are three
matrix products::

    y  = x @ W.T + b        forward                     (N, O)
    dx = dy @ W             input gradient              (N, I)
    dW = dy.T @ x           weight gradient             (O, I)
    db = dy summed over N   bias gradient               (O,)

Any leading dimensions of ``x`` are kept, as in PyTorch: ``x`` (*, I) -> ``y`` (*, O); the
gradients sum over all of them. A linear layer is a 1x1 convolution on a (*, I) "image"
with no pixels, which is why a classifier's fully connected layers can later be turned into
convolutions.

Flattening is a reshape and its gradient is the reshape back: no arithmetic at all.
:func:`linear_naive` computes the layer from its definition, one output feature and input
feature at a time; it is slow and kept for reading and as a test oracle.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import checks
from ..backend import get_array_module

__all__ = [
    "LinearCache",
    "flatten_backward",
    "flatten_forward",
    "flatten_shape",
    "linear_backward",
    "linear_forward",
    "linear_naive",
]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs from :func:`linear_forward`."""

    x: object
    weight: object
    has_bias: bool


def _check_call(where: str, x, weight, bias) -> None:
    """x (*, I) float with at least the feature axis, weight (O, I) and bias (O,) of its
    dtype and device."""
    checks.check_operands(where, x, ndim=None, weight=(weight, (None, None)))
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"{where}: expected x (*, {weight.shape[1]}) for a weight of shape "
                         f"{tuple(weight.shape)}, got x of shape {tuple(x.shape)}")
    checks.check_operands(where, x, ndim=None, bias=(bias, (weight.shape[0],)))


def linear_forward(x, weight, bias=None):
    """A fully connected layer: every output feature a weighted sum of all input features.

    Args:
        x: (*, I), any number of leading dimensions (also none).
        weight: (O, I).
        bias: (O,) or None.

    Returns:
        y: (*, O), ``y[..., o] = bias[o] + sum_i x[..., i] * weight[o, i]``.
        cache: a :class:`LinearCache` for :func:`linear_backward`.
    """
    _check_call("linear_forward", x, weight, bias)
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(dy, cache: LinearCache, output_mask=(True, True, True)):
    """Gradients of :func:`linear_forward`.

    Args:
        dy: (*, O), the gradient of ``y``.
        cache: from :func:`linear_forward`; read, never modified.
        output_mask: which of (dx, dweight, dbias) to compute, as in Conv2d's backward; a
            frozen layer skips its weight's matrix product.

    Returns:
        (dx, dweight, dbias): (*, I), (O, I), (O,); None where not asked for, and dbias None
        when there was no bias.
    """
    x, weight, has_bias = cache
    need_dx, need_dweight, need_dbias = output_mask
    dx = dweight = dbias = None
    if need_dx:
        dx = dy @ weight
    # The leading dimensions are all "rows" of one matrix product: sum over every one.
    O, I = weight.shape
    dy_mat = dy.reshape(-1, O)
    if need_dweight:
        dweight = dy_mat.T @ x.reshape(-1, I)
    if need_dbias and has_bias:
        dbias = dy_mat.sum(axis=0)
    return dx, dweight, dbias


def linear_naive(x, weight, bias=None):
    """:func:`linear_forward` from its definition, one (output, input) feature pair at a time::

        y[..., o] = bias[o] + sum over i of x[..., i] * weight[o, i]

    Shapes as :func:`linear_forward`; returns only ``y``. Slow: for reading and testing.
    """
    _check_call("linear_naive", x, weight, bias)
    xp = get_array_module(x, weight, bias)
    O, I = weight.shape
    y = xp.zeros((*x.shape[:-1], O), dtype=x.dtype)
    for o in range(O):
        for i in range(I):
            y[..., o] += x[..., i] * weight[o, i]
        if bias is not None:
            y[..., o] += bias[o]
    return y


def _normalize_dim(dim: int, ndim: int, name: str, where: str) -> int:
    """``dim`` in ``[-ndim, ndim)`` as an index in ``[0, ndim)`` (a 0-d array counts as 1-d,
    as in PyTorch)."""
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(f"{where}: {name}={dim} is out of range for x of rank {ndim} "
                         f"(expected a dimension in [{-rank}, {rank - 1}])")
    return dim % rank


def flatten_shape(shape, start_dim: int = 1, end_dim: int = -1,
                  where: str = "flatten") -> tuple[int, ...]:
    """The shape after merging dimensions ``start_dim`` to ``end_dim`` (inclusive; negative
    counts from the end, as in PyTorch) into one::

        (N, C, H, W), start_dim=1, end_dim=-1   ->   (N, C*H*W)

    A ``ValueError`` naming ``where`` when a dimension is out of range or ``start_dim``
    comes after ``end_dim``.
    """
    shape = tuple(shape)
    start = _normalize_dim(start_dim, len(shape), "start_dim", where)
    end = _normalize_dim(end_dim, len(shape), "end_dim", where)
    if start > end:
        raise ValueError(f"{where}: start_dim={start_dim} comes after end_dim={end_dim} "
                         f"for x of rank {len(shape)}")
    if not shape:
        return (1,)
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


def flatten_forward(x, start_dim: int = 1, end_dim: int = -1):
    """x -> y: dimensions ``start_dim`` .. ``end_dim`` of x merged into one
    (:func:`flatten_shape`), in row-major order, as ``torch.flatten``.

    Returns:
        y: a view of x when x's memory allows it (as a reshape), else a copy.
        cache: x's shape, for :func:`flatten_backward`.
    """
    checks.check_operands("flatten_forward", x, ndim=None, floating=None)
    shape = flatten_shape(x.shape, start_dim, end_dim, where="flatten_forward")
    return x.reshape(shape), tuple(x.shape)


def flatten_backward(dy, cache):
    """dy (the flattened shape) -> dx (x's shape): the same numbers, reshaped back."""
    return dy.reshape(cache)
