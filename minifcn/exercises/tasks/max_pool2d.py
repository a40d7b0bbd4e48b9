"""Exercise 5: max pooling forward and backward, with overlapping windows and ties."""

from __future__ import annotations

from ... import functional as F
from ...backend import np
from ..common import gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like, only_where
from . import _pool as pool

cases = pool.cases()
overlapping = pool.cases(overlapping=True)


def _tied(case):
    """x whose entries are -1, 0 or 1: most windows hold a tie for their maximum."""
    return np.clip(np.round(inputs_for((case, "tied"), pool.x_shape(case))[0]), -1.0, 1.0)


def _reference(x, case):
    return F.max_pool2d_forward(x, **pool.kwargs_of(case))


def _tie_rules(x, dy, case):
    """dx if each window's gradient went to EVERY maximum, and to the LAST maximum (NumPy,
    one window at a time; padding never wins)."""
    (KH, KW), (SH, SW), (PH, PW) = case["kernel_size"], pool.stride_of(case), case["padding"]
    N, C, H, W = x.shape
    padded = np.full((N, C, H + 2 * PH, W + 2 * PW), -np.inf)
    padded[:, :, PH:PH + H, PW:PW + W] = x
    every, last = np.zeros_like(padded), np.zeros_like(padded)
    OH, OW = pool.output_size(case)
    for oh in range(OH):
        for ow in range(OW):
            rows, cols = slice(oh * SH, oh * SH + KH), slice(ow * SW, ow * SW + KW)
            window = padded[:, :, rows, cols]
            top = window == window.max(axis=(2, 3), keepdims=True)
            every[:, :, rows, cols] += top * dy[:, :, oh, ow, None, None]
            flat = top.reshape(N, C, -1)
            k = flat.shape[2] - 1 - flat[:, :, ::-1].argmax(axis=2)  # the last maximum
            one = np.zeros_like(flat, dtype=np.float64)
            np.put_along_axis(one, k[..., None], 1.0, axis=2)
            last[:, :, rows, cols] += one.reshape(window.shape) * dy[:, :, oh, ow, None, None]
    crop = (slice(None), slice(None), slice(PH, PH + H), slice(PW, PW + W))
    return every[crop], last[crop]


def check_forward(learner):
    def body(case):
        x = inputs_for(case, pool.x_shape(case), distinct=True)[0]
        y, _ = is_tuple_of(learner.max_pool2d_forward(x, **pool.kwargs_of(case)), 2,
                           "max_pool2d_forward")
        expected, _ = _reference(x, case)
        (PH, PW) = case["padding"]
        zero_padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
        with_zeros, _ = F.max_pool2d_forward(zero_padded, pool.kwargs_of(case)["kernel_size"],
                                             pool.kwargs_of(case)["stride"], 0)
        compare("y", y, expected, config=case, shape_hint=pool.SHAPE, symptoms=(
            looks_like(lambda e: with_zeros,
                       "y is what padding with ZEROS gives: a window at the border of "
                       "negative values then returns 0. Pad with -inf (padding never wins "
                       "a maximum)"),
        ))

    count = for_all(cases, body)
    return (f"{count} configurations: kernel 1-5, stride 1-3 or None (= kernel), padding up "
            f"to half the kernel, non-square, batch 1-3, channels 1-4, distinct values")


def check_backward(learner):
    def body(case):
        x = inputs_for(case, pool.x_shape(case), distinct=True)[0]
        y, cache = is_tuple_of(learner.max_pool2d_forward(x, **pool.kwargs_of(case)), 2,
                               "max_pool2d_forward")
        dy = inputs_for((case, "dy"), np.shape(y))[0]
        dx = learner.max_pool2d_backward(dy, cache)
        _, ref_cache = _reference(x, case)
        overlap = pool.overlap(case)
        compare("dx", dx, F.max_pool2d_backward(dy, ref_cache), config=case,
                shape_hint="x's shape (N, C, H, W)",
                symptoms=(only_where(lambda e: overlap, pool.OVERLAP),))

    count = for_all(overlapping, body)
    return f"{count} configurations with overlapping windows (stride < kernel), distinct values"


