"""The classifier, its convolutionalization, and an FCN started from it."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn import backend, nn
from minifcn.gradcheck import gradcheck_module
from minifcn.models import FCN, Classifier, build_model, convolutionalize

TINY = dict(widths=(2, 3, 2, 3, 4), head_channels=5)


def tiny_classifier(rng, image_size=96, **options) -> Classifier:
    """A float64 classifier whose every number is random, batch-norm statistics included
    (the defaults, mean 0 and variance 1, would hide a mix-up of the two)."""
    backend.manual_seed(3)
    model = build_model("classifier", 3, image_size=image_size, dtype="float64",
                        **{**TINY, **options})
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = rng.uniform(0.5, 1.5, module.weight.shape)
            module.bias.data = rng.standard_normal(module.bias.shape)
            module.running_mean = rng.standard_normal(module.running_mean.shape)
            module.running_var = rng.uniform(0.5, 2.0, module.running_var.shape)
    return model


def head(model: Classifier, pool5):
    """The classifier's layers after the encoder, on a (N, C, k, k) pool5 map."""
    return model.score_fr(model.fc7(model.fc6(model.flatten(pool5))))


def test_classifier_scores_and_backward_on_every_backend(bk, rng):
    model = tiny_classifier(rng).to(bk.device, "float32")
    x = bk.asarray(rng.random((4, 3, 96, 96), dtype=np.float32))
    y = model(x)
    assert bk.owns(y) and y.shape == (4, 3) and y.dtype == x.dtype
    dx = model.backward(bk.asarray(rng.standard_normal((4, 3), dtype=np.float32)))
    assert dx.shape == x.shape and bk.owns(dx)
    dense = convolutionalize(model.eval())
    assert dense.device == model.device
    z = dense(bk.asarray(rng.random((1, 3, 128, 160), dtype=np.float32)))
    assert bk.owns(z) and z.shape == (1, 3, 2, 3)


def test_classifier_backward_matches_finite_differences(rng):
    model = tiny_classifier(rng, dropout=0.0)
    report = gradcheck_module(model, rng.standard_normal((2, 3, 96, 96)), directions=1)
    assert report.max_error < 1e-6, report
    assert {n for n, _ in model.named_parameters()} <= set(report.errors)


def test_names_make_the_conversion_a_renaming(rng):
    model = tiny_classifier(rng)
    dense = convolutionalize(model)
    assert list(dense.state_dict()) == list(model.state_dict())
    fcn = build_model("fcn8s", 4, **TINY)
    fcn_state = fcn.state_dict()
    for key, value in dense.state_dict().items():
        if not key.startswith("score_fr."):
            assert fcn_state[key].shape == value.shape, key
    # fc6's weight is the Linear's, reshaped: (F, C*3*3) -> (F, C, 3, 3)
    np.testing.assert_array_equal(dense.fc6[0].weight.data.reshape(5, -1),
                                  model.fc6[0].weight.data)
    assert dense.fc6[0].kernel_size == (3, 3) and dense.fc6[0].padding == (0, 0)
    assert dense.fc7[0].kernel_size == (1, 1) and dense.score_fr.kernel_size == (1, 1)


def test_converted_network_gives_the_classifiers_scores(rng):
    model = tiny_classifier(rng).eval()
    x = rng.standard_normal((5, 3, 96, 96))
    dense = convolutionalize(model)
    assert not dense.training
    z = dense(x)
    assert z.shape == (5, 3, 1, 1)
    np.testing.assert_allclose(z[:, :, 0, 0], model(x), rtol=0, atol=1e-10)


def test_converted_network_slides_the_classifier_over_a_larger_image(rng):
    """On a 160 x 224 image: a 3 x 5 map, one score vector per 3 x 3 window of pool5 (a
    96 x 96 window of the image, at stride 32), each the classifier's head on that window."""
    model = tiny_classifier(rng).eval()
    x = rng.standard_normal((2, 3, 160, 224))
    z = convolutionalize(model)(x)
    assert z.shape == (2, 3, 3, 5)
    pool5 = model.encoder(x).pooled[-1]
    assert pool5.shape[2:] == (5, 7)
    for i in range(3):
        for j in range(5):
            window = np.ascontiguousarray(pool5[:, :, i:i + 3, j:j + 3])
            np.testing.assert_allclose(z[:, :, i, j], head(model, window), rtol=0,
                                       atol=1e-10, err_msg=f"window {i}, {j}")


