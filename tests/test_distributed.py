"""Data parallelism in one process: collectives, SyncBatchNorm, DistributedDataParallel's
buckets, the global mean loss, split-independent dropout and the sharded loader.

Ranks run as threads (minifcn.testing.threaded) or as a one-rank MPI world
(``MPI.COMM_SELF``); tests/test_mpi.py runs the same things as real MPI ranks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minifcn
from minifcn import backend, distributed, nn
from minifcn.data import DataLoader, Shapes
from minifcn.functional.norm import merge_moments
from minifcn.functional.parallel import even_slices
from minifcn.models import build_model
from minifcn.nn.parallel import FIRST_BUCKET_BYTES, DistributedDataParallel, global_mean_loss
from minifcn.optim import SGD
from minifcn.testing import strict_cupy
from minifcn.testing.threaded import ThreadedProcessGroup, run_ranks
from minifcn.train import TrainConfig, _reseed_generators

TINY = dict(widths=(4, 8, 8, 16, 16), head_channels=16)


def needs_mpi4py():
    return pytest.importorskip("mpi4py.MPI", reason="MPI tests need mpi4py: "
                                                    "pip install \"minifcn[mpi]\"")


# --- backward hooks, which DDP listens to ----------------------------------------------------

def test_backward_hooks_fire_once_per_backward_and_can_be_removed(rng):
    conv = nn.Conv2d(2, 3, 3, dtype="float64")
    seen = []
    handle = conv.register_full_backward_hook(
        lambda module, grad_input, grad_output: seen.append(
            (module, grad_input[0].shape, grad_output[0].shape)))
    x = rng.standard_normal((2, 2, 5, 5))
    y = conv(x)
    dx = conv.backward(rng.standard_normal(y.shape))
    assert seen == [(conv, dx.shape, y.shape)]
    handle.remove()
    conv.backward(rng.standard_normal(conv(x).shape))
    assert len(seen) == 1


def test_a_backward_calling_super_fires_the_hooks_once(rng):
    class Doubled(nn.ReLU):
        def backward(self, dy):
            return 2.0 * super().backward(dy)

    layer, fired = Doubled(), []
    layer.register_full_backward_hook(lambda *args: fired.append(args))
    layer(rng.standard_normal((1, 1, 2, 2)))
    layer.backward(np.ones((1, 1, 2, 2)))
    assert len(fired) == 1


def test_a_hook_may_replace_dx(rng):
    relu = nn.ReLU()
    relu.register_full_backward_hook(lambda module, gi, go: (gi[0] * 0.0,))
    relu(rng.standard_normal((1, 1, 2, 2)) + 5.0)
    assert not relu.backward(np.ones((1, 1, 2, 2))).any()


def test_a_hook_must_be_callable():
    with pytest.raises(TypeError, match="expected a callable"):
        nn.ReLU().register_full_backward_hook("not a function")


# --- the process group --------------------------------------------------------------------------

def test_a_world_of_one_without_mpi_leaves_arrays_as_they_are():
    group = distributed.ProcessGroup(None)
    array = np.arange(4.0)
    assert group.all_reduce(array) is None and array.tolist() == [0, 1, 2, 3]
    work = group.all_reduce(array, op="avg", async_op=True)
    assert work.is_completed() and array.tolist() == [0, 1, 2, 3]
    gathered = np.empty((1, 4))
    group.all_gather_into_tensor(gathered, array[None])
    assert gathered.tolist() == [[0, 1, 2, 3]]
    assert group.all_gather_object("x") == ["x"]


@pytest.mark.parametrize("call, error, message", [
    (lambda g: g.all_reduce(np.zeros((4, 4))[:, ::2]), ValueError, "C-contiguous"),
    (lambda g: g.all_reduce(np.zeros(3), op="mean"), ValueError, "op must be one of"),
    (lambda g: g.all_reduce(np.zeros(3, dtype=np.int64), op="avg"), TypeError, "floating"),
    (lambda g: g.all_reduce([1.0, 2.0]), TypeError, "expected an array"),
    (lambda g: g.broadcast(np.zeros(3), src=1), ValueError, r"src must be a rank in \[0, 1\)"),
    (lambda g: g.all_gather_into_tensor(np.zeros((2, 3)), np.zeros((1, 3))), ValueError,
     "expected output of shape"),
])
def test_collectives_refuse_bad_arguments_naming_the_call(call, error, message):
    with pytest.raises(error, match=message):
        call(distributed.ProcessGroup(None))


def test_a_read_only_array_is_refused():
    array = np.zeros(3)
    array.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        distributed.ProcessGroup(None).all_reduce(array)


@pytest.mark.parametrize("arrays", ["numpy", "strict"])
def test_collectives_through_a_one_rank_mpi_world(arrays):
    """COMM_SELF is a real MPI world of one: NumPy arrays go straight to MPI, the strict
    CuPy stand-in's arrays are staged through the host and copied back into place."""
    MPI = needs_mpi4py()
    group = distributed.ProcessGroup(MPI.COMM_SELF)
    xp = np if arrays == "numpy" else strict_cupy
    with backend.use_gpu_module(strict_cupy):
        array = xp.asarray(np.arange(6.0))
        before = array
        group.all_reduce(array)
        group.all_reduce(array, op=distributed.ReduceOp.MAX)
        work = group.broadcast(array, src=0, async_op=True)
        work.wait()
        gathered = xp.empty((1, 6))
        group.all_gather_into_tensor(gathered, array[None])
        assert array is before  # in place, as the collectives promise
        assert backend.to_numpy(gathered).tolist() == [list(range(6))]
        assert group._transport(array) == ("host" if arrays == "numpy" else "staged")


