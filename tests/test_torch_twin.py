"""Every model against its PyTorch twin (benchmarks/torch_models.py), end to end.

The twin is written module for module with minifcn's attribute names, so each model's
state_dict loads into it unchanged, and the twin's loads back into a fresh minifcn model:
this is the test that "a PyTorch model's weights load unchanged", for whole models. On the
same float64 weights and input, in training mode (dropout p=0, batch statistics), the two
must agree on the logits, the updated running statistics, the input gradient and every
parameter gradient for a random upstream gradient, and then on the logits in evaluation
mode. Any slip in a layer's forward or backward, in the wiring of a skip connection, in a
crop offset or in the order of a concatenation shows up here.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from minifcn.models import build_model

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = dict(widths=(2, 3, 2, 3, 4))
TINY_FCN = dict(TINY, head_channels=3, dropout=0.0)
CONFIGS = {
    "fcn32s": ("fcn32s", TINY_FCN),
    "fcn16s": ("fcn16s", TINY_FCN),
    "fcn8s": ("fcn8s", TINY_FCN),
    "segnet": ("segnet", TINY),
    "unet": ("unet", TINY),
    # the other up-samplers, and a transposed kernel (3) the stride (2) does not divide
    "fcn8s-bilinear": ("fcn8s", dict(TINY_FCN, upsample="bilinear")),
    "fcn16s-kernel3": ("fcn16s", dict(TINY_FCN, transposed_kernel=3)),
    "segnet-transposed": ("segnet", dict(TINY, upsample="transposed")),
    "unet-resize-conv": ("unet", dict(TINY, upsample="resize-conv")),
}
NUM_CLASSES = 3
INPUT_SHAPE = (2, 3, 64, 64)  # the stride-32 map is 2 x 2: crops and BN see real sizes


@pytest.fixture
def torch_models(torch):
    """benchmarks/torch_models.py (``torch`` is conftest's fixture: skips without PyTorch)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("torch_models")
    finally:
        sys.path.remove(str(BENCHMARKS))


def perturbed(state: dict, rng) -> dict:
    """A copy of a state_dict with every entry moved off its initial value, so that batch
    norm's unit weights, zero biases and 0/1 running statistics hide no mix-up."""
    new = {}
    for key, value in state.items():
        value = np.asarray(value)
        if key.endswith("num_batches_tracked"):
            new[key] = np.asarray(7, dtype=value.dtype)
        elif key.endswith("running_var"):
            new[key] = rng.uniform(0.5, 2.0, value.shape)
        else:
            new[key] = value + 0.2 * rng.standard_normal(value.shape)
    return new


def assert_close(ours, theirs, tol: float, what: str) -> None:
    """max |ours - theirs| <= tol * max |theirs| (exact equality when theirs is all zero)."""
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{what}: shapes {ours.shape} and {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtypes {ours.dtype} and {theirs.dtype}"
    scale = float(np.abs(theirs).max(initial=0.0))
    error = float(np.abs(ours - theirs).max(initial=0.0))
    assert error <= tol * scale, (f"{what}: max |minifcn - torch| = {error:.3g}, "
                                  f"{error / max(scale, 1e-300):.3g} of the largest entry "
                                  f"({scale:.3g}); tolerance {tol:g}")


def twin_pair(torch, torch_models, config: str, direction: str, rng):
    """(minifcn model, PyTorch twin) holding the same perturbed float64 weights, copied
    through one framework's state_dict into the other's ``load_state_dict`` unchanged."""
    name, options = CONFIGS[config]
    ours = build_model(name, NUM_CLASSES, dtype="float64", **options)
    twin = torch_models.build_twin(name, NUM_CLASSES, **options).to(torch.float64)
    assert list(twin.state_dict()) == list(ours.state_dict())  # same keys, same order
    if direction == "minifcn->torch":
        ours.load_state_dict(perturbed(ours.state_dict(), rng))
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    else:
        twin.load_state_dict({k: torch.from_numpy(v)
                              for k, v in perturbed(twin.state_dict(), rng).items()})
        ours.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    for key, value in twin.state_dict().items():
        assert np.array_equal(ours.state_dict()[key], value.numpy()), key
    return ours, twin


@pytest.mark.torch
@pytest.mark.parametrize("direction", ["minifcn->torch", "torch->minifcn"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_model_matches_its_pytorch_twin(torch, torch_models, config, direction):
    rng = np.random.default_rng(sorted(CONFIGS).index(config))
    ours, twin = twin_pair(torch, torch_models, config, direction, rng)
    x = rng.standard_normal(INPUT_SHAPE)

    # training mode: batch statistics, running statistics updated
    logits = ours(x)
    x_t = torch.from_numpy(x.copy()).requires_grad_()
    logits_t = twin(x_t)
    assert_close(logits, logits_t, 1e-9, "logits")
    twin_buffers = dict(twin.named_buffers())
    for key, value in ours.named_buffers():
        if key.endswith("num_batches_tracked"):
            assert int(value) == int(twin_buffers[key]) == 8, key
        else:
            assert_close(value, twin_buffers[key], 1e-9, key)

    dy = rng.standard_normal(logits.shape)
    ours.zero_grad()
    dx = ours.backward(dy)
    logits_t.backward(torch.from_numpy(dy))
    assert_close(dx, x_t.grad, 1e-8, "input gradient")
    twin_params = dict(twin.named_parameters())
    assert sorted(twin_params) == sorted(name for name, _ in ours.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param.grad, twin_params[key].grad, 1e-8, f"gradient of {key}")

    # evaluation mode: the running statistics just updated
    ours.eval()
    twin.eval()
    with torch.no_grad():
        assert_close(ours(x), twin(torch.from_numpy(x)), 1e-9, "logits in evaluation mode")
