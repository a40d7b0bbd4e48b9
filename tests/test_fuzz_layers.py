"""Differential fuzzing against PyTorch 2.13: every public layer and the loss, on
constructor arguments from PyTorch's whole range and just outside it, and on inputs of
every awkward kind (see tests/fuzz.py for what a case is and how it is judged).

Short in the dev and ci profiles (80 cases per test), long in the thorough one (1,200 per
test): ``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz_layers.py``. A
failure prints hypothesis's smallest falsifying case and a one-line reproduction."""

from __future__ import annotations

import numpy as np
import pytest
from fuzz import (
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
    lay_out,
    load_parameters,
    make_input,
    make_target,
    pair_or_int,
    to_torch,
)
from hypothesis import given
from hypothesis import strategies as st

from minifcn import nn

pytestmark = pytest.mark.torch


# --- drawing ---------------------------------------------------------------------------------

def pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value, value)


@st.composite
def conv_cases(draw, transposed: bool):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_in = draw(st.integers(0, 3)) if chance(draw, 0.05) else groups * draw(st.integers(1, 2))
    c_out = draw(st.integers(0, 3)) if chance(draw, 0.05) else groups * draw(
        st.integers(1, 2))
    kwargs = dict(stride=pair_or_int(draw, 1, 4, wrong_low=0),
                  dilation=1 if draw(st.booleans()) else pair_or_int(draw, 1, 3, wrong_low=0),
                  groups=groups, bias=draw(st.booleans()))
    if transposed:
        kwargs["padding"] = pair_or_int(draw, 0, 3, wrong_low=-1)
        # PyTorch takes an output padding below the stride or the dilation (per axis)
        largest = min(max(pair(kwargs["stride"])[k], pair(kwargs["dilation"])[k]) for k in (0, 1))
        kwargs["output_padding"] = pair_or_int(draw, 0, max(largest - 1, 0),
                                               wrong_low=largest)
    else:
        kwargs["padding"] = (draw(st.sampled_from(["same", "valid"]))
                             if chance(draw, 0.15)
                             else pair_or_int(draw, 0, 3, wrong_low=-1))
        kwargs["padding_mode"] = draw(st.sampled_from(["zeros", "zeros", "zeros", "reflect",
                                                       "replicate", "circular"]))
    kernel = pair_or_int(draw, 1, 5, wrong_low=0)
    return Case("ConvTranspose2d" if transposed else "Conv2d", (c_in, c_out, kernel), kwargs,
                image_shape(draw, c_in), **input_settings(draw))


@st.composite
def pool_cases(draw, kind: str):
    kernel = pair_or_int(draw, 1, 4, wrong_low=0)
    stride = None if draw(st.booleans()) else pair_or_int(draw, 1, 4, wrong_low=0)
    # PyTorch takes a padding of at most half the kernel (per axis): now and then one more
    half = min(pair(kernel)) // 2
    padding = pair_or_int(draw, 0, half, wrong_low=-1)
    kwargs = dict(stride=stride, padding=half + 1 if chance(draw, 0.05) else padding)
    if kind == "MaxPool2d":
        kwargs.update(dilation=pair_or_int(draw, 1, 2, wrong_low=0),
                      return_indices=draw(st.booleans()), ceil_mode=draw(st.booleans()))
    else:
        kwargs.update(ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                      divisor_override=0 if chance(draw, 0.03) else draw(
                          st.sampled_from([None, None, 1, 3])))
    return Case(kind, (kernel,), kwargs, image_shape(draw, draw(st.integers(1, 3))),
                **input_settings(draw))


