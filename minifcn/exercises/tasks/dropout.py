"""Exercise: inverted dropout, forward and backward, with the same mask both ways."""

from __future__ import annotations

import zlib

from hypothesis import strategies as st

from ... import backend
from ... import functional as F
from ...backend import Generator, np
from ...testing.strategies import nchw_shapes
from ..common import config_dict, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like

PROBABILITIES = (0.1, 0.25, 0.5, 0.8)

cases = st.fixed_dictionaries({
    "shape": nchw_shapes(max_size=5),
    "p": st.sampled_from(PROBABILITIES),
    "mask": st.sampled_from(["per value", "per channel"]),
})


def _mask(case) -> np.ndarray:
    """A boolean keep-mask for the case: (N, C, H, W) or (N, C, 1, 1), about 1 - p True."""
    N, C, H, W = case["shape"]
    shape = (N, C, H, W) if case["mask"] == "per value" else (N, C, 1, 1)
    rng = np.random.default_rng(zlib.crc32(repr(("mask", case)).encode()))
    return rng.random(shape) >= case["p"]


def _forward_symptoms(x, mask, p):
    return (
        looks_like(lambda e: x * mask,
                   "y is x * mask without the rescaling: inverted dropout multiplies the kept "
                   "values by 1 / (1 - p) in training, so that the expected output equals x"),
        looks_like(lambda e: x * ~mask / (1.0 - p),
                   "y keeps the values the mask says to DROP: True in the mask means keep"),
        looks_like(lambda e: x * mask * (1.0 - p),
                   "y is scaled by (1 - p) instead of 1 / (1 - p): inverted dropout divides "
                   "by the keep probability in training (evaluation then needs no scaling)"),
        looks_like(lambda e: x * mask / p,
                   "y is divided by p: divide by the keep probability, 1 - p"),
    )


def _forward(learner, case):
    x, = inputs_for(case, case["shape"])
    mask, p = _mask(case), case["p"]
    y, _ = is_tuple_of(learner.dropout_forward(x, p, True, mask=mask), 2, "dropout_forward")
    expected, _ = F.dropout_forward(x, p, True, mask=mask)
    compare("y", y, expected, config=case, shape_hint="y has x's shape",
            symptoms=_forward_symptoms(x, mask, p))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case), examples=20)
    return (f"{count} configurations: p in {PROBABILITIES}, masks per value and per "
            f"channel (N, C, 1, 1)")


def check_evaluation(learner):
    def body(case):
        x, = inputs_for(case, case["shape"])
        y, _ = is_tuple_of(learner.dropout_forward(x, case["p"], False), 2, "dropout_forward")
        compare("y in evaluation (training=False)", y, x, config=case, symptoms=(
            looks_like(lambda e: e / (1.0 - case["p"]),
                       "in evaluation y is x / (1 - p): with inverted dropout the scaling "
                       "happens in training only; evaluation is the identity"),
            looks_like(lambda e: e * (1.0 - case["p"]),
                       "in evaluation y is x * (1 - p): that is the old, non-inverted "
                       "dropout; with inverted dropout evaluation is the identity"),
        ))
    for_all(cases, body, examples=8)


def check_generator(learner):
    """With mask=None the mask must come from the generator, drawn as minifcn draws it, so
    that a seeded model drops the same values with your code as with minifcn's."""
    def body(case):
        x, = inputs_for(case, case["shape"])
        p, seed = case["p"], zlib.crc32(repr(case).encode())
        y, _ = is_tuple_of(learner.dropout_forward(x, p, True, generator=Generator(seed)), 2,
                           "dropout_forward")
        expected, _ = F.dropout_forward(x, p, True, generator=Generator(seed))
        draws = Generator(seed).random(x.shape, "float32")
        compare("y (mask drawn from the generator)", y, expected, config=case, symptoms=(
            looks_like(lambda e: x * (draws < p) / (1.0 - p),
                       "y keeps the values whose random draw is < p: keep where the draw is "
                       ">= p (a value is dropped with probability p)"),
            looks_like(lambda e: x * (draws >= p),
                       "y is x * mask without the rescaling: inverted dropout multiplies the "
                       "kept values by 1 / (1 - p) in training"),
        ))
    for_all(cases.filter(lambda c: c["mask"] == "per value"), body, examples=6)
    return "the mask is generator.random(x.shape, \"float32\", xp=xp) >= p, as minifcn's"


def check_expectation(learner):
    """E[y] = x: over many values the mean of y is the mean of x, and a share p is zero."""
    notes = []
    for p in (0.2, 0.6):
        x = np.ones((8, 16, 32, 32))
        n = x.size
        y, _ = is_tuple_of(learner.dropout_forward(x, p, True, generator=Generator(7)), 2,
                           "dropout_forward")
        y = backend.to_numpy(y)
        mean, dropped = float(y.mean()), float((y == 0).mean())
        # Five standard deviations of the sample mean: y is 0 or 1/(1-p), variance p/(1-p).
        tol_mean = 5.0 * (p / (1.0 - p) / n) ** 0.5
        tol_drop = 5.0 * (p * (1.0 - p) / n) ** 0.5
        config = {"x": "ones (8, 16, 32, 32)", "p": p, "generator": "Generator(7)"}
        if abs(dropped - p) > tol_drop:
            raise CheckFailed(
                f"with p = {p}, {dropped:.4f} of the values of y are zero; expected about "
                f"{p} (within {tol_drop:.4f})",
                symptom="each value must be dropped with probability p: keep it where the "
                        "uniform draw is >= p", config=config)
        if abs(mean - 1.0) > tol_mean:
            raise CheckFailed(
                f"with p = {p}, the mean of y over {n} values is {mean:.4f}; the mean of x is "
                f"1 and E[y] = x, so expected 1 within {tol_mean:.4f}",
                symptom=(f"the kept values are not scaled by 1 / (1 - p) = {1 / (1 - p):.4g}: "
                         f"without it the expected output shrinks to (1 - p) * x"
                         if abs(mean - (1.0 - p)) <= tol_mean else None), config=config)
        notes.append(f"p = {p}: mean of y {mean:.4f} (x = 1), share zero {dropped:.4f}")
    return "; ".join(notes)


