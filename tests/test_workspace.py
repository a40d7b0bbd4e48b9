"""The workspace pool: large buffers reused from one step to the next, never a caller's
memory, bounded, NumPy only; and convolutions that give the same numbers with it."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn.functional import workspace
from minifcn.nn import Conv2d, ConvTranspose2d
from minifcn.testing import strict_cupy


@pytest.fixture(autouse=True)
def empty_pool():
    workspace.clear()
    previous = workspace.set_pool_bytes(workspace.DEFAULT_POOL_BYTES)
    yield
    workspace.set_pool_bytes(previous)
    workspace.clear()


def test_a_given_back_buffer_is_taken_again_in_any_shape_of_its_size():
    a = workspace.take(np, (4, 6), np.float32)
    root = a.base
    workspace.give(a[1:].T)  # any view gives back the whole buffer
    assert workspace.pool_bytes() == 96
    b = workspace.take(np, (3, 8), np.float32)
    assert b.base is root and b.shape == (3, 8) and workspace.pool_bytes() == 0
    c = workspace.take(np, (3, 8), np.float32)  # the pool is empty again: a new buffer
    assert c.base is not root
    assert workspace.take(np, (24,), np.float64).dtype == np.float64


def test_arrays_the_pool_did_not_make_are_never_taken_in():
    mine = np.zeros(24, np.float32)
    workspace.give(mine)
    workspace.give(mine.reshape(4, 6))
    workspace.give(None)
    assert workspace.pool_bytes() == 0
    assert not np.shares_memory(workspace.take(np, (24,), np.float32), mine)


def test_the_pool_holds_at_most_its_limit_dropping_the_oldest():
    workspace.set_pool_bytes(100)
    first, second = (workspace.take(np, (16,), np.float32) for _ in range(2))
    too_big = workspace.take(np, (32,), np.float32)
    workspace.give(first)
    workspace.give(second)
    assert workspace.pool_bytes() == 128 - 64  # 2 x 64 bytes > 100: the first is dropped
    assert workspace.take(np, (16,), np.float32).base is second.base
    workspace.give(too_big)  # 128 bytes alone exceed the limit
    assert workspace.pool_bytes() == 0
    # a size taken out again, then others given beyond the limit: the oldest still go first
    small = [workspace.take(np, (8,), np.float32) for _ in range(3)]
    workspace.give(small[0])
    workspace.take(np, (8,), np.float32)
    for buffer in small[1:]:
        workspace.give(buffer)
    workspace.give(workspace.take(np, (20,), np.float32))
    assert workspace.pool_bytes() <= 100
    workspace.set_pool_bytes(0)
    workspace.give(workspace.take(np, (4,), np.float32))
    assert workspace.pool_bytes() == 0
    with pytest.raises(ValueError, match="set_pool_bytes: nbytes must be >= 0"):
        workspace.set_pool_bytes(-1)


def test_on_the_device_take_is_empty_and_give_does_nothing():
    a = workspace.take(strict_cupy, (2, 3), np.float32)
    assert isinstance(a, strict_cupy.ndarray) and a.shape == (2, 3)
    workspace.give(a)
    assert workspace.pool_bytes() == 0


@pytest.mark.parametrize("layer_class", [Conv2d, ConvTranspose2d])
def test_steps_that_reuse_buffers_give_the_numbers_of_fresh_ones(layer_class, rng):
    """Three training steps of a layer, each reusing the last one's buffers, against the
    same steps with the pool off: equal to the last bit."""
    x = [rng.standard_normal((2, 3, 9, 9)) for _ in range(3)]
    results = []
    for limit in (0, workspace.DEFAULT_POOL_BYTES):
        workspace.set_pool_bytes(limit)
        layer = layer_class(3, 4, 3, stride=1, padding=1, dtype="float64")
        layer.load_state_dict({"weight": np.linspace(-1, 1, layer.weight.data.size)
                               .reshape(layer.weight.shape), "bias": np.arange(4.0)})
        steps = []
        for xi in x:
            y = layer(xi)
            dx = layer.backward(np.sin(y))
            steps += [y, dx, layer.weight.grad.copy()]
        results.append(steps)
        if limit:
            assert workspace.pool_bytes() > 0  # the buffers were really reused
    for fresh, reused in zip(*results, strict=True):
        np.testing.assert_array_equal(reused, fresh)