@st.composite
def unpool_cases(draw):
    """MaxUnpool2d on a max pooling's values and indices, to the pooled input's size or
    another one (``output_size``), now and then with an index past the output plane."""
    kernel = draw(st.integers(1, 3))
    kwargs = dict(stride=None if draw(st.booleans()) else draw(st.integers(1, 3)),
                  padding=draw(st.integers(0, kernel // 2)))
    settings_ = input_settings(draw)
    settings_["dtype"] = settings_["dtype"] if settings_["dtype"] in FLOAT else "float64"
    shape = (extent(draw, 2), draw(st.integers(1, 3)), draw(st.integers(kernel, 7)),
             draw(st.integers(kernel, 7)))
    if chance(draw, 0.15):
        shape = shape[1:]
    output_size = None
    if chance(draw, 0.2):  # larger is fine; smaller may not hold every index
        output_size = tuple(side + draw(st.integers(-2, 2)) for side in shape[-2:])
    return Case("MaxUnpool2d", (kernel,), kwargs, shape, **settings_,
                extra={"output_size": output_size, "bad_index": chance(draw, 0.05)})


@st.composite
def adaptive_cases(draw):
    side = st.one_of(st.none(), st.integers(1, 5))
    size = extent(draw, 5) if draw(st.booleans()) else draw(st.tuples(side, side))
    return Case("AdaptiveAvgPool2d", (size,), {}, image_shape(draw, draw(st.integers(1, 3))),
                **input_settings(draw))


@st.composite
def batch_norm_cases(draw):
    features = 0 if chance(draw, 0.05) else draw(st.integers(1, 4))
    kwargs = dict(eps=0.0 if chance(draw, 0.05) else draw(st.sampled_from([1e-5, 1e-3, 0.5])),
                  momentum=draw(st.sampled_from([0.1, 0.0, 1.0, 0.5, None])),
                  affine=draw(st.booleans()), track_running_stats=draw(st.booleans()))
    return Case("BatchNorm2d", (features,), kwargs,
                image_shape(draw, features, max_side=5, unbatched=False),
                **input_settings(draw))


@st.composite
def activation_cases(draw):
    name = draw(st.sampled_from(["ReLU", "LeakyReLU", "Identity"]))
    args = (draw(st.sampled_from([0.01, 0.2, 0.0, -0.5, 3.0])),) if name == "LeakyReLU" else ()
    shape = tuple(extent(draw, 5) for _ in range(draw(st.integers(0, 4))))
    return Case(name, args, {}, shape, **input_settings(draw))


@st.composite
def dropout_cases(draw):
    name = draw(st.sampled_from(["Dropout", "Dropout2d"]))
    settings_ = input_settings(draw)
    # In training masks are random and differ between the libraries: only p = 0 and p = 1
    # give one answer there; in evaluation any p is the identity.
    p = (draw(st.sampled_from([0.0, 1.0])) if settings_["training"]
         else draw(st.sampled_from([0.0, 0.5, 1.0])))
    if chance(draw, 0.05):
        p = draw(st.sampled_from([-0.1, 1.5]))
    shape = image_shape(draw, draw(st.integers(1, 3)), max_side=4)
    return Case(name, (p,), {}, shape, **settings_)


@st.composite
def linear_cases(draw):
    n_in = 0 if chance(draw, 0.05) else draw(st.integers(1, 5))
    n_out = draw(st.integers(1, 5))
    lead = tuple(extent(draw, 3) for _ in range(draw(st.integers(0, 3))))
    last = draw(st.integers(0, 6)) if chance(draw, 0.05) else n_in
    return Case("Linear", (n_in, n_out), dict(bias=draw(st.booleans())), (*lead, last),
                **input_settings(draw))


@st.composite
def flatten_cases(draw):
    shape = tuple(extent(draw, 4) for _ in range(draw(st.integers(1, 4))))
    rank = max(len(shape), 1)  # PyTorch takes dims -rank..rank-1, start not after end
    start, end = sorted(draw(st.integers(-rank, rank - 1)) % rank for _ in range(2))
    if chance(draw, 0.1):
        start, end = draw(st.integers(-5, 4)), draw(st.integers(-5, 4))
    elif draw(st.booleans()):
        start, end = start - rank, end - rank
    return Case("Flatten", (start, end), {}, shape, **input_settings(draw))


@st.composite
def upsample_cases(draw):
    name = draw(st.sampled_from(["Upsample", "Upsample", "UpsamplingBilinear2d",
                                 "UpsamplingNearest2d"]))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["size"] = extent(draw, 9) if draw(st.booleans()) else (
            draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    else:
        kwargs["scale_factor"] = 0 if chance(draw, 0.03) else draw(st.one_of(
            st.sampled_from([1, 2, 3, 0.5, 1.5, 2.0]),
            st.tuples(st.sampled_from([1, 2, 1.5]), st.sampled_from([2, 3, 0.5]))))
    if name == "Upsample":
        kwargs["mode"] = draw(st.sampled_from(["nearest", "bilinear"]))
        if kwargs["mode"] == "bilinear" or chance(draw, 0.05):
            kwargs["align_corners"] = draw(st.sampled_from([None, True, False]))
    return Case(name, (), kwargs, image_shape(draw, draw(st.integers(1, 3)), max_side=6),
                **input_settings(draw))


@st.composite
def loss_cases(draw):
    classes = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(extent(draw, 3), classes),
                                  (extent(draw, 2), classes, extent(draw, 4), extent(draw, 4)),
                                  (classes,)]))
    kwargs = dict(reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                  label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])))
    probabilities = chance(draw, 0.25)
    if not probabilities and draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([255, -100, 0]))
    if draw(st.booleans()):
        kwargs["weight"] = np.random.default_rng(draw(st.integers(0, 99))).uniform(
            0.1, 2.0, classes + (1 if chance(draw, 0.05) else 0))
    return Case("CrossEntropyLoss", (), kwargs, shape, **input_settings(draw),
                extra={"probabilities": probabilities,
                       "out_of_range": chance(draw, 0.1)})


