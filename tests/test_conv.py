"""Conv2d, ConvTranspose2d and their functional core (im2col, col2im, the GEMM forms, the
naive references): output sizes, agreement with the textbook definitions, the adjoint
identities, gradients, the chunked path, PyTorch parity, bad inputs, backends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minifcn import backend
from minifcn.functional import conv as F
from minifcn.functional.im2col import (
    CPU_IM2COL_BUDGET,
    GPU_IM2COL_BUDGET,
    band_input_rows,
    batch_chunks,
    col2im,
    conv_chunks,
    conv_output_size,
    conv_transpose_output_size,
    default_im2col_budget,
    im2col,
    im2col_budget,
)
from minifcn.functional.pad import pad2d_backward, pad2d_forward
from minifcn.gradcheck import gradcheck_module
from minifcn.nn import Conv2d, ConvTranspose2d
from minifcn.testing import assert_gradients_accumulate, strict_cupy
from minifcn.testing.strategies import (
    PADDING_MODES,
    ConvConfig,
    conv_configs,
    grouped_conv_configs,
    padding_mode_configs,
    seeds,
    transposed_configs,
)

# The finite-difference step of the gradient checks. Convolutions are linear in x and in the
# weight, so central differences have no truncation error whatever the step; only rounding
# (about |L| * 1e-16 / eps) remains. With gradcheck's default 1e-6 that reached 1.3e-6
# relative error on small weight-gradient entries of a 4->3 channel 3x5 dilated kernel;
# 1e-3 leaves ~1e-9.
GRADCHECK_EPS = 1e-3


def problem(config: ConvConfig, transposed: bool, seed: int, dtype="float64"):
    """Host arrays x, weight, bias for ``config`` (weight in PyTorch's layout)."""
    rng = np.random.default_rng(seed)
    C, Fo, G = config.in_channels, config.out_channels, config.groups
    channels = (C, Fo // G) if transposed else (Fo, C // G)
    x = rng.standard_normal(config.input_shape).astype(dtype)
    weight = rng.standard_normal((*channels, *config.kernel_size)).astype(dtype)
    bias = rng.standard_normal(Fo).astype(dtype)
    return x, weight, bias


def make_layer(config: ConvConfig, transposed: bool, weight, bias, device="cpu",
               dtype="float64", **kwargs):
    """The layer for ``config`` on ``device``, holding ``weight`` and ``bias`` (or no bias)."""
    common = dict(stride=config.stride, padding=config.padding, dilation=config.dilation,
                  groups=config.groups, bias=bias is not None, device=device, dtype=dtype,
                  **kwargs)
    if transposed:
        layer = ConvTranspose2d(config.in_channels, config.out_channels, config.kernel_size,
                                output_padding=config.output_padding, **common)
    else:
        layer = Conv2d(config.in_channels, config.out_channels, config.kernel_size, **common)
    layer.load_state_dict({"weight": weight} if bias is None else
                          {"weight": weight, "bias": bias})
    return layer


def step(bk, layer, x, dy):
    """Forward and backward on ``bk``: y, dx, weight.grad, bias.grad as NumPy arrays."""
    layer.zero_grad()
    y = layer(bk.asarray(x))
    dx = layer.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx) and y.dtype == dx.dtype == x.dtype
    grads = [None if p is None else bk.numpy(p.grad).copy() for p in (layer.weight, layer.bias)]
    return bk.numpy(y), bk.numpy(dx), *grads


def assert_close(actual, expected, tol):
    """Equal to ``tol`` relative to the size of ``expected`` (entries near zero included)."""
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def geometry(config: ConvConfig):
    return config.kernel_size, config.stride, config.padding, config.dilation


def conv_out(config: ConvConfig):
    """The output (OH, OW), written out from PyTorch's documentation."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                 zip(config.size, *geometry(config), strict=True))


# --- output sizes --------------------------------------------------------------------------

@given(config=conv_configs(), seed=seeds)
def test_conv2d_output_shape_follows_the_formula(config, seed):
    x, weight, bias = problem(config, False, seed)
    assert conv_output_size(config.size, *geometry(config)) == conv_out(config)
    y = make_layer(config, False, weight, bias)(x)
    assert y.shape == (config.batch, config.out_channels, *conv_out(config))


@given(config=transposed_configs(), seed=seeds)
def test_conv_transpose2d_output_shape_follows_the_formula(config, seed):
    x, weight, bias = problem(config, True, seed)
    expected = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op in
                     zip(config.size, *geometry(config), config.output_padding, strict=True))
    kernel, stride, padding, dilation = geometry(config)
    assert conv_transpose_output_size(config.size, kernel, stride, padding,
                                      config.output_padding, dilation) == expected
    y = make_layer(config, True, weight, bias)(x)
    assert y.shape == (config.batch, config.out_channels, *expected)


def test_output_size_helpers_refuse_empty_outputs():
    with pytest.raises(ValueError, match=r"spans \(5, 9\) pixels, more than the padded input"):
        conv_output_size((4, 8), (5, 5), (1, 1), (0, 0), (1, 2))
    with pytest.raises(ValueError, match=r"the output would be \(1, -1\) pixels"):
        conv_transpose_output_size((1, 1), (1, 1), (1, 1), (0, 1), (0, 0), (1, 1))


# --- agreement with the textbook definitions -----------------------------------------------

@given(config=conv_configs(), seed=seeds)
def test_im2col_columns_are_the_windows(config, seed):
    """cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]."""
    x, _, _ = problem(config, False, seed)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = geometry(config)
    OH, OW = conv_out(config)
    cols = im2col(x, *geometry(config))
    N, C = config.batch, config.in_channels
    assert cols.shape == (C * KH * KW, N * OH * OW)
    padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n, c, i, j, oh, ow = (int(rng.integers(m)) for m in (N, C, KH, KW, OH, OW))
        row, column = (c * KH + i) * KW + j, (n * OH + oh) * OW + ow
        assert cols[row, column] == padded[n, c, oh * SH + i * DH, ow * SW + j * DW]


@given(config=conv_configs(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(config, seed):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    x, _, _ = problem(config, False, seed)
    cols = im2col(x, *geometry(config))
    c = np.random.default_rng(seed + 1).standard_normal(cols.shape)
    back = col2im(c, x.shape, *geometry(config))
    assert back.shape == x.shape
    assert_close(np.vdot(cols, c), np.vdot(x, back), 1e-12)


@pytest.mark.parametrize("kernel,stride,size", [(7, 1, 8), (5, 2, 7), (16, 8, 24), (64, 32, 64)])
def test_a_kernel_larger_than_its_grid_loops_over_the_grid(kernel, stride, size, rng):
    """im2col/col2im loop over output pixels when there are fewer of them than kernel
    offsets (FCN's x32 layer: a 64x64 kernel, a 2x2 grid): the same columns, the same
    adjoint, the same transposed convolution as the zero-insertion reference."""
    padding = kernel // 4
    conv_geometry = ((kernel, kernel), (stride, stride), (padding, padding), (1, 1))
    x = rng.standard_normal((2, 3, size, size))
    OH, OW = conv_output_size((size, size), *conv_geometry)
    assert kernel * kernel > OH * OW  # the case under test
    cols = im2col(x, *conv_geometry)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(2, 3))
    expected = windows[:, :, ::stride, ::stride][:, :, :OH, :OW]  # (N, C, OH, OW, KH, KW)
    assert_close(cols, expected.transpose(1, 4, 5, 0, 2, 3).reshape(cols.shape), 0.0)
    c = rng.standard_normal(cols.shape)
    assert_close(np.vdot(cols, c), np.vdot(x, col2im(c, x.shape, *conv_geometry)), 1e-12)
    grid = rng.standard_normal((1, 2, OH, OW))
    weight = rng.standard_normal((2, 1, kernel, kernel))
    y, _ = F.conv_transpose2d_forward(grid, weight, None, stride, padding, 0, 1)
    if kernel <= 16:  # the zero-insertion reference loops over pixels: 64x64 takes minutes
        assert_close(y, F.conv_transpose2d_naive(grid, weight, None, stride, padding, 0, 1),
                     1e-10)
    image = rng.standard_normal(y.shape)  # <conv_transpose(grid), image> = <grid, conv(image)>
    conv_y, _ = F.conv2d_forward(image, weight, None, stride, padding, 1)
    assert_close(np.vdot(y, image), np.vdot(grid, conv_y), 1e-12)


@given(config=conv_configs(), seed=seeds, bias=st.booleans())
def test_conv2d_matches_the_naive_loops(config, seed, bias):
    x, weight, b = problem(config, False, seed)
    b = b if bias else None
    stride, padding, dilation = config.stride, config.padding, config.dilation
    y, _ = F.conv2d_forward(x, weight, b, stride, padding, dilation)
    assert_close(y, F.conv2d_naive(x, weight, b, stride, padding, dilation), 1e-10)


@given(config=transposed_configs(), seed=seeds, bias=st.booleans())
def test_conv_transpose2d_is_zero_insertion_then_convolution(config, seed, bias):
    x, weight, b = problem(config, True, seed)
    b = b if bias else None
    args = config.stride, config.padding, config.output_padding, config.dilation
    y, _ = F.conv_transpose2d_forward(x, weight, b, *args)
    assert_close(y, F.conv_transpose2d_naive(x, weight, b, *args), 1e-10)


@given(config=conv_configs(), seed=seeds)
def test_conv_and_transposed_conv_are_adjoint(config, seed):
    """<conv(x), z> == <x, conv_transpose(z)> with one weight, read as (F, C, KH, KW) by the
    convolution and as (C_in, C_out, KH, KW) = (F, C, KH, KW) by the transposed one."""
    x, weight, _ = problem(config, False, seed)
    y, _ = F.conv2d_forward(x, weight, None, config.stride, config.padding, config.dilation)
    z = np.random.default_rng(seed + 1).standard_normal(y.shape)
    # The output_padding (< stride) that brings the transposed output back to x's size.
    smallest = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, k, s, p, d in
                zip(y.shape[2:], *geometry(config), strict=True)]
    output_padding = tuple(n - m for n, m in zip(config.size, smallest, strict=True))
    back, _ = F.conv_transpose2d_forward(z, weight, None, config.stride, config.padding,
                                         output_padding, config.dilation)
    assert back.shape == x.shape
    assert_close(np.vdot(y, z), np.vdot(x, back), 1e-12)


# --- gradients -----------------------------------------------------------------------------

@given(config=conv_configs(max_extra=3), seed=seeds, bias=st.booleans())
def test_conv2d_gradients_match_finite_differences(bk, config, seed, bias):
    x, weight, b = problem(config, False, seed)
    layer = make_layer(config, False, weight, b if bias else None, bk.device)
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS, seed=seed % 1000)
    assert report.max_error < 1e-6, report


@given(config=transposed_configs(max_extra=3), seed=seeds, bias=st.booleans())
def test_conv_transpose2d_gradients_match_finite_differences(bk, config, seed, bias):
    x, weight, b = problem(config, True, seed)
    layer = make_layer(config, True, weight, b if bias else None, bk.device)
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS, seed=seed % 1000)
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), (4, 1), ((2, 3), (3, 2))])
def test_same_padding_gradients_match_finite_differences(bk, kernel_size, dilation):
    """'same' with an odd total padding adds a row/column at the bottom/right alone."""
    layer = Conv2d(2, 3, kernel_size, padding="same", dilation=dilation, device=bk.device,
                   dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))
    assert layer(bk.asarray(x)).shape == (2, 3, 5, 6)
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS)
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("transposed", [False, True])
def test_backward_accumulates_and_skips_frozen_parameters(bk, transposed):
    config = ConvConfig(2, 3, 2, (5, 6), (3, 3), (2, 1), (1, 0), (1, 2), (1, 0))
    x, weight, b = problem(config, transposed, 0)
    dy_shape = make_layer(config, transposed, weight, b)(x).shape
    dy = np.random.default_rng(1).standard_normal(dy_shape)
    layer = make_layer(config, transposed, weight, b, bk.device)
    step(bk, layer, x, dy)  # outputs on the layer's backend, in its dtype
    assert_gradients_accumulate(layer, bk.asarray(x), bk.asarray(dy), rtol=1e-12, atol=1e-12)
    assert layer._cache is None  # backward is once per forward


def test_output_mask_skips_what_is_not_asked_for():
    config = ConvConfig(2, 3, 2, (5, 6), (3, 3), (1, 1), (1, 1), (1, 1))
    x, weight, b = problem(config, False, 0)
    y, cache = F.conv2d_forward(x, weight, b, 1, 1)
    assert F.conv2d_backward(y, cache, output_mask=(False, False, False)) == (None,) * 3
    x, weight, b = problem(config, True, 0)
    y, cache = F.conv_transpose2d_forward(x, weight, None, 1, 1)
    dx, dweight, dbias = F.conv_transpose2d_backward(y, cache, output_mask=(False, True, True))
    assert dx is None and dbias is None and dweight.shape == weight.shape


@pytest.mark.parametrize("transposed,padding_mode",
                         [(False, "zeros"), (False, "reflect"), (True, "zeros")])
def test_a_layer_told_no_input_grad_skips_dx_and_keeps_parameter_grads(bk, transposed,
                                                                        padding_mode, rng):
    """needs_input_grad=False (a model's first layer: nobody needs d(image)): backward
    returns None, batched or not, and the parameter gradients are the same."""
    config = ConvConfig(2, 3, 4, (6, 5), (3, 3), (1, 2), (1, 1), (1, 1), (0, 1))
    x, weight, b = problem(config, transposed, 3)
    options = {} if transposed else {"padding_mode": padding_mode}
    dy = rng.standard_normal(make_layer(config, transposed, weight, b)(x).shape)
    for sample in (slice(None), 0):  # a batch, and one unbatched sample
        layer = make_layer(config, transposed, weight, b, bk.device, **options)
        _, dx, dweight, dbias = step(bk, layer, x[sample], dy[sample])
        assert dx.shape == x[sample].shape
        layer.zero_grad()
        layer.needs_input_grad = False
        layer(bk.asarray(x[sample]))
        assert layer.backward(bk.asarray(dy[sample])) is None
        assert_close(bk.numpy(layer.weight.grad), dweight, 1e-12)
        assert_close(bk.numpy(layer.bias.grad), dbias, 1e-12)


@pytest.mark.parametrize("kept", [True, False])
def test_weight_grad_over_many_columns_is_the_adjoint_of_the_forward(kept, rng):
    """From 1024 columns (N*OH*OW) the weight gradient's GEMM runs in its transposed form,
    (cols @ dy.T).T; the conv is linear in its weight, so <dW, V> = <dy, conv(x, V)> for a
    random V checks it, with cols kept from forward or recomputed chunk by chunk."""
    x = rng.standard_normal((2, 3, 32, 32))
    weight, V = rng.standard_normal((2, 4, 3, 3, 3))
    y, cache = F.conv2d_forward(x, weight, None, 1, 1)
    assert cache.cols.shape[1] >= F._TRANSPOSED_DW_COLUMNS
    dy = rng.standard_normal(y.shape)
    if kept:
        dweight = F.conv2d_backward(dy, cache)[1]
    else:
        with im2col_budget(1):
            dweight = F.conv2d_weight_grad(x, dy, (3, 3), 1, 1)
    assert dweight.shape == weight.shape
    expected = np.vdot(dy, F.conv2d_forward(x, V, None, 1, 1)[0])
    assert_close(np.vdot(dweight, V), expected, 1e-12)
    assert_close(dweight, F.conv2d_weight_grad(x[:1], dy[:1], (3, 3), 1, 1)
                 + F.conv2d_weight_grad(x[1:], dy[1:], (3, 3), 1, 1), 1e-12)


# --- the chunked path ----------------------------------------------------------------------

@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data(), seed=seeds)
def test_a_small_im2col_budget_gives_the_same_results(bk, transposed, data, seed):
    """With a 1-byte budget each output row of each sample is a piece of its own (a band
    of one row, with its halo) and backward recomputes im2col; with the default one the
    whole batch is one GEMM and forward keeps ``cols``. The same numbers to float rounding
    (bands add their overlapping halos' gradients in another order)."""
    config = data.draw(st.one_of(grouped_conv_configs(transposed),
                                 transposed_configs() if transposed else conv_configs()))
    x, weight, b = problem(config, transposed, seed)
    dy_shape = make_layer(config, transposed, weight, b)(x).shape
    dy = np.random.default_rng(seed + 1).standard_normal(dy_shape)
    layer = make_layer(config, transposed, weight, b, bk.device)
    whole = step(bk, layer, x, dy)
    with im2col_budget(1):
        chunked = step(bk, layer, x, dy)
        if not transposed:
            y = layer(bk.asarray(x))
            assert (layer._cache[0].cols is None) == (config.batch > 1 or y.shape[2] > 1)
    layer(bk.asarray(x))
    assert transposed or layer._cache[0].cols is not None
    for a, e in zip(chunked, whole, strict=True):
        assert_close(a, e, 1e-12)


@given(batch=st.integers(1, 40), per_sample=st.integers(1, 500), budget=st.integers(1, 4000))
def test_batch_chunks_are_the_fewest_that_fit_and_near_equal(batch, per_sample, budget):
    """Consecutive chunks cover the batch once; each fits the budget (or is one sample);
    no fewer chunks could fit; their sizes differ by at most one."""
    with im2col_budget(budget):
        chunks = batch_chunks(np, batch, per_sample)
    assert chunks[0].start == 0 and chunks[-1].stop == batch
    assert all(a.stop == b.start for a, b in zip(chunks[:-1], chunks[1:], strict=True))
    sizes = [c.stop - c.start for c in chunks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert all(size == 1 or size * per_sample <= budget for size in sizes)
    most_that_fit = max(1, budget // per_sample)
    assert len(chunks) == -(-batch // most_that_fit)


def test_the_default_budget_is_the_cpus_on_numpy_and_the_gpus_elsewhere():
    """Small chunks on the CPU (buffers the workspace can keep), large on a GPU (big
    GEMMs), unless im2col_budget sets one for both."""
    assert CPU_IM2COL_BUDGET < GPU_IM2COL_BUDGET
    per_sample = CPU_IM2COL_BUDGET // 2  # two samples fill the CPU's budget
    assert default_im2col_budget(np) == CPU_IM2COL_BUDGET
    assert default_im2col_budget(strict_cupy) == GPU_IM2COL_BUDGET
    assert len(batch_chunks(np, 8, per_sample)) == 4
    assert len(batch_chunks(strict_cupy, 8, per_sample)) == 1
    with im2col_budget(per_sample):
        assert len(batch_chunks(np, 8, per_sample)) == len(batch_chunks(strict_cupy, 8,
                                                                         per_sample)) == 8


def test_a_conv_over_the_cpu_budget_runs_in_chunks_with_the_same_results():
    """By default on NumPy, a batch whose columns exceed the CPU's budget is split (forward
    keeps no ``cols``) and gives the results of one chunk, to float rounding."""
    rng = np.random.default_rng(3)
    per_sample = 16 * 9 * 32 * 32 * 8  # float64 columns of one (16, 32, 32) sample
    batch = CPU_IM2COL_BUDGET // per_sample + 2
    x = rng.standard_normal((batch, 16, 32, 32))
    weight = rng.standard_normal((8, 16, 3, 3))
    dy = rng.standard_normal((batch, 8, 32, 32))
    y, cache = F.conv2d_forward(x, weight, None, 1, 1)
    assert cache.cols is None
    chunked = (y, *F.conv2d_backward(dy, cache)[:2])
    with im2col_budget(GPU_IM2COL_BUDGET):
        y, cache = F.conv2d_forward(x, weight, None, 1, 1)
        assert cache.cols is not None
        whole = (y, *F.conv2d_backward(dy, cache)[:2])
    for a, e in zip(chunked, whole, strict=True):
        assert_close(a, e, 1e-12)


def test_im2col_budget_is_restored_and_validated():
    x = np.ones((4, 1, 3, 3))
    weight = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="nbytes must be >= 1"):
        with im2col_budget(0):
            pass
    with im2col_budget(9 * 8 * 2):  # two samples' columns per chunk
        assert F.conv2d_forward(x, weight)[1].cols is None
    assert F.conv2d_forward(x, weight)[1].cols is not None


# --- PyTorch parity ------------------------------------------------------------------------

def assert_matches_torch(torch, bk, ours, theirs, x, **forward_kwargs):
    """Load our state_dict into the torch layer, then compare y, dx, dweight, dbias."""
    theirs.load_state_dict({k: torch.tensor(bk.numpy(v)) for k, v in ours.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx, **forward_kwargs)
    dy = np.random.default_rng(7).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    expected = (ty.detach().numpy(), tx.grad.numpy(), theirs.weight.grad.numpy(),
                None if theirs.bias is None else theirs.bias.grad.numpy())

    ours.zero_grad()
    y = ours(bk.asarray(x), **forward_kwargs)
    dx = ours.backward(bk.asarray(dy))
    assert bk.owns(y) and bk.owns(dx)
    actual = (bk.numpy(y), bk.numpy(dx), bk.numpy(ours.weight.grad),
              None if ours.bias is None else bk.numpy(ours.bias.grad))
    for name, a, e in zip(("y", "dx", "dweight", "dbias"), actual, expected, strict=True):
        assert (a is None) == (e is None), name
        if e is not None:
            assert a.shape == e.shape, name
            assert_close(a, e, 1e-9)


@pytest.mark.torch
@given(config=conv_configs(), seed=seeds, bias=st.booleans())
def test_conv2d_matches_torch(torch, bk, config, seed, bias):
    x, weight, b = problem(config, False, seed)
    ours = make_layer(config, False, weight, b if bias else None, bk.device)
    theirs = torch.nn.Conv2d(config.in_channels, config.out_channels, config.kernel_size,
                             config.stride, config.padding, config.dilation, bias=bias,
                             dtype=torch.float64)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.torch
@given(config=transposed_configs(), seed=seeds, bias=st.booleans())
def test_conv_transpose2d_matches_torch(torch, bk, config, seed, bias):
    x, weight, b = problem(config, True, seed)
    ours = make_layer(config, True, weight, b if bias else None, bk.device)
    theirs = torch.nn.ConvTranspose2d(config.in_channels, config.out_channels,
                                      config.kernel_size, config.stride, config.padding,
                                      config.output_padding, 1, bias, config.dilation,
                                      dtype=torch.float64)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("padding, kernel_size, dilation", [
    ("same", 3, 1), ("same", 4, 1), ("same", (2, 5), (3, 1)), ("same", 2, 2), ("valid", 3, 2)])
def test_string_padding_matches_torch(torch, bk, padding, kernel_size, dilation):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    ours = Conv2d(3, 4, kernel_size, padding=padding, dilation=dilation, device=bk.device,
                  dtype="float64")
    theirs = torch.nn.Conv2d(3, 4, kernel_size, padding=padding, dilation=dilation,
                             dtype=torch.float64)
    assert repr(ours) == repr(theirs)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.torch
@pytest.mark.parametrize("output_size", [(9, 11), (10, 12), [2, 4, 10, 11]])
def test_transposed_output_size_matches_torch(torch, bk, output_size):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    ours = ConvTranspose2d(3, 4, 3, stride=2, padding=1, device=bk.device, dtype="float64")
    theirs = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    assert_matches_torch(torch, bk, ours, theirs, x, output_size=output_size)


@pytest.mark.torch
@pytest.mark.parametrize("args, kwargs", [
    ((3, 16, 3), {}),
    ((3, 16, (3, 5), 2, 1), {"bias": False}),
    ((8, 4, 3, 1, (1, 2), 2, 1, True), {}),
])
def test_parameters_and_repr_match_torch(torch, args, kwargs):
    for ours, theirs in [(Conv2d(*args, **kwargs), torch.nn.Conv2d(*args, **kwargs)),
                         (ConvTranspose2d(*args[:5], **kwargs),
                          torch.nn.ConvTranspose2d(*args[:5], **kwargs))]:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert [tuple(v.shape) for v in ours.state_dict().values()] == \
            [tuple(v.shape) for v in theirs.state_dict().values()]
    ours = ConvTranspose2d(4, 2, 4, 2, 1, 1, 1, False, 3)
    theirs = torch.nn.ConvTranspose2d(4, 2, 4, 2, 1, 1, 1, False, 3)
    assert repr(ours) == repr(theirs)


# --- initialisation ------------------------------------------------------------------------

@pytest.mark.parametrize("transposed", [False, True])
def test_default_init_is_torchs_uniform_distribution(transposed):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = dimension 1 * KH * KW: C_in*9 for Conv2d
    and C_out*9 for ConvTranspose2d (PyTorch's convention). In and out channels differ by 32x
    so that the wrong fan_in would show."""
    layer = (ConvTranspose2d if transposed else Conv2d)(64, 2, 3)
    bound = 1.0 / np.sqrt((2 if transposed else 64) * 9)
    for values in (layer.weight.data, layer.bias.data):
        assert values.dtype == np.float32
        assert np.abs(values).max() <= bound
    # 1152 draws: the largest is within 10% of the bound unless the bound is wrong.
    assert np.abs(layer.weight.data).max() > 0.9 * bound


def test_init_follows_the_generator_on_every_device(bk):
    a = Conv2d(3, 4, 3, generator=backend.Generator(5), device=bk.device)
    b = ConvTranspose2d(3, 4, 3, generator=backend.Generator(5), dtype="float64")
    c = Conv2d(3, 4, 3, generator=backend.Generator(5))
    assert bk.owns(a.weight.data) and bk.owns(a.weight.grad)
    np.testing.assert_array_equal(bk.numpy(a.weight.data), c.weight.data)
    np.testing.assert_array_equal(bk.numpy(a.bias.data), c.bias.data)
    backend.manual_seed(3)
    d = Conv2d(3, 4, 3)
    backend.manual_seed(3)
    np.testing.assert_array_equal(Conv2d(3, 4, 3).weight.data, d.weight.data)
    assert b.weight.dtype == np.float64 and b.weight.shape == (3, 4, 3, 3)
    assert not np.array_equal(c.weight.data, Conv2d(3, 4, 3).weight.data)


# --- backends ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data(), seed=seeds)
def test_every_backend_gives_numpys_results(bk, dtype, transposed, data, seed):
    """Same numbers as NumPy, arrays of the backend and the dtype, inputs left untouched."""
    config = data.draw(transposed_configs() if transposed else conv_configs())
    x, weight, b = problem(config, transposed, seed, dtype)
    reference = make_layer(config, transposed, weight, b, dtype=dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(reference(x).shape).astype(dtype)
    layer = make_layer(config, transposed, weight, b, bk.device, dtype)
    assert_backend_gives_numpys_results(bk, reference, layer, x, dy)
    np.testing.assert_array_equal(bk.numpy(layer.weight.data), weight)


def assert_backend_gives_numpys_results(bk, reference, layer, x, dy):
    """``layer`` on ``bk`` gives exactly what its NumPy twin ``reference`` gives (y, dx and
    both parameters' gradients), as arrays of the backend in x's dtype, and leaves x and dy
    untouched."""
    expected = (reference(x), reference.backward(dy), reference.weight.grad,
                reference.bias.grad)
    x_device, dy_device = bk.asarray(x), bk.asarray(dy)
    y = layer(x_device)
    dx = layer.backward(dy_device)
    assert bk.owns(y) and bk.owns(dx) and bk.owns(layer.weight.grad)
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == x.dtype
    np.testing.assert_array_equal(bk.numpy(x_device), x)
    np.testing.assert_array_equal(bk.numpy(dy_device), dy)
    actual = (y, dx, layer.weight.grad, layer.bias.grad)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(bk.numpy(a), e)


def test_naive_references_run_on_every_backend(bk):
    rng = np.random.default_rng(0)
    x, weight, bias = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((3, 2, 3, 2)), \
        rng.standard_normal(2)
    expected = F.conv_transpose2d_naive(x, weight, bias, 2, 1, (1, 0), (1, 2))
    y = F.conv_transpose2d_naive(*map(bk.asarray, (x, weight, bias)), 2, 1, (1, 0), (1, 2))
    assert bk.owns(y)
    np.testing.assert_array_equal(bk.numpy(y), expected)


# --- bad arguments and inputs --------------------------------------------------------------

CONV = r"Conv2d\(3->16, kernel_size=\(3, 3\), stride=\(1, 1\)\)"
CONVT = r"ConvTranspose2d\(3->16, kernel_size=\(3, 3\), stride=\(2, 2\)\)"


@pytest.mark.parametrize("make, error, match", [
    (lambda: Conv2d(0, 16, 3), ValueError, r"Conv2d\(0->16\): in_channels must be >= 1"),
    (lambda: Conv2d(3, 2.5, 3), TypeError, r"Conv2d\(3->2.5\): out_channels must be an int"),
    (lambda: Conv2d(3, 16, 0), ValueError, r"Conv2d\(3->16\): kernel_size must be >= 1"),
    (lambda: Conv2d(3, 16, "3"), TypeError, r"Conv2d\(3->16\): kernel_size must be an int"),
    (lambda: Conv2d(3, 16, 3, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: Conv2d(3, 16, 3, stride=(1, 2, 3)), TypeError, r"stride must be an int or a pair"),
    (lambda: Conv2d(3, 16, 3, dilation=0), ValueError, r"dilation must be >= 1"),
    (lambda: Conv2d(3, 16, 3, padding=-1), ValueError, CONV + r": padding must be >= 0"),
    (lambda: Conv2d(3, 16, 3, padding="full"), ValueError, CONV + r": padding must be an int"),
    (lambda: Conv2d(3, 16, 3, 2, "same"), ValueError, r"'same' is not supported for strided"),
    (lambda: Conv2d(3, 16, 3, groups=3), ValueError,
     r"Conv2d\(3->16\): out_channels must be divisible by groups, got out_channels=16 and "
     r"groups=3"),
    (lambda: Conv2d(4, 6, 3, groups=3), ValueError, r"in_channels must be divisible by groups"),
    (lambda: Conv2d(4, 4, 3, groups=0), ValueError, r"groups must be >= 1, got 0"),
    (lambda: Conv2d(4, 4, 3, groups=2.0), TypeError, r"groups must be an int"),
    (lambda: Conv2d(4, 4, 3, padding_mode="mirror"), ValueError,
     r"padding_mode must be one of \('zeros', 'reflect', 'replicate', 'circular'\), got "
     r"'mirror'"),
    (lambda: ConvTranspose2d(4, 4, 3, padding_mode="reflect"), ValueError,
     r"only padding_mode='zeros' is supported for ConvTranspose2d \(as in PyTorch\)"),
    (lambda: ConvTranspose2d(4, 6, 3, groups=4), ValueError,
     r"out_channels must be divisible by groups"),
    (lambda: Conv2d(3, 16, 3, bias=1), TypeError, r"Conv2d\(3->16\): bias must be True or"),
    (lambda: Conv2d(3, 16, 3, dtype="int32"), ValueError, r"dtype must be float32 or float64"),
    (lambda: ConvTranspose2d(3, 16, 3, 2, output_padding=2), ValueError,
     CONVT + r": output_padding must be smaller than either stride or dilation"),
    (lambda: ConvTranspose2d(3, 16, 3, 1, output_padding=1, dilation=(1, 2)), ValueError,
     r"output_padding must be smaller than either stride or dilation"),
    (lambda: ConvTranspose2d(3, 16, 3, 2, groups=2), ValueError,
     r"in_channels must be divisible by groups"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("x, error, match", [
    (np.zeros((2, 4, 8, 8)), ValueError, r"expected x with 3 channels, got x of shape \(2, 4"),
    (np.zeros((8, 8)), ValueError,
     r"expected x of rank 3 \(C, H, W\) or 4 \(N, C, H, W\), got x of shape \(8, 8\)"),
    (np.zeros((4, 8, 8)), ValueError, r"expected x with 3 channels, got x of shape \(4, 8, 8\)"),
    (np.zeros((2, 3, 8, 8), dtype=np.int64), TypeError, r"expected a float32 or float64 x"),
    (np.zeros((2, 3, 8, 8), dtype=np.float64), TypeError, r"x has dtype float64 but the"),
    ([[[[0.0]]]], TypeError, r"expected x to be an array, got list"),
])
def test_bad_inputs_are_refused(transposed, x, error, match):
    layer = ConvTranspose2d(3, 16, 3, 2) if transposed else Conv2d(3, 16, 3)
    with pytest.raises(error, match=(CONVT if transposed else CONV) + ": " + match):
        layer(x)


def test_kernel_larger_than_the_padded_input_is_refused():
    with pytest.raises(ValueError, match=CONV + r": kernel_size=\(3, 3\) with dilation=\(1, 1\) "
                                               r"spans \(3, 3\) pixels, more than the padded"):
        Conv2d(3, 16, 3)(np.zeros((1, 3, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(3->16, kernel_size=\(1, 1\), "
                                         r"stride=\(1, 1\)\): the output would be \(-1, -1\)"):
        ConvTranspose2d(3, 16, 1, padding=1)(np.zeros((1, 3, 1, 1), np.float32))


@pytest.mark.parametrize("output_size, error, match", [
    ((8, 8), ValueError, r"requested an output size of \(8, 8\), but valid sizes range from "
                         r"\(9, 9\) to \(10, 10\) \(for an input of \(5, 5\)\)"),
    ((9, 11), ValueError, r"requested an output size of \(9, 11\)"),
    ((1, 9, 9), TypeError, r"output_size must be \(OH, OW\) or \(N, C, OH, OW\) ints"),
    ((9.0, 9), TypeError, r"output_size must be"),
])
def test_bad_transposed_output_sizes_are_refused(output_size, error, match):
    with pytest.raises(error, match=CONVT + ": " + match):
        ConvTranspose2d(3, 16, 3, 2, padding=1)(np.zeros((1, 3, 5, 5), np.float32),
                                                output_size=output_size)


@pytest.mark.parametrize("transposed", [False, True])
def test_bad_backward_calls_are_refused(transposed):
    layer = ConvTranspose2d(3, 16, 3, 2) if transposed else Conv2d(3, 16, 3)
    where = CONVT if transposed else CONV
    with pytest.raises(ValueError, match=where + r": backward called before forward"):
        layer.backward(np.zeros((1, 16, 3, 3), np.float32))
    y = layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=where + r": expected dy of shape " + r"\(1, 16, "):
        layer.backward(np.zeros((1, 16, 2, 2), np.float32))
    with pytest.raises(TypeError, match=where + r": expected dy of dtype float32"):
        layer.backward(np.zeros(y.shape))
    layer.backward(np.zeros(y.shape, np.float32))
    with pytest.raises(ValueError, match=where + r": backward called before forward"):
        layer.backward(np.zeros(y.shape, np.float32))


@pytest.mark.parametrize("transposed", [False, True])
def test_mixed_devices_are_refused(transposed):
    layer = ConvTranspose2d(3, 16, 3, 2) if transposed else Conv2d(3, 16, 3)
    where = CONVT if transposed else CONV
    x = np.zeros((1, 3, 5, 5), np.float32)
    with backend.use_gpu_module(strict_cupy):
        with pytest.raises(TypeError, match=where + r": arrays from two devices"):
            layer(strict_cupy.asarray(x))
        y = layer(x)
        with pytest.raises(TypeError, match=where + r": arrays from two devices"):
            layer.backward(strict_cupy.asarray(np.zeros(y.shape, np.float32)))


# --- groups --------------------------------------------------------------------------------

@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data(), seed=seeds, bias=st.booleans())
def test_grouped_convolutions_match_the_naive_references(transposed, data, seed, bias):
    """The batched matmul over groups against G separate textbook convolutions."""
    config = data.draw(grouped_conv_configs(transposed))
    x, weight, b = problem(config, transposed, seed)
    b = b if bias else None
    if transposed:
        args = (config.stride, config.padding, config.output_padding, config.dilation)
        y, _ = F.conv_transpose2d_forward(x, weight, b, *args, groups=config.groups)
        expected = F.conv_transpose2d_naive(x, weight, b, *args, groups=config.groups)
    else:
        args = (config.stride, config.padding, config.dilation)
        y, _ = F.conv2d_forward(x, weight, b, *args, groups=config.groups)
        expected = F.conv2d_naive(x, weight, b, *args, groups=config.groups)
    assert_close(y, expected, 1e-10)


def test_a_grouped_convolution_is_separate_convolutions_side_by_side(rng):
    """Group g's outputs depend on group g's inputs only: the naive reference with groups
    is checked here against G plain convolutions, written out."""
    x = rng.standard_normal((2, 6, 5, 5))
    weight = rng.standard_normal((9, 2, 3, 3))
    y = F.conv2d_naive(x, weight, None, 1, 1, 1, groups=3)
    for g in range(3):
        part = F.conv2d_naive(x[:, 2 * g:2 * g + 2], weight[3 * g:3 * g + 3], None, 1, 1, 1)
        assert_close(y[:, 3 * g:3 * g + 3], part, 0.0)


@pytest.mark.torch
@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data(), seed=seeds, bias=st.booleans())
def test_grouped_convolutions_match_torch(torch, bk, transposed, data, seed, bias):
    config = data.draw(grouped_conv_configs(transposed))
    x, weight, b = problem(config, transposed, seed)
    ours = make_layer(config, transposed, weight, b if bias else None, bk.device)
    if transposed:
        theirs = torch.nn.ConvTranspose2d(config.in_channels, config.out_channels,
                                          config.kernel_size, config.stride, config.padding,
                                          config.output_padding, config.groups, bias,
                                          config.dilation, dtype=torch.float64)
    else:
        theirs = torch.nn.Conv2d(config.in_channels, config.out_channels, config.kernel_size,
                                 config.stride, config.padding, config.dilation,
                                 config.groups, bias, dtype=torch.float64)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("in_channels, out_channels, groups", [(4, 6, 2), (3, 3, 3), (2, 6, 2)])
def test_grouped_gradients_match_finite_differences(bk, transposed, in_channels, out_channels,
                                                     groups):
    """Grouped, depthwise and depthwise with a channel multiplier of 3, float64."""
    config = ConvConfig(2, in_channels, out_channels, (5, 6), (3, 2), (2, 1), (1, 0), (1, 2),
                        (1, 0) if transposed else (0, 0), groups)
    x, weight, b = problem(config, transposed, 0)
    layer = make_layer(config, transposed, weight, b, bk.device)
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS)
    assert report.max_error < 1e-6, report


def test_default_init_of_a_grouped_layer_uses_the_group_fan_in():
    """PyTorch's bound 1/sqrt(fan_in) with fan_in = C/G*KH*KW (weight.shape[1:])."""
    layer = Conv2d(8, 8, 3, groups=8, dtype="float64")
    bound = 1.0 / np.sqrt(9)
    values = np.abs(layer.weight.data)
    assert values.max() <= bound and values.max() > 0.8 * bound
    assert layer.weight.shape == (8, 1, 3, 3)
    assert ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)


# --- padding modes -------------------------------------------------------------------------

@given(config_and_mode=padding_mode_configs(), seed=seeds)
def test_padding_gradient_is_the_adjoint_of_padding(config_and_mode, seed):
    """<pad(x), z> == <x, pad_backward(z)> for every mode: each padded value's gradient
    lands on the value it copied."""
    config, mode = config_and_mode
    x, _, _ = problem(config, False, seed)
    PH, PW = config.padding
    # the strategy's padding fits the mode; one side less keeps it asymmetric
    pad = (PH, max(PH - 1, 0), PW, PW)
    y, cache = pad2d_forward(x, pad, mode)
    assert y.shape == (*x.shape[:2], x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
    z = np.random.default_rng(seed + 1).standard_normal(y.shape)
    assert_close(np.vdot(y, z), np.vdot(x, pad2d_backward(z, cache)), 1e-12)


@pytest.mark.torch
@given(config_and_mode=padding_mode_configs(), seed=seeds, bias=st.booleans())
def test_padding_modes_match_torch(torch, bk, config_and_mode, seed, bias):
    config, mode = config_and_mode
    x, weight, b = problem(config, False, seed)
    ours = make_layer(config, False, weight, b if bias else None, bk.device, padding_mode=mode)
    theirs = torch.nn.Conv2d(config.in_channels, config.out_channels, config.kernel_size,
                             config.stride, config.padding, config.dilation, config.groups,
                             bias, mode, dtype=torch.float64)
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), (4, 1), ((2, 5), (3, 1))])
def test_same_padding_with_every_mode_matches_torch(torch, bk, mode, kernel_size, dilation):
    """'same' pads the odd extra row/column at the bottom/right in every mode, as PyTorch."""
    ours = Conv2d(3, 4, kernel_size, padding="same", dilation=dilation, padding_mode=mode,
                  device=bk.device, dtype="float64")
    theirs = torch.nn.Conv2d(3, 4, kernel_size, padding="same", dilation=dilation,
                             padding_mode=mode, dtype=torch.float64)
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 7))
    assert_matches_torch(torch, bk, ours, theirs, x)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_mode_gradients_match_finite_differences(bk, mode):
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2,
                   padding_mode=mode, device=bk.device, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6))
    report = gradcheck_module(layer, bk.asarray(x), eps=GRADCHECK_EPS)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
@pytest.mark.parametrize("mode, padding, size, match", [
    ("reflect", 2, (2, 5), r"padding_mode='reflect' needs padding smaller than the input's "
                           r"height \(2\), got padding 2"),
    ("reflect", (0, 1), (3, 1), r"padding_mode='reflect' needs padding smaller than the "
                                r"input's width \(1\)"),
    ("circular", 3, (5, 2), r"padding_mode='circular' needs padding at most the input's "
                            r"width \(2\)"),
])
def test_padding_sizes_torch_refuses_are_refused(torch, mode, padding, size, match):
    x = np.zeros((1, 2, *size))
    with pytest.raises(RuntimeError):
        torch.nn.Conv2d(2, 2, 1, padding=padding, padding_mode=mode)(torch.tensor(x).float())
    layer = Conv2d(2, 2, 1, padding=padding, padding_mode=mode, dtype="float64")
    with pytest.raises(ValueError, match=r"Conv2d\(2->2, kernel_size=\(1, 1\), stride=\(1, "
                                         r"1\)\): " + match):
        layer(x)


@pytest.mark.torch
@pytest.mark.parametrize("mode, padding, size", [("reflect", 1, (2, 2)), ("circular", 2, (2, 2)),
                                                 ("replicate", 3, (1, 1))])
def test_the_largest_padding_each_mode_takes_matches_torch(torch, bk, mode, padding, size):
    ours = Conv2d(2, 3, 3, padding=padding, padding_mode=mode, device=bk.device,
                  dtype="float64")
    theirs = torch.nn.Conv2d(2, 3, 3, padding=padding, padding_mode=mode, dtype=torch.float64)
    x = np.random.default_rng(5).standard_normal((2, 2, *size))
    assert_matches_torch(torch, bk, ours, theirs, x)


# --- unbatched input -----------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups, mode", [(1, "zeros"), (2, "zeros"), (2, "reflect")])
def test_unbatched_input_matches_torch(torch, bk, transposed, groups, mode):
    """(C, H, W) -> (F, OH, OW), dx (C, H, W), as PyTorch."""
    kwargs = dict(stride=2, padding=1, groups=groups, device=bk.device, dtype="float64")
    if transposed:
        ours = ConvTranspose2d(4, 6, 3, output_padding=1, **kwargs)
        theirs = torch.nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups, dtype=torch.float64)
    else:
        ours = Conv2d(4, 6, 3, padding_mode=mode, **kwargs)
        theirs = torch.nn.Conv2d(4, 6, 3, 2, 1, 1, groups, padding_mode=mode,
                                 dtype=torch.float64)
    x = np.random.default_rng(2).standard_normal((4, 5, 6))
    assert_matches_torch(torch, bk, ours, theirs, x)
    assert ours(bk.asarray(x)).ndim == 3
    report = gradcheck_module(ours, bk.asarray(x), eps=GRADCHECK_EPS)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
