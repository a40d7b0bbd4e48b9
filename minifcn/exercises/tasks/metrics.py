"""Exercise: the confusion matrix with void pixels, and the mean IoU read off it."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ... import backend
from ...backend import np
from ...metrics import ConfusionMatrix
from ..common import gpu_check
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like


def reference_confusion_matrix(prediction, target, num_classes, ignore_index=255):
    """minifcn's :class:`ConfusionMatrix` after one update: (C, C) int64 on the host."""
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    confusion.update(prediction, target)
    return confusion.matrix


def reference_mean_iou(confusion) -> float:
    """minifcn's mean IoU of a (C, C) confusion matrix (classes absent from truth and
    prediction left out)."""
    matrix = np.asarray(backend.to_numpy(confusion), dtype=np.int64)
    measure = ConfusionMatrix(matrix.shape[0])
    measure.matrix = matrix
    return measure.mean_iou()


@st.composite
def label_cases(draw):
    """prediction and target (N, H, W) over C classes, only some of them used (so that
    classes absent from the truth, the prediction or both occur), with some void pixels."""
    C = draw(st.integers(2, 6))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    used = draw(st.integers(1, C))
    target = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, used - 1)))
    prediction = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, C - 1)))
    ignore_index = draw(st.sampled_from([255, -1]))
    void = draw(hnp.arrays(np.bool_, shape))
    target[void] = ignore_index
    return {"num_classes": C, "prediction": prediction, "target": target,
            "ignore_index": ignore_index}


@st.composite
def confusion_cases(draw):
    """(C, C) counts with some classes absent from the truth (a zero row), from the
    prediction (a zero column) or from both; at least one pixel counted."""
    C = draw(st.integers(2, 6))
    matrix = draw(hnp.arrays(np.int64, (C, C), elements=st.integers(0, 9)))
    for i in draw(st.lists(st.integers(0, C - 1), max_size=2)):
        matrix[i, :] = 0  # class i absent from the truth
    for j in draw(st.lists(st.integers(0, C - 1), max_size=2)):
        matrix[:, j] = 0  # class j never predicted
    if not matrix.any():
        matrix[0, 0] = 1
    return {"confusion": matrix}


def _confusion(learner, case, prediction=None):
    prediction = case["prediction"] if prediction is None else prediction
    got = learner.confusion_matrix(prediction, case["target"], case["num_classes"],
                                   case["ignore_index"])
    if not backend.is_array(got):
        raise CheckFailed(f"confusion_matrix returned a {type(got).__name__}; expected a "
                          f"(C, C) array of counts", config=case)
    if got.dtype.kind not in "iu":
        raise CheckFailed(f"confusion_matrix returned dtype {got.dtype}; expected integer "
                          f"counts (int64)", config=case,
                          symptom="count with integers, e.g. xp.bincount(...) or "
                                  "xp.zeros((C, C), dtype=xp.int64)")
    return got


def _void_counted(target, ignore_index):
    def symptom(got, expected):
        if got.sum() == target.size and expected.sum() < target.size:
            return (f"the matrix counts every pixel ({target.size}), void ones included: "
                    f"leave out the pixels whose target is ignore_index ({ignore_index}), "
                    f"whatever is predicted there")
        return None
    return symptom


def _check_confusion(learner, case):
    got = _confusion(learner, case)
    expected = reference_confusion_matrix(case["prediction"], case["target"],
                                          case["num_classes"], case["ignore_index"])
    compare("the confusion matrix", got, expected, config=case, atol=0.0, rtol=0.0,
            shape_hint="(C, C) with C = num_classes", symptoms=(
                looks_like(lambda e: e.T,
                           "the matrix is transposed: rows are the TRUE class, columns the "
                           "predicted one (n_ij = pixels of true class i predicted as j)"),
                _void_counted(case["target"], case["ignore_index"]),
            ))


def check_confusion(learner):
    count = for_all(label_cases(), lambda case: _check_confusion(learner, case), examples=25)
    return (f"{count} configurations: C 2-6, void pixels (ignore_index 255 or -1), classes "
            f"absent from the truth")