def test_init_process_group_without_a_launcher_is_a_world_of_one():
    distributed.destroy_process_group()
    try:
        group = distributed.init_process_group()
        assert distributed.is_initialized()
        assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
        assert group.size == 1
        with pytest.raises(RuntimeError, match="initialized already"):
            distributed.init_process_group()
    finally:
        distributed.destroy_process_group()
    assert not distributed.is_initialized()
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    with pytest.raises(RuntimeError, match="call init_process_group"):
        distributed.all_reduce(np.zeros(2))


def test_several_launched_ranks_without_mpi4py_name_the_extra(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(__import__("sys").modules, "mpi4py", None)  # as if not installed
    monkeypatch.setitem(__import__("sys").modules, "mpi4py.MPI", None)
    assert distributed.launched_world_size() == 2 and not distributed.is_available()
    with pytest.raises(distributed.DistributedUnavailableError, match=r'minifcn\[mpi\]'):
        distributed.init_process_group()
    assert not distributed.is_initialized()


def test_threaded_ranks_reduce_in_rank_order_and_report_errors():
    results = run_ranks(3, lambda g: _reduced(g, np.full(2, 0.1 * (g.rank + 1))))
    assert all(np.array_equal(r, results[0]) for r in results)  # the same bits everywhere
    assert results[0] == pytest.approx([0.6, 0.6])

    def fails_on_rank_one(group):
        if group.rank == 1:
            raise ValueError("rank one fails")
        group.barrier()  # the others would wait for it forever without the abort

    with pytest.raises(ValueError, match="rank one fails"):
        run_ranks(2, fails_on_rank_one)


def _reduced(group, array):
    group.all_reduce(array)
    return array


# --- statistics of a batch spread over ranks ----------------------------------------------------

@given(counts=st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(lambda c: sum(c) > 1),
       offset=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16))
def test_merge_moments_gives_the_whole_batchs_mean_and_variance(counts, offset, seed):
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((n, 3)) + offset for n in counts]
    whole = np.concatenate(parts)
    stats = [(len(p), p.mean(0) if len(p) else np.zeros(3),
              ((p - p.mean(0)) ** 2).sum(0) if len(p) else np.zeros(3)) for p in parts]
    M, mean, sum_sq = merge_moments(np.array([s[0] for s in stats], dtype=float),
                                    np.array([s[1] for s in stats]),
                                    np.array([s[2] for s in stats]))
    assert M == len(whole)
    np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sum_sq / M, whole.var(0), rtol=1e-9, atol=1e-9)