@pytest.mark.parametrize("output_size", [(10, 12), (6, 10, 12)])
def test_unbatched_transposed_output_size_matches_torch(torch, bk, output_size):
    ours = ConvTranspose2d(4, 6, 3, 2, 1, device=bk.device, dtype="float64")
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, 2, 1, dtype=torch.float64)
    x = np.random.default_rng(4).standard_normal((4, 5, 6))
    assert_matches_torch(torch, bk, ours, theirs, x, output_size=output_size)


def test_unbatched_bad_calls_are_refused():
    layer = ConvTranspose2d(3, 16, 3, 2)
    x = np.zeros((3, 5, 5), np.float32)
    with pytest.raises(TypeError, match=CONVT + r": output_size must be \(OH, OW\) or "
                                                r"\(C, OH, OW\) ints, got \(1, 16, 11, 11\)"):
        layer(x, output_size=(1, 16, 11, 11))
    y = layer(x)
    assert y.shape == (16, 11, 11)
    with pytest.raises(ValueError, match=CONVT + r": expected dy of shape \(16, 11, 11\) \(the "
                                                 r"forward output's\), got \(1, 16, 11, 11\)"):
        layer.backward(y[None])
    assert layer.backward(y).shape == x.shape
    y = layer(x[None])  # a batch again after an unbatched call
    assert layer.backward(y).shape == (1, 3, 5, 5)