def check_void(learner):
    """Lesson 11's point: a prediction that is wrong only on void pixels scores exactly as
    the perfect one; and the perfect one fills only the diagonal, with mean IoU 1."""
    def body(case):
        target, C = case["target"], case["num_classes"]
        void = target == case["ignore_index"]
        perfect = np.where(void, 0, target)
        wrong_on_void = np.where(void, C - 1, target)
        got_perfect = backend.to_numpy(_confusion(learner, case, perfect))
        got_void = backend.to_numpy(_confusion(learner, case, wrong_on_void))
        compare("the matrix of a prediction wrong only on void pixels", got_void, got_perfect,
                config=case, atol=0.0, rtol=0.0, symptoms=(
                    _void_counted(target, case["ignore_index"]),
                    lambda g, e: "void pixels changed the counts: leave them out entirely"))
        counts = np.bincount(target[~void], minlength=C)
        compare("the matrix of the perfect prediction", got_perfect, np.diag(counts),
                config=case, atol=0.0, rtol=0.0)
        if (~void).any():
            iou = learner.mean_iou(got_perfect)
            compare("mean IoU of the perfect prediction", np.asarray(_as_float(iou, case)),
                    np.asarray(1.0), config=case, symptoms=(
                        lambda g, e: (
                            "every class present scores IoU 1 here, so a lower mean comes "
                            "from classes absent from both truth and prediction counted as "
                            "0: their IoU is 0 / 0, undefined, and they are left out of the "
                            "mean" if 0.0 <= float(g) < 1.0 and C > len(np.unique(perfect))
                            else None),))
    for_all(label_cases(), body, examples=10)
    return "wrong only on void pixels = perfect; perfect = diagonal, mean IoU 1"


def _as_float(value, case) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"mean_iou returned a {type(value).__name__}; expected a number",
                          config=case) from None


def _iou_variants(matrix):
    """Mean IoUs of three mistakes: absent classes counted as 0; classes absent from the
    truth left out even when predicted; the union counting the intersection twice."""
    inter = np.diag(matrix).astype(np.float64)
    truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    union = truth + predicted - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        twice = np.where(truth + predicted > 0, inter / np.maximum(truth + predicted, 1), 0.0)
    present = union > 0
    return {
        "zeros": iou.mean(),
        "truth only": iou[truth > 0].mean() if (truth > 0).any() else np.nan,
        "twice": twice[present].mean(),
    }


def _check_iou(learner, case):
    matrix = case["confusion"]
    got = _as_float(learner.mean_iou(matrix.copy()), case)
    expected = reference_mean_iou(matrix)
    variants = _iou_variants(matrix)
    compare("mean IoU", np.asarray(got), np.asarray(expected), config=case, symptoms=(
        looks_like(lambda e: np.asarray(variants["zeros"]),
                   "classes absent from both the truth and the prediction count as IoU 0: "
                   "their IoU is 0 / 0, undefined, and they are left out of the mean"),
        looks_like(lambda e: np.asarray(variants["truth only"]),
                   "classes absent from the truth are left out even where they were "
                   "predicted: such a class has IoU 0 (every pixel predicted as it is wrong) "
                   "and counts; only a class absent from both is left out"),
        looks_like(lambda e: np.asarray(variants["twice"]),
                   "the union counts the intersection twice: union = t_i + p_i - n_ii (true "
                   "pixels + predicted pixels - both)"),
    ))


def check_mean_iou(learner):
    count = for_all(confusion_cases(), lambda case: _check_iou(learner, case), examples=25)
    return f"{count} matrices with classes absent from the truth, the prediction or both"


def gpu_case(learner, xp):
    target = (np.arange(40).reshape(2, 4, 5) * 7) % 5
    target[0, :2, :3] = 255
    prediction = (np.arange(40).reshape(2, 4, 5) * 3) % 6
    confusion = learner.confusion_matrix(xp.asarray(prediction), xp.asarray(target), 6, 255)
    if backend.get_array_module(confusion) is not xp:
        confusion = xp.asarray(confusion)
    iou = _as_float(learner.mean_iou(confusion), "the GPU case")
    return {"confusion matrix": confusion, "mean IoU": np.asarray(iou)}


EXERCISE = Exercise(
    number=14,
    name="metrics",
    title="The confusion matrix with void pixels, and the mean IoU",
    summary="n_ij counts (truth i, prediction j) without void pixels; mean IoU over the "
            "classes present",
    functions=("confusion_matrix", "mean_iou"),
    lesson="12_metrics",
    reference=lambda: {"confusion_matrix": reference_confusion_matrix,
                       "mean_iou": reference_mean_iou},
    checks=[
        Check("confusion", "confusion_matrix: equals minifcn's ConfusionMatrix (rows = truth, "
                           "void pixels left out)", check_confusion),
        Check("void", "void pixels change nothing; a perfect prediction is diagonal, mean IoU "
                      "1", check_void, ("confusion",)),
        Check("mean_iou", "mean_iou: equals minifcn's (classes absent from truth and "
                          "prediction left out)", check_mean_iou),
        gpu_check(gpu_case, ("confusion", "mean_iou"), "each function"),
    ],
)
