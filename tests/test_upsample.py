"""Upsample, UpsamplingNearest2d, UpsamplingBilinear2d and upsample_forward/backward:
PyTorch parity (output sizes, sampling, gradients, repr), gradient checks, identities that
need no PyTorch, the bilinear transposed convolution identity, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from minifcn.gradcheck import gradcheck_module
from minifcn.nn.upsample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d
from minifcn.testing.strategies import UPSAMPLE_MODES, seeds, upsample_configs

MODES = UPSAMPLE_MODES

# (input shape, Upsample keyword arguments): integer and non-integer factors, per-axis
# factors, sizes that are not multiples, down-sampling, recompute_scale_factor, a factor
# whose product PyTorch floors below the exact value (10 * 0.7 = 6.999...), and a factor
# that leaves an axis's size unchanged (2 * 1.25 = 2.5: copied, not resampled).
CONFIGS = [
    ((2, 3, 4, 4), dict(scale_factor=2)),
    ((1, 2, 5, 7), dict(scale_factor=3)),
    ((2, 2, 5, 6), dict(scale_factor=1.5)),
    ((1, 3, 3, 5), dict(scale_factor=(2, 1.7))),
    ((2, 1, 5, 7), dict(size=(13, 10))),
    ((1, 2, 6, 9), dict(size=(4, 5))),
    ((1, 2, 4, 6), dict(size=5)),
    ((1, 2, 5, 6), dict(scale_factor=1.5, recompute_scale_factor=True)),
    ((1, 1, 10, 3), dict(scale_factor=0.7)),
    ((1, 2, 3, 2), dict(scale_factor=(1.5, 1.25))),
]


def forward_backward(bk, layer, x, dy=None):
    """y and dx (for ``dy``, default a random one) as NumPy arrays, after checking that both
    stay in the backend's namespace and x's dtype."""
    x = bk.asarray(x)
    y = layer(x)
    if dy is None:
        dy = np.random.default_rng(7).standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(bk.asarray(dy))
    for array in (y, dx):
        assert bk.owns(array) and array.dtype == x.dtype
    return bk.numpy(y), bk.numpy(dx), dy


# --- PyTorch parity -------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("mode, align_corners", MODES)
@pytest.mark.parametrize("shape, kwargs", CONFIGS)
def test_matches_torch(bk, torch, rng, shape, kwargs, mode, align_corners):
    x = rng.standard_normal(shape)
    layer = Upsample(mode=mode, align_corners=align_corners, **kwargs)
    y, dx, dy = forward_backward(bk, layer, x)

    twin = torch.nn.Upsample(mode=mode, align_corners=align_corners, **kwargs)
    xt = torch.from_numpy(x).requires_grad_()
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-9)


@pytest.mark.torch
@given(config=upsample_configs(), seed=seeds)
def test_random_geometries_match_torch(bk, torch, config, seed):
    shape, kwargs = config
    x = np.random.default_rng(seed).standard_normal(shape)
    y, dx, dy = forward_backward(bk, Upsample(**kwargs), x)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.Upsample(**kwargs)(xt)
    yt.backward(torch.from_numpy(dy))
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-9)


@pytest.mark.torch
def test_nearest_sampling_matches_torch_float32_exactly(bk, torch):
    """Over many sizes and factors, nearest picks exactly PyTorch's pixels. The values are
    the column indices, so equal outputs mean equal indices. Among them are sizes where
    float32 and float64 index arithmetic disagree (2 -> 82, 3 -> 123), the copy shortcut
    out == in (3 with factor 1.1) and the halving shortcut out == 2 in (4 with factor 2.2)."""
    cases = [(n_in, dict(size=(1, n_out))) for n_in in range(1, 10) for n_out in range(1, 40)]
    cases += [(n_in, dict(scale_factor=(1.0, s))) for n_in in range(1, 10)
              for s in (0.5, 0.7, 1.1, 1.25, 1.5, 2.2, 3.0, 1 / 3, 2.7) if int(n_in * s) >= 1]
    cases += [(2, dict(size=(1, 82))), (2, dict(size=(1, 94))), (3, dict(size=(1, 123)))]
    mismatches = []
    for n_in, kwargs in cases:
        x = np.arange(n_in, dtype=np.float32).reshape(1, 1, 1, n_in)
        ours = bk.numpy(Upsample(**kwargs)(bk.asarray(x)))
        theirs = torch.nn.Upsample(**kwargs)(torch.from_numpy(x)).numpy()
        if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
            mismatches.append((n_in, kwargs))
    assert not mismatches


@pytest.mark.torch
@pytest.mark.parametrize("align_corners", [False, True])
def test_float32_matches_torch(bk, torch, rng, align_corners):
    """float32 end to end (the weights are computed in the input's dtype, as PyTorch)."""
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    layer = Upsample(scale_factor=2.5, mode="bilinear", align_corners=align_corners)
    y, dx, dy = forward_backward(bk, layer, x)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.Upsample(scale_factor=2.5, mode="bilinear", align_corners=align_corners)(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("size", [(9, 13), (4, 13), (9, 6)])  # both axes, W only, H only
def test_a_non_finite_value_reaches_only_the_pixels_that_read_it(bk, torch, rng, bad, size):
    """The fuzz's finding: the product form spread one NaN or infinity over whole output
    rows and columns (0 * inf); PyTorch's kernel, and now minifcn's, blend neighbours. (Where
    a pixel reads an infinity with weight 0, PyTorch's ``a + w * (b - a)`` gives NaN and
    minifcn's ``(1 - w) * a + w * b`` the infinity: the same pixels are not finite.)"""
    x = rng.standard_normal((1, 2, 4, 6))
    x[0, 1, 2, 3] = bad
    ours = bk.numpy(Upsample(size=size, mode="bilinear")(bk.asarray(x)))
    theirs = torch.nn.Upsample(size=size, mode="bilinear")(torch.from_numpy(x)).numpy()
    finite = np.isfinite(theirs)
    np.testing.assert_array_equal(np.isfinite(ours), finite)
    np.testing.assert_array_equal(ours[np.isinf(theirs)], theirs[np.isinf(theirs)])
    assert (~finite).sum() < theirs[0, 1].size  # reached a few pixels, not all
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=0, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("cls, kwargs", [
    (UpsamplingNearest2d, dict(scale_factor=2)),
    (UpsamplingNearest2d, dict(size=(7, 9))),
    (UpsamplingBilinear2d, dict(scale_factor=3)),
    (UpsamplingBilinear2d, dict(size=(7, 9))),
])
def test_fixed_mode_layers_match_torch(bk, torch, rng, cls, kwargs):
    x = rng.standard_normal((1, 2, 4, 5))
    layer = cls(**kwargs)
    y, dx, dy = forward_backward(bk, layer, x)
    twin = getattr(torch.nn, cls.__name__)(**kwargs)
    xt = torch.from_numpy(x).requires_grad_()
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-9)
    assert repr(layer) == repr(twin)


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", [dict(scale_factor=2), dict(scale_factor=(2, 3)),
                                    dict(size=5, mode="bilinear"),
                                    dict(size=(4, 6), mode="bilinear", align_corners=True)])
