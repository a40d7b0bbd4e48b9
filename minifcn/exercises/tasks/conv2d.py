"""Exercise: Conv2d forward as one matrix product, and its backward (dx, dweight, dbias)."""

from __future__ import annotations

import time

from ... import functional as F
from ...backend import np
from ..common import (
    compare_bias_grad,
    conv_cases,
    conv_problem,
    coverage,
    gpu_check,
    gradient_check,
    inputs_for,
    is_tuple_of,
)
from ..framework import Check, Exercise, compare, for_all, looks_like, only_where

SHAPE = "(N, F, OH, OW) with OH = (H + 2*PH - DH*(KH - 1) - 1) // SH + 1, and so for OW"

cases = conv_cases(max_extra=4)
small_cases = conv_cases(max_extra=2)


def _reference(x, weight, bias, kwargs):
    y, cache = F.conv2d_forward(x, weight, bias, **kwargs)
    return y, cache


def _forward(learner, case):
    x, weight, bias, kwargs = conv_problem(case)
    out = is_tuple_of(learner.conv2d_forward(x, weight, bias, **kwargs), 2,
                      "conv2d_forward")
    expected, _ = _reference(x, weight, bias, kwargs)
    flipped, _ = _reference(x, weight[..., ::-1, ::-1].copy(), bias, kwargs)
    no_bias, _ = _reference(x, weight, None, kwargs)
    compare("y", out[0], expected, shape_hint=SHAPE, config=case, symptoms=(
        looks_like(lambda e: flipped,
                   "y is what a FLIPPED kernel gives: PyTorch's Conv2d (and minifcn's) is a "
                   "cross-correlation, weight[f, c, i, j] meets x[..., oh*SH + i*DH, "
                   "ow*SW + j*DW]; do not flip the kernel"),
        looks_like(lambda e: no_bias, "y is right except for the bias: add bias[f] to every "
                                      "pixel of output channel f"),
    ))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case))
    return f"{count} configurations: kernel 1-5, stride 1-3, padding 0-2, dilation 1-2"


def _backward(learner, case, which: str):
    x, weight, bias, kwargs = conv_problem(case)
    y, cache = is_tuple_of(learner.conv2d_forward(x, weight, bias, **kwargs), 2,
                           "conv2d_forward")
    dy = inputs_for((case, "dy"), y.shape)[0]
    grads = is_tuple_of(learner.conv2d_backward(dy, cache), 3, "conv2d_backward")
    _, ref_cache = _reference(x, weight, bias, kwargs)
    dx, dweight, dbias = F.conv2d_backward(dy, ref_cache)
    if which == "dx":
        overlap = coverage(case["size"], case["kernel_size"], case["stride"], case["padding"],
                           case["dilation"]) > 1
        compare("dx", grads[0], dx, config=case, shape_hint="x's shape (N, C, H, W)",
                symptoms=(only_where(
                    lambda e: overlap,
                    "dx is wrong only at pixels that several windows read: their "
                    "contributions must be ADDED (col2im uses +=, not =)"),))
    elif which == "dweight":
        compare("dweight", grads[1], dweight, config=case,
                shape_hint="weight's shape (F, C, KH, KW)", symptoms=(
                    looks_like(lambda e: e[..., ::-1, ::-1],
                               "dweight has its kernel flipped: dW[f, c, i, j] pairs dy[n, "
                               "f, oh, ow] with x[n, c, oh*SH + i*DH, ow*SW + j*DW]"),
                    looks_like(lambda e: e.transpose(1, 0, 2, 3),
                               "dweight has its channel axes swapped (transposed): dW_mat = "
                               "dy_mat @ cols.T is (F, C*KH*KW); reshape it to (F, C, KH, "
                               "KW)"),
                ))
    else:
        compare_bias_grad("conv2d_backward", grads[2], dbias, bias is not None,
                          "(F,): dy summed over N, OH and OW", case)


def check_backward(which: str):
    def run(learner):
        for_all(cases, lambda case: _backward(learner, case, which))
    return run


def check_numerical(learner):
    notes = []

    def body(case):
        x, weight, bias, kwargs = conv_problem(case)
        inputs = dict(x=x, weight=weight, bias=bias)
        wrt = ["x", "weight"] + (["bias"] if bias is not None else [])
        notes.append(gradient_check(learner, "conv2d_forward", "conv2d_backward", inputs,
                                    wrt, kwargs, case, eps=1e-3))

    for_all(small_cases.filter(lambda c: c["bias"]), body, examples=5)
    return notes[-1] if notes else None


def check_speed(learner):
    """Not a pass/fail: how much one GEMM saves over loops, measured on this machine."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 32, 32))
    weight = rng.standard_normal((16, 8, 3, 3))

    def best_of(fn, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    yours = best_of(lambda: learner.conv2d_forward(x, weight, None, padding=1), 5)
    loops = best_of(lambda: F.conv2d_naive(x, weight, None, padding=1), 1)
    return (f"on x (4, 8, 32, 32), weight (16, 8, 3, 3): your conv2d_forward "
            f"{yours * 1e3:.1f} ms; a loop over pixels (minifcn's conv2d_naive) "
            f"{loops * 1e3:.1f} ms: {loops / yours:.0f}x faster")


def gpu_case(learner, xp):
    x, weight, bias, kwargs = conv_problem(dict(
        batch=2, in_channels=3, out_channels=2, size=(5, 6), kernel_size=(3, 2),
        stride=(2, 1), padding=(1, 1), dilation=(1, 1), bias=True))
    x, weight, bias = xp.asarray(x), xp.asarray(weight), xp.asarray(bias)
    y, cache = learner.conv2d_forward(x, weight, bias, **kwargs)
    dy = xp.asarray(inputs_for("gpu dy", y.shape)[0])
    dx, dweight, dbias = learner.conv2d_backward(dy, cache)
    return dict(y=y, dx=dx, dweight=dweight, dbias=dbias)


EXERCISE = Exercise(
    number=4,
    name="conv2d",
    title="Conv2d forward as one matrix product, and its backward",
    summary="im2col + one GEMM forward; dx (col2im), dweight, dbias",
    functions=("conv2d_forward", "conv2d_backward"),
    lesson="02_backward",
    reference=lambda: {"conv2d_forward": F.conv2d_forward,
                       "conv2d_backward": F.conv2d_backward},
    checks=[
        Check("forward", "forward: y equals minifcn's convolution, shape as the formula",
              check_forward),
        Check("dx", "backward: dx equals minifcn's", check_backward("dx"), ("forward",)),
        Check("dweight", "backward: dweight equals minifcn's", check_backward("dweight"),
              ("forward",)),
        Check("dbias", "backward: dbias equals minifcn's (None without a bias)",
              check_backward("dbias"), ("forward",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward",)),
        gpu_check(gpu_case, ("forward",), "forward and backward"),
        Check("speed", "speed: your one-GEMM forward beside a loop over pixels", check_speed,
              ("forward",)),
    ],
)