# --- running a case --------------------------------------------------------------------------

VERDICTS = Verdicts()  # what this file's fuzzing saw (printed by the last test)


def build(library, case: Case, torch):
    """The case's layer in ``library`` (torch.nn or minifcn.nn), in its mode and dtype."""
    kwargs = dict(case.kwargs)
    if library is not nn and isinstance(kwargs.get("weight"), np.ndarray):
        kwargs["weight"] = torch.tensor(kwargs["weight"])
    layer = getattr(library, case.entry)(*case.args, **kwargs)
    dtype = case.dtype if case.dtype in FLOAT else "float32"
    if library is nn:
        layer.to(dtype=dtype)
    else:
        layer.to(getattr(torch, dtype))
    return layer.train(case.training)


def run_layer(case: Case, torch, names) -> None:
    theirs = attempt_reference(lambda: build(torch.nn, case, torch))
    ours = attempt(lambda: build(nn, case, torch))
    x = make_input(case)
    tx = to_torch(torch, x, grad=True)
    if ours[0] == "error" and theirs[0] == "ok":
        # PyTorch checks some arguments only when the layer runs (a kernel of 0, an output
        # padding too large): minifcn refusing at construction agrees if PyTorch refuses
        # there.
        theirs = attempt_reference(lambda: their_forward_and_backward(theirs[1], tx))
    if not VERDICTS.judge(case, "construction", theirs, ours, names):
        return
    their_layer, our_layer = theirs[1], ours[1]
    load_parameters(our_layer, their_layer)
    before = np.array(x, copy=True)
    forward = (attempt_reference(lambda: their_layer(tx)),
               attempt(lambda: our_layer(x), quiet=case.values != "normal"))
    if not VERDICTS.judge(case, "forward", *forward, names):
        return
    (_, ty), (_, y) = forward
    ty_list = ty if isinstance(ty, tuple) else (ty,)
    y_list = y if isinstance(y, tuple) else (y,)
    if len(ty_list) != len(y_list):
        VERDICTS.fail(case, f"forward: {len(y_list)} outputs, PyTorch {len(ty_list)}")
    for k, (got, expected) in enumerate(zip(y_list, ty_list, strict=True)):
        if k == 1 and nan_in_a_max_pooling_window(case):
            continue  # the recorded positions
        VERDICTS.check(case, "forward", f"output {k}", got, expected.detach().numpy(),
                       case.dtype)
    our_buffers = dict(our_layer.named_buffers())
    for name, buffer in their_layer.named_buffers():  # running statistics after training
        VERDICTS.check(case, "forward", f"buffer {name}", our_buffers[name], buffer.numpy(),
                       case.dtype)
    if ty_list[0].requires_grad and ty_list[0].numel():
        if not backward(case, their_layer, our_layer, tx, ty_list[0], names):
            return
    if not np.array_equal(np.asarray(x), before, equal_nan=True):
        VERDICTS.fail(case, "minifcn wrote into its input")
    VERDICTS.count(case, "agreed")