@given(batch=st.integers(2, 7), ranks=st.integers(1, 4), seed=st.integers(0, 2**16),
       affine=st.booleans())
def test_sync_batch_norm_on_shards_equals_batch_norm_on_the_whole_batch(batch, ranks, seed,
                                                                       affine):
    """Forward, dx, running statistics and the ranks' summed parameter gradients, float64;
    a rank may hold no image at all (it still takes part)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 4, 5)) * rng.uniform(0.5, 3, (1, 3, 1, 1)) + 7.0
    dy = rng.standard_normal(x.shape)
    whole = nn.BatchNorm2d(3, affine=affine, dtype="float64")
    y = whole(x)
    dx = whole.backward(dy)

    def rank(group):
        bn = nn.SyncBatchNorm(3, affine=affine, process_group=group, dtype="float64")
        rows = even_slices(batch, group.size)[group.rank]
        out = bn(x[rows])
        dx_share = bn.backward(dy[rows])
        grads = (bn.weight.grad, bn.bias.grad) if affine else ()
        return out, dx_share, bn.running_mean, bn.running_var, grads

    results = run_ranks(ranks, rank)
    np.testing.assert_allclose(np.concatenate([r[0] for r in results]), y, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([r[1] for r in results]), dx, atol=1e-12)
    for _, _, mean, var, _ in results:
        np.testing.assert_allclose(mean, whole.running_mean, atol=1e-12)
        np.testing.assert_allclose(var, whole.running_var, atol=1e-12)
    if affine:
        np.testing.assert_allclose(sum(r[4][0] for r in results), whole.weight.grad, atol=1e-11)
        np.testing.assert_allclose(sum(r[4][1] for r in results), whole.bias.grad, atol=1e-11)


def test_sync_batch_norm_in_evaluation_or_alone_is_batch_norm_exactly(rng):
    x = rng.standard_normal((4, 3, 5, 5))
    plain = nn.BatchNorm2d(3, dtype="float64")
    synced = nn.SyncBatchNorm(3, dtype="float64")  # no world initialized: a world of one
    assert np.array_equal(plain(x), synced(x))
    plain.eval()
    synced.eval()
    assert np.array_equal(plain(x), synced(x))


def test_convert_sync_batchnorm_keeps_parameters_buffers_order_and_keys():
    minifcn.manual_seed(0)
    model = build_model("fcn8s", 4, **TINY)
    model.eval()
    before = model.state_dict()
    names = [name for name, _ in model.named_modules()]
    weights = {name: id(p) for name, p in model.named_parameters()}
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert [name for name, _ in model.named_modules()] == names  # same places, same order
    kinds = {type(m) for m in model.modules()}
    assert nn.SyncBatchNorm in kinds and nn.BatchNorm2d not in kinds
    assert all(not m.training for m in model.modules())
    assert {name: id(p) for name, p in model.named_parameters()} == weights
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[k] is before[k] for k in before)
    lone = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(5, affine=False))
    assert type(lone) is nn.SyncBatchNorm and lone.weight is None


# --- DistributedDataParallel's buckets -----------------------------------------------------------

def one_rank_world():
    return distributed.ProcessGroup(needs_mpi4py().COMM_SELF)


def step(model, rng, criterion=None, images=None):
    criterion = criterion or nn.CrossEntropyLoss(ignore_index=255)
    images = rng.standard_normal((2, 3, 32, 32)) if images is None else images
    images = images.astype(next(model.parameters()).dtype)
    masks = rng.integers(0, 4, (images.shape[0], 32, 32))
    logits = model(images)
    criterion(logits, masks)
    model.zero_grad()
    model.backward(criterion.backward())


def test_ddp_with_a_one_rank_communicator_keeps_gradients_in_its_buckets(rng):
    minifcn.manual_seed(0)  # no dropout: the two models' masks would differ
    model = build_model("fcn8s", 4, dropout=0.0, **TINY).to(dtype="float64")
    model.encoder.stage1[0].weight.requires_grad = False  # frozen: in no bucket
    reference = build_model("fcn8s", 4, dropout=0.0, **TINY).to(dtype="float64")
    reference.load_state_dict(model.state_dict())
    reference.encoder.stage1[0].weight.requires_grad = False
    ddp = DistributedDataParallel(model, process_group=one_rank_world(), bucket_cap_mb=0.004)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    first = ddp.buckets()
    assert sorted(sum(first, [])) == sorted(trainable)  # each once, the frozen one in none
    assert sum(first, [])[0] == trainable[-1]  # before any step: the parameters reversed
    images = rng.standard_normal((2, 3, 32, 32))
    step(ddp, np.random.default_rng(5), images=images)
    step(reference, np.random.default_rng(5), images=images)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert np.array_equal(p.grad, q.grad), name  # a world of one averages to itself
    buffers = [bucket.buffer for bucket in ddp._buckets]
    for param in model.parameters():
        if param.requires_grad:  # .grad is a view into one of the buckets
            assert any(np.shares_memory(param.grad, buffer) for buffer in buffers)
    params = dict(model.named_parameters())
    sizes = [sum(params[n].data.nbytes for n in names) for names in ddp.buckets()]
    cap = int(0.004 * 2**20)
    assert sizes[0] <= min(FIRST_BUCKET_BYTES, cap) or len(ddp.buckets()[0]) == 1
    assert all(size <= cap or len(names) == 1
               for size, names in zip(sizes, ddp.buckets(), strict=True))


def test_ddp_rebuilds_its_buckets_in_the_order_gradients_arrive():
    """After the first step the buckets follow the backward's real order; in FCN-8s the
    class scores (run last in forward, first in backward) come before the decoder's skips."""
    minifcn.manual_seed(0)
    model = build_model("fcn8s", 4, **TINY)
    arrived = []
    for module in model.modules():
        if module._parameters:
            module.register_full_backward_hook(
                lambda m, gi, go: arrived.extend(p for p in m._parameters.values()))
    ddp = DistributedDataParallel(model, process_group=one_rank_world(), bucket_cap_mb=0.002)
    step(ddp, np.random.default_rng(0))
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for p in arrived]
    assert sum(ddp.buckets(), []) == order


