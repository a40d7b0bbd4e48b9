"""CrossEntropyLoss, cross_entropy_forward/backward, log_softmax and softmax: PyTorch parity
(weights, ignore_index, reductions, label smoothing, large logits, all pixels ignored),
gradient checks, backends, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn.functional.loss import log_softmax, softmax
from minifcn.gradcheck import gradcheck_module
from minifcn.nn.loss import CrossEntropyLoss
from minifcn.testing import strict_cupy

REDUCTIONS = ["mean", "sum", "none"]


def make_problem(rng, shape, ignore_index=-100, ignored=0.0, scale=3.0):
    """Logits of ``shape`` (N, C, ...) and integer targets (N, ...), a share ``ignored`` of
    them set to ``ignore_index``."""
    N, C = shape[:2]
    logits = rng.standard_normal(shape) * scale
    target = rng.integers(0, C, (N, *shape[2:]))
    target[rng.random(target.shape) < ignored] = ignore_index
    return logits, target


def run(bk, criterion, logits, target, dloss):
    """Loss and dlogits as NumPy arrays, after checking namespace and dtype."""
    loss = criterion(bk.asarray(logits), bk.asarray(target))
    upstream = dloss if np.ndim(dloss) == 0 else bk.asarray(dloss)
    dlogits = criterion.backward(upstream)
    for array in (loss, dlogits):
        assert bk.owns(array) and array.dtype == logits.dtype
    return bk.numpy(loss), bk.numpy(dlogits)


def torch_run(torch, logits, target, dloss, weight=None, **kwargs):
    twin = torch.nn.CrossEntropyLoss(
        weight=None if weight is None else torch.from_numpy(weight), **kwargs)
    logits_t = torch.from_numpy(logits).requires_grad_()
    loss = twin(logits_t, torch.from_numpy(target))
    loss.backward(torch.tensor(dloss, dtype=loss.dtype).expand_as(loss))
    return loss.detach().numpy(), logits_t.grad.numpy()


# --- PyTorch parity -------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (6, 4)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index, ignored", [(-100, 0.0), (255, 0.3), (1, 0.0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_matches_torch(bk, torch, rng, shape, weighted, ignore_index, ignored, reduction,
                       label_smoothing):
    """float64 loss and dlogits to 1e-9 with a random upstream gradient. ignore_index=1 is a
    real class, so those pixels are left out too."""
    logits, target = make_problem(rng, shape, ignore_index, ignored)
    weight = rng.uniform(0.2, 3.0, shape[1]) if weighted else None
    options = dict(ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=label_smoothing)
    dloss = (rng.standard_normal(target.shape) if reduction == "none"
             else float(rng.standard_normal()))
    criterion = CrossEntropyLoss(None if weight is None else bk.asarray(weight), **options,
                                 device=bk.device, dtype="float64")
    loss, dlogits = run(bk, criterion, logits, target, dloss)
    loss_t, dlogits_t = torch_run(torch, logits, target, dloss, weight, **options)
    assert loss.shape == loss_t.shape
    np.testing.assert_allclose(loss, loss_t, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dlogits, dlogits_t, rtol=0, atol=1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_are_stable(bk, torch, rng, dtype):
    """Logits of +-1e4 overflow a naive exp; the loss and gradient stay finite and agree
    with PyTorch."""
    logits, target = make_problem(rng, (2, 4, 3, 3), scale=1e4)
    logits = logits.astype(dtype)
    criterion = CrossEntropyLoss()
    loss, dlogits = run(bk, criterion, logits, target, 1.0)
    loss_t, dlogits_t = torch_run(torch, logits, target, 1.0)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    tolerance = 1e-9 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(loss, loss_t, rtol=tolerance)
    np.testing.assert_allclose(dlogits, dlogits_t, rtol=0, atol=tolerance)


@pytest.mark.torch
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_all_pixels_ignored_gives_nan_as_torch(bk, torch, rng, label_smoothing):
    """A batch with nothing to learn from: the mean is 0 / 0 = NaN (PyTorch's answer, and no
    warning), and the gradient is zero."""
    logits, _ = make_problem(rng, (2, 3, 2, 2))
    target = np.full((2, 2, 2), 255)
    criterion = CrossEntropyLoss(bk.asarray(np.ones(3)), ignore_index=255, device=bk.device,
                                 dtype="float64", label_smoothing=label_smoothing)
    loss, dlogits = run(bk, criterion, logits, target, 1.0)
    loss_t, dlogits_t = torch_run(torch, logits, target, 1.0, np.ones(3), ignore_index=255,
                                  label_smoothing=label_smoothing)
    assert np.isnan(loss) and np.isnan(loss_t)
    np.testing.assert_array_equal(dlogits, dlogits_t)
    np.testing.assert_array_equal(dlogits, 0.0)


@pytest.mark.torch
def test_log_softmax_and_softmax_match_torch(bk, torch, rng):
    x = rng.standard_normal((2, 5, 3, 4)) * 50.0
    x[0, :, 0, 0] = [1e4, -1e4, 0.0, 1e4, 3.0]
    ours = bk.numpy(log_softmax(bk.asarray(x)))
    np.testing.assert_allclose(ours, torch.log_softmax(torch.from_numpy(x), dim=1).numpy(),
                               rtol=1e-12, atol=1e-9)
    probabilities = bk.numpy(softmax(bk.asarray(x), dim=1))
    np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(x), dim=1).numpy(),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-15)


# --- without PyTorch ------------------------------------------------------------------------

def test_mean_is_the_weighted_mean_of_per_pixel_losses(bk, rng):
    """The three reductions agree with each other and with -log p[t] written out."""
    logits, target = make_problem(rng, (2, 4, 3, 3), ignore_index=255, ignored=0.3)
    weight = rng.uniform(0.5, 2.0, 4)

    def loss(reduction):
        criterion = CrossEntropyLoss(bk.asarray(weight), ignore_index=255, device=bk.device,
                                     reduction=reduction, dtype="float64")
        return bk.numpy(criterion(bk.asarray(logits), bk.asarray(target)))

    valid = target != 255
    safe = np.where(valid, target, 0)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, safe[:, None], axis=1)[:, 0])
    per_pixel = np.where(valid, weight[safe] * nll, 0.0)
    np.testing.assert_allclose(loss("none"), per_pixel, rtol=1e-12)
    np.testing.assert_allclose(loss("sum"), per_pixel.sum(), rtol=1e-12)
    np.testing.assert_allclose(loss("mean"), per_pixel.sum() / weight[safe][valid].sum(),
                               rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, label_smoothing", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_gradcheck(bk, rng, reduction, weighted, label_smoothing):
    logits, target = make_problem(rng, (2, 3, 2, 3), ignore_index=255, ignored=0.25, scale=1.0)
    weight = bk.asarray(rng.uniform(0.5, 2.0, 3)) if weighted else None
    criterion = CrossEntropyLoss(weight, ignore_index=255, reduction=reduction,
                                 label_smoothing=label_smoothing, device=bk.device,
                                 dtype="float64")
    # The loss is O(1) while each logit's gradient is O(1 / pixels): with the default step
    # 1e-6 the round-off of the difference quotient (~1e-16 L / eps) reaches 1e-6 of an entry;
    # a step of 1e-5 keeps both it and the truncation error near 1e-8.
    report = gradcheck_module(criterion, bk.asarray(logits), bk.asarray(target), eps=1e-5)
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backend_matches_numpy(bk, rng, dtype):
    logits, target = make_problem(rng, (2, 4, 5, 3), ignore_index=255, ignored=0.2)
    logits = logits.astype(dtype)
    weight = rng.uniform(0.5, 2.0, 4)

    def make(device):
        return CrossEntropyLoss(weight, ignore_index=255, label_smoothing=0.1, device=device,
                                dtype=dtype)

    loss, dlogits = run(bk, make(bk.device), logits, target, 0.7)
    reference = make("cpu")
    np.testing.assert_array_equal(loss, reference(logits, target))
    np.testing.assert_array_equal(dlogits, reference.backward(0.7))


def test_accepts_any_integer_target_and_leaves_inputs_alone(bk, rng):
    """uint8 label maps (VOC's PNGs) work as int64 ones; logits and target are untouched."""
    logits, target = make_problem(rng, (1, 3, 4, 4), ignore_index=255, ignored=0.3)
    logits_dev = bk.asarray(logits)
    criterion = CrossEntropyLoss(ignore_index=255)
    expected = bk.numpy(criterion(logits_dev, bk.asarray(target)))
    target_u8 = bk.asarray(target.astype(np.uint8))
    np.testing.assert_array_equal(bk.numpy(criterion(logits_dev, target_u8)), expected)
    criterion.backward(1.0)
    np.testing.assert_array_equal(bk.numpy(logits_dev), logits)
    np.testing.assert_array_equal(bk.numpy(target_u8), target.astype(np.uint8))


def test_weight_is_a_buffer_that_moves(bk):
    criterion = CrossEntropyLoss([1.0, 2.0, 0.5])
    assert list(criterion.state_dict()) == ["weight"]
    assert criterion.weight.dtype == np.float32
    criterion.to(device=bk.device)
    assert bk.owns(criterion.weight)
    assert list(CrossEntropyLoss().state_dict()) == []


# --- bad arguments and inputs -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(ignore_index=255.0), TypeError, "ignore_index must be an int"),
    (dict(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing must be a number"),
    (dict(weight=[[1.0, 2.0]]), ValueError, "weight must be a non-empty 1-D array"),
    (dict(weight=["a", "b"]), ValueError, "weight must be a non-empty 1-D array"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match="^CrossEntropyLoss: " + match):
        CrossEntropyLoss(**kwargs)


def test_positional_arguments_after_weight_are_refused():
    """PyTorch's second positional argument is size_average, not ignore_index."""
    with pytest.raises(TypeError):
        CrossEntropyLoss(None, 255)


def test_bad_targets(bk, rng):
    logits = bk.asarray(rng.standard_normal((2, 3, 4, 4)))
    target = rng.integers(0, 3, (2, 4, 4))
    criterion = CrossEntropyLoss(ignore_index=255)
    bad = target.copy()
    bad[1, 2, 3] = 7
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(ignore_index=255\): target has 7 "
                                         r"at \(1, 2, 3\); class indices must be in \[0, 3\) "
                                         r".* or equal ignore_index=255"):
        criterion(logits, bk.asarray(bad))
    bad[1, 2, 3] = -100  # the default ignore_index, but not this criterion's
    with pytest.raises(ValueError, match=r"target has -100 at \(1, 2, 3\)"):
        criterion(logits, bk.asarray(bad))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(ignore_index=255\): expected target "
                                        r"of integer class indices, got dtype float64 "
                                        r"\(class-probability targets are not supported\)"):
        criterion(logits, bk.asarray(target.astype(np.float64)))
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 4, 4\) for logits of "
                                         r"shape \(2, 3, 4, 4\), got \(2, 4, 5\)"):
        criterion(logits, bk.asarray(rng.integers(0, 3, (2, 4, 5))))
    with pytest.raises(TypeError, match=r"expected target to be an array, got list"):
        criterion(logits, [0, 1])


