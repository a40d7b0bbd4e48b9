"""Segmentation metrics from a confusion matrix accumulated over an epoch.

The four measures of the FCN paper (Long, Shelhamer, Darrell 2015, section 5), with
``n_ij`` the number of pixels of true class ``i`` predicted as class ``j``, and
``t_i = sum_j n_ij`` the number of pixels of true class ``i``:

    pixel accuracy          sum_i n_ii / sum_i t_i
    mean accuracy           mean_i  n_ii / t_i
    mean IU                 mean_i  n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU   (sum_k t_k)^-1  sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

The IU (intersection over union, IoU) of class ``i`` is its correctly labelled pixels over
the pixels that are class ``i`` in the truth or the prediction or both.

    cm = ConfusionMatrix(num_classes=21)           # void label 255 ignored, as in VOC
    for x, target in loader:
        cm.update(model(x).argmax(axis=1), target)   # on the arrays' own device
    print(cm.compute()["mean_iou"])
"""

from __future__ import annotations

from numbers import Integral

from . import backend, checks
from .backend import get_array_module, np

__all__ = ["ConfusionMatrix", "boundary_f_score"]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float64, NaN where the denominator is 0 (no warning)."""
    out = np.full(np.shape(numerator), np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def _mean_of_defined(values: np.ndarray) -> float:
    """The mean over the non-NaN entries, NaN when there are none (``nanmean`` warns then)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


class ConfusionMatrix:
    """Counts of (true class, predicted class) pixel pairs, accumulated by ``update``.

    Args:
        num_classes: C, the number of classes; labels are ``0 .. C-1``.
        ignore_index: the target label of void pixels (boundaries, "don't care"), which are
            left out of every count; ``None`` when there is none.

    ``matrix[i, j]`` (host, int64, shape (C, C)) counts pixels of true class ``i`` predicted
    as ``j``: rows are the truth, as the FCN paper's ``n_ij``.

    A class absent from both the truth and the predictions has IoU 0/0: it is NaN in
    ``per_class_iou()`` and left out of the means (mean accuracy likewise leaves out classes
    absent from the truth). A class absent from the truth but predicted somewhere has IoU 0
    and does count: predicting it there was wrong.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        where = f"ConfusionMatrix(num_classes={num_classes!r})"
        if not isinstance(num_classes, Integral) or isinstance(num_classes, bool):
            raise TypeError(f"{where}: num_classes must be an int, got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"{where}: num_classes must be >= 1, got {num_classes}")
        if ignore_index is not None and (not isinstance(ignore_index, Integral)
                                         or isinstance(ignore_index, bool)):
            raise TypeError(f"{where}: ignore_index must be an int or None, "
                            f"got {ignore_index!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def _where(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes})"

    def reset(self) -> None:
        """Forget all counts (at the start of an epoch)."""
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        """Add one batch.

        Args:
            pred: predicted labels, integers in ``[0, C)``, any shape, e.g. (N, H, W) from
                ``scores.argmax(axis=1)``.
            target: true labels, same shape; ``ignore_index`` marks void pixels.

        Both on one device (NumPy or CuPy). The counting runs there; only the C x C counts
        come back to the host. A prediction outside ``[0, C)``, or a target label that is
        neither a class nor ``ignore_index``, is a ``ValueError``.
        """
        where = self._where
        for name, array in (("pred", pred), ("target", target)):
            if not backend.is_array(array):
                raise TypeError(f"{where}: expected {name} to be an array, "
                                f"got {type(array).__name__}")
            if array.dtype.kind not in "iu":
                raise TypeError(f"{where}: expected {name} of integer labels, got dtype "
                                f"{array.dtype} (for scores use scores.argmax(axis=1))")
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"{where}: pred and target must have one shape, got pred "
                             f"{tuple(pred.shape)} and target {tuple(target.shape)}")
        checks.check_same_device(where, pred, target)

        xp = get_array_module(pred)
        C = self.num_classes
        pred, target = pred.astype(xp.int64), target.astype(xp.int64)
        # Every pixel goes to one bin of a single bincount, so the check of the labels and
        # the counting cost one pass and one transfer: bins 0 .. C*C-1 are (target, pred)
        # pairs, then one bin each for a bad target, a bad prediction, and a void pixel.
        bad_target, bad_pred, void = C * C, C * C + 1, C * C + 2
        index = xp.where((target < 0) | (target >= C), bad_target, target * C + pred)
        if self.ignore_index is not None:
            index = xp.where(target == self.ignore_index, void, index)
        # A prediction out of range is wrong even on a void pixel: check it last.
        index = xp.where((pred < 0) | (pred >= C), bad_pred, index)
        counts = backend.to_numpy(xp.bincount(index.ravel(), minlength=C * C + 3))
        if counts[bad_pred]:
            raise ValueError(f"{where}: {counts[bad_pred]} pixel(s) with a predicted label "
                             f"outside [0, {C})")
        if counts[bad_target]:
            ignored = ("" if self.ignore_index is None
                       else f" that is not the ignore_index ({self.ignore_index})")
            raise ValueError(f"{where}: {counts[bad_target]} pixel(s) with a target label "
                             f"outside [0, {C}){ignored}")
        self.matrix += counts[:C * C].reshape(C, C)

    # --- the measures -------------------------------------------------------------------
    def pixel_accuracy(self) -> float:
        """The share of (non-void) pixels labelled correctly; NaN before any update."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def per_class_accuracy(self) -> np.ndarray:
        """(C,) float64: ``n_ii / t_i``, the share of each class's pixels found; NaN for a
        class absent from the truth."""
        return _ratio(np.diag(self.matrix), self.matrix.sum(axis=1))

    def mean_accuracy(self) -> float:
        """The mean of ``per_class_accuracy`` over the classes present in the truth."""
        return _mean_of_defined(self.per_class_accuracy())

    def per_class_iou(self) -> np.ndarray:
        """(C,) float64: each class's intersection over union; NaN for a class absent from
        both the truth and the predictions."""
        intersection = np.diag(self.matrix)
        union = self.matrix.sum(axis=1) + self.matrix.sum(axis=0) - intersection
        return _ratio(intersection, union)

    def mean_iou(self) -> float:
        """The mean IoU over the classes present in the truth or the predictions."""
        return _mean_of_defined(self.per_class_iou())

    def frequency_weighted_iou(self) -> float:
        """The IoUs weighted by each class's share of the true pixels."""
        truth = self.matrix.sum(axis=1)
        total = truth.sum()
        if not total:
            return float("nan")
        # A class with t_i = 0 has weight 0; its IoU may be NaN (0/0), so leave it out.
        present = truth > 0
        return float((truth[present] * self.per_class_iou()[present]).sum() / total)

    def compute(self) -> dict:
        """All measures: ``pixel_acc``, ``mean_acc``, ``mean_iou``, ``fw_iou`` (floats) and
        ``per_class_iou`` ((C,) float64 array)."""
        return {
            "pixel_acc": self.pixel_accuracy(),
            "mean_acc": self.mean_accuracy(),
            "mean_iou": self.mean_iou(),
            "fw_iou": self.frequency_weighted_iou(),
            "per_class_iou": self.per_class_iou(),
        }

    def __repr__(self) -> str:
        ignore = "" if self.ignore_index == 255 else f", ignore_index={self.ignore_index}"
        return (f"ConfusionMatrix(num_classes={self.num_classes}{ignore}, "
                f"pixels={self.matrix.sum()})")


