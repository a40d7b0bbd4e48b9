"""Exercise 1: ReLU forward and backward, the smallest forward/backward pair."""

from __future__ import annotations

from hypothesis import strategies as st

from ... import functional as F
from ...backend import np
from ...testing.strategies import nchw_shapes
from ..common import gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like, only_where

# NCHW images and a few other ranks: ReLU works on any shape.
cases = st.one_of(nchw_shapes(max_size=6),
                  st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)).map(
    lambda shape: {"shape": shape})


def _input(case, away_from_zero: bool = False):
    """float64 x of the case's shape. Every fifth entry is exactly 0 (ReLU's kink), unless
    ``away_from_zero``: then every entry is at least 0.1 from it (for finite differences)."""
    x = inputs_for(case, case["shape"])[0]
    if away_from_zero:
        return np.where(x >= 0.0, x + 0.1, x - 0.1)
    x.reshape(-1)[::5] = 0.0
    return x


def _unchanged(name: str, function: str, before, after, case) -> None:
    if not np.array_equal(np.asarray(before), np.asarray(after)):
        raise CheckFailed(f"{function} changed its argument {name} in place",
                          symptom=f"never write into {name}: a layer's input may be used "
                                  f"elsewhere too (a skip connection reads it again); build "
                                  f"the result as a new array, e.g. xp.maximum(x, 0.0)",
                          config=case)


def check_forward(learner):
    def body(case):
        x = _input(case)
        keep = x.copy()
        y, _ = is_tuple_of(learner.relu_forward(x), 2, "relu_forward")
        _unchanged("x", "relu_forward", keep, x, case)
        compare("y", y, np.maximum(keep, 0.0), config=case,
                shape_hint="x's shape", symptoms=(
                    only_where(lambda e: keep < 0.0,
                               "y is wrong only where x < 0: negative inputs become 0"),
                    only_where(lambda e: keep > 0.0,
                               "y is wrong only where x > 0: positive inputs pass unchanged"),
                ))

    count = for_all(cases, body)
    return f"{count} shapes, with exact zeros among the inputs"


def check_backward(learner):
    def body(case):
        x = _input(case)
        dy = inputs_for((case, "dy"), case["shape"])[0]
        keep = dy.copy()
        _, cache = is_tuple_of(learner.relu_forward(x), 2, "relu_forward")
        dx = learner.relu_backward(dy, cache)
        _unchanged("dy", "relu_backward", keep, dy, case)
        expected = F.relu_backward(keep, x > 0.0)
        compare("dx", dx, expected, config=case, shape_hint="x's shape", symptoms=(
            looks_like(lambda e: keep * (keep > 0.0),
                       "dx is dy where dy > 0: the mask must come from the forward's INPUT "
                       "(x > 0, kept in the cache), not from dy"),
            only_where(lambda e: x == 0.0,
                       "dx is wrong only where x == 0: PyTorch's ReLU passes no gradient "
                       "there (use x > 0, not x >= 0)"),
            looks_like(lambda e: keep,
                       "dx equals dy everywhere: multiply by the mask x > 0"),
        ))

    count = for_all(cases, body)
    return f"{count} shapes, random upstream gradients"


def check_numerical(learner):
    notes = []

    def body(case):
        x = _input(case, away_from_zero=True)
        notes.append(gradient_check(learner, "relu_forward", "relu_backward", {"x": x},
                                    ["x"], {}, case))

    for_all(st.sampled_from([(2, 3, 4, 5), (1, 2, 3, 3), (7,)]).map(
        lambda shape: {"shape": shape}), body, examples=3)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    x = _input({"gpu": 1, "shape": (2, 3, 4, 5)})
    dy = inputs_for("gpu dy", x.shape)[0]
    y, cache = learner.relu_forward(xp.asarray(x))
    dx = learner.relu_backward(xp.asarray(dy), cache)
    return dict(y=y, dx=dx)


EXERCISE = Exercise(
    number=1,
    name="relu",
    title="ReLU forward and backward",
    summary="y = max(x, 0) and its gradient: the forward/backward pattern",
    functions=("relu_forward", "relu_backward"),
    lesson="02_backward",
    reference=lambda: {"relu_forward": F.relu_forward, "relu_backward": F.relu_backward},
    checks=[
        Check("forward", "forward: y = max(x, 0), x left unchanged", check_forward),
        Check("backward", "backward: dx = dy where x > 0, else 0 (also at x == 0)",
              check_backward, ("forward",)),
        Check("numerical", "dx agrees with finite differences of your forward (float64, "
                           "random upstream gradient)", check_numerical, ("forward",)),
        gpu_check(gpu_case, ("forward",), "forward and backward"),
    ],
)