def nan_in_a_max_pooling_window(case: Case) -> bool:
    """Where a max-pooling window holds a NaN, both libraries output NaN, but the position
    each records as its maximum (the index returned, where the gradient goes) differs:
    PyTorch's is the window's last NaN, minifcn's its first maximum before the first NaN,
    a documented choice (minifcn/functional/pool.py: matching would cost a third more).
    The fuzzer compares the output there, not the positions or dx."""
    return case.entry == "MaxPool2d" and case.values == "nan"


def their_forward_and_backward(layer, tx):
    y = layer(tx)
    y = y[0] if isinstance(y, tuple) else y
    if y.requires_grad:
        y.sum().backward()
    return layer


def backward(case: Case, their_layer, our_layer, tx, ty, names) -> bool:
    """dx and every parameter's gradient for a random dy; False when both refused."""
    import torch

    dy = np.random.default_rng(case.seed + 1).standard_normal(tuple(ty.shape)).astype(
        case.dtype)
    theirs = attempt_reference(lambda: ty.backward(torch.tensor(dy)))
    ours = attempt(lambda: our_layer.backward(dy), quiet=case.values != "normal")
    if not VERDICTS.judge(case, "backward", theirs, ours, names):
        return False
    if nan_in_a_max_pooling_window(case):
        return True
    if tx.grad is not None:
        VERDICTS.check(case, "backward", "dx", ours[1], tx.grad.numpy(), case.dtype)
    our_parameters = dict(our_layer.named_parameters())
    for name, parameter in their_layer.named_parameters():
        if parameter.grad is not None:
            VERDICTS.check(case, "backward", f"{name}.grad", our_parameters[name].grad,
                           parameter.grad.numpy(), case.dtype)
    return True


def run_unpool(case: Case, torch) -> None:
    """MaxUnpool2d: PyTorch's max pooling of the drawn input gives both layers their values
    and indices; forward (with ``output_size``) and dx."""
    names = ("MaxUnpool2d",)
    theirs = attempt_reference(lambda: build(torch.nn, case, torch))
    ours = attempt(lambda: build(nn, case, torch))
    if not VERDICTS.judge(case, "construction", theirs, ours, names):
        return
    their_layer, our_layer = theirs[1], ours[1]
    stride = case.kwargs["stride"] or case.args[0]
    values, indices = torch.nn.functional.max_pool2d(
        to_torch(torch, make_input(case), grad=False), case.args[0], stride, case.kwargs["padding"],
        return_indices=True)
    indices = indices.numpy().copy()
    output_size = case.extra["output_size"]
    if case.extra["bad_index"] and indices.size:
        indices.flat[0] = int(np.prod(output_size or case.shape[-2:]))
    x = lay_out(values.numpy(), case.layout)
    before = np.array(x, copy=True)
    tx = to_torch(torch, x, grad=True)
    forward = (attempt_reference(lambda: their_layer(tx, torch.tensor(indices), output_size)),
               attempt(lambda: our_layer(x, indices, output_size), quiet=case.values != "normal"))
    if not VERDICTS.judge(case, "forward", *forward, names):
        return
    (_, ty), (_, y) = forward
    VERDICTS.check(case, "forward", "output", y, ty.detach().numpy(), case.dtype)
    if ty.numel() and not backward(case, their_layer, our_layer, tx, ty, names):
        return
    if not np.array_equal(x, before, equal_nan=True):
        VERDICTS.fail(case, "minifcn wrote into its input")
    VERDICTS.count(case, "agreed")