def test_no_sync_accumulates_locally_and_the_next_backward_averages_it_all(rng):
    minifcn.manual_seed(0)
    model = build_model("fcn8s", 4, dropout=0.0, **TINY).to(dtype="float64")
    ddp = DistributedDataParallel(model, process_group=one_rank_world())
    criterion = nn.CrossEntropyLoss()
    images = rng.standard_normal((2, 3, 32, 32))
    masks = rng.integers(0, 4, (2, 32, 32))
    ddp.zero_grad()
    with ddp.no_sync():
        criterion(ddp(images), masks)
        ddp.backward(criterion.backward())
        assert all(bucket.work is None for bucket in ddp._buckets)  # nothing sent
    criterion(ddp(images), masks)
    ddp.backward(criterion.backward())
    score = dict(model.named_parameters())["score_fr.weight"]
    accumulated = score.grad.copy()  # two backwards' worth, sent once
    ddp.zero_grad()
    criterion(ddp(images), masks)
    ddp.backward(criterion.backward())
    np.testing.assert_allclose(accumulated, 2 * score.grad, rtol=1e-12)


def test_the_bare_models_own_backward_keeps_its_gradients_local(rng):
    """Only DDP's backward averages: the wrapped model's own backward (for a check, say)
    neither sends anything nor upsets the next step's buckets."""
    minifcn.manual_seed(0)
    model = build_model("fcn8s", 4, dropout=0.0, **TINY).to(dtype="float64")
    ddp = DistributedDataParallel(model, process_group=one_rank_world())
    step(model, np.random.default_rng(1))
    assert all(bucket.work is None for bucket in ddp._buckets)
    step(ddp, np.random.default_rng(1))  # and the next DDP step runs as usual