def test_bad_logits_and_weight(bk, rng):
    target = bk.asarray(rng.integers(0, 3, (2, 4, 4)))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected logits of rank >= 2"):
        CrossEntropyLoss()(bk.asarray(rng.standard_normal(3)), target)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected a float32 or float64 "
                                        r"logits"):
        CrossEntropyLoss()(bk.asarray(np.ones((2, 3, 4, 4), dtype=np.int64)), target)
    weighted = CrossEntropyLoss(np.ones(4), device=bk.device, dtype="float64")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(weight=<4 classes>\): weight has "
                                         r"4 entries but the logits have 3 classes"):
        weighted(bk.asarray(rng.standard_normal((2, 3, 4, 4))), target)
    with pytest.raises(TypeError, match=r"logits has dtype float32 but the layer's parameters "
                                        r"are float64"):
        weighted(bk.asarray(rng.standard_normal((2, 4, 4, 4)).astype(np.float32)), target)


def test_bad_backward(bk, rng):
    logits = bk.asarray(rng.standard_normal((2, 3, 4, 4)))
    target = bk.asarray(rng.integers(0, 3, (2, 4, 4)))
    criterion = CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): backward called before "
                                         r"forward"):
        criterion.backward()
    criterion(logits, target)
    with pytest.raises(ValueError, match=r"expected dloss of shape \(\)"):
        criterion.backward(bk.asarray(np.ones((2, 4, 4))))
    with pytest.raises(TypeError, match=r"expected dloss of dtype float64"):
        criterion.backward(bk.asarray(np.ones((), dtype=np.float32)))
    criterion.backward()
    with pytest.raises(ValueError, match="backward called before forward"):
        criterion.backward()
    per_pixel = CrossEntropyLoss(reduction="none")
    per_pixel(logits, target)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(reduction='none'\): expected dloss "
                                        r"to be an array, got float"):
        per_pixel.backward(1.0)


def test_weight_on_another_device_is_refused(rng):
    criterion = CrossEntropyLoss(np.ones(3), dtype="float64")  # on the host
    logits = strict_cupy.asarray(rng.standard_normal((2, 3)))
    target = strict_cupy.asarray(np.array([0, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(weight=<3 classes>\): arrays from "
                                        r"two devices"):
        criterion(logits, target)
