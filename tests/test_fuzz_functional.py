"""Differential fuzzing of minifcn.functional against torch.nn.functional: every public
forward/backward pair (and the naive loop versions, im2col and col2im) called directly, as a
learner calls them, on the same drawn problems as tests/test_fuzz_layers.py (see
tests/fuzz.py for what a case is and how it is judged).

A pair's forward gives ``(y, cache)`` and its backward the gradients of its array inputs;
PyTorch's function gives y, and autograd the gradients. Both must agree, or both refuse and
minifcn's error names the function. Short in the dev and ci profiles, long in thorough
(``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz_functional.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from fuzz import (
    EXAMPLES,
    FLOAT,
    Case,
    Verdicts,
    attempt,
    attempt_reference,
    chance,
    extent,
    fuzzing,
    image_shape,
    input_settings,
    make_input,
    make_target,
    pair_or_int,
    to_torch,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import minifcn.functional as F

pytestmark = pytest.mark.torch



# --- the pairs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """A minifcn function (or forward/backward pair) and PyTorch's counterpart.

    ``ours(a, kw)`` -> (outputs tuple, cache); ``theirs(tf, t, kw)`` -> outputs tuple, with
    ``tf`` torch.nn.functional and ``t`` the arrays as tensors; ``backward(dy, cache, a, kw)``
    -> [(label, input name, gradient)], compared with autograd's gradient of that input.
    ``prepare(case, a, torch)`` builds arrays that depend on others (a pooling's indices).
    """

    ours: Callable
    theirs: Callable
    backward: Callable | None = None
    prepare: Callable | None = None
    differentiable: tuple[str, ...] = ("x", "weight", "bias", "other")  # for autograd


def grads(*names):
    """A backward that returns the gradients of ``names`` in order (None where an input
    was absent): the convention of every ``*_backward`` here."""
    def pairing(gradients):
        gradients = gradients if isinstance(gradients, tuple) else (gradients,)
        return [(f"d{name}", name, g) for name, g in zip(names, gradients, strict=True)]
    return pairing


def backward_of(function, *names):
    pairing = grads(*names)
    return lambda dy, cache, a, kw: pairing(function(dy, cache))


def conv_grads(dy, cache, a, kw):
    """conv2d_backward's three gradients, and dx again from conv2d_input_grad."""
    found = grads("x", "weight", "bias")(F.conv2d_backward(dy, cache))
    again = F.conv2d_input_grad(dy, a["weight"], a["x"].shape, kw["stride"], kw["padding"],
                                kw["dilation"], kw["groups"])
    return [*found, ("dx from conv2d_input_grad", "x", again)]


def conv(a, kw, naive=False):
    function = F.conv2d_naive if naive else F.conv2d_forward
    y = function(a["x"], a["weight"], a.get("bias"), stride=kw["stride"],
                 padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])
    return ((y,), None) if naive else ((y[0],), y[1])


def conv_transpose(a, kw, naive=False):
    function = F.conv_transpose2d_naive if naive else F.conv_transpose2d_forward
    y = function(a["x"], a["weight"], a.get("bias"), **kw)
    return ((y,), None) if naive else ((y[0],), y[1])


def max_pool(a, kw):
    y, cache = F.max_pool2d_forward(a["x"], **kw)
    return (y, F.max_pool2d_indices(cache)), cache


def naive(function):
    return lambda a, kw: ((function(a["x"], **kw),), None)


def pair_of(function, *names):
    """A forward ``function(*arrays named names, **kw) -> (y, cache)`` as ``ours``."""
    def ours(a, kw):
        y, cache = function(*(a.get(name) for name in names), **kw)
        return (y,), cache
    return ours


def batch_norm(a, kw):
    y, cache = F.batch_norm_forward(a["x"], a.get("weight"), a.get("bias"),
                                    a.get("running_mean"), a.get("running_var"), **kw)
    if kw["training"] and a.get("running_mean") is not None:
        return (y, cache.running_mean, cache.running_var), cache
    return (y,), cache