def test_repr_matches_torch(torch, kwargs):
    assert repr(Upsample(**kwargs)) == repr(torch.nn.Upsample(**kwargs))


# --- gradients and backends ------------------------------------------------------------------

@pytest.mark.parametrize("mode, align_corners", MODES)
@pytest.mark.parametrize("shape, kwargs", [((2, 2, 3, 4), dict(scale_factor=2)),
                                           ((1, 2, 4, 3), dict(size=(7, 5))),
                                           ((1, 1, 5, 4), dict(size=(3, 2)))])
def test_gradcheck(bk, rng, shape, kwargs, mode, align_corners):
    layer = Upsample(mode=mode, align_corners=align_corners, **kwargs)
    report = gradcheck_module(layer, bk.asarray(rng.standard_normal(shape)))
    assert report.max_error < 1e-6, report


@pytest.mark.parametrize("mode, align_corners", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backend_matches_numpy(bk, rng, mode, align_corners, dtype):
    """The same layer on the backend and on NumPy gives identical results in x's dtype."""
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    dy = rng.standard_normal((2, 3, 12, 7)).astype(dtype)

    def make():
        return Upsample(size=(12, 7), mode=mode, align_corners=align_corners)

    y, dx, _ = forward_backward(bk, make(), x, dy)
    reference = make()
    np.testing.assert_array_equal(y, reference(x))
    np.testing.assert_array_equal(dx, reference.backward(dy))


def test_inputs_are_not_modified(bk, rng):
    x, dy = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 2, 6, 8))
    x_dev, dy_dev = bk.asarray(x), bk.asarray(dy)
    layer = Upsample(scale_factor=2, mode="bilinear")
    layer(x_dev)
    layer.backward(dy_dev)
    np.testing.assert_array_equal(bk.numpy(x_dev), x)
    np.testing.assert_array_equal(bk.numpy(dy_dev), dy)


