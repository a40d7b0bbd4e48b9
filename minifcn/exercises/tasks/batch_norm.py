"""Exercise: batch normalization in training and evaluation, running statistics, backward."""

from __future__ import annotations

from hypothesis import strategies as st

from ... import backend
from ... import functional as F
from ...backend import np
from ...testing.strategies import nchw_shapes
from ..common import config_dict, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like

cases = st.fixed_dictionaries({
    "shape": nchw_shapes(max_size=4),
    "momentum": st.sampled_from([0.1, 0.3]),
    "eps": st.sampled_from([1e-5, 1e-3]),
})
small_cases = cases.filter(lambda c: np.prod(c["shape"]) <= 48)

FORMULAS = ("mean = x.mean over (N, H, W); var = ((x - mean)**2).mean over (N, H, W) "
            "(biased); y = weight * (x - mean) / sqrt(var + eps) + bias")


def reference_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """minifcn's batch_norm_forward, which returns the updated running statistics, turned
    into the exercise's contract: update ``running_mean`` and ``running_var`` in place."""
    y, cache = F.batch_norm_forward(x, weight, bias, running_mean, running_var, training,
                                    momentum, eps)
    if cache.running_mean is not None:
        running_mean[...] = cache.running_mean
        running_var[...] = cache.running_var
    return y, cache


def _problem(case):
    """x (N, C, H, W) with a different mean and spread per channel; weight, bias,
    running_mean (C,); running_var (C,) positive."""
    N, C, H, W = case["shape"]
    x, weight, bias, running_mean, raw_var = inputs_for(case, (N, C, H, W), (C,), (C,), (C,),
                                                        (C,))
    channel = np.arange(C).reshape(1, C, 1, 1)
    x = x * (1.0 + 0.5 * channel) + 2.0 * channel - 1.0
    return x, weight, bias, running_mean, 0.5 + raw_var ** 2


# --- NumPy formulas of the mistakes the symptoms recognise ---------------------------------

def _stats(x, axes=(0, 2, 3), ddof=0):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    return mean, var


def _channel(v):
    return v.reshape(1, -1, 1, 1)


def _normalized(x, weight, bias, eps, axes=(0, 2, 3), ddof=0):
    mean, var = _stats(x, axes, ddof)
    return _channel(weight) * (x - mean) / np.sqrt(var + eps) + _channel(bias)


def _affine_eval(x, weight, bias, running_mean, running_var, eps):
    return (_channel(weight) * (x - _channel(running_mean)) / np.sqrt(_channel(running_var) + eps)
            + _channel(bias))


def _forward(learner, case):
    x, weight, bias, rm, rv = _problem(case)
    eps = case["eps"]
    y, _ = is_tuple_of(learner.batch_norm_forward(x, weight, bias, rm.copy(), rv.copy(), True,
                                                  case["momentum"], eps), 2,
                       "batch_norm_forward")
    expected, _ = reference_forward(x, weight, bias, rm.copy(), rv.copy(), True,
                                    case["momentum"], eps)
    mean, var = _stats(x)
    xhat = (x - mean) / np.sqrt(var + eps)
    compare("y (training)", y, expected, config=case, shape_hint="y has x's shape (N, C, H, W)",
            symptoms=(
                looks_like(lambda e: _normalized(x, weight, bias, eps, ddof=1),
                           "y is normalized with the UNBIASED variance (divided by M - 1): "
                           "the normalization uses the biased one, sum((x - mean)**2) / M "
                           "with M = N*H*W; only the running estimate is unbiased"),
                looks_like(lambda e: _normalized(x, weight, bias, eps, axes=(2, 3)),
                           "y is normalized per sample (statistics over H and W only): batch "
                           "norm takes each channel's mean and variance over N, H and W "
                           "together, axis=(0, 2, 3)"),
                looks_like(lambda e: _normalized(x, weight, bias, eps, axes=(0, 1, 2, 3)),
                           "y is normalized with one mean and variance for the whole batch: "
                           "batch norm takes them per channel, over axis=(0, 2, 3)"),
                looks_like(lambda e: _affine_eval(x, weight, bias, rm, rv, eps),
                           "in training y uses running_mean and running_var: training "
                           "normalizes with the statistics of the current batch"),
                looks_like(lambda e: xhat,
                           "y is the normalized x without weight and bias: y = weight * xhat "
                           "+ bias, per channel"),
                looks_like(lambda e: (x - mean) / np.sqrt(var) * _channel(weight)
                           + _channel(bias), "y ignores eps: divide by sqrt(var + eps)"),
            ))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case), examples=20)
    return f"{count} configurations, N*H*W >= 3 values per channel"


