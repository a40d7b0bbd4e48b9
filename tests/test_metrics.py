"""ConfusionMatrix and the FCN paper's four measures, checked against set logic on boolean
masks (a different route from the confusion matrix), on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minifcn.metrics import ConfusionMatrix
from minifcn.testing.strategies import seeds

VOID = 255


def _labels(seed: int, shape, num_classes: int, void_fraction: float):
    """Random (pred, target) uint8/int64 host arrays; target has ``void_fraction`` void."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    target[rng.random(shape) < void_fraction] = VOID
    # Mostly right, so that classes overlap in interesting ways.
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, size=shape))
    pred = np.where(target == VOID, rng.integers(0, num_classes, size=shape), pred)
    return pred.astype(np.int64), target


def _by_set_logic(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """The measures from per-class pixel sets (no confusion matrix)."""
    valid = target != VOID
    ious, accuracies, weighted = [], [], 0.0
    for c in range(num_classes):
        truth = (target == c) & valid
        predicted = (pred == c) & valid
        union = np.count_nonzero(truth | predicted)
        iou = np.count_nonzero(truth & predicted) / union if union else math.nan
        ious.append(iou)
        if truth.any():
            accuracies.append(np.count_nonzero(truth & predicted) / np.count_nonzero(truth))
            weighted += np.count_nonzero(truth) * iou
    defined = [iou for iou in ious if not math.isnan(iou)]
    return {
        "pixel_acc": np.count_nonzero((pred == target) & valid) / np.count_nonzero(valid),
        "mean_acc": sum(accuracies) / len(accuracies),
        "mean_iou": sum(defined) / len(defined),
        "fw_iou": weighted / np.count_nonzero(valid),
        "per_class_iou": np.array(ious),
    }


def _assert_results_equal(results: dict, expected: dict) -> None:
    assert set(results) == {"pixel_acc", "mean_acc", "mean_iou", "fw_iou", "per_class_iou"}
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
        assert isinstance(results[key], float), key
        assert results[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    np.testing.assert_allclose(results["per_class_iou"], expected["per_class_iou"],
                               rtol=1e-12, atol=0)


def test_hand_worked_example():
    """Worked by hand. Class 0: truth {a, b}, predicted {a} -> IoU 1/2, accuracy 1/2.
    Class 1: truth {c, d}, predicted {b, c, d, e} -> IoU 2/4, accuracy 2/2. Class 2: truth
    {e}, never predicted -> IoU 0/1, accuracy 0/1. Class 3: absent from both -> NaN, left out.
    The void pixel's prediction (0) counts nowhere."""
    target = np.array([[0, 0, 1], [1, 2, VOID]], dtype=np.uint8)  # pixels a b c / d e void
    pred = np.array([[0, 1, 1], [1, 1, 0]], dtype=np.int64)
    cm = ConfusionMatrix(num_classes=4)
    cm.update(pred, target)
    expected_matrix = np.zeros((4, 4), dtype=np.int64)
    expected_matrix[0, 0] = expected_matrix[0, 1] = expected_matrix[2, 1] = 1
    expected_matrix[1, 1] = 2
    np.testing.assert_array_equal(cm.matrix, expected_matrix)
    assert cm.matrix.dtype == np.int64
    results = cm.compute()
    assert results["pixel_acc"] == pytest.approx(3 / 5)
    assert results["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert results["mean_iou"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert results["fw_iou"] == pytest.approx((2 * 1 / 2 + 2 * 1 / 2 + 1 * 0) / 5)
    np.testing.assert_array_equal(results["per_class_iou"], [0.5, 0.5, 0.0, np.nan])


@given(seed=seeds, num_classes=st.integers(1, 6), height=st.integers(1, 9),
       width=st.integers(1, 9), void_fraction=st.sampled_from([0.0, 0.2, 0.6]))
def test_matches_set_logic(bk, seed, num_classes, height, width, void_fraction):
    pred, target = _labels(seed, (2, height, width), num_classes, void_fraction)
    if not (target != VOID).any():
        target[0, 0, 0] = 0  # at least one labelled pixel, so every measure is defined
    cm = ConfusionMatrix(num_classes)
    cm.update(bk.asarray(pred), bk.asarray(target))
    _assert_results_equal(cm.compute(), _by_set_logic(pred, target, num_classes))
    valid = target != VOID
    for i in range(num_classes):
        for j in range(num_classes):
            assert cm.matrix[i, j] == np.count_nonzero((target == i) & (pred == j) & valid)


def test_class_predicted_but_absent_from_truth_counts_as_zero():
    target = np.zeros((1, 4, 4), dtype=np.int64)
    pred = target.copy()
    pred[0, 0, :2] = 1  # class 1 predicted on two pixels where the truth is 0
    cm = ConfusionMatrix(num_classes=3)
    cm.update(pred, target)
    iou = cm.per_class_iou()
    assert iou[0] == pytest.approx(14 / 16) and iou[1] == 0.0 and np.isnan(iou[2])
    assert cm.mean_iou() == pytest.approx((14 / 16 + 0.0) / 2)
    # Mean accuracy leaves out class 1 (no true pixels): a class cannot be missed there.
    assert cm.mean_accuracy() == pytest.approx(14 / 16)


def test_accumulating_batches_equals_one_update(bk):
    pred, target = _labels(seed=5, shape=(6, 7, 5), num_classes=5, void_fraction=0.3)
    whole = ConfusionMatrix(5)
    whole.update(bk.asarray(pred), bk.asarray(target))
    batched = ConfusionMatrix(5)
    for start in range(0, 6, 2):
        batched.update(bk.asarray(pred[start:start + 2]), bk.asarray(target[start:start + 2]))
    np.testing.assert_array_equal(batched.matrix, whole.matrix)
    assert whole.matrix.sum() == np.count_nonzero(target != VOID)
    batched.reset()
    assert not batched.matrix.any() and batched.matrix.shape == (5, 5)


def test_perfect_prediction_scores_one(bk):
    pred, target = _labels(seed=6, shape=(2, 8, 8), num_classes=4, void_fraction=0.2)
    pred = np.where(target == VOID, pred, target).astype(np.int64)  # right wherever labelled
    cm = ConfusionMatrix(4)
    cm.update(bk.asarray(pred), bk.asarray(target))
    results = cm.compute()
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
        assert results[key] == 1.0, key
    np.testing.assert_array_equal(results["per_class_iou"], np.ones(4))


def test_device_input_gives_host_counts(bk):
    pred, target = _labels(seed=7, shape=(3, 6, 6), num_classes=3, void_fraction=0.1)
    on_host = ConfusionMatrix(3)
    on_host.update(pred, target)
    cm = ConfusionMatrix(3)
    cm.update(bk.asarray(pred), bk.asarray(target))
    assert isinstance(cm.matrix, np.ndarray) and cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, on_host.matrix)


def test_empty_matrix_gives_nan_without_warnings():
    results = ConfusionMatrix(3).compute()  # warnings are errors in this suite
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
        assert math.isnan(results[key]), key
    assert np.isnan(results["per_class_iou"]).all()


def test_ignore_index_none_and_custom():
    target = np.array([0, 1, 2, 2])
    pred = np.array([0, 1, 1, 2])
    cm = ConfusionMatrix(3, ignore_index=None)
    cm.update(pred, target)
    assert cm.matrix.sum() == 4
    cm = ConfusionMatrix(3, ignore_index=2)  # class 2's true pixels become void
    cm.update(pred, target)
    assert cm.matrix.sum() == 2 and cm.pixel_accuracy() == 1.0


@pytest.mark.parametrize("pred, target, error, match", [
    ([0, 3, 3], [0, 1, 1], ValueError, r"2 pixel\(s\) with a predicted label outside \[0, 3\)"),
    ([0, -1, 1], [0, 1, 1], ValueError, r"1 pixel\(s\) with a predicted label outside"),
    ([0, 1, 7], [0, 1, VOID], ValueError, r"1 pixel\(s\) with a predicted label"),  # on void
    ([0, 1, 1], [0, 3, 1], ValueError, r"1 pixel\(s\) with a target label outside \[0, 3\) "
                                       r"that is not the ignore_index \(255\)"),
    ([0, 1], [0, 1, 1], ValueError, r"pred and target must have one shape"),
    (np.array([0.0, 1.0, 1.0]), [0, 1, 1], TypeError, r"expected pred of integer labels"),
    ([0, 1, 1], np.array([0.0, 1.0, 1.0]), TypeError, r"expected target of integer labels"),
])
def test_bad_labels(bk, pred, target, error, match):
    cm = ConfusionMatrix(3)
    with pytest.raises(error, match=r"ConfusionMatrix\(num_classes=3\): " + match):
        cm.update(bk.asarray(np.asarray(pred)), bk.asarray(np.asarray(target)))
    assert not cm.matrix.any()  # a refused batch leaves the counts alone


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"ConfusionMatrix\(num_classes=2.0\): num_classes must"):
        ConfusionMatrix(2.0)
    with pytest.raises(ValueError, match=r"ConfusionMatrix\(num_classes=0\): num_classes must "
                                         r"be >= 1"):
        ConfusionMatrix(0)
    with pytest.raises(TypeError, match=r"ignore_index must be an int or None"):
        ConfusionMatrix(3, ignore_index="void")
    with pytest.raises(TypeError, match=r"expected pred to be an array, got list"):
        ConfusionMatrix(3).update([0, 1], np.array([0, 1]))


# --- boundary F-score --------------------------------------------------------------------

def _boundary_f_naive(predicted, truth, tolerance):
    """Loops: edge pixels by comparing each pixel with its 4 neighbours, and "near" as a
    Manhattan distance (4-neighbour steps) of at most ``tolerance`` to an edge pixel."""
    def edges(labels):
        height, width = labels.shape
        found = set()
        for i in range(height):
            for j in range(width):
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    if 0 <= i + di < height and 0 <= j + dj < width and \
                            labels[i, j] != labels[i + di, j + dj]:
                        found.add((i, j))
        return found

    pred_edges, true_edges = set(), set()
    for n in range(predicted.shape[0]):
        pred_edges |= {(n, *p) for p in edges(predicted[n])}
        true_edges |= {(n, *p) for p in edges(truth[n])}
    if not pred_edges or not true_edges:
        return 0.0

    def near(point, others):
        return any(q[0] == point[0] and abs(q[1] - point[1]) + abs(q[2] - point[2]) <= tolerance
                   for q in others)

    precision = sum(near(p, true_edges) for p in pred_edges) / len(pred_edges)
    recall = sum(near(p, pred_edges) for p in true_edges) / len(true_edges)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@given(seed=seeds, tolerance=st.integers(0, 3), classes=st.integers(2, 4))
def test_boundary_f_score_matches_loops(seed, tolerance, classes):
    from minifcn.metrics import boundary_f_score

    rng = np.random.default_rng(seed)
    # blocky label maps (2x2 cells) so that edges are lines, not every pixel
    predicted = np.kron(rng.integers(0, classes, (2, 5, 6)), np.ones((1, 2, 2), dtype=np.int64))
    truth = np.kron(rng.integers(0, classes, (2, 5, 6)), np.ones((1, 2, 2), dtype=np.int64))
    expected = _boundary_f_naive(predicted, truth, tolerance)
    assert math.isclose(boundary_f_score(predicted, truth, tolerance), expected, abs_tol=1e-12)


def test_boundary_f_score_hand_worked(bk):
    """A 4x4 square drawn one pixel to the right: within 1 px everywhere, not exactly."""
    from minifcn.metrics import boundary_f_score

    truth = np.zeros((10, 10), dtype=np.int64)
    truth[3:7, 3:7] = 1
    shifted = np.roll(truth, 1, axis=1)
    assert boundary_f_score(bk.asarray(truth), bk.asarray(truth), 0) == 1.0  # device input
    assert boundary_f_score(shifted, truth, 1) == 1.0
    exact = boundary_f_score(shifted, truth, 0)
    assert math.isclose(exact, _boundary_f_naive(shifted[None], truth[None], 0))
    assert 0 < exact < 1
    # the labels' names do not matter, only where they change
    assert boundary_f_score(3 * truth + 1, truth, 0) == 1.0
    # nothing drawn: no edge to match
    assert boundary_f_score(np.zeros_like(truth), truth) == 0.0


@pytest.mark.parametrize("predicted, truth, tolerance, match", [
    (np.zeros((4, 4)), np.zeros((4, 5)), 2, "one shape"),
    (np.zeros(4), np.zeros(4), 2, r"\(N, H, W\) or \(H, W\)"),
    (np.zeros((4, 4)), np.zeros((4, 4)), -1, "tolerance must be an int >= 0"),
    (np.zeros((4, 4)), np.zeros((4, 4)), 1.5, "tolerance must be an int >= 0"),
])
def test_boundary_f_score_bad_input(predicted, truth, tolerance, match):
    from minifcn.metrics import boundary_f_score

    with pytest.raises(ValueError, match=match):
        boundary_f_score(predicted, truth, tolerance)
