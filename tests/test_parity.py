"""PyTorch parity across the layers: unbatched (C, H, W) inputs where PyTorch takes them
(and clear refusals where it does not), batch norm's eps and empty batches, and every
constructor argument PyTorch's layers take either supported or refused by name.

Convolution-specific parity (groups, padding modes, unbatched) is in test_conv.py, the
loss's (probability targets, unbatched samples, weight dtypes) in test_loss.py."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from minifcn import nn
from minifcn.gradcheck import gradcheck_module

# --- unbatched input ---------------------------------------------------------------------

POOLS = [
    (lambda m: m.MaxPool2d(3, 2, 1, dilation=1), {}),
    (lambda m: m.MaxPool2d((2, 3), (1, 2), ceil_mode=True), {}),
    (lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), {}),
    (lambda m: m.AvgPool2d(2, ceil_mode=True, divisor_override=3), {}),
]


def torch_forward_backward(torch, layer, x, dy_seed=7):
    """y and dx of a torch layer for host ``x`` with a random upstream gradient."""
    tx = torch.tensor(x, requires_grad=True)
    ty = layer(tx)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy(), dy


@pytest.mark.torch
@pytest.mark.parametrize("make, _", POOLS)
def test_unbatched_pooling_matches_torch(torch, bk, make, _):
    x = np.random.default_rng(0).standard_normal((3, 7, 8))
    y_t, dx_t, dy = torch_forward_backward(torch, make(torch.nn), x)
    ours = make(nn)
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(dy))
    assert y.shape == y_t.shape and dx.shape == x.shape
    np.testing.assert_allclose(bk.numpy(y), y_t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bk.numpy(dx), dx_t, rtol=0, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("output_size", [None, (7, 8), (1, 3, 7, 8)])
def test_unbatched_max_pool_indices_and_unpool_match_torch(torch, bk, output_size):
    """(C, H, W) -> (y, indices) both (C, OH, OW); unpooling them gives (C, H, W)."""
    x = np.random.default_rng(1).standard_normal((3, 7, 8))
    tpool, tunpool = torch.nn.MaxPool2d(2, return_indices=True), torch.nn.MaxUnpool2d(2)
    ty, ti = tpool(torch.tensor(x))
    tv = ty.clone().requires_grad_()
    tz = tunpool(tv, ti, output_size=output_size)
    dz = np.random.default_rng(2).standard_normal(tuple(tz.shape))
    tz.backward(torch.tensor(dz))

    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    y, indices = pool(bk.asarray(x))
    z = unpool(y, indices, output_size=output_size)
    dy = unpool.backward(bk.asarray(dz))
    assert indices.shape == tuple(ti.shape) == (3, 3, 4)
    np.testing.assert_array_equal(bk.numpy(indices), ti.numpy())
    np.testing.assert_allclose(bk.numpy(z), tz.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(bk.numpy(dy), tv.grad.numpy(), rtol=0, atol=0)
    assert pool.backward(dy).shape == x.shape


@pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(3, 2, 1), lambda: nn.AvgPool2d(2, 1)])
def test_unbatched_pooling_gradcheck(bk, make):
    x = np.random.default_rng(3).permutation(3 * 5 * 6).reshape(3, 5, 6) / 7.0  # no ties
    report = gradcheck_module(make(), bk.asarray(x))
    assert report.max_error < 1e-6, report


def test_unbatched_is_the_batch_of_one_without_its_axis(bk):
    """For every layer that takes (C, H, W): the same numbers as on x[None], unbatched."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6, 6))
    layers = [nn.Conv2d(4, 2, 3, dtype="float64"), nn.ConvTranspose2d(4, 2, 3, 2,
                                                                       dtype="float64"),
              nn.MaxPool2d(2), nn.AvgPool2d(2), nn.ReLU(), nn.LeakyReLU(0.1), nn.Dropout(0.5)]
    for layer in layers:
        layer.to(device=bk.device).eval()
        batched = bk.numpy(layer(bk.asarray(x[None])))
        dy = rng.standard_normal(batched.shape)
        dx_batched = bk.numpy(layer.backward(bk.asarray(dy)))
        y = layer(bk.asarray(x))
        np.testing.assert_array_equal(bk.numpy(y), batched[0])
        np.testing.assert_array_equal(bk.numpy(layer.backward(bk.asarray(dy[0]))), dx_batched[0])