def check_ties(learner):
    def body(case):
        x = _tied(case)
        y, cache = is_tuple_of(learner.max_pool2d_forward(x, **pool.kwargs_of(case)), 2,
                               "max_pool2d_forward")
        expected, ref_cache = _reference(x, case)
        compare("y", y, expected, config=case, shape_hint=pool.SHAPE)
        dy = inputs_for((case, "dy"), expected.shape)[0]
        dx = learner.max_pool2d_backward(dy, cache)
        every, last = _tie_rules(x, dy, case)
        overlap = pool.overlap(case)
        try:
            compare("dx", dx, F.max_pool2d_backward(dy, ref_cache), config=case,
                    shape_hint="x's shape (N, C, H, W)", symptoms=(
                        looks_like(lambda e: every,
                                   "with a tie, dx sends the window's gradient to EVERY "
                                   "maximum; it goes to ONE: the first maximum in row-major "
                                   "order, as in PyTorch (compare with a strict >, keep the "
                                   "first)"),
                        looks_like(lambda e: last,
                                   "with a tie, dx sends the window's gradient to the LAST "
                                   "maximum; PyTorch picks the FIRST in row-major order (a "
                                   "strict > when scanning, or argmax, which returns the "
                                   "first)"),
                        only_where(lambda e: overlap, pool.OVERLAP),
                    ))
        except CheckFailed as failure:
            if x.size <= 24:  # small enough to read, and the ties are the point
                failure.message += f"\n  x (with ties) = {x.tolist()}"
            raise

    count = for_all(cases.filter(lambda c: c["kernel_size"] != (1, 1)), body)
    return f"{count} configurations whose inputs are -1, 0 or 1 (ties in most windows)"


def check_numerical(learner):
    notes = []

    def body(case):
        x = inputs_for(case, pool.x_shape(case), distinct=True)[0]
        notes.append(gradient_check(learner, "max_pool2d_forward", "max_pool2d_backward",
                                    {"x": x}, ["x"], pool.kwargs_of(case), case))

    for_all(pool.cases(overlapping=True, max_extra=2), body, examples=5)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = {"gpu": 1, "batch": 2, "channels": 3, "size": (5, 6), "kernel_size": (3, 2),
            "stride": (2, 1), "padding": (1, 1)}
    x = inputs_for(case, pool.x_shape(case), distinct=True)[0]
    y, cache = learner.max_pool2d_forward(xp.asarray(x), **pool.kwargs_of(case))
    dy = xp.asarray(inputs_for("gpu dy", y.shape)[0])
    return dict(y=y, dx=learner.max_pool2d_backward(dy, cache))


EXERCISE = Exercise(
    number=5,
    name="max_pool2d",
    title="Max pooling forward and backward",
    summary="the maximum of each window; its gradient goes to the first maximum",
    functions=("max_pool2d_forward", "max_pool2d_backward"),
    lesson="03_subsampling",
    reference=lambda: {"max_pool2d_forward": F.max_pool2d_forward,
                       "max_pool2d_backward": F.max_pool2d_backward},
    checks=[
        Check("forward", "forward: y equals minifcn's max pooling, shape as the formula",
              check_forward),
        Check("backward", "backward: dx equals minifcn's, with overlapping windows",
              check_backward, ("forward",)),
        Check("ties", "ties: each window's gradient goes to its FIRST maximum (as PyTorch)",
              check_ties, ("forward",)),
        Check("numerical", "dx agrees with finite differences of your forward (float64, "
                           "random upstream gradient)", check_numerical, ("forward",)),
        gpu_check(gpu_case, ("forward",), "forward and backward"),
    ],
)