def test_ddp_refuses_a_second_backward_and_a_replaced_grad(rng):
    minifcn.manual_seed(0)
    model = build_model("fcn8s", 4, **TINY)
    ddp = DistributedDataParallel(model, process_group=one_rank_world())
    criterion = nn.CrossEntropyLoss()
    logits = ddp(rng.standard_normal((1, 3, 32, 32)).astype("float32"))
    criterion(logits, rng.integers(0, 4, (1, 32, 32)))
    dlogits = criterion.backward()
    ddp.backward(dlogits)
    with pytest.raises((RuntimeError, ValueError), match="call forward"):
        ddp.backward(dlogits)  # the layers refuse it first
    score = dict(model.named_parameters())["score_fr.weight"]
    score.grad = np.zeros_like(score.grad)  # a new array, not the bucket's view
    with pytest.raises(RuntimeError, match="replaced after wrapping"):
        ddp.backward(dlogits)


def test_ddp_refuses_ranks_with_different_models():
    def wrap(group):
        widths = TINY["widths"] if group.rank == 0 else (4, 8, 8, 16, 32)
        DistributedDataParallel(build_model("fcn8s", 4, widths=widths, head_channels=16),
                                process_group=group)

    with pytest.raises(ValueError, match=r"rank [01]'s model differs from rank [01]'s"):
        run_ranks(2, wrap)


def test_ddp_starts_every_rank_from_rank_zeros_weights():
    models = []
    for seed in (0, 1):  # built here, not in the threads, which share the seed source
        minifcn.manual_seed(seed)
        models.append(build_model("fcn8s", 4, **TINY))
    expected = {k: v.copy() for k, v in models[0].state_dict().items()}
    assert not np.array_equal(expected["score_fr.weight"],
                              models[1].state_dict()["score_fr.weight"])
    run_ranks(2, lambda group: DistributedDataParallel(models[group.rank], process_group=group))
    for model in models:
        state = model.state_dict()
        assert all(np.array_equal(state[k], expected[k]) for k in expected)


# --- one step of N threaded ranks against one process -----------------------------------------

def fresh_fcn():
    """A float64 FCN-8s with dropout, the same weights every time (built in the main
    thread: threads would share the seed source)."""
    minifcn.manual_seed(0)
    return build_model("fcn8s", 4, dropout=0.5, **TINY).to(dtype="float64")


def fcn_step(group, model, batch_rows, images, masks, sync=True):
    """One SGD step of ``model`` on ``images[batch_rows]``; returns its state_dict
    (parameters and running statistics) and the loss."""
    _reseed_generators(model, 0, 0, batch_rows, images.shape[0])  # as minifcn.train does
    net = model
    if group is not None:
        if sync:
            nn.SyncBatchNorm.convert_sync_batchnorm(net, process_group=group)
        model = DistributedDataParallel(net, process_group=group, broadcast_buffers=not sync,
                                        bucket_cap_mb=0.01)
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    optimizer = SGD(net.parameters(), lr=0.1, momentum=0.9)
    logits = model(images[batch_rows])
    loss, dloss = global_mean_loss(criterion(logits, masks[batch_rows]), criterion, group)
    model.zero_grad()
    model.backward(criterion.backward(dloss))
    optimizer.step()
    return {k: np.array(v, copy=True) for k, v in net.state_dict().items()}, loss


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_with_sync_batch_norm_take_the_step_one_process_takes(ranks, rng):
    """Every parameter and running statistic to 1e-10 in float64, the same on every rank,
    with void pixels that the ranks hold in different numbers and dropout on."""
    images = rng.standard_normal((8, 3, 32, 32))
    masks = rng.integers(0, 4, (8, 32, 32))
    masks[: ranks][..., :20] = 255  # the first rank's share has far more void pixels
    alone, loss = fcn_step(None, fresh_fcn(), slice(0, 8), images, masks)
    models = [fresh_fcn() for _ in range(ranks)]
    results = run_ranks(ranks, lambda g: fcn_step(g, models[g.rank],
                                                  even_slices(8, g.size)[g.rank], images, masks))
    for state, rank_loss in results:
        assert rank_loss == pytest.approx(loss, rel=1e-12)
        for key in alone:
            np.testing.assert_allclose(state[key], alone[key], rtol=0, atol=1e-10, err_msg=key)
    first = results[0][0]
    assert all(np.array_equal(state[k], first[k]) for state, _ in results for k in first)