def their_batch_norm(tf, t, kw):
    running = [t[name].detach().clone() if t.get(name) is not None else None
               for name in ("running_mean", "running_var")]
    y = tf.batch_norm(t["x"], *running, t.get("weight"), t.get("bias"), **kw)
    return (y, *running) if kw["training"] and running[0] is not None else (y,)


def upsample(a, kw):
    size, scales = F.upsample_output_size(a["x"].shape[2:], kw.get("size"),
                                          kw.get("scale_factor"))
    y, cache = F.upsample_forward(a["x"], size, kw["mode"], kw.get("align_corners"), scales)
    return (y,), cache


TORCH_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                   "circular": "circular"}


def their_pad(tf, t, kw):
    top, bottom, left, right = kw["pad"]
    return (tf.pad(t["x"], (left, right, top, bottom), mode=TORCH_PAD_MODES[kw["mode"]]),)


def add(a, kw):
    y, cache = F.add_forward(a["x"], a["other"])
    return (y,), cache


def concat(a, kw):
    y, cache = F.concat_forward([a["x"], a["other"]], **kw)
    return (y,), cache


def their_concat(tf, t, kw):
    import torch

    return (torch.cat([t["x"], t["other"]], **kw),)


def crop_in_torch(tf, t, kw):
    (height, width), (top, left) = kw["size"], kw["offset"]
    return (t["x"].narrow(-2, top, height).narrow(-1, left, width),)


def im2col(a, kw):
    """minifcn's columns (C*KH*KW, N*L) in PyTorch's unfold layout (N, C*KH*KW, L)."""
    x = a["x"]
    cols = F.im2col(x, **kw)
    windows = math.prod(F.conv_output_size(x.shape[2:], kw["kernel_size"], kw["stride"],
                                           kw["padding"], kw["dilation"]))
    return (cols.reshape(cols.shape[0], x.shape[0], windows).transpose(1, 0, 2),), None


def col2im(a, kw):
    cols = a["x"]  # PyTorch's layout (N, C*KH*KW, L) -> minifcn's (C*KH*KW, N*L)
    ours = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(cols.shape[1], -1)
    return (F.col2im(ours, kw["x_shape"], kw["kernel_size"], kw["stride"], kw["padding"],
                     kw["dilation"]),), None


def their_fold(tf, t, kw):
    return (tf.fold(t["x"], kw["x_shape"][2:], kw["kernel_size"], kw["dilation"],
                    kw["padding"], kw["stride"]),)


def unpool_arrays(case, a, torch):
    """The values and indices of a max pooling of the drawn input, with now and then an
    index past the output plane."""
    pool = case.extra["pool"]
    y, indices = torch.nn.functional.max_pool2d(to_torch(torch, a["x"], grad=False), **pool,
                                                return_indices=True)
    indices = indices.numpy().copy()
    if case.extra["bad_index"] and indices.size:
        indices.flat[0] = int(np.prod(case.kwargs["output_size"]))
    return {"x": y.numpy(), "indices": indices}


def positive_variance(case, a, torch):
    if a.get("running_var") is not None:
        a = {**a, "running_var": np.abs(a["running_var"]) + 0.5}
    return a


def target_arrays(case, a, torch):
    return {**a, "target": make_target(case, a["x"])}