def test_converted_backward_matches_finite_differences(rng):
    model = tiny_classifier(rng, dropout=0.0)
    dense = convolutionalize(model)
    report = gradcheck_module(dense, rng.standard_normal((1, 3, 128, 96)), directions=1)
    assert report.max_error < 1e-6, report


def test_conversion_copies_and_keeps_device_mode_and_frozen_flags(rng):
    model = tiny_classifier(rng)
    model.fc7[0].weight.requires_grad = False
    dense = convolutionalize(model)
    assert dense.training and dense.fc7[0].weight.requires_grad is False
    assert dense.fc6[0].weight.data.dtype == np.float64
    before = model.fc6[0].weight.data.copy()
    dense.fc6[0].weight.data[...] = 0.0
    np.testing.assert_array_equal(model.fc6[0].weight.data, before)  # a copy, not a view


def test_fcn_from_classifier_copies_encoder_fc6_fc7_and_renews_the_scores(rng):
    model = tiny_classifier(rng)
    fcn = FCN.from_classifier(model, num_classes=4, variant="8s")
    assert fcn.variant == "8s" and fcn.num_classes == 4
    dense = convolutionalize(model).state_dict()
    fcn_state = fcn.state_dict()
    for key, value in dense.items():
        if key.startswith("score_fr."):
            assert fcn_state[key].shape[0] == 4  # the segmenter's classes, fresh
        else:
            np.testing.assert_array_equal(fcn_state[key], value, err_msg=key)
    # FCN's fc6 pads by one: at 96 px its centre cell scores the one window the
    # converted network scores, the same numbers through fc6 and fc7.
    fcn.eval()
    model.eval()
    x = rng.standard_normal((2, 3, 96, 96))
    pool5 = fcn.encoder(x).pooled[-1]
    np.testing.assert_allclose(fcn.fc7(fcn.fc6(pool5))[:, :, 1, 1],
                               model.fc7(model.fc6(model.flatten(pool5))), atol=1e-10)
    same = FCN.from_classifier(tiny_classifier(rng), num_classes=3, keep_scores=True)
    np.testing.assert_array_equal(same.score_fr.weight.data.reshape(3, -1),
                                  model.score_fr.weight.data)


def test_fcn_from_classifier_refuses_what_does_not_fit(rng):
    model = tiny_classifier(rng)
    with pytest.raises(ValueError, match=r"encoder widths \(2, 3, 2, 3, 4\) vs"):
        FCN.from_classifier(model, 4, widths=(2, 3, 2, 3, 8))
    with pytest.raises(ValueError, match="fc6/fc7 width 5 vs 6"):
        FCN.from_classifier(model, 4, head_channels=6)
    with pytest.raises(ValueError, match="keep_scores needs the same classes"):
        FCN.from_classifier(model, 4, keep_scores=True)
    with pytest.raises(ValueError, match="train the classifier on 96 px images"):
        FCN.from_classifier(tiny_classifier(rng, image_size=64), 4)


def test_bad_inputs_are_refused(rng):
    model = tiny_classifier(rng)
    with pytest.raises(ValueError, match=r"Classifier\(96x96\): .* exactly 96x96"):
        model(rng.standard_normal((1, 3, 64, 64)))
    with pytest.raises(ValueError, match="channels"):
        model(rng.standard_normal((1, 1, 96, 96)))
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("classifier", 3, image_size=100)
    with pytest.raises(TypeError, match="expected a minifcn Classifier"):
        convolutionalize(build_model("fcn32s", 3, **TINY))
    dense = convolutionalize(model)
    with pytest.raises(ValueError, match="at least 96"):
        dense(rng.standard_normal((1, 3, 64, 128)))
    model.fc7 = nn.Sequential(nn.Linear(5, 5, dtype="float64"), nn.Dropout2d(0.5))
    with pytest.raises(TypeError, match="Dropout2d"):
        convolutionalize(model)
