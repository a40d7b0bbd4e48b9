"""Exercise 9: the transposed convolution, forward and backward."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from ... import functional as F
from ...backend import np
from ...testing.assertions import assert_adjoint
from ...testing.strategies import conv_configs
from ..common import arg, compare_bias_grad, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like

SHAPE = ("OH = (H - 1)*SH - 2*PH + KH + output_padding_h (and the same for OW); "
         "y is (N, C_out, OH, OW)")
GEOMETRY = ("kernel_size", "stride", "padding", "output_padding")


def _output_size(case):
    return tuple((n - 1) * s - 2 * p + k + op for n, k, s, p, op in
                 zip(*[case[key] for key in ("size", *GEOMETRY)], strict=True))


def _case(config, bias):
    """A drawn transposed-convolution problem without dilation (not this exercise's)."""
    config = dataclasses.replace(config, dilation=(1, 1))
    return {"batch": config.batch, "in_channels": config.in_channels,
            "out_channels": config.out_channels, "size": config.size,
            **{key: getattr(config, key) for key in GEOMETRY}, "bias": bias}


def _strategy(max_extra):
    return st.tuples(conv_configs(transposed=True, max_extra=max_extra), st.booleans()).map(
        lambda t: _case(*t)).filter(lambda c: min(_output_size(c)) >= 1)


cases = _strategy(3)
small_cases = _strategy(1)


def _problem(case):
    """x (N, C_in, H, W), weight (C_in, C_out, KH, KW), bias (C_out,) or None, kwargs."""
    x, weight, bias = inputs_for(
        case, (case["batch"], case["in_channels"], *case["size"]),
        (case["in_channels"], case["out_channels"], *case["kernel_size"]),
        (case["out_channels"],))
    kwargs = {key: arg(case[key]) for key in GEOMETRY[1:]}
    return x, weight, bias if case["bias"] else None, kwargs


def _forward(learner, x, weight, bias, kwargs):
    return is_tuple_of(learner.conv_transpose2d_forward(x, weight, bias, **kwargs), 2,
                       "conv_transpose2d_forward")


def check_forward(learner):
    def body(case):
        x, weight, bias, kwargs = _problem(case)
        y, _ = _forward(learner, x, weight, bias, kwargs)
        expected = F.conv_transpose2d_naive(x, weight, bias, **kwargs)
        unflipped = F.conv_transpose2d_naive(x, weight[..., ::-1, ::-1].copy(), bias, **kwargs)
        no_bias = F.conv_transpose2d_naive(x, weight, None, **kwargs)
        compare("y", y, expected, shape_hint=SHAPE, config=case, symptoms=(
            looks_like(lambda e: unflipped,
                       "y is what zero insertion + a convolution with the kernel NOT flipped "
                       "gives: the convolution after zero insertion uses weight[:, :, ::-1, "
                       "::-1] (each input pixel stamps the kernel as it is onto the output)"),
            looks_like(lambda e: no_bias, "y is right except for the bias: add bias[c] to "
                                          "every pixel of output channel c"),
        ))

    count = for_all(cases, body)
    return (f"{count} configurations: kernel 1-5, stride 1-3, padding 0-2, output_padding "
            f"< stride, non-square, batch 1-3, C_in and C_out 1-4")


def check_adjoint(learner):
    def body(case):
        _, weight, _, kwargs = _problem(case)
        x_shape = (case["batch"], case["in_channels"], *case["size"])
        y_shape = (case["batch"], case["out_channels"], *_output_size(case))
        conv = {key: kwargs[key] for key in ("stride", "padding")}
        try:
            # weight (C_in, C_out, KH, KW) is the weight of a convolution C_out -> C_in
            assert_adjoint(lambda z: F.conv2d_forward(z, weight, None, **conv)[0],
                           lambda x: _forward(learner, x, weight, None, kwargs)[0],
                           y_shape, x_shape, config=case)
        except AssertionError as error:
            raise CheckFailed(str(error), config=case,
                              symptom="the transposed convolution is the transpose of "
                                      "conv2d(z, weight, stride, padding), whose weight "
                                      "(C_in, C_out, KH, KW) maps C_out channels to C_in: "
                                      "every input pixel spreads weight * x[n, c, h, w] over "
                                      "the output window at (h*SH - PH, w*SW - PW)") from None

    count = for_all(cases, body, examples=15)
    return f"<conv2d(z), x> == <z, conv_transpose2d(x)> on {count} configurations"


def _backward(learner, case, which):
    x, weight, bias, kwargs = _problem(case)
    y, cache = _forward(learner, x, weight, bias, kwargs)
    dy = inputs_for((case, "dy"), np.shape(y))[0]
    grads = is_tuple_of(learner.conv_transpose2d_backward(dy, cache), 3,
                        "conv_transpose2d_backward")
    _, ref_cache = F.conv_transpose2d_forward(x, weight, bias, **kwargs)
    dx, dweight, dbias = F.conv_transpose2d_backward(dy, ref_cache)
    if which == "dx":
        compare("dx", grads[0], dx, config=case, shape_hint="x's shape (N, C_in, H, W)",
                symptoms=(looks_like(
                    lambda e: F.conv2d_forward(dy, weight[..., ::-1, ::-1].copy(), None,
                                               stride=kwargs["stride"],
                                               padding=kwargs["padding"])[0],
                    "dx is what the kernel FLIPPED gives: dx is conv2d(dy, weight) with the "
                    "weight as it is (the backward of a transposed convolution is a plain "
                    "convolution)"),))
    elif which == "dweight":
        compare("dweight", grads[1], dweight, config=case,
                shape_hint="weight's shape (C_in, C_out, KH, KW)", symptoms=(
                    looks_like(lambda e: e[..., ::-1, ::-1],
                               "dweight has its kernel flipped: dweight[c, d, i, j] pairs "
                               "x[n, c, h, w] with dy[n, d, h*SH - PH + i, w*SW - PW + j]"),
                    looks_like(lambda e: e.transpose(1, 0, 2, 3),
                               "dweight has its channel axes swapped: it is (C_in, C_out, KH, "
                               "KW), like the weight"),
                ))
    else:
        compare_bias_grad("conv_transpose2d_backward", grads[2], dbias, bias is not None,
                          "(C_out,): dy summed over N, OH and OW", case)


def check_backward(which: str):
    def run(learner):
        for_all(cases, lambda case: _backward(learner, case, which))
    return run


def check_numerical(learner):
    notes = []

    def body(case):
        x, weight, bias, kwargs = _problem(case)
        notes.append(gradient_check(learner, "conv_transpose2d_forward",
                                    "conv_transpose2d_backward",
                                    dict(x=x, weight=weight, bias=bias),
                                    ["x", "weight", "bias"], kwargs, case, eps=1e-3))

    for_all(small_cases.filter(lambda c: c["bias"]), body, examples=5)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    x, weight, bias, kwargs = _problem({
        "gpu": 1, "batch": 2, "in_channels": 3, "out_channels": 2, "size": (3, 4),
        "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0),
        "bias": True})
    y, cache = learner.conv_transpose2d_forward(xp.asarray(x), xp.asarray(weight),
                                                xp.asarray(bias), **kwargs)
    dy = xp.asarray(inputs_for("gpu dy", y.shape)[0])
    dx, dweight, dbias = learner.conv_transpose2d_backward(dy, cache)
    return dict(y=y, dx=dx, dweight=dweight, dbias=dbias)


EXERCISE = Exercise(
    number=9,
    name="conv_transpose2d",
    title="Transposed convolution forward and backward",
    summary="learnable up-sampling: zero insertion + convolution, the adjoint of conv2d",
    functions=("conv_transpose2d_forward", "conv_transpose2d_backward"),
    lesson="06_upsampling",
    reference=lambda: {"conv_transpose2d_forward": F.conv_transpose2d_forward,
                       "conv_transpose2d_backward": F.conv_transpose2d_backward},
    checks=[
        Check("forward", "forward: y equals zero insertion + a stride-1 convolution with the "
                         "flipped kernel (minifcn's conv_transpose2d_naive)", check_forward),
        Check("adjoint", "forward is the adjoint (transpose) of conv2d with the same weight",
              check_adjoint, ("forward",)),
        Check("dx", "backward: dx equals minifcn's", check_backward("dx"), ("forward",)),
        Check("dweight", "backward: dweight equals minifcn's", check_backward("dweight"),
              ("forward",)),
        Check("dbias", "backward: dbias equals minifcn's (None without a bias)",
              check_backward("dbias"), ("forward",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward",)),
        gpu_check(gpu_case, ("forward",), "forward and backward"),
    ],
)
