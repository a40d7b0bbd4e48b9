"""Exercise: the per-pixel cross-entropy loss with class weights and ignored (void) pixels."""

from __future__ import annotations

import warnings

from hypothesis import strategies as st

from ... import backend
from ... import functional as F
from ...backend import np
from ...testing.strategies import loss_configs
from ..common import config_dict, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like, only_where

# The exercise's loss: (N, C, H, W) logits, the mean over the pixels not ignored.
cases = loss_configs().filter(lambda c: len(c.logits_shape) == 4).map(
    lambda c: {key: value for key, value in config_dict(c).items()
               if key not in ("reduction", "label_smoothing")})
# Gradient checks on a few fixed small problems: hypothesis would shrink a drawn target
# array for seconds, calling a whole gradient check each time.
gradient_cases = [
    {"logits_shape": (2, 3, 2, 2), "target": np.array([[[0, 2], [255, 1]], [[1, 1], [2, 0]]]),
     "ignore_index": 255, "weight": None},
    {"logits_shape": (1, 4, 2, 3), "target": np.array([[[3, 0, -100], [2, 2, 1]]]),
     "ignore_index": -100, "weight": (0.5, 2.0, 1.0, 1.5)},
    {"logits_shape": (3, 2, 1, 2), "target": np.array([[[1, 0]], [[255, 1]], [[0, 0]]]),
     "ignore_index": 255, "weight": (1.5, 0.3)},
]

def _problem(case, scale: float = 1.0):
    """logits (N, C, H, W) float64, target (N, H, W) int64, weight (C,) or None."""
    logits, = inputs_for(case, case["logits_shape"])
    weight = None if case["weight"] is None else np.asarray(case["weight"], dtype=np.float64)
    return logits * scale, np.asarray(case["target"]), weight


def _loss_symptoms(logits, target, weight, ignore_index):
    """Recognisers for the wrong denominators, each offered only where it gives a number
    of its own (with one counted pixel and no weights, sum and mean are the same)."""
    total, _ = F.cross_entropy_forward(logits, target, weight, ignore_index, reduction="sum")
    counted = int((target != ignore_index).sum())
    symptoms = []
    if weight is not None:
        symptoms.append(looks_like(
            lambda e: total / counted,
            "the loss is divided by the number of pixels counted: with class weights the mean "
            "divides by the SUM OF THE WEIGHTS w[target] over those pixels, as PyTorch does"))
    if counted < target.size:
        symptoms.append(looks_like(
            lambda e: total / target.size,
            "the loss is divided by every pixel, ignored ones included: the mean is over the "
            "pixels whose target is not ignore_index (they neither add to the sum nor count "
            "in the denominator)"))
    symptoms.append(looks_like(
        lambda e: total,
        "the loss is the sum over pixels: the exercise's loss is the mean (divide by the sum "
        "of w[target] over the pixels not ignored)"))
    return tuple(symptoms)


def _forward(learner, case, scale: float = 1.0):
    logits, target, weight = _problem(case, scale)
    ignore_index = case["ignore_index"]
    loss, _ = is_tuple_of(learner.cross_entropy_forward(logits, target, weight, ignore_index),
                          2, "cross_entropy_forward")
    expected, _ = F.cross_entropy_forward(logits, target, weight, ignore_index)
    if backend.is_array(loss) and loss.shape != ():
        raise CheckFailed(f"the loss has shape {tuple(loss.shape)}; expected a 0-d array "
                          f"(one number: the mean over the pixels)", config=case,
                          symptom="sum the per-pixel losses over N, H and W and divide")
    name = "loss" if scale == 1.0 else f"loss of logits x {scale:g}"
    compare(name, np.asarray(backend.to_numpy(loss) if backend.is_array(loss) else loss),
            expected, config=case, symptoms=(
                lambda got, e: (None if np.isfinite(got).all() else
                                "the loss is NaN or infinite: exp of a large logit overflows. "
                                "Subtract each pixel's largest logit first: log_softmax(z) = "
                                "z - m - log(sum(exp(z - m))) with m = max(z) over the "
                                "classes"),
                *_loss_symptoms(logits, target, weight, ignore_index)))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case), examples=25)
    return (f"{count} configurations: C 2-5, some pixels ignored (ignore_index 255 or -100), "
            f"with and without class weights")


def check_large_logits(learner):
    """Logits of size 1e4 (a confident, untrained or diverging network): exp(1e4) is inf,
    so only a loss computed from z - max(z) is finite."""
    with warnings.catch_warnings():  # the overflow is what this check reports, in words
        warnings.simplefilter("ignore", RuntimeWarning)
        for_all(cases, lambda case: _forward(learner, case, scale=1e4), examples=6)
    return "finite and right at logits of 1e4"


