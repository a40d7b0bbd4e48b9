"""The segmenters: shapes, hand-written backward passes, geometry, summary, state_dict."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn import backend, nn
from minifcn.gradcheck import gradcheck_module
from minifcn.models import FCN, MODELS, build_model, summary
from minifcn.models.common import transposed_padding
from minifcn.models.geometry import Geometry, chain_geometry, crop_offset

TINY = dict(widths=(2, 3, 2, 3, 4))


def tiny_model(name: str, **options):
    """A model small enough to gradient-check: a few hundred float64 parameters."""
    if name.startswith("fcn"):
        options = dict(head_channels=3, dropout=0.0, **options)
    backend.manual_seed(7)
    return build_model(name, num_classes=3, dtype="float64", **TINY, **options)


@pytest.mark.parametrize("name", list(MODELS))
def test_output_is_one_score_map_per_class_at_input_resolution(bk, name, rng):
    model = tiny_model(name).to(bk.device, "float32")
    x = bk.asarray(rng.random((2, 3, 64, 96), dtype=np.float32))
    y = model(x)
    assert bk.owns(y) and y.dtype == x.dtype
    assert y.shape == (2, 3, 64, 96)
    dx = model.backward(bk.asarray(rng.standard_normal(y.shape, dtype=np.float32)))
    assert dx.shape == x.shape and bk.owns(dx)


@pytest.mark.parametrize("name", list(MODELS))
def test_backward_matches_finite_differences_over_every_parameter(name, rng):
    model = tiny_model(name)
    # 64 px, not 32: at 32 the bottleneck is 1x1 and batch norm normalises just two values
    # per channel, a function so curved that finite differences lose their accuracy.
    x = rng.standard_normal((2, 3, 64, 64))
    report = gradcheck_module(model, x, directions=2)
    assert report.max_error < 1e-6, report
    checked = set(report.errors)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= checked


@pytest.mark.parametrize("name", ["fcn8s", "unet"])
def test_a_model_told_no_input_grad_returns_none_with_the_same_parameter_grads(bk, name, rng):
    """Training sets encoder.needs_input_grad = False: the first convolution skips d(image),
    backward returns None and every parameter gradient is unchanged."""
    x = bk.asarray(rng.standard_normal((2, 3, 32, 32)))
    dy = bk.asarray(rng.standard_normal((2, 3, 32, 32)))
    grads = []
    for needs in (True, False):
        model = tiny_model(name).to(bk.device)
        model.encoder.needs_input_grad = needs
        assert model.encoder.needs_input_grad is needs
        model(x)
        dx = model.backward(dy)
        assert (dx is None) is (not needs)
        grads.append({n: bk.numpy(p.grad).copy() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        np.testing.assert_allclose(grads[1][n], g, rtol=1e-12, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("mode", ["bilinear", "resize-conv"])
@pytest.mark.parametrize("name", ["fcn8s", "unet", "segnet"])
def test_every_upsample_mode_trains_end_to_end(name, mode, rng):
    model = tiny_model(name, upsample=mode)
    report = gradcheck_module(model, rng.standard_normal((2, 3, 64, 64)), directions=1)
    assert report.max_error < 1e-6, report


def test_transposed_kernel_not_divisible_by_stride_keeps_sizes(rng):
    model = tiny_model("fcn8s", transposed_kernel=3)
    assert model.upscore2.kernel_size == (3, 3)
    y = model(rng.standard_normal((1, 3, 64, 64)))
    assert y.shape == (1, 3, 64, 64)


def test_odd_transposed_kernels_shift_by_half_a_pixel():
    """k=3, s=2 centres input pixel i on output 2i, not 2i + 0.5: no crop can fix that."""
    coarse = Geometry(jump=2.0, start=0.5)
    odd = chain_geometry([nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1)],
                         coarse)
    even = chain_geometry([nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1)], coarse)
    assert even.start == 0.0 and odd.start == 0.5
    with pytest.raises(ValueError, match="misaligned by 0.5"):
        crop_offset(big=Geometry(), small=odd)


@pytest.mark.parametrize("kernel,scale", [(2, 2), (3, 2), (4, 2), (5, 2), (16, 8), (64, 32)])
def test_transposed_padding_scales_sizes_exactly(kernel, scale):
    padding, output_padding = transposed_padding(kernel, scale)
    for size in (1, 2, 7):
        assert (size - 1) * scale - 2 * padding + kernel + output_padding == scale * size
    assert 0 <= output_padding < scale


def test_images_the_encoder_cannot_take_are_refused(rng):
    model = tiny_model("fcn8s")
    with pytest.raises(ValueError, match="multiples of 32"):
        model(rng.standard_normal((1, 3, 48, 64)))
    with pytest.raises(ValueError, match="3 channels"):
        model(rng.standard_normal((1, 1, 64, 64)))


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="fcn8s"):
        build_model("fcn4s")


def test_upscore_layers_start_as_bilinear_interpolation():
    model = tiny_model("fcn32s")
    weight = backend.to_numpy(model.upscore32.weight.data)
    assert weight.shape == (3, 3, 64, 64)
    off_diagonal = weight.copy()
    off_diagonal[[0, 1, 2], [0, 1, 2]] = 0
    assert not off_diagonal.any()
    assert np.allclose(weight[0, 0], weight[1, 1])
    assert np.isclose(weight[0, 0].max(), (1 - 0.5 / 32) ** 2)


def test_same_seed_same_model():
    first = tiny_model("unet").state_dict()
    second = tiny_model("unet").state_dict()
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_state_dict_keys_follow_pytorch_naming():
    keys = list(tiny_model("fcn8s").state_dict())
    assert "encoder.stage1.0.weight" in keys
    assert "encoder.stage1.1.running_mean" in keys
    assert "encoder.stage1.1.num_batches_tracked" in keys
    assert {"score_fr.weight", "score_pool4.weight", "score_pool3.weight",
            "upscore2.weight", "upscore_pool4.weight", "upscore8.weight"} <= set(keys)


def test_summary_reports_shapes_stride_and_receptive_field():
    model = tiny_model("fcn8s")
    table = summary(model, (1, 3, 64, 64))
    by_name = {row.name: row for row in table.rows}
    assert by_name["encoder.pool5"].output_shape == (1, 4, 2, 2)
    assert by_name["encoder.pool5"].geometry.jump == 32
    assert by_name["score_pool3"].geometry.jump == 8
    assert table.output.output_shape == (1, 3, 64, 64)
    assert table.output.geometry.jump == 1
    assert table.total_params == model.num_parameters()
    # Receptive field grows by (k-1)*jump per layer: check the first stage by hand.
    assert by_name["encoder.stage1.0"].geometry.rf == 3
    assert by_name["encoder.stage1.3"].geometry.rf == 5
    assert by_name["encoder.pool1"].geometry.rf == 6
    assert "score_fr" in str(table)


def test_fcn_skip_offsets_are_computed_from_the_geometry():
    # With 'same' padding everywhere the skip maps line up exactly: offset 0, computed.
    model = tiny_model("fcn8s")
    assert model.crop_pool4.offset == (0, 0)
    assert model.crop_pool3.offset == (0, 0)


def _vgg16_fcn_layers(pad_first: int):
    """The original FCN-VGG16 trunk (Long et al.), as geometry only."""
    layers, channels = [], 3
    for stage, convs in enumerate((2, 2, 3, 3, 3)):
        for i in range(convs):
            padding = pad_first if stage == 0 and i == 0 else 1
            layers.append(nn.Conv2d(channels, 1, 3, padding=padding))
            channels = 1
        layers.append(nn.MaxPool2d(2, 2))
    return layers


def test_geometry_reproduces_the_original_fcn_crop_offsets():
    """The FCN reference code pads conv1_1 by 100 and crops the score maps at offsets
    5 (pool4), 9 (pool3), 19 (fcn32s output), 27 (fcn16s output) and 31 (fcn8s output)."""
    trunk = _vgg16_fcn_layers(pad_first=100)
    image = Geometry()
    pool3, pool4 = chain_geometry(trunk[:10]), chain_geometry(trunk[:14])
    scores = chain_geometry(trunk + [nn.Conv2d(1, 1, 7), nn.Conv2d(1, 1, 1)])

    def up(geometry, kernel, stride):
        return chain_geometry([nn.ConvTranspose2d(1, 1, kernel, stride=stride)], geometry)

    assert crop_offset(big=up(scores, 64, 32), small=image) == 19
    up2 = up(scores, 4, 2)
    assert crop_offset(big=pool4, small=up2) == 5
    assert crop_offset(big=up(up2, 32, 16), small=image) == 27
    up4 = up(up2, 4, 2)
    assert crop_offset(big=pool3, small=up4) == 9
    assert crop_offset(big=up(up4, 16, 8), small=image) == 31
    # FCN-32s's coarse map: stride 32, and a receptive field of 404 pixels.
    assert scores.jump == 32 and scores.rf == 404


def test_misaligned_maps_cannot_be_cropped_into_place():
    with pytest.raises(ValueError, match="misaligned"):
        crop_offset(big=Geometry(jump=2, start=1.0), small=Geometry(jump=2, start=0.0))
    with pytest.raises(ValueError, match="strides"):
        crop_offset(big=Geometry(jump=2), small=Geometry(jump=4))


def test_model_moves_to_the_stand_in_and_gives_the_same_logits(rng):
    from minifcn.testing import strict_cupy

    model = tiny_model("unet").eval()
    x = rng.standard_normal((1, 3, 32, 32))
    expected = model(x)
    with backend.use_gpu_module(strict_cupy):
        model.to("gpu")
        y = model(strict_cupy.asarray(x))
        assert isinstance(y, strict_cupy.ndarray)
        np.testing.assert_allclose(y.get(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "transposed"])
def test_a_finer_fcn_starts_from_its_coarser_parent(bk, mode, rng):
    """FCN.from_coarser, Long et al.'s staged training: shared layers copied, the new skip's
    score layer zero, so the finer net's scores start as the parent's coarse scores."""

    def check_copied(child, elder):
        assert child.device == elder.device and child.upsample == mode
        assert not child.training, "in the parent's mode"
        child_state, elder_state = child.state_dict(), elder.state_dict()
        final = f"upscore{elder.variant[:-1]}."
        shared = [k for k in elder_state if k in child_state and not k.startswith(final)]
        assert "encoder.stage1.1.running_mean" in shared and "score_fr.weight" in shared
        assert child.variant == "16s" or "score_pool4.weight" in shared
        for key in shared:
            np.testing.assert_array_equal(bk.numpy(child_state[key]),
                                          bk.numpy(elder_state[key]), err_msg=key)

    def as_if_trained(model):  # nothing left at its initial value
        for _, param in model.named_parameters():
            param.data = bk.asarray(rng.standard_normal(param.data.shape))

    parent = tiny_model("fcn32s", upsample=mode).to(bk.device)
    as_if_trained(parent)
    parent.eval()
    x = bk.asarray(rng.standard_normal((2, 3, 64, 96)))
    before = {k: bk.numpy(v).copy() for k, v in parent.state_dict().items()}
    fcn16s = FCN.from_coarser(parent)
    assert fcn16s.variant == "16s" and not bk.numpy(fcn16s.score_pool4.weight.data).any()
    check_copied(fcn16s, parent)
    coarse = parent.score_fr(parent.fc7(parent.fc6(parent.encoder(x).pooled[4])))
    np.testing.assert_allclose(bk.numpy(fcn16s(x)),
                               bk.numpy(fcn16s.upscore16(fcn16s.upscore2(coarse))),
                               rtol=1e-12, atol=1e-12)
    as_if_trained(fcn16s)
    fcn8s = FCN.from_coarser(fcn16s)
    assert fcn8s.variant == "8s" and not bk.numpy(fcn8s.score_pool3.weight.data).any()
    check_copied(fcn8s, fcn16s)

    fcn8s.train()
    fcn8s.zero_grad()
    fcn8s.backward(bk.asarray(rng.standard_normal(tuple(fcn8s(x).shape))))
    assert bk.numpy(fcn8s.score_pool3.weight.grad).any(), "a zero layer still learns"
    after = {k: bk.numpy(v) for k, v in parent.state_dict().items()}
    assert all(np.array_equal(after[k], before[k]) for k in before), "the parent is unchanged"


def test_from_coarser_refuses_what_is_not_finer():
    fcn16s = tiny_model("fcn16s")
    with pytest.raises(ValueError, match="finer than the parent's '16s'.*'8s'.*got '32s'"):
        FCN.from_coarser(fcn16s, "32s")
    with pytest.raises(ValueError, match="FCN-8s is the finest"):
        FCN.from_coarser(tiny_model("fcn8s"))
    with pytest.raises(TypeError, match="expected a minifcn FCN, got UNet"):
        FCN.from_coarser(tiny_model("unet"))