PAIRS = {
    "conv2d": Pair(conv, lambda tf, t, kw: (tf.conv2d(t["x"], t["weight"], t.get("bias"),
                                                      **kw),), conv_grads),
    "conv2d_naive": Pair(lambda a, kw: conv(a, kw, naive=True),
                         lambda tf, t, kw: (tf.conv2d(t["x"], t["weight"], t.get("bias"),
                                                      **kw),)),
    "conv_transpose2d": Pair(conv_transpose,
                             lambda tf, t, kw: (tf.conv_transpose2d(
                                 t["x"], t["weight"], t.get("bias"), **kw),),
                             backward_of(F.conv_transpose2d_backward, "x", "weight", "bias")),
    "conv_transpose2d_naive": Pair(lambda a, kw: conv_transpose(a, kw, naive=True),
                                   lambda tf, t, kw: (tf.conv_transpose2d(
                                       t["x"], t["weight"], t.get("bias"), **kw),)),
    "max_pool2d": Pair(max_pool, lambda tf, t, kw: tf.max_pool2d(t["x"], **kw,
                                                                 return_indices=True),
                       backward_of(F.max_pool2d_backward, "x")),
    "max_pool2d_naive": Pair(lambda a, kw: (F.max_pool2d_naive(a["x"], **kw), None),
                             lambda tf, t, kw: tf.max_pool2d(t["x"], **kw,
                                                             return_indices=True)),
    "avg_pool2d": Pair(pair_of(F.avg_pool2d_forward, "x"),
                       lambda tf, t, kw: (tf.avg_pool2d(t["x"], **kw),),
                       backward_of(F.avg_pool2d_backward, "x")),
    "avg_pool2d_naive": Pair(naive(F.avg_pool2d_naive),
                             lambda tf, t, kw: (tf.avg_pool2d(t["x"], **kw),)),
    "adaptive_avg_pool2d": Pair(pair_of(F.adaptive_avg_pool2d_forward, "x"),
                                lambda tf, t, kw: (tf.adaptive_avg_pool2d(t["x"], **kw),),
                                backward_of(F.adaptive_avg_pool2d_backward, "x")),
    "adaptive_avg_pool2d_naive": Pair(naive(F.adaptive_avg_pool2d_naive),
                                      lambda tf, t, kw: (tf.adaptive_avg_pool2d(t["x"],
                                                                                **kw),)),
    "max_unpool2d": Pair(lambda a, kw: (lambda y: ((y[0],), y[1]))(F.max_unpool2d_forward(
                             a["x"], a["indices"], kw["output_size"])),
                         lambda tf, t, kw: (tf.max_unpool2d(t["x"], t["indices"], **kw),),
                         backward_of(F.max_unpool2d_backward, "x"), unpool_arrays),
    "batch_norm": Pair(batch_norm, their_batch_norm,
                       backward_of(F.batch_norm_backward, "x", "weight", "bias"),
                       positive_variance),
    "relu": Pair(pair_of(F.relu_forward, "x"), lambda tf, t, kw: (tf.relu(t["x"]),),
                 backward_of(F.relu_backward, "x")),
    "leaky_relu": Pair(pair_of(F.leaky_relu_forward, "x"),
                       lambda tf, t, kw: (tf.leaky_relu(t["x"], **kw),),
                       backward_of(F.leaky_relu_backward, "x")),
    "dropout": Pair(pair_of(F.dropout_forward, "x"),
                    lambda tf, t, kw: (tf.dropout(t["x"], **kw),),
                    backward_of(F.dropout_backward, "x")),
    "dropout2d": Pair(pair_of(F.dropout2d_forward, "x"),
                      lambda tf, t, kw: (tf.dropout2d(t["x"], **kw),),
                      backward_of(F.dropout_backward, "x")),
    "linear": Pair(pair_of(F.linear_forward, "x", "weight", "bias"),
                   lambda tf, t, kw: (tf.linear(t["x"], t["weight"], t.get("bias")),),
                   backward_of(F.linear_backward, "x", "weight", "bias")),
    "linear_naive": Pair(lambda a, kw: ((F.linear_naive(a["x"], a["weight"], a.get("bias")),),
                                        None),
                         lambda tf, t, kw: (tf.linear(t["x"], t["weight"], t.get("bias")),)),
    "flatten": Pair(pair_of(F.flatten_forward, "x"),
                    lambda tf, t, kw: (t["x"].flatten(**kw),),
                    backward_of(F.flatten_backward, "x")),
    "cross_entropy": Pair(pair_of(F.cross_entropy_forward, "x", "target", "weight"),
                          lambda tf, t, kw: (tf.cross_entropy(t["x"], t["target"],
                                                              t.get("weight"), **kw),),
                          backward_of(F.cross_entropy_backward, "x"), target_arrays, ("x",)),
    "cross_entropy_probs": Pair(pair_of(F.cross_entropy_probs_forward, "x", "target", "weight"),
                                lambda tf, t, kw: (tf.cross_entropy(t["x"], t["target"],
                                                                    t.get("weight"), **kw),),
                                backward_of(F.cross_entropy_probs_backward, "x"),
                                target_arrays, ("x",)),
    "log_softmax": Pair(lambda a, kw: ((F.log_softmax(a["x"], **kw),), None),
                        lambda tf, t, kw: (tf.log_softmax(t["x"], **kw),)),
    "softmax": Pair(lambda a, kw: ((F.softmax(a["x"], **kw),), None),
                    lambda tf, t, kw: (tf.softmax(t["x"], **kw),)),
    "upsample": Pair(upsample, lambda tf, t, kw: (tf.interpolate(t["x"], **kw),),
                     backward_of(F.upsample_backward, "x")),
    "pad2d": Pair(pair_of(F.pad2d_forward, "x"), their_pad, backward_of(F.pad2d_backward, "x")),
    "add": Pair(add, lambda tf, t, kw: (t["x"] + t["other"],),
                backward_of(F.add_backward, "x", "other")),
    "concat": Pair(concat, their_concat, backward_of(F.concat_backward, "x", "other")),
    "crop": Pair(pair_of(F.crop_forward, "x"), crop_in_torch, backward_of(F.crop_backward, "x")),
    "im2col": Pair(im2col, lambda tf, t, kw: (tf.unfold(t["x"], kw["kernel_size"],
                                                        kw["dilation"], kw["padding"],
                                                        kw["stride"]),)),
    "col2im": Pair(col2im, their_fold),
}