def check_running(learner):
    """Two training steps from (0, 1), then an evaluation step: the running statistics
    move as PyTorch's do, in place, and stay put in evaluation."""
    def body(case):
        x1, weight, bias, _, _ = _problem(case)
        x2 = _problem(config_dict(case, batch=2))[0] * 0.7 + 0.4
        C, momentum, eps = case["shape"][1], case["momentum"], case["eps"]
        mine = [np.zeros(C), np.ones(C)]
        ref = [np.zeros(C), np.ones(C)]
        for x in (x1, x2):
            is_tuple_of(learner.batch_norm_forward(x, weight, bias, *mine, True, momentum, eps),
                        2, "batch_norm_forward")
            reference_forward(x, weight, bias, *ref, True, momentum, eps)
        for name, got, start, expected in (("running_mean", mine[0], 0.0, ref[0]),
                                           ("running_var", mine[1], 1.0, ref[1])):
            if np.all(got == start):
                raise CheckFailed(
                    f"{name} is unchanged after two training steps; expected "
                    f"{np.array2string(expected, precision=4)}",
                    symptom=f"update {name} IN PLACE: {name}[...] = (1 - momentum) * {name} "
                            f"+ momentum * ...; assigning a new array to the name {name} "
                            f"inside your function never reaches the caller's array",
                    config=case)
        # the running statistics of two mistakes, replayed step by step: a biased running
        # variance, and the momentum given to the old estimate instead of the batch
        biased, swapped_mean, swapped_var = np.ones(C), np.zeros(C), np.ones(C)
        for x in (x1, x2):
            M = x.size // C
            mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            biased = (1 - momentum) * biased + momentum * var
            swapped_mean = momentum * swapped_mean + (1 - momentum) * mean
            swapped_var = momentum * swapped_var + (1 - momentum) * var * M / (M - 1)
        swapped = ("gives the batch the weight 1 - momentum: PyTorch's rule is running = "
                   "(1 - momentum) * running + momentum * batch")
        compare("running_mean after two steps", mine[0], ref[0], config=case, symptoms=(
            looks_like(lambda e: swapped_mean, f"running_mean {swapped}"),))
        compare("running_var after two steps", mine[1], ref[1], config=case, symptoms=(
            looks_like(lambda e: biased,
                       "running_var uses the biased variance: the running estimate is the "
                       "UNBIASED one, sum((x - mean)**2) / (M - 1) with M = N*H*W (the "
                       "normalization itself uses the biased one)"),
            looks_like(lambda e: swapped_var, f"running_var {swapped}"),
        ))
        before = [m.copy() for m in mine]
        learner.batch_norm_forward(x1, weight, bias, *mine, False, momentum, eps)
        for name, got, was in zip(("running_mean", "running_var"), mine, before, strict=True):
            compare(f"{name} after an evaluation step", got, was, config=case, symptoms=(
                lambda g, e, name=name: (f"{name} changed in evaluation: only training "
                                         f"steps update the running statistics"),))
    for_all(cases, body, examples=10)
    return "running_mean, running_var after two steps from (0, 1), then one in evaluation"


def _evaluation(learner, case):
    x, weight, bias, rm, rv = _problem(case)
    eps = case["eps"]
    y, _ = is_tuple_of(learner.batch_norm_forward(x, weight, bias, rm.copy(), rv.copy(), False,
                                                  case["momentum"], eps), 2,
                       "batch_norm_forward")
    expected, _ = reference_forward(x, weight, bias, rm, rv, False, case["momentum"], eps)
    compare("y (evaluation)", y, expected, config=case, symptoms=(
        looks_like(lambda e: _normalized(x, weight, bias, eps),
                   "in evaluation y uses the batch's statistics: with training=False "
                   "normalize with running_mean and running_var"),
    ))
    # The identity: evaluation is one fixed affine map per channel, so a sample's output
    # does not depend on the rest of the batch.
    if case["shape"][0] > 1:
        alone, _ = learner.batch_norm_forward(x[:1].copy(), weight, bias, rm, rv, False,
                                              case["momentum"], eps)
        compare("y of the first sample evaluated alone", alone, backend.to_numpy(y)[:1],
                config=case)


def check_evaluation(learner):
    for_all(cases, lambda case: _evaluation(learner, case), examples=12)
    return ("y = x * scale + shift per channel, scale = weight / sqrt(running_var + eps); a "
            "sample's output does not depend on the rest of the batch")


