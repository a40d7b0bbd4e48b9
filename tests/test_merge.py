"""Add, Concat and Crop (the skip-connection merges) and their functional pairs: results,
gradients (finite differences, PyTorch), the aliasing contract, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn.gradcheck import gradcheck_module
from minifcn.nn.merge import Add, Concat, Crop
from minifcn.testing import strict_cupy


def as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


def run(bk, layer, inputs, dy, *extra):
    """Forward and backward on the backend; y and the gradients as NumPy arrays, after
    checking that they stay in the backend's namespace and the inputs' dtype."""
    inputs = [bk.asarray(x) for x in inputs]
    y = layer(*inputs, *extra)
    grads = as_tuple(layer.backward(bk.asarray(dy)))
    for array in (y, *grads):
        assert bk.owns(array) and array.dtype == inputs[0].dtype
    return bk.numpy(y), [bk.numpy(g) for g in grads]


def torch_run(torch, op, inputs, dy):
    """The same through PyTorch's autograd: y and each input's gradient."""
    tensors = [torch.from_numpy(x).requires_grad_() for x in inputs]
    y = op(*tensors)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), [t.grad.numpy() for t in tensors]


# --- Add -------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [2, 3])
def test_add(bk, rng, count):
    xs = [rng.standard_normal((2, 3, 4, 5)) for _ in range(count)]
    dy = rng.standard_normal((2, 3, 4, 5))
    y, grads = run(bk, Add(), xs, dy)
    np.testing.assert_allclose(y, sum(xs), rtol=1e-15)
    assert len(grads) == count
    for grad in grads:
        np.testing.assert_array_equal(grad, dy)


def test_add_hands_out_dy_itself_and_leaves_inputs_alone(bk, rng):
    """The documented aliasing contract: every gradient is the very array dy (no copies,
    nobody writes into it), and the inputs are untouched (the sum is a new array)."""
    a = bk.asarray(rng.standard_normal((1, 2, 3, 3)))
    b = bk.asarray(rng.standard_normal((1, 2, 3, 3)))
    a_before, b_before = bk.numpy(a).copy(), bk.numpy(b).copy()
    layer = Add()
    y = layer(a, b, a)
    assert y is not a and y is not b
    dy = bk.asarray(rng.standard_normal((1, 2, 3, 3)))
    grads = layer.backward(dy)
    assert all(grad is dy for grad in grads)
    np.testing.assert_array_equal(bk.numpy(a), a_before)
    np.testing.assert_array_equal(bk.numpy(b), b_before)


def test_add_gradcheck(bk, rng):
    xs = [bk.asarray(rng.standard_normal((1, 2, 3, 2))) for _ in range(3)]
    report = gradcheck_module(Add(), *xs)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
def test_add_matches_torch(bk, torch, rng):
    xs = [rng.standard_normal((2, 3, 4, 4)) for _ in range(3)]
    dy = rng.standard_normal((2, 3, 4, 4))
    y, grads = run(bk, Add(), xs, dy)
    y_t, grads_t = torch_run(torch, lambda a, b, c: a + b + c, xs, dy)
    np.testing.assert_allclose(y, y_t, rtol=0, atol=1e-12)
    for grad, grad_t in zip(grads, grads_t, strict=True):
        np.testing.assert_allclose(grad, grad_t, rtol=0, atol=1e-12)


def test_add_bad_inputs(bk, rng):
    a = bk.asarray(rng.standard_normal((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"Add\(\): inputs 0 and 1 differ in shape: "
                                         r"\(2, 3, 4, 4\) and \(2, 3, 5, 5\)"):
        Add()(a, bk.asarray(rng.standard_normal((2, 3, 5, 5))))
    with pytest.raises(ValueError, match=r"Add\(\): inputs 0 and 1 differ in shape"):
        Add()(a, bk.asarray(rng.standard_normal((1, 3, 4, 4))))  # no silent broadcasting
    with pytest.raises(TypeError, match=r"Add\(\): expected 2 or more arrays, got 1"):
        Add()(a)
    with pytest.raises(TypeError, match=r"Add\(\): inputs 0 and 1 differ in dtype"):
        Add()(a, bk.asarray(rng.standard_normal((2, 3, 4, 4)).astype(np.float32)))
    with pytest.raises(TypeError, match=r"Add\(\): input 1 is a float, not an array"):
        Add()(a, 1.0)
    layer = Add()
    with pytest.raises(ValueError, match=r"Add\(\): backward called before forward"):
        layer.backward(a)
    layer(a, a)
    with pytest.raises(ValueError, match=r"Add\(\): expected dy of shape \(2, 3, 4, 4\)"):
        layer.backward(bk.asarray(rng.standard_normal((2, 3, 4))))


def test_add_refuses_mixed_devices(rng):
    a = rng.standard_normal((1, 2, 2, 2))
    with pytest.raises(TypeError, match=r"Add\(\): arrays from two devices"):
        Add()(a, strict_cupy.asarray(a))


# --- Concat ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, shapes", [
    (1, [(2, 3, 4, 5), (2, 1, 4, 5), (2, 2, 4, 5)]),
    (-3, [(2, 3, 4, 5), (2, 4, 4, 5)]),
    (0, [(1, 3, 2, 2), (2, 3, 2, 2)]),
    (3, [(1, 2, 3, 1), (1, 2, 3, 4)]),
    (1, [(4, 3), (4, 5)]),
])
def test_concat(bk, rng, dim, shapes):
    xs = [rng.standard_normal(shape) for shape in shapes]
    expected = np.concatenate(xs, axis=dim)
    dy = rng.standard_normal(expected.shape)
    y, grads = run(bk, Concat(dim), xs, dy)
    np.testing.assert_array_equal(y, expected)
    # The gradient of each input is its own slice of dy.
    starts = np.cumsum([0] + [x.shape[dim] for x in xs])
    for grad, start, stop in zip(grads, starts[:-1], starts[1:], strict=True):
        np.testing.assert_array_equal(grad, np.take(dy, np.arange(start, stop), axis=dim))


def test_concat_gradcheck(bk, rng):
    xs = [bk.asarray(rng.standard_normal((2, c, 2, 3))) for c in (1, 3)]
    report = gradcheck_module(Concat(), *xs)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
def test_concat_matches_torch(bk, torch, rng):
    xs = [rng.standard_normal((2, c, 3, 4)) for c in (2, 5, 1)]
    dy = rng.standard_normal((2, 8, 3, 4))
    y, grads = run(bk, Concat(dim=1), xs, dy)
    y_t, grads_t = torch_run(torch, lambda *ts: torch.cat(ts, dim=1), xs, dy)
    np.testing.assert_array_equal(y, y_t)
    for grad, grad_t in zip(grads, grads_t, strict=True):
        np.testing.assert_array_equal(grad, grad_t)


def test_concat_bad_inputs(bk, rng):
    a = bk.asarray(rng.standard_normal((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"Concat\(dim=1\): inputs 0 and 1 must match in every "
                                         r"axis but 1, got shapes \(2, 3, 4, 4\) and "
                                         r"\(2, 3, 5, 4\)"):
        Concat()(a, bk.asarray(rng.standard_normal((2, 3, 5, 4))))
    with pytest.raises(ValueError, match=r"Concat\(dim=1\): inputs 0 and 1 must match"):
        Concat()(a, bk.asarray(rng.standard_normal((2, 3, 4))))
    with pytest.raises(ValueError, match=r"Concat\(dim=4\): dim 4 is out of range for inputs "
                                         r"of rank 4"):
        Concat(4)(a, a)
    with pytest.raises(TypeError, match=r"Concat\(dim=1.0\): dim must be an int"):
        Concat(1.0)
    with pytest.raises(TypeError, match=r"Concat\(dim=1\): expected 1 or more arrays, got 0"):
        Concat()()


# --- Crop ------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, size, expected_offset", [
    (None, (4, 5), (2, 1)),       # centred: margins 4 and 3; the odd one leaves 1 at the left
    (None, (8, 7), (0, 0)),       # nothing to cut
    (None, (3, 2), (2, 2)),
    (1, (4, 5), (1, 1)),
    ((3, 0), (5, 5), (3, 0)),
    ((4, 2), (4, 5), (4, 2)),     # the window touches the bottom and right edges
])
def test_crop(bk, rng, offset, size, expected_offset):
    x = rng.standard_normal((2, 3, 8, 7))
    dy = rng.standard_normal((2, 3, *size))
    reference = bk.asarray(rng.standard_normal((1, 1, *size)))
    y, (dx,) = run(bk, Crop(offset), [x], dy, reference)
    top, left = expected_offset
    window = (..., slice(top, top + size[0]), slice(left, left + size[1]))
    np.testing.assert_array_equal(y, x[window])
    expected_dx = np.zeros_like(x)
    expected_dx[window] = dy
    np.testing.assert_array_equal(dx, expected_dx)


def test_crop_takes_a_size_or_any_rank(bk, rng):
    """The reference may be a size, and x any array with H, W last (e.g. (N, H, W) labels)."""
    labels = rng.integers(0, 21, (2, 10, 9))
    y = bk.numpy(Crop()(bk.asarray(labels), (6, 5)))
    np.testing.assert_array_equal(y, labels[:, 2:8, 2:7])
    y = bk.numpy(Crop(2)(bk.asarray(labels), 3))
    np.testing.assert_array_equal(y, labels[:, 2:5, 2:5])


def test_crop_fcn8s_offsets(bk, rng):
    """FCN-8s (Caffe) on a 500 x 500 image padded by 100: upscore8 is 568 x 568 and is cropped
    at offset 31 back to the image; the up-sampled score map then lines up with it."""
    x = rng.standard_normal((1, 2, 568, 568)).astype(np.float32)
    image = bk.asarray(np.zeros((1, 3, 500, 500), dtype=np.float32))
    y = bk.numpy(Crop(31)(bk.asarray(x), image))
    np.testing.assert_array_equal(y, x[:, :, 31:531, 31:531])


def test_crop_gradcheck(bk, rng):
    reference = bk.asarray(rng.standard_normal((1, 1, 2, 3)))
    report = gradcheck_module(Crop((1, 0)), bk.asarray(rng.standard_normal((2, 2, 4, 4))),
                              reference)
    assert report.max_error < 1e-6, report


@pytest.mark.torch
def test_crop_matches_torch(bk, torch, rng):
    x = rng.standard_normal((2, 3, 9, 10))
    dy = rng.standard_normal((2, 3, 4, 6))
    y, (dx,) = run(bk, Crop((5, 3)), [x], dy, (4, 6))
    y_t, (dx_t,) = torch_run(torch, lambda t: t[:, :, 5:9, 3:9], [x], dy)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(dx, dx_t)


def test_crop_bad_inputs(bk, rng):
    x = bk.asarray(rng.standard_normal((1, 21, 10, 10)))
    with pytest.raises(ValueError, match=r"Crop\(\): cannot crop x of shape \(1, 21, 10, 10\) "
                                         r"to 12 x 8: larger than its 10 x 10"):
        Crop()(x, (12, 8))
    with pytest.raises(ValueError, match=r"Crop\(offset=\(5, 5\)\): offset \(5, 5\) is out of "
                                         r"range .* top must be <= 4 and left <= 4"):
        Crop(5)(x, bk.asarray(rng.standard_normal((1, 1, 6, 6))))
    with pytest.raises(ValueError, match=r"Crop\(offset=-1\): offset must be >= 0"):
        Crop(-1)
    with pytest.raises(TypeError, match=r"Crop\(offset=1.5\): offset must be an int or a pair"):
        Crop(1.5)
    with pytest.raises(TypeError, match=r"Crop\(\): reference size must be an int or a pair"):
        Crop()(x, "small")
    with pytest.raises(ValueError, match=r"Crop\(\): reference size must be >= 1"):
        Crop()(x, (0, 4))
    with pytest.raises(ValueError, match=r"Crop\(\): expected x of rank >= 2"):
        Crop()(bk.asarray(rng.standard_normal(5)), 2)
    with pytest.raises(TypeError, match=r"Crop\(\): expected x to be an array, got list"):
        Crop()([[1.0]], 1)
    layer = Crop()
    with pytest.raises(ValueError, match=r"Crop\(\): backward called before forward"):
        layer.backward(x)
    layer(x, (4, 4))
    with pytest.raises(ValueError, match=r"Crop\(\): expected dy of shape \(1, 21, 4, 4\)"):
        layer.backward(x)