def run_loss(case: Case, torch) -> None:
    """CrossEntropyLoss: logits and a target (class indices, some ignored or out of range,
    or class probabilities), forward and dlogits."""
    names = ("CrossEntropyLoss",)
    theirs = attempt_reference(lambda: build(torch.nn, case, torch))
    ours = attempt(lambda: build(nn, case, torch))
    if not VERDICTS.judge(case, "construction", theirs, ours, names):
        return
    their_loss, our_loss = theirs[1], ours[1]
    logits = make_input(case)
    target = make_target(case, logits)
    tx = to_torch(torch, logits, grad=True)
    forward = (attempt_reference(lambda: their_loss(tx, torch.tensor(target))),
               attempt(lambda: our_loss(logits, target), quiet=case.values != "normal"))
    if not VERDICTS.judge(case, "forward", *forward, names):
        return
    (_, t_loss), (_, loss) = forward
    VERDICTS.check(case, "forward", "loss", loss, t_loss.detach().numpy(), case.dtype)
    if t_loss.requires_grad:
        dloss = np.random.default_rng(case.seed + 3).standard_normal(
            tuple(t_loss.shape)).astype(case.dtype)
        backward_ = (attempt_reference(lambda: t_loss.backward(torch.tensor(dloss))),
                     attempt(lambda: our_loss.backward(dloss if dloss.ndim else float(dloss)),
                             quiet=case.values != "normal"))
        if not VERDICTS.judge(case, "backward", *backward_, names):
            return
        VERDICTS.check(case, "backward", "dlogits", backward_[1][1], tx.grad.numpy(),
                       case.dtype)
    VERDICTS.count(case, "agreed")


# --- the tests -------------------------------------------------------------------------------

@fuzzing
@given(case=st.one_of(conv_cases(False), conv_cases(True)))
def test_fuzz_convolutions(torch, case):
    run_layer(case, torch, (case.entry,))


@fuzzing
@given(case=st.one_of(pool_cases("MaxPool2d"), pool_cases("AvgPool2d"), adaptive_cases()))
def test_fuzz_pooling(torch, case):
    run_layer(case, torch, (case.entry,))


@fuzzing
@given(case=unpool_cases())
def test_fuzz_max_unpooling(torch, case):
    run_unpool(case, torch)


@fuzzing
@given(case=batch_norm_cases())
def test_fuzz_batch_norm(torch, case):
    run_layer(case, torch, ("BatchNorm2d",))


@fuzzing
@given(case=st.one_of(activation_cases(), dropout_cases()))
def test_fuzz_activations_and_dropout(torch, case):
    run_layer(case, torch, (case.entry,))


@fuzzing
@given(case=st.one_of(linear_cases(), flatten_cases()))
def test_fuzz_linear_and_flatten(torch, case):
    run_layer(case, torch, (case.entry,))


@fuzzing
@given(case=upsample_cases())
def test_fuzz_upsampling(torch, case):
    run_layer(case, torch, (case.entry, "Upsample"))


@fuzzing
@given(case=loss_cases())
def test_fuzz_cross_entropy(torch, case):
    run_loss(case, torch)


def test_most_cases_get_as_far_as_comparing_numbers(capsys):
    VERDICTS.report("layer fuzz", capsys)