def check_identities(learner):
    """Two facts any correct loss shows: equal logits give log(C) (softmax is uniform), and
    each pixel's gradient sums to 0 over the classes (p - onehot(t))."""
    def body(case):
        logits, target, _ = _problem(case)
        C = case["logits_shape"][1]
        loss, cache = is_tuple_of(
            learner.cross_entropy_forward(np.zeros_like(logits) + 0.3, target, None,
                                          case["ignore_index"]), 2, "cross_entropy_forward")
        compare("loss of equal logits", np.asarray(backend.to_numpy(loss)
                                                   if backend.is_array(loss) else loss),
                np.asarray(np.log(C)), config=case, rtol=1e-12, atol=1e-12)
        _, cache = learner.cross_entropy_forward(logits, target, None, case["ignore_index"])
        dlogits = learner.cross_entropy_backward(1.0, cache)
        if not backend.is_array(dlogits) or dlogits.shape != logits.shape:
            return  # the backward check says what is wrong with it
        sums = backend.to_numpy(dlogits).sum(axis=1)
        compare("dlogits summed over the classes", sums, np.zeros_like(sums), config=case,
                rtol=0.0, atol=1e-12, symptoms=(
                    lambda got, e: ("each pixel's gradient is (p - onehot(t)) times a number, "
                                    "and the probabilities p sum to 1: check that you "
                                    "subtract 1 at the target class only"),))
    for_all(cases, body, examples=8)
    return "equal logits: loss = log(C); each pixel's dlogits sums to 0 over the classes"


def _backward(learner, case):
    logits, target, weight = _problem(case)
    ignore_index = case["ignore_index"]
    _, cache = is_tuple_of(learner.cross_entropy_forward(logits, target, weight, ignore_index),
                           2, "cross_entropy_forward")
    dloss = float(inputs_for((case, "dloss"), ())[0])
    dlogits = learner.cross_entropy_backward(dloss, cache)
    _, ref_cache = F.cross_entropy_forward(logits, target, weight, ignore_index)
    expected = F.cross_entropy_backward(dloss, ref_cache)
    valid = target != ignore_index
    denominator = float(valid.sum() if weight is None
                        else weight[np.where(valid, target, 0)][valid].sum())
    ignored = ~valid[:, None]
    compare("dlogits", dlogits, expected, config=case,
            shape_hint="dlogits has the logits' shape (N, C, H, W)", symptoms=(
                only_where(lambda e: ignored,
                           "dlogits is wrong only at ignored pixels: they took no part in the "
                           "loss, so their gradient is 0"),
                looks_like(lambda e: e / dloss,
                           "dlogits ignores dloss: multiply by the upstream gradient"),
                looks_like(lambda e: e * denominator,
                           "dlogits is not divided by the mean's denominator (the sum of "
                           "w[target] over the pixels not ignored)"),
            ))


def check_backward(learner):
    for_all(cases, lambda case: _backward(learner, case), examples=20)
    return "with a random dloss"


def check_numerical(learner):
    notes = []

    def body(case):
        logits, target, weight = _problem(case)
        static = dict(target=target, weight=weight, ignore_index=case["ignore_index"])
        notes.append(gradient_check(learner, "cross_entropy_forward", "cross_entropy_backward",
                                    dict(logits=logits), ["logits"], static, case))

    for_all(st.sampled_from(gradient_cases), body, examples=len(gradient_cases))
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = {"logits_shape": (2, 4, 3, 3), "gpu": 1, "weight": (0.5, 1.0, 2.0, 1.5)}
    logits, = inputs_for(case, case["logits_shape"])
    target = np.arange(18).reshape(2, 3, 3) % 4
    target[0, 0, :2] = 255
    out = {}
    for weight in (None, np.asarray(case["weight"])):
        key = "weighted" if weight is not None else "unweighted"
        loss, cache = learner.cross_entropy_forward(
            xp.asarray(logits), xp.asarray(target),
            None if weight is None else xp.asarray(weight), 255)
        out[f"loss ({key})"] = loss
        out[f"dlogits ({key})"] = learner.cross_entropy_backward(0.7, cache)
    return out


EXERCISE = Exercise(
    number=12,
    name="cross_entropy",
    title="Cross-entropy over pixels, with class weights and ignored (void) pixels",
    summary="softmax + negative log-likelihood per pixel, mean over the pixels not ignored; "
            "dlogits = (p - onehot) scaled",
    functions=("cross_entropy_forward", "cross_entropy_backward"),
    lesson="12_metrics",
    reference=lambda: {"cross_entropy_forward": F.cross_entropy_forward,
                       "cross_entropy_backward": F.cross_entropy_backward},
    checks=[
        Check("forward", "forward: the loss equals minifcn's (PyTorch's weighted mean over "
                         "pixels not ignored)", check_forward),
        Check("large", "forward: logits of 1e4 give a finite, right loss", check_large_logits,
              ("forward",)),
        Check("identities", "equal logits give log(C); each pixel's gradient sums to 0",
              check_identities, ("forward",)),
        Check("backward", "backward: dlogits equals minifcn's", check_backward, ("forward",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward",)),
        gpu_check(gpu_case, ("forward", "backward"), "forward and backward"),
    ],
)
