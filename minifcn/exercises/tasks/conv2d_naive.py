"""Exercise 2: Conv2d forward from its definition, with loops."""

from __future__ import annotations

from ... import functional as F
from ...testing.assertions import CONV_OUTPUT_FORMULA
from ..common import conv_cases, conv_problem, gpu_check
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like

SHAPE = f"{CONV_OUTPUT_FORMULA}; y is (N, F, OH, OW)"

cases = conv_cases(max_extra=3)


def _output_size(case):
    return F.conv_output_size(case["size"], case["kernel_size"], case["stride"],
                              case["padding"], case["dilation"])


def check_shape(learner):
    def body(case):
        x, weight, bias, kwargs = conv_problem(case)
        y = learner.conv2d_naive(x, weight, bias, **kwargs)
        expected = (case["batch"], case["out_channels"], *_output_size(case))
        got = tuple(getattr(y, "shape", ()))
        if got == expected:
            return
        symptom = f"the shape follows {SHAPE}"
        if len(got) == 4 and got[:2] == expected[:2]:
            short = [e - g for g, e in zip(got[2:], expected[2:], strict=True)]
            if set(short) <= {0, 1} and any(short):
                symptom = ("one row or column short: the count of windows is the number of "
                           "strides that fit, PLUS ONE for the first window: "
                           + CONV_OUTPUT_FORMULA)
            elif set(short) <= {0, -1} and any(short):
                symptom = ("one row or column too many: the last window must end inside the "
                           "padded input; the dilated kernel spans DH*(KH - 1) + 1 pixels: "
                           + CONV_OUTPUT_FORMULA)
        raise CheckFailed(f"y has shape {got}; expected {expected}", symptom=symptom,
                          config=case)

    count = for_all(cases, body)
    return f"{count} configurations"


def _forward(learner, case):
    x, weight, bias, kwargs = conv_problem(case)
    y = learner.conv2d_naive(x, weight, bias, **kwargs)
    expected, _ = F.conv2d_forward(x, weight, bias, **kwargs)
    flipped, _ = F.conv2d_forward(x, weight[..., ::-1, ::-1].copy(), bias, **kwargs)
    no_bias, _ = F.conv2d_forward(x, weight, None, **kwargs)
    compare("y", y, expected, shape_hint=SHAPE, config=case, symptoms=(
        looks_like(lambda e: flipped,
                   "y is what a FLIPPED kernel gives: PyTorch's Conv2d (and minifcn's) is a "
                   "cross-correlation, weight[f, c, i, j] meets x_padded[n, c, oh*SH + i*DH, "
                   "ow*SW + j*DW]; do not flip the kernel"),
        looks_like(lambda e: no_bias, "y is right except for the bias: add bias[f] to every "
                                      "pixel of output channel f"),
    ))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case))
    return (f"{count} configurations: kernel 1-5, stride 1-3, padding 0-2, dilation 1-2, "
            f"non-square, batch 1-3, channels 1-4")


def gpu_case(learner, xp):
    x, weight, bias, kwargs = conv_problem({
        "gpu": 1, "batch": 2, "in_channels": 3, "out_channels": 2, "size": (5, 6),
        "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1), "dilation": (1, 2),
        "bias": True})
    y = learner.conv2d_naive(xp.asarray(x), xp.asarray(weight), xp.asarray(bias), **kwargs)
    return dict(y=y)


EXERCISE = Exercise(
    number=2,
    name="conv2d_naive",
    title="Conv2d forward from its definition, with loops",
    summary="the convolution as PyTorch defines it: stride, padding, dilation, bias",
    functions=("conv2d_naive",),
    lesson="01_convolution",
    reference=lambda: {"conv2d_naive": F.conv2d_naive},
    checks=[
        Check("shape", "shape: y is (N, F, OH, OW) with OH, OW from the formula", check_shape),
        Check("forward", "forward: y equals minifcn's convolution", check_forward, ("shape",)),
        gpu_check(gpu_case, ("forward",), "the forward"),
    ],
)