def test_without_sync_batch_norm_the_ranks_parameters_agree_but_differ_from_one_process(rng):
    images = rng.standard_normal((8, 3, 32, 32))
    masks = rng.integers(0, 4, (8, 32, 32))
    alone, _ = fcn_step(None, fresh_fcn(), slice(0, 8), images, masks)
    models = [fresh_fcn(), fresh_fcn()]
    results = run_ranks(2, lambda g: fcn_step(g, models[g.rank], even_slices(8, 2)[g.rank],
                                              images, masks, sync=False))
    weight = "score_fr.weight"
    assert np.array_equal(results[0][0][weight], results[1][0][weight])  # averaged alike
    assert not np.allclose(results[0][0][weight], alone[weight], rtol=0, atol=1e-10)


def test_global_mean_loss_weighs_each_pixel_once_when_ranks_count_different_pixels():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 6, 6))
    target = rng.integers(0, 3, (4, 6, 6))
    target[:2, :, :5] = 255  # rank 0's pixels are mostly void
    whole = nn.CrossEntropyLoss(ignore_index=255)
    expected = float(whole(logits, target))
    expected_grad = whole.backward()

    def rank(group):
        rows = even_slices(4, group.size)[group.rank]
        criterion = nn.CrossEntropyLoss(ignore_index=255)
        loss, dloss = global_mean_loss(criterion(logits[rows], target[rows]), criterion, group)
        return loss, criterion.backward(dloss), dloss

    results = run_ranks(2, rank)
    assert [r[0] for r in results] == pytest.approx([expected, expected], rel=1e-12)
    for rows, (_, grad, _) in zip(even_slices(4, 2), results, strict=True):
        # DDP divides the ranks' summed gradients by N: each rank's share over N is the
        # whole batch's gradient on its rows
        np.testing.assert_allclose(grad / 2, expected_grad[rows], rtol=1e-12, atol=1e-15)
    assert results[0][2] != results[1][2]  # the ranks' shares differ with their pixels
    naive = np.mean([float(nn.CrossEntropyLoss(ignore_index=255)(logits[r], target[r]))
                     for r in even_slices(4, 2)])
    assert abs(naive - expected) > 1e-3  # the plain average of means would be wrong here


def test_global_mean_loss_alone_asks_nothing_of_the_criterion():
    assert global_mean_loss(np.float32(0.25), criterion=None) == (0.25, 1.0)


# --- split-independent random numbers and the sharded loader ------------------------------------

def test_dropout_masks_do_not_depend_on_how_the_batch_is_split():
    x = np.ones((6, 4, 3, 3))
    whole = nn.Dropout2d(0.5, generator=backend.Generator(7))
    expected = whole(x)
    for ranks in (2, 3, 6):
        parts = []
        for rows in even_slices(6, ranks):
            layer = nn.Dropout2d(0.5, generator=distributed.BatchShardGenerator(
                backend.Generator(7), rows, 6))
            parts.append(layer(x[rows]))
        assert np.array_equal(np.concatenate(parts), expected), ranks


def test_a_sharded_generator_refuses_a_draw_of_another_batch():
    generator = distributed.BatchShardGenerator(backend.Generator(0), slice(2, 4), 6)
    with pytest.raises(ValueError, match="holds rows 2:4 of a batch of 6"):
        generator.random((3, 5))
    with pytest.raises(ValueError, match="not within a batch of 6"):
        distributed.BatchShardGenerator(backend.Generator(0), slice(4, 8), 6)