# --- drawing ---------------------------------------------------------------------------------

def parameter_dtype(draw, dtype: str) -> str:
    """A weight's dtype: the input's (float32 for a non-float input), now and then the other
    float (PyTorch refuses the mix)."""
    own = dtype if dtype in FLOAT else "float32"
    if chance(draw, 0.05):
        return "float64" if own == "float32" else "float32"
    return own


def pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def call(entry: str, kwargs: dict, shape: tuple, settings_: dict, arrays=None, **extra):
    return Case(entry, (), kwargs, shape, **settings_, extra={"arrays": arrays or {}, **extra})


@st.composite
def conv_calls(draw, transposed: bool, naive: bool = False):
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    kwargs = dict(stride=pair_or_int(draw, 1, 3, wrong_low=0),
                  padding=pair_or_int(draw, 0, 2, wrong_low=-1),
                  dilation=1 if draw(st.booleans()) else pair_or_int(draw, 1, 2, wrong_low=0),
                  groups=draw(st.sampled_from([0, 3])) if chance(draw, 0.03) else groups)
    if transposed:
        largest = min(max(pair(kwargs["stride"])[k], pair(kwargs["dilation"])[k])
                      for k in (0, 1))
        kwargs["output_padding"] = pair_or_int(draw, 0, max(largest - 1, 0),
                                               wrong_low=largest)
        weight = (c_in, c_out // groups, *kernel)
    else:
        weight = (c_out, c_in // groups, *kernel)
    if chance(draw, 0.04):
        weight = weight[:3]
    settings_ = input_settings(draw)
    dtype = parameter_dtype(draw, settings_["dtype"])
    bias = None if draw(st.booleans()) else (c_out + chance(draw, 0.03),)
    entry = ("conv_transpose2d" if transposed else "conv2d") + ("_naive" if naive else "")
    return call(entry, kwargs, image_shape(draw, c_in, max_side=7), settings_,
                {"weight": (weight, dtype), "bias": bias and (bias, dtype)})


@st.composite
def pool_calls(draw, kind: str, naive: bool = False):
    kernel = pair_or_int(draw, 1, 4, wrong_low=0)
    half = min(pair(kernel)) // 2
    kwargs = dict(kernel_size=kernel,
                  stride=None if draw(st.booleans()) else pair_or_int(draw, 1, 3, wrong_low=0),
                  padding=half + 1 if chance(draw, 0.04) else pair_or_int(draw, 0, half,
                                                                          wrong_low=-1),
                  ceil_mode=draw(st.booleans()))
    if kind == "max_pool2d":
        kwargs["dilation"] = pair_or_int(draw, 1, 2, wrong_low=0)
    else:
        kwargs.update(count_include_pad=draw(st.booleans()),
                      divisor_override=0 if chance(draw, 0.03) else draw(
                          st.sampled_from([None, None, 1, 3])))
    return call(kind + ("_naive" if naive else ""), kwargs,
                image_shape(draw, draw(st.integers(1, 3)), max_side=7), input_settings(draw))


@st.composite
def adaptive_calls(draw, naive: bool = False):
    side = st.one_of(st.none(), st.integers(1, 5))
    size = extent(draw, 5) if draw(st.booleans()) else draw(st.tuples(side, side))
    return call("adaptive_avg_pool2d" + ("_naive" if naive else ""), dict(output_size=size),
                image_shape(draw, draw(st.integers(1, 3)), max_side=7), input_settings(draw))


@st.composite
def unpool_calls(draw):
    kernel = draw(st.integers(1, 3))
    pool = dict(kernel_size=kernel, stride=draw(st.integers(1, 3)),
                padding=draw(st.integers(0, kernel // 2)))
    settings_ = input_settings(draw)
    settings_["dtype"] = settings_["dtype"] if settings_["dtype"] in FLOAT else "float64"
    shape = (draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(kernel, 7)),
             draw(st.integers(kernel, 7)))
    # The pooled input's size, or another one PyTorch's geometry allows (less than a stride
    # from it: minifcn's function takes the output size alone, without the pooling's
    # arguments; MaxUnpool2d checks that rule, and tests/test_fuzz_layers.py fuzzes it).
    output_size = shape[2:]
    if chance(draw, 0.1):
        k, s, p = pool["kernel_size"], pool["stride"], pool["padding"]
        natural = [((n + 2 * p - k) // s) * s - 2 * p + k for n in shape[2:]]
        output_size = tuple(n + draw(st.integers(1 - s, s - 1)) for n in natural)
    return call("max_unpool2d", dict(**pool, output_size=output_size), shape, settings_,
                pool=pool, bad_index=chance(draw, 0.05))


@st.composite
def batch_norm_calls(draw):
    channels = draw(st.integers(1, 3))
    settings_ = input_settings(draw)
    dtype = parameter_dtype(draw, settings_["dtype"])
    affine, tracked = draw(st.booleans()), draw(st.booleans())
    side = (channels + chance(draw, 0.03),)
    arrays = {"weight": affine and (side, dtype), "bias": affine and (side, dtype),
              "running_mean": tracked and (side, dtype), "running_var": tracked and (side, dtype)}
    kwargs = dict(training=settings_["training"],
                  momentum=draw(st.sampled_from([0.1, 0.0, 1.0, 0.5])),
                  eps=0.0 if chance(draw, 0.05) else draw(st.sampled_from([1e-5, 1e-3, 0.5])))
    return call("batch_norm", kwargs, image_shape(draw, channels, max_side=4, unbatched=False),
                settings_, arrays)


def any_shape(draw, min_rank=0, max_rank=4, high=5) -> tuple:
    return tuple(extent(draw, high) for _ in range(draw(st.integers(min_rank, max_rank))))


@st.composite
def activation_calls(draw):
    name = draw(st.sampled_from(["relu", "leaky_relu"]))
    kwargs = ({"negative_slope": draw(st.sampled_from([0.01, 0.2, 0.0, -0.5, 3.0]))}
              if name == "leaky_relu" else {})
    return call(name, kwargs, any_shape(draw), input_settings(draw))


@st.composite
def dropout_calls(draw):
    name = draw(st.sampled_from(["dropout", "dropout2d"]))
    settings_ = input_settings(draw)
    # Masks are random and differ between the libraries: in training only p = 0 and p = 1
    # give one answer; in evaluation any p is the identity.
    p = (draw(st.sampled_from([0.0, 1.0])) if settings_["training"]
         else draw(st.sampled_from([0.0, 0.5, 1.0])))
    if chance(draw, 0.05):
        p = draw(st.sampled_from([-0.1, 1.5]))
    shape = image_shape(draw, draw(st.integers(1, 3)), max_side=4, unbatched=False)
    return call(name, dict(p=p, training=settings_["training"]), shape, settings_)


@st.composite
def linear_calls(draw, naive: bool = False):
    n_in, n_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    settings_ = input_settings(draw)
    dtype = parameter_dtype(draw, settings_["dtype"])
    last = draw(st.integers(0, 6)) if chance(draw, 0.05) else n_in
    bias = None if draw(st.booleans()) else ((n_out + chance(draw, 0.03),), dtype)
    return call("linear_naive" if naive else "linear", {}, (*any_shape(draw, 0, 3, 3), last),
                settings_, {"weight": ((n_out, n_in), dtype), "bias": bias})


@st.composite
def flatten_calls(draw):
    shape = any_shape(draw, 1, 4, 4)
    rank = len(shape)
    start, end = sorted(draw(st.integers(0, rank - 1)) for _ in range(2))
    if chance(draw, 0.1):
        start, end = draw(st.integers(-5, 4)), draw(st.integers(-5, 4))
    elif draw(st.booleans()):
        start, end = start - rank, end - rank
    return call("flatten", dict(start_dim=start, end_dim=end), shape, input_settings(draw))


@st.composite
def loss_calls(draw):
    classes = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(extent(draw, 3), classes),
                                  (extent(draw, 2), classes, extent(draw, 4), extent(draw, 4))]))
    if chance(draw, 0.05):
        shape = (classes,)  # one sample: the functions want (N, C, ...), the loss takes it
    probabilities = chance(draw, 0.3)
    kwargs = dict(reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                  label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])))
    if not probabilities and draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([255, -100, 0]))
    settings_ = input_settings(draw)
    weight = None if draw(st.booleans()) else (
        (classes + chance(draw, 0.03),), parameter_dtype(draw, settings_["dtype"]))
    return call("cross_entropy_probs" if probabilities else "cross_entropy", kwargs, shape,
                settings_, {"weight": weight}, probabilities=probabilities,
                out_of_range=chance(draw, 0.1))