def test_functional_groups_mismatches_are_refused():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d_forward: with groups=2, expected a weight "
                                         r"\(F, C/G, KH, KW\) for x with 4 channels \(both "
                                         r"channel counts divisible by groups\), got weight of "
                                         r"shape \(6, 4, 3, 3\)"):
        F.conv2d_forward(x, np.zeros((6, 4, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"conv2d_forward: with groups=3"):
        F.conv2d_forward(x, np.zeros((6, 2, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"conv_transpose2d_forward: with groups=2, expected a "
                                         r"weight \(C_in, C_out/G, KH, KW\)"):
        F.conv_transpose2d_forward(x, np.zeros((3, 3, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"groups must be an int >= 1, got 0"):
        F.conv2d_forward(x, np.zeros((4, 4, 3, 3)), groups=0)


# --- bands of output rows ---------------------------------------------------------------------

@given(config=conv_configs(), data=st.data(), seed=seeds)
def test_a_bands_columns_are_the_whole_images_columns_of_its_rows(config, data, seed):
    """im2col of a band of output rows reads only the band's input rows and halo, and gives
    exactly the whole image's columns for those rows; col2im of a band is the adjoint of
    that, on the input rows band_input_rows names."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config.batch, config.in_channels, *config.size))
    args = (config.kernel_size, config.stride, config.padding, config.dilation)
    OH, OW = conv_output_size(config.size, *args)
    r0 = data.draw(st.integers(0, OH - 1))
    band = slice(r0, data.draw(st.integers(r0 + 1, OH)))
    KH, KW = config.kernel_size
    whole = im2col(x, *args).reshape(config.in_channels * KH * KW, config.batch, OH, OW)
    part = im2col(x, *args, rows=band)
    assert np.array_equal(part, whole[:, :, band].reshape(part.shape))
    inputs = band_input_rows(band, config.size[0], KH, config.stride[0], config.padding[0],
                             config.dilation[0])
    outside = np.ones(config.size[0], dtype=bool)
    outside[inputs] = False
    x_moved = x.copy()
    x_moved[:, :, outside] += 1.0  # rows the band must not read
    assert np.array_equal(im2col(x_moved, *args, rows=band), part)
    c = rng.standard_normal(part.shape)
    back = col2im(c, x.shape, *args, rows=band)
    assert back.shape[2] == inputs.stop - inputs.start
    assert np.isclose(np.vdot(part, c), np.vdot(x[:, :, inputs], back), rtol=1e-12)


@given(batch=st.integers(1, 5), rows=st.integers(0, 40), per_row=st.integers(1, 300),
       budget=st.integers(1, 5000))
def test_conv_pieces_cover_every_row_once_within_the_budget(batch, rows, per_row, budget):
    """Whole images in the fewest near-equal batch chunks when one image fits; else one
    image at a time in the fewest near-equal bands that fit (at least one row each)."""
    with im2col_budget(budget):
        pieces = conv_chunks(np, batch, rows, per_row)
    seen = np.zeros((batch, rows), dtype=int)
    for samples, band in pieces:
        seen[samples, band] += 1
        size = (samples.stop - samples.start) * (band.stop - band.start) * per_row
        assert size <= budget or (samples.stop - samples.start == 1 and (
            band.stop - band.start == 1 or band == slice(0, rows)))
    assert (seen == 1).all()
    if rows * per_row > budget:
        heights = {band.stop - band.start for _, band in pieces}
        assert max(heights) - min(heights) <= 1
        assert len(pieces) == batch * -(-rows // max(1, budget // per_row))


def test_a_photo_sized_convolution_keeps_its_columns_within_the_budget(rng):
    """One 3 x 600 x 800 image through a 3 -> 16 3x3 convolution: its columns would take
    52 MiB at once; in bands under a 1 MiB budget no im2col buffer exceeds it, and the
    result is the same."""
    x = rng.standard_normal((1, 3, 600, 800)).astype("float32")
    weight = rng.standard_normal((16, 3, 3, 3)).astype("float32")
    whole, _ = F.conv2d_forward(x, weight, None, 1, 1)
    largest = []
    real_im2col = F.im2col_unchecked

    def watched(*args, **kwargs):
        cols = real_im2col(*args, **kwargs)
        largest.append(cols.nbytes)
        return cols

    F.im2col_unchecked = watched
    try:
        with im2col_budget(2**20):
            banded, cache = F.conv2d_forward(x, weight, None, 1, 1)
    finally:
        F.im2col_unchecked = real_im2col
    assert max(largest) <= 2**20 < 27 * 600 * 800 * 4
    assert cache.cols is None and np.array_equal(banded, whole)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_an_empty_batch_gives_an_empty_output_as_pytorch(bk, torch, transposed, training):
    """N = 0, as PyTorch's Conv2d_zero_batch test: an empty output of the right shape, an
    empty dx, and no gradient reaching the parameters (it crashed with a ZeroDivisionError
    once the im2col budget split batches)."""
    layer = (ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1) if transposed
             else Conv2d(3, 4, 3, padding=1)).to(bk.device, "float64").train(training)
    twin = (torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
            if transposed else torch.nn.Conv2d(3, 4, 3, padding=1))
    x = np.zeros((0, 3, 5, 7))
    y = layer(bk.asarray(x))
    assert tuple(y.shape) == tuple(twin(torch.from_numpy(x).float()).shape)
    dx = layer.backward(bk.asarray(np.zeros(y.shape)))
    assert tuple(dx.shape) == x.shape
    assert not bk.numpy(layer.weight.grad).any() and not bk.numpy(layer.bias.grad).any()