def _backward(learner, case):
    x, dy = inputs_for(case, case["shape"], case["shape"])
    mask, p = _mask(case), case["p"]
    _, cache = is_tuple_of(learner.dropout_forward(x, p, True, mask=mask), 2,
                           "dropout_forward")
    dx = learner.dropout_backward(dy, cache)
    _, ref_cache = F.dropout_forward(x, p, True, mask=mask)
    expected = F.dropout_backward(dy, ref_cache)
    compare("dx", dx, expected, config=case, shape_hint="dx has dy's shape", symptoms=(
        looks_like(lambda e: dy * mask,
                   "dx is dy * mask without the 1 / (1 - p): the backward scales exactly as "
                   "the forward did (y = x * mask / (1 - p), so dx = dy * mask / (1 - p))"),
        looks_like(lambda e: dy / (1.0 - p),
                   "dx is not masked: the values the forward dropped had no effect on y, so "
                   "their gradient is 0; keep the forward's mask in the cache"),
        looks_like(lambda e: dy,
                   "dx is dy unchanged: multiply by the forward's mask and 1 / (1 - p)"),
    ))


def check_backward(learner):
    for_all(cases, lambda case: _backward(learner, case), examples=15)


def check_evaluation_backward(learner):
    def body(case):
        x, dy = inputs_for(case, case["shape"], case["shape"])
        _, cache = is_tuple_of(learner.dropout_forward(x, case["p"], False), 2,
                               "dropout_forward")
        compare("dx in evaluation", learner.dropout_backward(dy, cache), dy, config=case,
                symptoms=(looks_like(lambda e: e / (1.0 - case["p"]),
                                     "in evaluation dx is dy / (1 - p): evaluation is the "
                                     "identity, and so is its backward"),))
    for_all(cases, body, examples=5)


def check_numerical(learner):
    notes = []

    def body(case):
        x, = inputs_for(case, case["shape"])
        static = dict(p=case["p"], training=True, mask=_mask(case))
        notes.append(gradient_check(learner, "dropout_forward", "dropout_backward",
                                    dict(x=x), ["x"], static, case))

    for_all(cases.filter(lambda c: np.prod(c["shape"]) <= 60), body, examples=5)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = config_dict({"shape": (2, 3, 4, 5), "p": 0.3, "mask": "per value"}, gpu=1)
    x, dy = inputs_for(case, case["shape"], case["shape"])
    mask = _mask(case)
    y, cache = learner.dropout_forward(xp.asarray(x), 0.3, True, mask=xp.asarray(mask))
    dx = learner.dropout_backward(xp.asarray(dy), cache)
    # The mask drawn on the device: random streams differ between CuPy and NumPy, so only
    # that it runs, stays on the device and keeps or scales every value is compared.
    drawn, _ = learner.dropout_forward(xp.asarray(x), 0.3, True, generator=Generator(3))
    if backend.get_array_module(drawn) is not xp:
        raise CheckFailed("dropout_forward returned a NumPy array for a GPU input when it drew "
                          "the mask itself: draw it on x's device, generator.random(x.shape, "
                          "\"float32\", xp=xp)")
    drawn = backend.to_numpy(drawn)
    if not (np.isclose(drawn, 0.0) | np.isclose(drawn, x / 0.7)).all():
        raise CheckFailed("with a mask drawn on the device, y is not 0 or x / (1 - p) "
                          "everywhere")
    return dict(y=y, dx=dx)


EXERCISE = Exercise(
    number=7,
    name="dropout",
    title="Dropout: inverted scaling, the same mask forward and backward",
    summary="y = x * mask / (1 - p) in training, identity in evaluation; dx with the same mask",
    functions=("dropout_forward", "dropout_backward"),
    lesson="04_batchnorm_dropout",
    reference=lambda: {"dropout_forward": F.dropout_forward,
                       "dropout_backward": F.dropout_backward},
    checks=[
        Check("forward", "forward (training, mask given): y = x * mask / (1 - p), as minifcn's",
              check_forward),
        Check("eval", "forward (evaluation): y = x", check_evaluation),
        Check("generator", "forward (mask=None): the mask drawn from the generator as "
                           "minifcn draws it", check_generator, ("forward",)),
        Check("expectation", "expectation: the mean of y is the mean of x, a share p is zero",
              check_expectation, ("forward",)),
        Check("backward", "backward: dx = dy * mask / (1 - p) with the forward's mask",
              check_backward, ("forward",)),
        Check("eval_backward", "backward (evaluation): dx = dy", check_evaluation_backward,
              ("eval",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward",)),
        gpu_check(gpu_case, ("forward", "backward"), "forward and backward"),
    ],
)
