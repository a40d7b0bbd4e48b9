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


@pytest.mark.parametrize("args, kwargs, name", [
    ((None, 255), {}, "size_average=255"),  # PyTorch's second positional is size_average
    ((), dict(size_average=False), "size_average=False"),
    ((), dict(reduce=False), "reduce=False"),
    ((None, None, -100, True), {}, "reduce=True"),
])
def test_deprecated_size_average_and_reduce_are_refused(args, kwargs, name):
    with pytest.raises(ValueError, match=rf"^CrossEntropyLoss: {name} is not supported; it is "
                                         rf"deprecated in PyTorch, use reduction="):
        CrossEntropyLoss(*args, **kwargs)


def test_a_criterion_told_not_to_check_targets_makes_no_host_sync(rng):
    """check_targets=False (minifcn train on the GPU, labels checked up front): no device ->
    host transfer in the forward (so a bad label is not caught); the same loss."""
    from minifcn.testing import strict_cupy

    logits = strict_cupy.asarray(rng.standard_normal((2, 3, 4, 4)))
    target = rng.integers(0, 3, (2, 4, 4))
    target[0, 0, 0] = 255
    criterion = CrossEntropyLoss(ignore_index=255)
    with strict_cupy._count_host_transfers() as checked:
        expected = criterion(logits, strict_cupy.asarray(target))
    criterion.check_targets = False
    with strict_cupy._count_host_transfers() as unchecked:
        loss = criterion(logits, strict_cupy.asarray(target))
    assert checked.count == 1 and unchecked.count == 0, (checked.where, unchecked.where)
    assert float(loss) == float(expected)


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
                                        r"of integer class indices or float class "
                                        r"probabilities, got dtype bool"):
        criterion(logits, bk.asarray(target > 0))
    with pytest.raises(ValueError, match=r"expected target \(class probabilities\) of shape "
                                         r"\(2, 3, 4, 4\) for logits of shape \(2, 3, 4, 4\), "
                                         r"got \(2, 4, 4\)"):
        criterion(logits, bk.asarray(target.astype(np.float64)))
    with pytest.raises(ValueError, match=r"ignore_index can only be used with class-index "
                                         r"targets, not with class probabilities"):
        criterion(logits, bk.asarray(np.full((2, 3, 4, 4), 1.0 / 3.0)))
    with pytest.raises(ValueError, match=r"expected target \(class indices\) of shape "
                                         r"\(2, 4, 4\) for logits of shape \(2, 3, 4, 4\), got "
                                         r"\(2, 4, 5\)"):
        criterion(logits, bk.asarray(rng.integers(0, 3, (2, 4, 5))))
    with pytest.raises(ValueError, match=r"got \(4, 4\); logits are read as \(N, C, \.\.\.\), "
                                         r"as in PyTorch: for one sample's \(C, H, W\) logits "
                                         r"pass logits\[None\] and target\[None\]"):
        criterion(logits[0], bk.asarray(target[0]))
    with pytest.raises(ValueError, match=r"expected target \(class indices\) of shape \(\) for "
                                         r"logits of shape \(3,\), got \(1,\)"):
        criterion(logits[0, :, 0, 0], bk.asarray(target[0, 0, :1]))
    with pytest.raises(ValueError, match=r"target has 7 at \(\); class indices must be in"):
        criterion(logits[0, :, 0, 0], bk.asarray(np.array(7)))
    with pytest.raises(TypeError, match=r"expected target to be an array, got list"):
        criterion(logits, [0, 1])


def test_bad_logits_and_weight(bk, rng):
    target = bk.asarray(rng.integers(0, 3, (2, 4, 4)))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected logits of rank >= 1 "
                                         r"\(\(C,\) or \(N, C, \.\.\.\)\), got shape \(\)"):
        CrossEntropyLoss()(bk.asarray(np.array(3.0)), target)
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected a float32 or float64 "
                                        r"logits"):
        CrossEntropyLoss()(bk.asarray(np.ones((2, 3, 4, 4), dtype=np.int64)), target)
    weighted = CrossEntropyLoss(np.ones(4), device=bk.device, dtype="float64")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(weight=<4 classes>\): weight has "
                                         r"4 entries but the logits have 3 classes"):
        weighted(bk.asarray(rng.standard_normal((2, 3, 4, 4))), target)
    with pytest.raises(TypeError, match=r"expected a float32 or float64 logits"):
        weighted(bk.asarray(np.ones((2, 4, 4, 4), dtype=np.int32)), target)


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


# --- class-probability targets, unbatched samples, weight dtypes ----------------------------

def make_probabilities(rng, shape, normalized=True):
    """Float targets of the logits' ``shape``: per pixel a distribution over the classes
    (axis 1, or axis 0 for an unbatched (C,)), or any non-negative numbers, which PyTorch
    takes as they are."""
    q = rng.uniform(0.0, 1.0, shape)
    return q / q.sum(axis=0 if len(shape) == 1 else 1, keepdims=True) if normalized else q


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (6, 4), (5,)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing, normalized", [(0.0, True), (0.2, True), (0.2, False)])
def test_probability_targets_match_torch(bk, torch, rng, shape, weighted, reduction,
                                         label_smoothing, normalized):
    """With probabilities "mean" divides by the pixels, not the weights: checked to 1e-9."""
    logits = rng.standard_normal(shape) * 3.0
    target = make_probabilities(rng, shape, normalized)
    weight = rng.uniform(0.2, 3.0, shape[0 if len(shape) == 1 else 1]) if weighted else None
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    dloss = (rng.standard_normal(loss_t_shape(shape)) if reduction == "none" and len(shape) > 1
             else float(rng.standard_normal()))
    criterion = CrossEntropyLoss(None if weight is None else bk.asarray(weight), **options,
                                 device=bk.device, dtype="float64")
    loss, dlogits = run(bk, criterion, logits, target, dloss)
    loss_t, dlogits_t = torch_run(torch, logits, target, dloss, weight, **options)
    assert loss.shape == loss_t.shape and dlogits.shape == logits.shape
    np.testing.assert_allclose(loss, loss_t, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dlogits, dlogits_t, rtol=0, atol=1e-9)