def _backward(learner, case, training: bool):
    x, weight, bias, rm, rv = _problem(case)
    eps, momentum = case["eps"], case["momentum"]
    y, cache = is_tuple_of(learner.batch_norm_forward(x, weight, bias, rm.copy(), rv.copy(),
                                                      training, momentum, eps), 2,
                           "batch_norm_forward")
    dy = inputs_for((case, "dy"), x.shape)[0]
    grads = is_tuple_of(learner.batch_norm_backward(dy, cache), 3, "batch_norm_backward")
    _, ref_cache = reference_forward(x, weight, bias, rm.copy(), rv.copy(), training, momentum,
                                     eps)
    dx, dweight, dbias = F.batch_norm_backward(dy, ref_cache)
    if training:
        mean, var = _stats(x)
    else:
        mean, var = _channel(rm), _channel(rv)
    scale = _channel(weight) / np.sqrt(var + eps)
    xhat = (x - mean) / np.sqrt(var + eps)
    mean_dy = dy.mean(axis=(0, 2, 3), keepdims=True)
    mean_dy_xhat = (dy * xhat).mean(axis=(0, 2, 3), keepdims=True)
    where = "training" if training else "evaluation"
    dx_symptoms = ((
        looks_like(lambda e: dy * scale,
                   "dx = dy * weight / sqrt(var + eps) treats the batch mean and variance as "
                   "constants, but in training they depend on every x of the channel: dx = "
                   "weight / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat)), means "
                   "over N, H, W"),
        looks_like(lambda e: scale * (dy - mean_dy),
                   "dx lacks the variance's term: dx = weight / sqrt(var + eps) * (dy - "
                   "mean(dy) - xhat * mean(dy * xhat))"),
        looks_like(lambda e: scale * (dy - xhat * mean_dy_xhat),
                   "dx lacks the mean's term: dx = weight / sqrt(var + eps) * (dy - mean(dy) "
                   "- xhat * mean(dy * xhat))"),
    ) if training else (
        looks_like(lambda e: scale * (dy - mean_dy - xhat * mean_dy_xhat),
                   "in evaluation dx uses the training formula: the running statistics are "
                   "constants, so dx = dy * weight / sqrt(running_var + eps)"),
    ))
    compare(f"dx ({where})", grads[0], dx, config=case, symptoms=dx_symptoms,
            shape_hint="dx has x's shape (N, C, H, W)")
    compare(f"dweight ({where})", grads[1], dweight, config=case,
            shape_hint="dweight is (C,): sum over N, H, W of dy * xhat", symptoms=(
                looks_like(lambda e: (dy * x).sum(axis=(0, 2, 3)),
                           "dweight is sum(dy * x): the weight multiplies xhat, the "
                           "NORMALIZED x, so dweight = sum over N, H, W of dy * xhat"),))
    compare(f"dbias ({where})", grads[2], dbias, config=case,
            shape_hint="dbias is (C,): dy summed over N, H and W")


def check_backward(training: bool):
    def run(learner):
        for_all(cases, lambda case: _backward(learner, case, training), examples=15)
    return run


def check_numerical(learner):
    notes = []

    def body(case):
        x, weight, bias, rm, rv = _problem(case)
        static = dict(running_mean=rm, running_var=rv, training=case["training"],
                      momentum=case["momentum"], eps=case["eps"])
        notes.append(gradient_check(learner, "batch_norm_forward", "batch_norm_backward",
                                    dict(x=x, weight=weight, bias=bias),
                                    ["x", "weight", "bias"], static, case))

    training = st.tuples(small_cases, st.booleans()).map(
        lambda t: config_dict(t[0], training=t[1]))
    for_all(training, body, examples=6)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = {"shape": (2, 3, 4, 5), "momentum": 0.1, "eps": 1e-5}
    x, weight, bias, rm, rv = (xp.asarray(a) for a in _problem(config_dict(case, gpu=1)))
    dy = xp.asarray(inputs_for("gpu dy", (2, 3, 4, 5))[0])
    y, cache = learner.batch_norm_forward(x, weight, bias, rm, rv, True, 0.1, 1e-5)
    dx, dweight, dbias = learner.batch_norm_backward(dy, cache)
    y_eval, cache = learner.batch_norm_forward(x, weight, bias, rm, rv, False, 0.1, 1e-5)
    dx_eval, _, _ = learner.batch_norm_backward(dy, cache)
    return dict(y=y, dx=dx, dweight=dweight, dbias=dbias, running_mean=rm, running_var=rv,
                y_eval=y_eval, dx_eval=dx_eval)


EXERCISE = Exercise(
    number=8,
    name="batch_norm",
    title="Batch normalization: training, evaluation, running statistics, backward",
    summary="per-channel batch statistics in training, running ones in evaluation; "
            "dx, dweight, dbias",
    functions=("batch_norm_forward", "batch_norm_backward"),
    lesson="04_batchnorm_dropout",
    reference=lambda: {"batch_norm_forward": reference_forward,
                       "batch_norm_backward": F.batch_norm_backward},
    checks=[
        Check("forward", "forward (training): y equals minifcn's batch norm", check_forward),
        Check("running", "running statistics: updated in place as PyTorch's (unbiased "
                         "variance), unchanged in evaluation", check_running),
        Check("eval", "forward (evaluation): the fixed affine map of the running statistics",
              check_evaluation),
        Check("backward", "backward (training): dx, dweight, dbias equal minifcn's",
              check_backward(True), ("forward",)),
        Check("eval_backward", "backward (evaluation): dx, dweight, dbias equal minifcn's",
              check_backward(False), ("eval",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward", "eval")),
        gpu_check(gpu_case, ("forward", "running", "eval", "backward"),
                  "batch norm (training and evaluation, forward and backward)"),
    ],
)
