"""Exercise 14: The confusion matrix with void pixels, and the mean IoU.

Check your work with:   minifcn exercises check metrics
Read first:             lessons/12_metrics.py

Notation: C classes; prediction and target are integer label maps of one shape, e.g.
(N, H, W); void pixels have target == ignore_index (255 in Pascal VOC: the band along object
borders) and are left out of every count, whatever is predicted there.

The confusion matrix (the FCN paper's n_ij):

    n[i, j] = number of (non-void) pixels of TRUE class i PREDICTED as class j

rows are the truth, columns the prediction. Everything is read off it, e.g. for class i:

    intersection = n[i, i]
    union        = t_i + p_i - n[i, i]     t_i = sum of row i, p_i = sum of column i
    IoU_i        = intersection / union

The mean IoU averages IoU_i over the classes with union > 0. A class absent from both the
truth and the prediction has IoU 0 / 0: it is LEFT OUT (it is not a 0). A class predicted
somewhere but absent from the truth has IoU 0 and counts: predicting it was wrong.

Hint: with valid = target != ignore_index, the pair (i, j) of a pixel is the single number
i * C + j; xp.bincount of those numbers, with minlength=C*C, reshaped to (C, C), is the
whole matrix in one call.

GPU: write xp = get_array_module(target) and use xp.<name>, never np.<name> on an array.
The checker runs your code on a strict CuPy stand-in.
"""

from minifcn.backend import get_array_module


def confusion_matrix(prediction, target, num_classes, ignore_index=255):
    """Counts of (true class, predicted class) pairs over the non-void pixels.

    Args:
        prediction: integer labels in [0, C), any shape, e.g. (N, H, W).
        target: integer labels of the same shape, in [0, C) or ignore_index.
        num_classes: C.
        ignore_index: the target label of void pixels.

    Returns:
        (C, C) int64 array on the labels' device: rows = true class, columns = predicted.
    """
    xp = get_array_module(target)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 14: confusion_matrix")


def mean_iou(confusion):
    """The mean intersection over union of a (C, C) confusion matrix.

    Args:
        confusion: (C, C) integer counts, rows = truth, as confusion_matrix returns.

    Returns:
        A Python float: the mean of IoU_i over the classes whose union is not 0.

    Hint: float(...) turns a 0-d array (also a CuPy one) into a Python float.
    """
    raise NotImplementedError("Exercise 14: mean_iou")