def loss_t_shape(shape):
    """The per-pixel loss shape of logits ``shape``: (N, ...) or () for an unbatched (C,)."""
    return () if len(shape) == 1 else (shape[0], *shape[2:])


@pytest.mark.torch
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("target_value", [2, 255])
def test_unbatched_class_index_matches_torch(bk, torch, rng, weighted, reduction,
                                             label_smoothing, target_value):
    """Logits (C,) with a 0-d target, as PyTorch; an ignored sample gives NaN for "mean"."""
    logits = rng.standard_normal(5)
    target = np.array(target_value)
    weight = rng.uniform(0.2, 3.0, 5) if weighted else None
    options = dict(ignore_index=255, reduction=reduction, label_smoothing=label_smoothing)
    dloss = float(rng.standard_normal())  # the loss is 0-d with every reduction
    criterion = CrossEntropyLoss(None if weight is None else bk.asarray(weight), **options,
                                 device=bk.device, dtype="float64")
    loss, dlogits = run(bk, criterion, logits, target, dloss)
    loss_t, dlogits_t = torch_run(torch, logits, target, dloss, weight, **options)
    assert loss.shape == loss_t.shape == () and dlogits.shape == (5,)
    np.testing.assert_allclose(loss, loss_t, rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(dlogits, dlogits_t, rtol=0, atol=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (4,)])
def test_probability_and_unbatched_gradcheck(bk, rng, reduction, shape):
    logits = rng.standard_normal(shape)
    target = make_probabilities(rng, shape)
    criterion = CrossEntropyLoss(bk.asarray(rng.uniform(0.5, 2.0, shape[min(1, len(shape) - 1)])),
                                 reduction=reduction, label_smoothing=0.1, device=bk.device,
                                 dtype="float64")
    report = gradcheck_module(criterion, bk.asarray(logits), bk.asarray(target), eps=1e-5)
    assert report.max_error < 1e-6, report
    per_sample = CrossEntropyLoss(reduction=reduction, device=bk.device, dtype="float64")
    report = gradcheck_module(per_sample, bk.asarray(rng.standard_normal(4)),
                              bk.asarray(np.array(1)), eps=1e-5)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
@pytest.mark.parametrize("weight_dtype, logits_dtype", [("float32", "float64"),
                                                        ("float64", "float32"),
                                                        ("float64", "float64"),
                                                        ("float32", "float32")])
@pytest.mark.parametrize("probabilities", [False, True])
def test_the_weight_and_the_logits_share_one_dtype(bk, torch, rng, weight_dtype,
                                                    logits_dtype, probabilities):
    """A weight in the logits' dtype gives PyTorch's numbers; in another dtype it is
    refused, saying how to mend it: PyTorch refuses it with class-index targets and, with
    class probabilities, computes in the wider dtype (a float64 loss for float32 logits),
    which minifcn does not guess at (it cast the weight, which matched neither)."""
    weight = rng.uniform(0.2, 3.0, 4).astype(weight_dtype)
    logits = rng.standard_normal((3, 4, 2, 2)).astype(logits_dtype)
    target = (make_probabilities(rng, logits.shape).astype(logits_dtype) if probabilities
              else rng.integers(0, 4, (3, 2, 2)))
    criterion = CrossEntropyLoss(bk.asarray(weight), device=bk.device, dtype=weight_dtype)
    assert criterion.weight.dtype == weight_dtype
    if weight_dtype != logits_dtype:
        with pytest.raises(TypeError, match=rf"CrossEntropyLoss.*: weight is {weight_dtype} "
                                            rf"but the logits are {logits_dtype}; build the "
                                            rf"loss with dtype='{logits_dtype}'"):
            criterion(bk.asarray(logits), bk.asarray(target))
        if not probabilities:
            with pytest.raises(RuntimeError, match="expected scalar type"):
                torch_run(torch, logits, target, 1.0, weight)  # PyTorch refuses as well
        return
    loss, dlogits = run(bk, criterion, logits, target, 1.0)
    loss_t, dlogits_t = torch_run(torch, logits, target, 1.0, weight)
    tol = 1e-9 if logits_dtype == "float64" else 1e-5
    np.testing.assert_allclose(loss, loss_t, rtol=tol, atol=tol)
    np.testing.assert_allclose(dlogits, dlogits_t, rtol=0, atol=tol)


def test_a_float64_weight_keeps_its_dtype_as_pytorch(torch, rng):
    """A float64 weight array stays float64 (it was rounded to float32, moving a float64
    loss by 7.5e-9 from PyTorch's); a list takes the default float32, as torch.tensor's."""
    weight = np.array([0.3, 1.7, 2.9, 0.05])
    logits = rng.standard_normal((2, 4, 5, 5))
    target = rng.integers(0, 4, (2, 5, 5))
    criterion = CrossEntropyLoss(weight=weight)
    assert criterion.weight.dtype == np.float64
    assert CrossEntropyLoss(weight=weight.tolist()).weight.dtype == np.float32
    ours = float(criterion(logits, target))
    theirs = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight))(
        torch.from_numpy(logits), torch.from_numpy(target))
    assert abs(ours - float(theirs)) < 1e-14
