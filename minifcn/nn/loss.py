"""``CrossEntropyLoss``, as ``torch.nn.CrossEntropyLoss``: class-index or class-probability
targets, batched or one unbatched sample."""

from __future__ import annotations

from numbers import Integral, Real

from .. import backend
from ..backend import is_array
from ..checks import check_cache, check_grad, check_input, check_same_device
from ..functional.loss import (
    REDUCTIONS,
    check_class_indices,
    cross_entropy_backward,
    cross_entropy_probs_backward,
    cross_entropy_probs_forward,
    cross_entropy_unchecked,
)
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """Softmax cross-entropy between logits (N, C, H, W) and class indices (N, H, W), or
    logits (N, C) and targets (N,), or one unbatched sample's logits (C,) and target ()::

        criterion = CrossEntropyLoss(ignore_index=255)
        loss = criterion(logits, target)     # a 0-d array, logits' dtype and device
        dlogits = criterion.backward()       # d loss / d logits; as loss.backward()

    The target may also hold class probabilities, as in PyTorch: a float array of the
    logits' shape (one distribution over the C classes per pixel), e.g. soft labels. Then
    ``"mean"`` divides by the number of pixels, not by the weights, and ``ignore_index``
    cannot be set (both as PyTorch 2.13). The arguments come in PyTorch's order.

    Args:
        weight: optional per-class weights (C,) (an array or a sequence of numbers), kept as
            the buffer ``weight`` on ``device``, in its own dtype when it is a float32 or
            float64 array (as PyTorch keeps a tensor's), else in ``dtype``. The logits
            must have the weight's dtype, as in PyTorch.
        size_average, reduce: PyTorch's deprecated forms of ``reduction``; refused unless
            None (use ``reduction``). So ``CrossEntropyLoss(w, 255)``, which in PyTorch
            means ``size_average=255``, is refused rather than read as ignore_index.
        ignore_index: target value of pixels that count for nothing (VOC marks object
            borders with 255); class-index targets only.
        reduction: ``"mean"`` (weighted mean over non-ignored pixels; NaN if all are
            ignored, as PyTorch), ``"sum"`` or ``"none"`` (per-pixel losses, (N, H, W)).
        label_smoothing: in [0, 1]; the target becomes ``(1 - eps) * onehot + eps / C``
            (``(1 - eps) * target + eps / C`` for probabilities).
        device, dtype (keyword-only, minifcn's): where and in which dtype to keep
            ``weight``.

    The loss itself is in :mod:`minifcn.functional.loss`.
    """

    check_targets = True
    """False skips checking that every class-index target is in [0, C) or ignore_index: on
    a GPU that check waits for the device (one host sync per call). For callers whose labels
    were checked before (``minifcn train`` on the GPU); a bad label then gives a wrong loss,
    not an error."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0, *, device=None,
                 dtype=None):
        super().__init__()
        where = "CrossEntropyLoss"
        for name, value in (("size_average", size_average), ("reduce", reduce)):
            if value is not None:
                raise ValueError(f"{where}: {name}={value!r} is not supported; it is "
                                 f"deprecated in PyTorch, use reduction='mean', 'sum' or "
                                 f"'none' (the arguments after weight are best given by name: "
                                 f"the second positional one is size_average)")
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
        self._denominator = None  # what the last "mean" forward divided by
        if weight is None:
            self.weight = None  # no buffer at all, as PyTorch's state_dict has no "weight"
        else:
            host = backend.to_numpy(weight) if is_array(weight) else backend.np.asarray(weight)
            if host.ndim != 1 or host.dtype.kind not in "iuf" or host.size == 0:
                raise ValueError(f"{where}: weight must be a non-empty 1-D array of per-class "
                                 f"numbers, got {type(weight).__name__} of shape {host.shape} "
                                 f"and dtype {host.dtype}")
            # As PyTorch: a float32 or float64 array keeps its own dtype (a float64 one
            # rounded to float32 would move a float64 loss by 1e-8); a list, or an array of
            # another dtype, takes ``dtype`` (float32 by default, as torch.tensor's).
            if dtype is None and is_array(weight) and host.dtype.name in backend.FLOAT_DTYPES:
                dtype = host.dtype
            self.register_buffer("weight", host.astype(backend.resolve_dtype(dtype)))
        self.to(device=device or backend.default_device())

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, logits, target):
        """logits (N, C, H, W), (N, C) or (C,); target of class indices (N, H, W), (N,) or
        (), or of class probabilities (the logits' shape) -> loss: 0-d, or for
        ``reduction="none"`` (N, H, W), (N,) or ()."""
        where = self._where
        if is_array(logits) and logits.ndim < 1:
            raise ValueError(f"{where}: expected logits of rank >= 1 ((C,) or (N, C, ...)), "
                             f"got shape {tuple(logits.shape)}")
        check_input(where, logits, ndim=getattr(logits, "ndim", 2), name="logits")
        if not is_array(target):
            raise TypeError(f"{where}: expected target to be an array, "
                            f"got {type(target).__name__}")
        if target.dtype.kind not in "iuf":
            raise TypeError(f"{where}: expected target of integer class indices or float "
                            f"class probabilities, got dtype {target.dtype}")
        probabilities = target.dtype.kind == "f"
        unbatched = logits.ndim == 1
        C = logits.shape[0 if unbatched else 1]
        expected = tuple(logits.shape) if probabilities else (
            () if unbatched else (logits.shape[0],) + tuple(logits.shape[2:]))
        if tuple(target.shape) != expected:
            kind = "class probabilities" if probabilities else "class indices"
            hint = ""
            if not probabilities and logits.ndim >= 3 and (
                    tuple(target.shape) == tuple(logits.shape[2:]) or
                    tuple(target.shape) == tuple(logits.shape[1:])):
                hint = ("; logits are read as (N, C, ...), as in PyTorch: for one sample's "
                        "(C, H, W) logits pass logits[None] and target[None]")
            raise ValueError(f"{where}: expected target ({kind}) of shape {expected} for "
                             f"logits of shape {tuple(logits.shape)}, got "
                             f"{tuple(target.shape)}{hint}")
        check_same_device(where, logits, target, self.weight)  # a None weight is skipped
        if self.weight is not None and self.weight.shape[0] != C:
            raise ValueError(f"{where}: weight has {self.weight.shape[0]} entries but the "
                             f"logits have {C} classes (shape {tuple(logits.shape)})")
        weight = self.weight
        if weight is not None and weight.dtype != logits.dtype:  # as PyTorch: one dtype
            raise TypeError(f"{where}: weight is {weight.dtype} but the logits are "
                            f"{logits.dtype}; build the loss with dtype={logits.dtype.name!r} "
                            f"(or call .to(dtype=...) on it)")
        if not probabilities and self.check_targets:  # on the target as given: its positions
            check_class_indices(where, target, C, self.ignore_index)
        if unbatched:
            logits, target = logits[None], target[None]
        if probabilities:
            if self.ignore_index != -100:
                raise ValueError(f"{where}: ignore_index can only be used with class-index "
                                 f"targets, not with class probabilities (as in PyTorch)")
            target = target.astype(logits.dtype, copy=False)
            loss, cache = cross_entropy_probs_forward(logits, target, weight, self.reduction,
                                                      self.label_smoothing)
            backward = cross_entropy_probs_backward
        else:
            xp = backend.get_array_module(target)
            target = target.astype(xp.int64, copy=False)
            loss, cache = cross_entropy_unchecked(logits, target, weight, self.ignore_index,
                                                  self.reduction, self.label_smoothing)
            backward = cross_entropy_backward
        if unbatched and self.reduction == "none":
            loss = loss[0, ...]  # a 0-d array, not a scalar
        self._cache = (cache, backward, unbatched, tuple(loss.shape), loss.dtype)
        if self.reduction == "mean":  # the summed weights of the pixels that count, or pixels
            self._denominator = cache[5] if not probabilities else backend.get_array_module(
                logits).asarray(float(cache[3]), dtype=logits.dtype)
        return loss

    @property
    def mean_denominator(self):
        """What the last ``"mean"`` forward divided the summed loss by (a 0-d array): the
        number of pixels that were not ignored, or with ``weight`` the sum of their classes'
        weights; for class-probability targets the number of pixels. Data-parallel training
        needs it to turn the ranks' means into the whole batch's mean
        (:func:`minifcn.nn.parallel.global_mean_loss`)."""
        if self.reduction != "mean":
            raise ValueError(f"{self._where}: mean_denominator is for reduction='mean', not "
                             f"{self.reduction!r}")
        if self._denominator is None:
            raise ValueError(f"{self._where}: mean_denominator is known after a forward; call "
                             f"the loss first")
        return self._denominator


    def backward(self, dloss=1.0):
        """dloss: a Python float or a 0-d array (a 0-d ``"mean"``/``"sum"`` loss), or the
        loss's shape (``"none"``) -> dlogits: the logits' shape and dtype."""
        where = self._where
        check_cache(where, self._cache)
        cache, backward, unbatched, shape, dtype = self._cache
        scalar = isinstance(dloss, Real) and not isinstance(dloss, bool)
        if not (scalar and shape == ()):
            check_grad(where, dloss, shape, dtype, name="dloss")
            check_same_device(where, dloss, cache[0])
        if unbatched and self.reduction == "none":  # the per-sample loss of shape () -> (1,)
            dloss = (dloss[None] if is_array(dloss) else
                     backend.get_array_module(cache[0]).full((1,), dloss, dtype=dtype))
        dlogits = backward(dloss, cache)
        self._cache = None
        return dlogits[0] if unbatched else dlogits

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