def test_merge_layers_take_unbatched_maps(bk):
    """Add, Concat (dim=0 is the channels of a (C, H, W) map, as torch.cat) and Crop work on
    any leading axes."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 5, 6)), rng.standard_normal((3, 5, 6))
    assert nn.Add()(bk.asarray(a), bk.asarray(a)).shape == (2, 5, 6)
    assert nn.Concat(dim=0)(bk.asarray(a), bk.asarray(b)).shape == (5, 5, 6)
    crop = nn.Crop()
    y = crop(bk.asarray(b), (3, 4))
    np.testing.assert_array_equal(bk.numpy(y), b[:, 1:4, 1:5])
    assert crop.backward(y).shape == b.shape


@pytest.mark.torch
def test_what_pytorch_reads_otherwise_is_refused(torch):
    """A 3-D input means something else to PyTorch's BatchNorm2d (an error), Dropout2d
    ((N, C, L), with a deprecation warning) and Upsample ((N, C, L), 1-D resizing): minifcn
    refuses it and says why."""
    x = np.ones((3, 4, 4))
    with pytest.raises(ValueError, match="expected 4D input"):
        torch.nn.BatchNorm2d(3)(torch.tensor(x).float())
    with pytest.warns(UserWarning, match="assuming that channel-wise 1D dropout"):
        torch.nn.Dropout2d()(torch.tensor(x))
    assert torch.nn.Upsample(scale_factor=2)(torch.tensor(x)).shape == (3, 4, 8)

    with pytest.raises(ValueError, match=r"^BatchNorm2d\(3\): expected x of rank 4 \(N, C, H, "
                                         r"W\), got x of shape \(3, 4, 4\); BatchNorm2d needs a "
                                         r"batch, as in PyTorch \(for one \(C, H, W\) sample "
                                         r"pass x\[None\]\)"):
        nn.BatchNorm2d(3, dtype="float64")(x)
    with pytest.raises(ValueError, match=r"^Dropout2d\(p=0.5\): expected x of rank 4 .* a 3-D "
                                         r"input is ambiguous \(PyTorch 2.13 reads it as \(N, C, "
                                         r"L\) .*pass x\[None\] for one \(C, H, W\) sample"):
        nn.Dropout2d()(x)
    with pytest.raises(ValueError, match=r"^Upsample\(scale_factor=2.0, mode='nearest'\): "
                                         r"expected x of rank 4 .*PyTorch reads a 3-D input as "
                                         r"\(N, C, L\) and resizes L alone"):
        nn.Upsample(scale_factor=2)(x)


@pytest.mark.torch
@pytest.mark.parametrize("name, args, shape", [
    ("Linear", (10, 8), (4, 10)),  # PyTorch 2.13's module_db sample Linear[0] calls it so
    ("Conv2d", (3, 2, 3), (3, 5, 5)),  # unbatched: through accepts_unbatched's forward
    ("ReLU", (), (2, 3)),
])
def test_forward_takes_pytorchs_input_keyword(torch, bk, name, args, shape):
    """layer(input=x), PyTorch's name for forward's argument, is layer(x); it was refused
    as an unexpected keyword."""
    x = np.random.default_rng(9).standard_normal(shape)
    theirs = getattr(torch.nn, name)(*args).double()
    ours = getattr(nn, name)(*args).to(device=bk.device, dtype="float64")
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    y = ours(input=bk.asarray(x))
    np.testing.assert_allclose(bk.numpy(y), theirs(input=torch.tensor(x)).detach().numpy(),
                               rtol=0, atol=1e-12)
    assert ours.backward(bk.asarray(np.ones(y.shape))).shape == x.shape


@pytest.mark.torch
def test_the_loss_takes_pytorchs_input_and_target_keywords(torch, bk):
    logits = np.random.default_rng(10).standard_normal((4, 3))
    target = np.array([0, 2, 1, 2])
    expected = torch.nn.CrossEntropyLoss()(input=torch.tensor(logits),
                                           target=torch.tensor(target))
    loss = nn.CrossEntropyLoss()(input=bk.asarray(logits), target=bk.asarray(target))
    np.testing.assert_allclose(bk.numpy(loss), expected.numpy(), rtol=0, atol=1e-12)


def test_a_forward_with_its_own_input_parameter_keeps_it():
    """A user's forward(self, a, input=None) gets input= as that keyword, not as a."""
    class Pair(nn.Module):
        def forward(self, a=None, input=None):
            return a, input

    assert Pair()(input=1) == (None, 1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'inputs'"):
        nn.ReLU()(inputs=np.ones(2))


# --- batch norm: eps and empty batches -----------------------------------------------------

@pytest.mark.torch
def test_batch_norm_eps_zero_as_torch(torch, bk):
    """eps=0: accepted at construction and with running statistics; refused where the
    batch's statistics are used, as PyTorch 2.13."""
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 4))
    theirs = torch.nn.BatchNorm2d(3, eps=0.0, dtype=torch.float64)
    ours = nn.BatchNorm2d(3, eps=0.0, device=bk.device, dtype="float64")
    with pytest.raises(ValueError, match="eps must be positive during training"):
        theirs(torch.tensor(x))
    with pytest.raises(ValueError, match=r"^BatchNorm2d\(3\): eps must be positive when "
                                         r"normalizing with batch statistics \(training, or "
                                         r"track_running_stats=False\), got 0.0"):
        ours(bk.asarray(x))
    theirs.eval()
    ours.eval()
    np.testing.assert_allclose(bk.numpy(ours(bk.asarray(x))),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=0, atol=1e-12)
    no_stats = nn.BatchNorm2d(3, eps=0.0, track_running_stats=False).eval()
    with pytest.raises(ValueError, match="eps must be positive"):
        no_stats(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): eps must be >= 0, got -1e-05"):
        nn.BatchNorm2d(3, eps=-1e-5)  # PyTorch only fails later, at the first training step