# --- where the outlines are ------------------------------------------------------------------

def _grow(pixels: np.ndarray, distance: int) -> np.ndarray:
    """True within ``distance`` 4-neighbour steps of a True pixel of (..., H, W) ``pixels``."""
    for _ in range(distance):
        grown = pixels.copy()
        grown[..., 1:, :] |= pixels[..., :-1, :]
        grown[..., :-1, :] |= pixels[..., 1:, :]
        grown[..., :, 1:] |= pixels[..., :, :-1]
        grown[..., :, :-1] |= pixels[..., :, 1:]
        pixels = grown
    return pixels


def boundary_f_score(predicted, truth, tolerance: int = 2) -> float:
    """How well predicted outlines match the true ones, blind to which class is which.

    Edge pixels are those with a 4-neighbour of another label
    (:func:`minifcn.data.label_boundary`). Precision is the share of predicted edge pixels
    within ``tolerance`` 4-neighbour steps of a true edge pixel, recall the share of true
    edge pixels within ``tolerance`` of a predicted one, and the score is their harmonic
    mean, in [0, 1]. Pass masks without a void band: its pixels would count as labels.

    Args:
        predicted, truth: (N, H, W) or (H, W) integer labels, same shape, host or device.
        tolerance: pixels of slack, >= 0 (2 forgives an outline drawn two pixels off).

    Returns:
        The F-score over all the images together; 0.0 when there is no edge at all in
        either, or when none of them match.
    """
    from .data import label_boundary  # data imports nothing from here; keep it one-way

    predicted, truth = backend.to_numpy(predicted), backend.to_numpy(truth)
    if predicted.shape != truth.shape or predicted.ndim not in (2, 3):
        raise ValueError(f"boundary_f_score: predicted and truth must be (N, H, W) or (H, W) "
                         f"label maps of one shape, got {predicted.shape} and {truth.shape}")
    if not isinstance(tolerance, Integral) or isinstance(tolerance, bool) or tolerance < 0:
        raise ValueError(f"boundary_f_score: tolerance must be an int >= 0, got {tolerance!r}")
    predicted_edges, true_edges = label_boundary(predicted), label_boundary(truth)
    if not predicted_edges.any() or not true_edges.any():
        return 0.0
    precision = (predicted_edges & _grow(true_edges, tolerance)).sum() / predicted_edges.sum()
    recall = (true_edges & _grow(predicted_edges, tolerance)).sum() / true_edges.sum()
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))

