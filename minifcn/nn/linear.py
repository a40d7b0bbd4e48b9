"""``Linear`` and ``Flatten``: PyTorch's fully connected layer and the reshape before it.

Thin wrappers over :mod:`minifcn.functional.linear`. ``Linear`` holds its weight (O, I) and
bias (O,) with PyTorch's layout, initial distribution and ``state_dict`` keys, so
``layer.load_state_dict({k: v.numpy() for k, v in torch_layer.state_dict().items()})``
gives the same layer. A classifier ends with them::

    head = Sequential(Flatten(), Linear(64 * 4 * 4, 128), ReLU(), Linear(128, 10))
    scores = head(features)            # features (N, 64, 4, 4) -> scores (N, 10)
"""

from __future__ import annotations

from numbers import Integral

from .. import backend, checks
from ..functional import linear as F
from .module import Module, Parameter, WeightedLayer

__all__ = ["Flatten", "Linear"]


class Linear(WeightedLayer):
    """A fully connected layer ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Args:
        in_features (I), out_features (O): sizes of each input and output sample.
        bias: learn an additive bias (O,).
        device, dtype: where and in which float type to hold the parameters.
        generator: a :class:`minifcn.backend.Generator` for the initial weights.

    Shapes: x (*, I) -> y (*, O), any leading dimensions (also none). Parameters: weight
    (O, I), bias (O,), both ~ U(-1/sqrt(I), 1/sqrt(I)), PyTorch's default.
    """

    _backward_fn = staticmethod(F.linear_backward)

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *,
                 generator: backend.Generator | None = None):
        super().__init__()
        where = f"Linear({in_features}->{out_features})"
        self.in_features = checks.check_count(where, "in_features", in_features, 1)
        self.out_features = checks.check_count(where, "out_features", out_features, 1)
        self._where = f"Linear({self.in_features}->{self.out_features})"
        dtype = backend.resolve_dtype(dtype)
        self.weight = Parameter(backend.np.zeros((self.out_features, self.in_features),
                                                 dtype=dtype))
        self.bias = (Parameter(backend.np.zeros(self.out_features, dtype=dtype))
                     if checks.check_flag(where, "bias", bias) else None)
        self.reset_parameters(generator)
        self._cache = None
        self.to(device=device or backend.default_device())

    def forward(self, x):
        """x (*, I) -> y (*, O)."""
        checks.check_input(self._where, x, ndim=None, dtype=self.weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self._where}: expected x of shape (*, {self.in_features}) "
                             f"(the features last), got x of shape {tuple(x.shape)}")
        checks.check_same_device(self._where, x, self.weight.data)
        bias = None if self.bias is None else self.bias.data
        y, cache = F.linear_forward(x, self.weight.data, bias)
        self._cache = (cache, y.shape)
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    """Merge dimensions ``start_dim`` to ``end_dim`` (inclusive; negative ones count from the
    end) into one, as ``torch.nn.Flatten``: by default (N, C, H, W) -> (N, C*H*W), each
    sample's features in row-major (C, H, W) order. No parameters; any device and dtype.
    ``backward`` reshapes ``dy`` back to the input's shape.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self._where = f"Flatten(start_dim={start_dim!r}, end_dim={end_dim!r})"
        for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(dim, Integral) or isinstance(dim, bool):
                raise TypeError(f"{self._where}: {name} must be an int, got {dim!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._cache = None

    def forward(self, x):
        """x (d0, ..., d_{n-1}) -> y with d_start..d_end merged into their product."""
        checks.check_input(self._where, x, ndim=None)
        F.flatten_shape(x.shape, self.start_dim, self.end_dim, where=self._where)  # say so here
        y, cache = F.flatten_forward(x, self.start_dim, self.end_dim)
        self._cache = (cache, y)
        return y

    def backward(self, dy):
        """dy (the output's shape) -> dx (the input's shape)."""
        checks.check_cache(self._where, self._cache)
        cache, y = self._cache
        checks.check_grad(self._where, dy, y.shape, y.dtype)
        checks.check_same_device(self._where, dy, y)
        self._cache = None
        return F.flatten_backward(dy, cache)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