@pytest.mark.torch
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)])
def test_batch_norm_empty_batch_as_torch(torch, bk, training, momentum, shape):
    """No values: an empty output and dx, zero parameter gradients, the running statistics
    unchanged and, in training, one more batch counted."""
    rng = np.random.default_rng(8)
    ours = nn.BatchNorm2d(3, momentum=momentum, dtype="float64")
    ours.load_state_dict({"weight": rng.uniform(0.5, 2, 3), "bias": rng.standard_normal(3),
                          "running_mean": rng.standard_normal(3),
                          "running_var": rng.uniform(0.5, 2, 3),
                          "num_batches_tracked": np.array(4)})
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.to(device=bk.device).train(training)
    theirs.train(training)
    x = np.zeros(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.zeros_like(ty))
    y = ours(bk.asarray(x))
    dx = ours.backward(bk.asarray(np.zeros(shape)))
    assert y.shape == tuple(ty.shape) == shape and dx.shape == tuple(tx.grad.shape)
    for name, value in theirs.state_dict().items():
        np.testing.assert_array_equal(bk.numpy(ours.state_dict()[name]), value.numpy(), name)
    np.testing.assert_array_equal(bk.numpy(ours.weight.grad), theirs.weight.grad.numpy())
    np.testing.assert_array_equal(bk.numpy(ours.bias.grad), theirs.bias.grad.numpy())


@pytest.mark.torch
def test_batch_norm_one_value_per_channel_is_still_refused(torch):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.BatchNorm2d(3)(torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel"):
        nn.BatchNorm2d(3)(np.zeros((1, 3, 1, 1), np.float32))


# --- constructor arguments -----------------------------------------------------------------

# minifcn's own keyword-only extras, which PyTorch's constructors lack.
EXTRAS = {"generator"}

LAYERS = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "MaxUnpool2d", "BatchNorm2d",
          "Dropout", "Dropout2d", "ReLU", "LeakyReLU", "Upsample", "UpsamplingNearest2d",
          "UpsamplingBilinear2d", "CrossEntropyLoss"]