# --- identities that need no PyTorch ---------------------------------------------------------

@pytest.mark.parametrize("s", [2, 3])
def test_nearest_integer_factor_repeats_pixels(bk, rng, s):
    x = rng.standard_normal((2, 3, 4, 5))
    dy = rng.standard_normal((2, 3, 4 * s, 5 * s))
    y, dx, _ = forward_backward(bk, Upsample(scale_factor=s), x, dy)
    np.testing.assert_array_equal(y, x.repeat(s, axis=2).repeat(s, axis=3))
    # Each input pixel was copied into an s x s block: its gradient is the block's sum.
    np.testing.assert_allclose(dx, dy.reshape(2, 3, 4, s, 5, s).sum(axis=(3, 5)), atol=1e-12)


def test_bilinear_factor_two_blends_quarter_and_three_quarters(bk, rng):
    """align_corners=False, x2 along H only: an output row between input rows k and k+1
    is 3/4 of the nearer one and 1/4 of the other; the first and last rows copy the edge."""
    x = rng.standard_normal((1, 2, 5, 3))
    y, _, _ = forward_backward(bk, Upsample(scale_factor=(2, 1), mode="bilinear"), x)
    np.testing.assert_allclose(y[:, :, 1:-1:2], 0.75 * x[:, :, :-1] + 0.25 * x[:, :, 1:])
    np.testing.assert_allclose(y[:, :, 2::2], 0.25 * x[:, :, :-1] + 0.75 * x[:, :, 1:])
    np.testing.assert_array_equal(y[:, :, [0, -1]], x[:, :, [0, -1]])


def test_bilinear_align_corners_keeps_input_pixels(bk, rng):
    """align_corners=True from n to 2n - 1: even outputs are the inputs, odd ones midpoints."""
    x = rng.standard_normal((1, 2, 4, 5))
    layer = Upsample(size=(7, 9), mode="bilinear", align_corners=True)
    y, _, _ = forward_backward(bk, layer, x)
    np.testing.assert_allclose(y[:, :, ::2, ::2], x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y[:, :, 1::2, ::2], (x[:, :, :-1] + x[:, :, 1:]) / 2, atol=1e-12)


@pytest.mark.parametrize("mode, align_corners", MODES)
def test_constants_stay_constant_and_gradient_mass_is_kept(bk, rng, mode, align_corners):
    """Every output is a convex combination of inputs (each interpolation row sums to 1), so
    a constant map stays constant, and backward hands out exactly the gradient it gets."""
    layer = Upsample(size=(11, 6), mode=mode, align_corners=align_corners)
    dy = rng.standard_normal((2, 1, 11, 6))
    y, dx, _ = forward_backward(bk, layer, np.full((2, 1, 4, 5), 2.5), dy)
    np.testing.assert_allclose(y, 2.5, rtol=1e-15)
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), dy.sum(axis=(2, 3)), rtol=1e-12)


# --- the bilinear transposed convolution --------------------------------------------------