@st.composite
def softmax_calls(draw):
    shape = any_shape(draw, 1, 4)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    if chance(draw, 0.05):
        dim = len(shape)
    return call(draw(st.sampled_from(["softmax", "log_softmax"])), dict(dim=dim), shape,
                input_settings(draw))


@st.composite
def upsample_calls(draw):
    kwargs = dict(mode=draw(st.sampled_from(["nearest", "bilinear"])))
    if draw(st.booleans()):
        kwargs["size"] = (extent(draw, 9), extent(draw, 9))
    else:
        kwargs["scale_factor"] = draw(st.one_of(
            st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5]),
            st.tuples(st.sampled_from([1.0, 2.0, 1.5]), st.sampled_from([2.0, 3.0, 0.5]))))
    if kwargs["mode"] == "bilinear" or chance(draw, 0.05):
        kwargs["align_corners"] = draw(st.sampled_from([None, True, False]))
    return call("upsample", kwargs, image_shape(draw, draw(st.integers(1, 3)), max_side=6,
                                                unbatched=False), input_settings(draw))


@st.composite
def pad_calls(draw):
    mode = draw(st.sampled_from(list(TORCH_PAD_MODES)))
    pad = tuple(-1 if chance(draw, 0.02) else draw(st.integers(0, 3)) for _ in range(4))
    shape = (*any_shape(draw, 1, 2, 3), extent(draw, 6), extent(draw, 6))
    return call("pad2d", dict(pad=pad, mode=mode), shape, input_settings(draw))


