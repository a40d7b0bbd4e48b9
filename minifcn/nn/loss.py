"""``CrossEntropyLoss``, as ``torch.nn.CrossEntropyLoss`` for integer class targets."""

from __future__ import annotations

from numbers import Integral, Real

from .. import backend
from ..backend import is_array
from ..checks import check_cache, check_grad, check_input, check_same_device
from ..functional.loss import REDUCTIONS, cross_entropy_backward, cross_entropy_forward
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """Softmax cross-entropy between logits (N, C, H, W) and class indices (N, H, W), or
    logits (N, C) and targets (N,)::

        criterion = CrossEntropyLoss(ignore_index=255)
        loss = criterion(logits, target)     # a 0-d array, logits' dtype and device
        dlogits = criterion.backward()       # d loss / d logits; as loss.backward()

    Args:
        weight: optional per-class weights (C,) (an array or a sequence of numbers), kept as
            the buffer ``weight`` in ``dtype`` on ``device``, as PyTorch keeps it.
        ignore_index: target value of pixels that count for nothing (VOC marks object
            borders with 255).
        reduction: ``"mean"`` (weighted mean over non-ignored pixels; NaN if all are
            ignored, as PyTorch), ``"sum"`` or ``"none"`` (per-pixel losses, (N, H, W)).
        label_smoothing: in [0, 1]; the target becomes ``(1 - eps) * onehot + eps / C``.

    The arguments after ``weight`` are keyword-only: PyTorch's second positional argument
    is the deprecated ``size_average``, so ``CrossEntropyLoss(w, 255)`` would not mean what
    it seems. Targets must be integer class indices: PyTorch's class-probability (float)
    targets are not supported. The loss itself is in :mod:`minifcn.functional.loss`.
    """

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, device=None, dtype=None):
        super().__init__()
        where = "CrossEntropyLoss"
        if not isinstance(ignore_index, Integral) or isinstance(ignore_index, bool):
            raise TypeError(f"{where}: ignore_index must be an int, got {ignore_index!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, "
                             f"got {reduction!r}")
        if not isinstance(label_smoothing, Real) or isinstance(label_smoothing, bool):
            raise TypeError(f"{where}: label_smoothing must be a number in [0, 1], "
                            f"got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"{where}: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing!r}")
        self.ignore_index = int(ignore_index)
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)
        self._cache = None
        dtype = backend.resolve_dtype(dtype)
        if weight is None:
            self.weight = None  # no buffer at all, as PyTorch's state_dict has no "weight"
        else:
            host = backend.to_numpy(weight) if is_array(weight) else backend.np.asarray(weight)
            if host.ndim != 1 or host.dtype.kind not in "iuf" or host.size == 0:
                raise ValueError(f"{where}: weight must be a non-empty 1-D array of per-class "
                                 f"numbers, got {type(weight).__name__} of shape {host.shape} "
                                 f"and dtype {host.dtype}")
            self.register_buffer("weight", host.astype(dtype))
        self.to(device=device or backend.default_device())

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, logits, target):
        """logits (N, C, H, W) or (N, C); target (N, H, W) or (N,) -> loss: 0-d, or
        (N, H, W) for ``reduction="none"``."""
        where = self._where
        if is_array(logits) and logits.ndim < 2:
            raise ValueError(f"{where}: expected logits of rank >= 2 (N, C, ...), "
                             f"got shape {tuple(logits.shape)}")
        weight_dtype = None if self.weight is None else self.weight.dtype
        check_input(where, logits, ndim=getattr(logits, "ndim", 2), name="logits",
                    dtype=weight_dtype)
        if not is_array(target):
            raise TypeError(f"{where}: expected target to be an array, "
                            f"got {type(target).__name__}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"{where}: expected target of integer class indices, got dtype "
                            f"{target.dtype} (class-probability targets are not supported)")
        expected = (logits.shape[0],) + tuple(logits.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(f"{where}: expected target of shape {expected} for logits of "
                             f"shape {tuple(logits.shape)}, got {tuple(target.shape)}")
        C = logits.shape[1]
        check_same_device(where, logits, target, self.weight)  # a None weight is skipped
        if self.weight is not None and self.weight.shape[0] != C:
            raise ValueError(f"{where}: weight has {self.weight.shape[0]} entries but the "
                             f"logits have {C} classes (shape {tuple(logits.shape)})")
        xp = backend.get_array_module(target)
        target = target.astype(xp.int64, copy=False)
        self._check_classes(target, C)
        loss, cache = cross_entropy_forward(logits, target, self.weight, self.ignore_index,
                                            self.reduction, self.label_smoothing)
        self._cache = (cache, tuple(loss.shape), loss.dtype)
        return loss

    def _check_classes(self, target, C: int) -> None:
        """Every target is a class in [0, C) or ignore_index (one device -> host sync)."""
        bad = (target != self.ignore_index) & ((target < 0) | (target >= C))
        if not bool(bad.any()):
            return
        xp = backend.get_array_module(target)
        position = tuple(int(axis[0]) for axis in xp.nonzero(bad))
        raise ValueError(f"{self._where}: target has {int(target[position])} at {position}; "
                         f"class indices must be in [0, {C}) (the logits have {C} classes) "
                         f"or equal ignore_index={self.ignore_index}")

    def backward(self, dloss=1.0):
        """dloss: a Python float or a 0-d array (a 0-d ``"mean"``/``"sum"`` loss), or the
        loss's shape (``"none"``) -> dlogits: the logits' shape and dtype."""
        where = self._where
        check_cache(where, self._cache)
        cache, shape, dtype = self._cache
        scalar = isinstance(dloss, Real) and not isinstance(dloss, bool)
        if not (scalar and shape == ()):
            check_grad(where, dloss, shape, dtype, name="dloss")
            check_same_device(where, dloss, cache[0])
        dlogits = cross_entropy_backward(dloss, cache)
        self._cache = None
        return dlogits

    def extra_repr(self) -> str:
        options = []
        if self.weight is not None:
            options.append(f"weight=<{self.weight.shape[0]} classes>")
        if self.ignore_index != -100:
            options.append(f"ignore_index={self.ignore_index}")
        if self.reduction != "mean":
            options.append(f"reduction={self.reduction!r}")
        if self.label_smoothing:
            options.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(options)