@pytest.mark.parametrize("s", [2, 4, 8, 32])
def test_bilinear_transposed_convolution_equals_upsample(bk, rng, s):
    """FCN's learnable up-sampling starts as bilinear interpolation: ConvTranspose2d(C, C,
    2s, stride=s, padding=s // 2) with nn.init.bilinear_ weights equals Upsample(
    scale_factor=s, mode='bilinear') away from the s // 2 border pixels, where the
    convolution sees zero padding and the interpolation repeats the edge."""
    conv = pytest.importorskip("minifcn.nn.conv", reason="ConvTranspose2d not written yet")
    init = pytest.importorskip("minifcn.nn.init", reason="nn.init.bilinear_ not written yet")
    C = 3
    deconv = conv.ConvTranspose2d(C, C, 2 * s, stride=s, padding=s // 2, bias=False,
                                  dtype="float64", device=bk.device)
    init.bilinear_(deconv.weight)
    x = bk.asarray(rng.standard_normal((2, C, 4, 5)))
    y_conv = bk.numpy(deconv(x))
    y_up = bk.numpy(Upsample(scale_factor=s, mode="bilinear")(x))
    assert y_conv.shape == y_up.shape == (2, C, 4 * s, 5 * s)
    inner = (..., slice(s // 2, -(s // 2)), slice(s // 2, -(s // 2)))
    np.testing.assert_allclose(y_conv[inner], y_up[inner], rtol=0, atol=1e-12)


# --- bad arguments and inputs -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(size=4, scale_factor=2), ValueError, "exactly one of size and scale_factor"),
    (dict(), ValueError, "exactly one of size and scale_factor"),
    (dict(scale_factor=2, mode="bicubic"), ValueError, "mode must be one of"),
    (dict(scale_factor=2, align_corners=False), ValueError,
     "align_corners can only be set with mode 'bilinear'"),
    (dict(scale_factor=2, mode="bilinear", align_corners=1), TypeError,
     "align_corners must be True, False or None"),
    (dict(scale_factor=0), ValueError, "scale_factor must be positive"),
    (dict(scale_factor=(2, -1)), ValueError, "scale_factor must be positive"),
    (dict(scale_factor="2"), TypeError, "scale_factor must be a number or a pair"),
    (dict(scale_factor=(2, 2, 2)), TypeError, "scale_factor must be a number or a pair"),
    (dict(size=0), ValueError, "size must be >= 1"),
    (dict(size=2.5), TypeError, "size must be an int or a pair of ints"),
    (dict(size=4, recompute_scale_factor=True), ValueError,
     "recompute_scale_factor is not meaningful"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=r"^Upsample\(.*" + match):
        Upsample(**kwargs)


def test_bad_inputs(bk, rng):
    layer = Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match=r"Upsample\(scale_factor=2.0, mode='bilinear'\): "
                                         r"expected x of rank 4"):
        layer(bk.asarray(rng.standard_normal((2, 3, 4))))
    with pytest.raises(TypeError, match="Upsample.*expected a float32 or float64 x"):
        layer(bk.asarray(np.ones((1, 1, 2, 2), dtype=np.int64)))
    with pytest.raises(TypeError, match="Upsample.*expected x to be an array"):
        layer([[[[1.0]]]])
    with pytest.raises(ValueError, match="Upsample.*sizes must be at least 1 pixel"):
        Upsample(scale_factor=0.2)(bk.asarray(rng.standard_normal((1, 1, 4, 4))))


def test_bad_gradients(bk, rng):
    layer = Upsample(scale_factor=2)
    with pytest.raises(ValueError, match="Upsample.*backward called before forward"):
        layer.backward(bk.asarray(rng.standard_normal((1, 1, 4, 4))))
    layer(bk.asarray(rng.standard_normal((1, 1, 2, 2))))
    with pytest.raises(ValueError, match=r"Upsample.*expected dy of shape \(1, 1, 4, 4\)"):
        layer.backward(bk.asarray(rng.standard_normal((1, 1, 2, 2))))
    with pytest.raises(TypeError, match="Upsample.*expected dy of dtype float64"):
        layer.backward(bk.asarray(rng.standard_normal((1, 1, 4, 4)).astype(np.float32)))
    layer.backward(bk.asarray(rng.standard_normal((1, 1, 4, 4))))
    with pytest.raises(ValueError, match="Upsample.*backward called before forward"):
        layer.backward(bk.asarray(rng.standard_normal((1, 1, 4, 4))))