@st.composite
def join_calls(draw):
    """add (two arrays of one shape) and concat (along ``dim``)."""
    shape = any_shape(draw, 1, 4, 4)
    settings_ = input_settings(draw)
    other = list(shape)
    if draw(st.booleans()):
        dim = draw(st.integers(-len(shape), len(shape) - 1))
        other[dim] = draw(st.integers(0, 3))
        kwargs, entry = dict(dim=dim), "concat"
    else:
        kwargs, entry = {}, "add"
    if chance(draw, 0.05):
        other = [*other, 2] if draw(st.booleans()) else other[:-1]
    return call(entry, kwargs, shape, settings_,
                {"other": (tuple(other), parameter_dtype(draw, settings_["dtype"]))})


@st.composite
def crop_calls(draw):
    shape = (*any_shape(draw, 1, 2, 3), extent(draw, 6), extent(draw, 6))
    size = tuple(draw(st.integers(0, side)) for side in shape[-2:])
    offset = tuple(draw(st.integers(0, side - out)) for side, out in zip(shape[-2:], size,
                                                                          strict=True))
    if chance(draw, 0.08):
        offset = (offset[0] + draw(st.integers(1, 2)), offset[1] - draw(st.integers(0, 1)))
    return call("crop", dict(size=size, offset=offset), shape, input_settings(draw))