def _parameters(cls):
    return [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]


@pytest.mark.torch
@pytest.mark.parametrize("name", LAYERS)
def test_constructor_signatures_match_torch(torch, name):
    """Every argument PyTorch's constructor takes, in its order, kind and default; minifcn
    adds extras (``generator``; CrossEntropyLoss's keyword-only ``device``/``dtype``) only
    after all of PyTorch's."""
    ours = _parameters(getattr(nn, name))
    theirs = _parameters(getattr(torch.nn, name))
    extras = EXTRAS | ({"device", "dtype"} if name == "CrossEntropyLoss" else set())
    kept = [p for p in ours if p.name not in extras]
    assert [p.name for p in kept] == [p.name for p in theirs]
    for mine, their in zip(kept, theirs, strict=True):
        assert mine.kind == their.kind, mine.name
        assert mine.default == their.default, mine.name
    assert [p.name for p in ours[:len(theirs)]] == [p.name for p in theirs]


# Each PyTorch argument with a value other than its default: minifcn takes it, or refuses it
# with a ValueError that names it. (Values PyTorch itself refuses are tested per layer.)
UNUSUAL = [
    ("Conv2d", (4, 4, 3), dict(padding_mode="circular", groups=2, dilation=2, device="cpu",
                               dtype="float64", bias=False, padding="same")),
    ("ConvTranspose2d", (4, 4, 3), dict(output_padding=1, stride=2, groups=4, dilation=2,
                                        padding=1, bias=False, device="cpu", dtype="float64")),
    ("ConvTranspose2d", (4, 4, 3), dict(padding_mode="reflect")),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, dilation=2, return_indices=True,
                             ceil_mode=True)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False,
                             divisor_override=2)),
    ("MaxUnpool2d", (3,), dict(stride=2, padding=1)),
    ("BatchNorm2d", (3,), dict(eps=1e-3, momentum=None, affine=False,
                               track_running_stats=False, device="cpu", dtype="float64")),
    ("BatchNorm2d", (3,), dict(bias=False)),
    ("Dropout", (), dict(p=0.2, inplace=True)),
    ("Dropout2d", (), dict(p=0.2, inplace=True)),
    ("ReLU", (), dict(inplace=True)),
    ("LeakyReLU", (), dict(negative_slope=0.2, inplace=True)),
    ("Upsample", (), dict(scale_factor=1.5, mode="bilinear", align_corners=True,
                          recompute_scale_factor=True)),
    ("CrossEntropyLoss", (), dict(weight=[1.0, 2.0], ignore_index=255, reduction="sum",
                                  label_smoothing=0.1)),
    ("CrossEntropyLoss", (), dict(size_average=False)),
    ("CrossEntropyLoss", (), dict(reduce=False)),
]


@pytest.mark.torch
@pytest.mark.parametrize("name, args, kwargs", UNUSUAL)
def test_no_argument_is_silently_ignored(torch, name, args, kwargs):
    """Accepted arguments are kept as attributes with PyTorch's values; refused ones raise a
    ValueError naming the argument."""
    try:
        layer = getattr(nn, name)(*args, **kwargs)
    except ValueError as error:
        assert any(key in str(error) for key in kwargs), str(error)
        return
    torch_kwargs = dict(kwargs, dtype=getattr(torch, kwargs["dtype"])) if "dtype" in kwargs \
        else kwargs
    if "weight" in kwargs:
        torch_kwargs = dict(torch_kwargs, weight=torch.tensor(kwargs["weight"]))
    twin = getattr(torch.nn, name)(*args, **torch_kwargs)
    for key in kwargs:
        if key in {"device", "dtype", "weight", "bias"}:
            continue  # held by the parameters and buffers, compared elsewhere
        assert getattr(layer, key) == getattr(twin, key), key