@pytest.mark.parametrize("ranks", [2, 3, 8])
def test_the_ranks_shares_make_up_every_batch_with_the_same_flips(ranks):
    train, _ = Shapes.splits(20, 4, 32, seed=3)
    options = dict(batch_size=8, shuffle=True, seed=1, hflip=True, vflip=True, crop_padding=2)
    whole = list(DataLoader(train, **options))
    shares = [list(DataLoader(train, num_replicas=ranks, rank=r, **options))
              for r in range(ranks)]
    assert all(len(share) == len(whole) for share in shares)  # every rank steps alike
    for batch, (images, masks) in enumerate(whole):
        assert np.array_equal(np.concatenate([s[batch][0] for s in shares]), images)
        assert np.array_equal(np.concatenate([s[batch][1] for s in shares]), masks)
    last = even_slices(4, ranks)[-1]  # the short batch: 20 images are 2 batches of 8 and 4
    assert shares[-1][-1][0].shape[0] == last.stop - last.start


@pytest.mark.parametrize("options, message", [
    (dict(num_replicas=0), "num_replicas >= 1"),
    (dict(num_replicas=2, rank=2), "0 <= rank < num_replicas"),
])
def test_a_bad_share_is_refused(options, message):
    train, _ = Shapes.splits(4, 4, 32)
    with pytest.raises(ValueError, match=message):
        DataLoader(train, 2, **options)


def test_the_losss_mean_denominator():
    logits = np.zeros((2, 3, 2, 2))
    target = np.array([[[0, 1], [255, 2]], [[255, 255], [1, 1]]])
    plain = nn.CrossEntropyLoss(ignore_index=255)
    with pytest.raises(ValueError, match="known after a forward"):
        _ = plain.mean_denominator
    plain(logits, target)
    assert float(plain.mean_denominator) == 5
    plain.backward()
    assert float(plain.mean_denominator) == 5  # still there until the next forward
    weighted = nn.CrossEntropyLoss(weight=[1.0, 2.0, 4.0], ignore_index=255, dtype="float64")
    weighted(logits, target)
    assert float(weighted.mean_denominator) == 1 + 2 + 4 + 2 + 2
    soft = nn.CrossEntropyLoss()
    soft(logits, np.full(logits.shape, 1 / 3))
    assert float(soft.mean_denominator) == 8
    summed = nn.CrossEntropyLoss(reduction="sum")
    summed(logits, np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="for reduction='mean'"):
        _ = summed.mean_denominator


def test_a_checkpoints_config_from_before_the_layers_option_moved_still_loads(tmp_path):
    config = TrainConfig.from_saved({"model": "unet", "layers": "my_minifcn", "epochs": 3})
    assert config.model == "unet" and config.epochs == 3 and not hasattr(config, "layers")


def test_run_ranks_gives_each_thread_its_rank():
    groups = run_ranks(3, lambda g: g)
    assert all(isinstance(g, ThreadedProcessGroup) for g in groups)
    assert [(g.rank, g.size) for g in groups] == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        run_ranks(0, lambda g: g)


def test_set_gpu_on_the_stand_in_keeps_its_one_device():
    with backend.use_gpu_module(strict_cupy):
        backend.set_gpu(3)  # the stand-in has one "GPU"; a real CuPy takes GPU 3 % count
        assert backend.device_of(backend.to_device(np.zeros(2), "gpu")) == "gpu"


def test_collectives_on_a_real_gpu():
    """Where CuPy sees a GPU: a one-rank MPI world reduces CuPy arrays in place, through
    NCCL when CuPy has it, else staged through the host."""
    MPI = needs_mpi4py()
    try:
        backend.array_module("gpu")
    except backend.DeviceUnavailableError as error:
        pytest.skip(f"needs a GPU: {error}")
    cupy = backend.array_module("gpu")
    group = distributed.ProcessGroup(MPI.COMM_SELF)
    array = cupy.arange(6, dtype=cupy.float32)
    group.all_reduce(array)
    group.broadcast(array, src=0)
    assert backend.to_numpy(array).tolist() == list(range(6))
    assert group._transport(array) in ("nccl", "staged", "host")
