"""minifcn.no_grad(): the same outputs, no caches kept, activations freed once read, and a
clear error for a backward that has nothing to work from."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

import minifcn
from minifcn import backend, nn
from minifcn.grad_mode import NO_GRAD_CACHE
from minifcn.models import build_model
from minifcn.nn.module import trace_calls

WIDTHS = (4, 8, 8, 16, 16)
MODELS = [("fcn8s", {}), ("fcn16s", {}), ("fcn32s", {}), ("unet", {}),
          ("segnet", {"upsample": "unpool"}), ("segnet", {})]


def test_no_grad_is_a_context_manager_a_decorator_and_restores_the_mode():
    assert minifcn.is_grad_enabled()
    with minifcn.no_grad():
        assert not minifcn.is_grad_enabled()
        with minifcn.enable_grad():
            assert minifcn.is_grad_enabled()
        assert not minifcn.is_grad_enabled()
    assert minifcn.is_grad_enabled()

    @minifcn.no_grad()
    def inside():
        return minifcn.is_grad_enabled()

    assert inside() is False and minifcn.is_grad_enabled()
    with minifcn.set_grad_enabled(False):
        assert not minifcn.is_grad_enabled()
    assert minifcn.is_grad_enabled()
    minifcn.set_grad_enabled(False)
    try:
        assert not minifcn.is_grad_enabled()
    finally:
        minifcn.set_grad_enabled(True)
    with pytest.raises(TypeError, match="must be True or False"):
        minifcn.set_grad_enabled(0)


def test_the_mode_belongs_to_each_thread():
    seen = []
    with minifcn.no_grad():
        worker = threading.Thread(target=lambda: seen.append(minifcn.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def model_and_input(bk, name, options, seed=0):
    minifcn.manual_seed(0)
    if name.startswith("fcn"):
        options = {**options, "head_channels": 16}
    model = build_model(name, 4, widths=WIDTHS, **options).to(bk.device, "float64").eval()
    x = np.random.default_rng(seed).standard_normal((2, 3, 64, 96))
    return model, bk.asarray(x)


@pytest.mark.parametrize("name, options", MODELS, ids=lambda v: str(v) if v else "")
def test_a_forward_under_no_grad_is_the_ordinary_forward_bit_for_bit(bk, name, options):
    model, x = model_and_input(bk, name, options)
    expected = bk.numpy(model(x))
    with minifcn.no_grad():
        got = bk.numpy(model(x))
    assert np.array_equal(got, expected)


def arrays_held(module) -> list[str]:
    """Every array a module holds outside its parameters and buffers (its caches)."""
    held = []

    def visit(name, value, depth=0):
        if backend.is_array(value):
            held.append(name)
        elif isinstance(value, (tuple, list)) and depth < 3:
            for k, item in enumerate(value):
                visit(f"{name}[{k}]", item, depth + 1)
        elif hasattr(value, "_fields") and depth < 3:  # functional caches (named tuples)
            for field in value._fields:
                visit(f"{name}.{field}", getattr(value, field), depth + 1)

    for prefix, sub in module.named_modules():
        for attribute, value in vars(sub).items():
            if attribute not in ("_parameters", "_buffers", "_modules") and \
                    attribute not in sub._buffers:
                visit(f"{prefix}.{attribute}", value)
    return held


@pytest.mark.parametrize("name, options", MODELS, ids=lambda v: str(v) if v else "")
def test_no_cache_outlives_a_forward_under_no_grad(bk, name, options):
    """On NumPy and on the strict CuPy stand-in (where CuPy's memory pool would get every
    freed activation back): after a no_grad forward no layer holds an array; after an
    ordinary one, they do."""
    model, x = model_and_input(bk, name, options)
    model(x)
    assert arrays_held(model)
    with minifcn.no_grad():
        model(x)
    assert arrays_held(model) == []
    assert all(vars(m).get("_cache", NO_GRAD_CACHE) is NO_GRAD_CACHE
               for m in model.modules())


@pytest.mark.parametrize("name, options", MODELS, ids=lambda v: str(v) if v else "")
def test_each_activation_is_freed_once_its_last_reader_has_run(name, options):
    """When the model's last layer runs, every activation the forward made is gone but
    small ones at stride 8 or coarser (FCN's score maps and pool5): the full-resolution
    stages and U-Net's skips were let go as soon as they had been read."""
    model, x = model_and_input(_numpy(), name, options)
    alive = []
    last_layer = list(model._modules.values())[-1]  # final up-sampler or classifier
    if name.startswith("fcn"):
        last_layer = model.final_upsampler
    snapshot = {}

    def observe(module, args, output):
        for out in output if isinstance(output, tuple) else (output,):
            if backend.is_array(out):
                alive.append(weakref.ref(out))
        if module is last_layer:
            inputs = {id(a) for a in args}
            snapshot["big"] = [r().shape for r in alive
                               if r() is not None and id(r()) not in inputs
                               and r() is not output and r().shape[2] * 8 > x.shape[2]]

    with minifcn.no_grad(), trace_calls(observe):
        model(x)
    assert snapshot["big"] == []
    with trace_calls(observe):  # with gradients, the caches keep them all
        alive.clear()
        model(x)
    assert len(snapshot["big"]) > 3


def _numpy():
    from conftest import Backend

    return Backend("numpy", np, "cpu")


def test_a_backward_after_a_no_grad_forward_names_the_layer(rng):
    conv = nn.Conv2d(3, 4, 3)
    x = rng.standard_normal((1, 3, 8, 8)).astype("float32")
    with minifcn.no_grad():
        y = conv(x)
    with pytest.raises(RuntimeError, match=r"Conv2d\(3->4.*backward after a forward made "
                                           r"under minifcn.no_grad\(\)"):
        conv.backward(np.ones_like(y))
    conv(x)  # an ordinary forward: the backward works again
    assert conv.backward(np.ones_like(y)).shape == x.shape


def test_a_backward_inside_no_grad_names_the_module(rng):
    model = build_model("fcn8s", 4, widths=WIDTHS, head_channels=16)
    x = rng.standard_normal((1, 3, 32, 32)).astype("float32")
    y = model(x)
    with minifcn.no_grad(), pytest.raises(RuntimeError, match="FCN.*backward inside "
                                                              "minifcn.no_grad"):
        model.backward(np.ones_like(y))
    relu = nn.ReLU()
    relu(x)
    with minifcn.no_grad(), pytest.raises(RuntimeError, match=r"ReLU\(\): backward inside"):
        relu.backward(np.ones_like(x))
