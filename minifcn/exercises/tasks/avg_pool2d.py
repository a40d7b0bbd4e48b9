"""Exercise 6: average pooling forward and backward (PyTorch's count_include_pad=True)."""

from __future__ import annotations

from ... import functional as F
from ...backend import np
from ...testing.assertions import assert_adjoint
from ..common import gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like, only_where
from . import _pool as pool

cases = pool.cases()
overlapping = pool.cases(overlapping=True)


def _forward(learner, x, case):
    return is_tuple_of(learner.avg_pool2d_forward(x, **pool.kwargs_of(case)), 2,
                       "avg_pool2d_forward")


def check_forward(learner):
    def body(case):
        x = inputs_for(case, pool.x_shape(case))[0]
        y, _ = _forward(learner, x, case)
        kwargs = pool.kwargs_of(case)
        expected, _ = F.avg_pool2d_forward(x, **kwargs)
        real_only, _ = F.avg_pool2d_forward(x, **kwargs, count_include_pad=False)
        compare("y", y, expected, config=case, shape_hint=pool.SHAPE, symptoms=(
            looks_like(lambda e: real_only,
                       "y divides each window's sum by the number of REAL pixels in it; "
                       "PyTorch's default (count_include_pad=True) divides by KH*KW, the "
                       "zero padding included"),
        ))

    count = for_all(cases, body)
    return (f"{count} configurations: kernel 1-5, stride 1-3 or None (= kernel), padding up "
            f"to half the kernel, non-square, batch 1-3, channels 1-4")


def check_backward(learner):
    def body(case):
        x = inputs_for(case, pool.x_shape(case))[0]
        y, cache = _forward(learner, x, case)
        dy = inputs_for((case, "dy"), np.shape(y))[0]
        dx = learner.avg_pool2d_backward(dy, cache)
        _, ref_cache = F.avg_pool2d_forward(x, **pool.kwargs_of(case))
        KH, KW = case["kernel_size"]
        overlap = pool.overlap(case)
        compare("dx", dx, F.avg_pool2d_backward(dy, ref_cache), config=case,
                shape_hint="x's shape (N, C, H, W)", symptoms=(
                    looks_like(lambda e: e * (KH * KW),
                               f"dx is KH*KW = {KH * KW} times too large: each of the KH*KW "
                               f"taps of a window receives dy / (KH*KW), as the forward "
                               f"divided by it"),
                    only_where(lambda e: overlap, pool.OVERLAP),
                ))

    count = for_all(overlapping, body)
    return f"{count} configurations with overlapping windows (stride < kernel)"


def check_adjoint(learner):
    def body(case):
        probe = np.zeros(pool.x_shape(case))
        y, cache = _forward(learner, probe, case)
        try:
            assert_adjoint(lambda x: _forward(learner, x, case)[0],
                           lambda dy: learner.avg_pool2d_backward(dy, cache),
                           pool.x_shape(case), np.shape(y), config=case)
        except AssertionError as error:
            raise CheckFailed(str(error), config=case,
                              symptom="average pooling is linear, so its backward is its "
                                      "transpose: a window's dy, divided by what the forward "
                                      "divided by, goes to every tap; shares ADD up") from None

    count = for_all(overlapping, body, examples=15)
    return f"<pool(x), dy> == <x, backward(dy)> on {count} configurations"


def check_numerical(learner):
    notes = []

    def body(case):
        x = inputs_for(case, pool.x_shape(case))[0]
        notes.append(gradient_check(learner, "avg_pool2d_forward", "avg_pool2d_backward",
                                    {"x": x}, ["x"], pool.kwargs_of(case), case))

    for_all(pool.cases(overlapping=True, max_extra=2), body, examples=5)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = {"gpu": 1, "batch": 2, "channels": 3, "size": (5, 6), "kernel_size": (3, 2),
            "stride": (2, 1), "padding": (1, 1)}
    x = inputs_for(case, pool.x_shape(case))[0]
    y, cache = learner.avg_pool2d_forward(xp.asarray(x), **pool.kwargs_of(case))
    dy = xp.asarray(inputs_for("gpu dy", y.shape)[0])
    return dict(y=y, dx=learner.avg_pool2d_backward(dy, cache))


EXERCISE = Exercise(
    number=6,
    name="avg_pool2d",
    title="Average pooling forward and backward",
    summary="the mean of each window (padding counted, as PyTorch); its gradient shared out",
    functions=("avg_pool2d_forward", "avg_pool2d_backward"),
    lesson="03_subsampling",
    reference=lambda: {"avg_pool2d_forward": F.avg_pool2d_forward,
                       "avg_pool2d_backward": F.avg_pool2d_backward},
    checks=[
        Check("forward", "forward: y equals minifcn's average pooling (count_include_pad=True)",
              check_forward),
        Check("backward", "backward: dx equals minifcn's, with overlapping windows",
              check_backward, ("forward",)),
        Check("adjoint", "backward is the transpose of the (linear) forward", check_adjoint,
              ("forward",)),
        Check("numerical", "dx agrees with finite differences of your forward (float64, "
                           "random upstream gradient)", check_numerical, ("forward",)),
        gpu_check(gpu_case, ("forward",), "forward and backward"),
    ],
)