def window_kwargs(draw) -> dict:
    """Pairs for im2col and col2im: kernel, stride, padding, dilation."""
    def two(low, high):
        return (draw(st.integers(low, high)), draw(st.integers(low, high)))
    return dict(kernel_size=two(1, 3), stride=two(1, 3), padding=two(0, 2), dilation=two(1, 2))


@st.composite
def im2col_calls(draw):
    settings_ = input_settings(draw)
    shape = image_shape(draw, draw(st.integers(1, 3)), max_side=6, unbatched=False)
    return call("im2col", window_kwargs(draw), shape, settings_)


@st.composite
def col2im_calls(draw):
    kwargs = window_kwargs(draw)
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)),
               draw(st.integers(1, 6)))
    # the windows that fit (none where the dilated kernel outgrows the padded image)
    windows = [max((n + 2 * p - d * (k - 1) - 1) // s + 1, 0) for n, k, s, p, d in zip(
        x_shape[2:], *(kwargs[key] for key in ("kernel_size", "stride", "padding",
                                                "dilation")), strict=True)]
    rows = x_shape[1] * kwargs["kernel_size"][0] * kwargs["kernel_size"][1]
    columns = windows[0] * windows[1] + (1 if chance(draw, 0.05) else 0)
    settings_ = input_settings(draw)
    return call("col2im", dict(kwargs, x_shape=x_shape), (x_shape[0], rows, columns),
                settings_)


# --- running a case --------------------------------------------------------------------------

VERDICTS = Verdicts()  # what this file's fuzzing saw (printed by the last test)


def names_for(entry: str) -> tuple[str, ...]:
    """The names a refusal may give: the public functions of the entry's family."""
    root = entry.removesuffix("_naive").removesuffix("_probs").removesuffix("2d")
    return (entry, *(name for name in F.__all__ if name.startswith(root)))


def run_pair(case: Case, torch) -> None:
    pair_ = PAIRS[case.entry]
    names = names_for(case.entry)
    quiet = case.values != "normal"
    a = {"x": make_input(case)}
    for k, (name, spec) in enumerate(case.extra["arrays"].items(), start=1):
        if spec:
            shape, dtype = spec
            a[name] = make_input(case, shape, dtype, np.random.default_rng(case.seed + k),
                                 values="normal")
    if pair_.prepare:
        a = pair_.prepare(case, a, torch)
    before = {name: np.array(value, copy=True) for name, value in a.items()}
    t = {name: to_torch(torch, value, grad=name in pair_.differentiable)
         for name, value in a.items()}
    theirs = attempt_reference(lambda: pair_.theirs(torch.nn.functional, t, case.kwargs))
    ours = attempt(lambda: pair_.ours(a, case.kwargs), quiet)
    if not VERDICTS.judge(case, "forward", theirs, ours, names):
        return
    their_outputs, (our_outputs, cache) = theirs[1], ours[1]
    if len(our_outputs) != len(their_outputs):
        VERDICTS.fail(case, f"forward: {len(our_outputs)} outputs, PyTorch "
                            f"{len(their_outputs)}")
    nan_window = case.entry.startswith("max_pool2d") and case.values == "nan"
    for k, (got, expected) in enumerate(zip(our_outputs, their_outputs, strict=True)):
        if not (k == 1 and nan_window):  # see test_fuzz_layers.nan_in_a_max_pooling_window
            VERDICTS.check(case, "forward", f"output {k}", got, expected.detach().numpy(),
                           case.dtype)
    y = their_outputs[0]
    if pair_.backward and y.requires_grad and y.numel():
        dy = np.random.default_rng(case.seed + 1).standard_normal(tuple(y.shape)).astype(
            case.dtype)
        theirs = attempt_reference(lambda: y.backward(torch.tensor(dy)))
        ours = attempt(lambda: pair_.backward(dy, cache, a, case.kwargs), quiet)
        if not VERDICTS.judge(case, "backward", theirs, ours, names):
            return
        for label, name, gradient in ours[1]:
            tensor = t.get(name)
            if tensor is None or tensor.grad is None or nan_window:
                continue
            if gradient is None:
                VERDICTS.fail(case, f"backward: no {label}, PyTorch has one")
            VERDICTS.check(case, "backward", label, gradient, tensor.grad.numpy(), case.dtype)
    for name, value in a.items():
        if not np.array_equal(value, before[name], equal_nan=True):
            VERDICTS.fail(case, f"minifcn wrote into its argument {name}")
    VERDICTS.count(case, "agreed")


# --- the tests -------------------------------------------------------------------------------

@fuzzing
@given(case=st.one_of(conv_calls(False), conv_calls(True)))
def test_fuzz_convolution_pairs(torch, case):
    run_pair(case, torch)


@fuzzing
@given(case=st.one_of(pool_calls("max_pool2d"), pool_calls("avg_pool2d"), adaptive_calls(),
                      unpool_calls()))
def test_fuzz_pooling_pairs(torch, case):
    run_pair(case, torch)


@fuzzing
@given(case=st.one_of(batch_norm_calls(), activation_calls(), dropout_calls()))
def test_fuzz_normalization_activation_and_dropout_pairs(torch, case):
    run_pair(case, torch)


@fuzzing
@given(case=st.one_of(linear_calls(), flatten_calls(), join_calls(), crop_calls(),
                      pad_calls()))
def test_fuzz_linear_shape_and_padding_pairs(torch, case):
    run_pair(case, torch)


@fuzzing
@given(case=st.one_of(loss_calls(), softmax_calls(), upsample_calls()))
def test_fuzz_loss_softmax_and_upsampling_pairs(torch, case):
    run_pair(case, torch)


@settings(fuzzing, max_examples=max(EXAMPLES // 4, 20))  # Python loops: slow by design
@given(case=st.one_of(conv_calls(False, naive=True), conv_calls(True, naive=True),
                      pool_calls("max_pool2d", naive=True), pool_calls("avg_pool2d", naive=True),
                      adaptive_calls(naive=True), linear_calls(naive=True), im2col_calls(),
                      col2im_calls()))
def test_fuzz_naive_versions_and_im2col(torch, case):
    run_pair(case, torch)


def test_most_cases_get_as_far_as_comparing_numbers(capsys):
    VERDICTS.report("functional fuzz", capsys)
