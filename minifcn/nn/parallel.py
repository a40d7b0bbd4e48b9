"""``DistributedDataParallel``: one model trained by N ranks, each on its share of the batch.

Every rank holds the same model. Each computes the gradient of its own images; then the
ranks average their gradients, so that every rank takes the same optimizer step and the
copies stay equal. The loss of a batch is a mean over its images, so its gradient is the
mean of the parts' gradients: averaging over ranks gives the gradient of the whole batch.

    dist.init_process_group()
    model = DistributedDataParallel(build_model("fcn8s", 4))  # copies rank 0's weights
    logits = model(images)                                   # this rank's share
    model.zero_grad()
    model.backward(criterion.backward())                     # backward + averaging
    optimizer.step()                                         # the same step on every rank

How the averaging overlaps the backward pass, as PyTorch's DDP does it. The gradients
travel in *buckets*: a few flat buffers, allocated once, each parameter's ``.grad`` a view
into one of them (so nothing is copied in or out). The buckets are filled in the order the
backward pass produces gradients: the last layers first. Each layer with parameters has a
backward hook; when a layer's backward has finished, its parameters are ready, and when
every parameter of a bucket is ready the bucket is sent at once, without blocking
(``all_reduce(..., async_op=True)``), while the backward pass goes on with the earlier
layers. When the whole backward is done, ``backward`` waits for the buckets still on their
way and divides by the world size.

The first step's buckets follow the parameters' order reversed (roughly the backward
order); that step records the order the gradients really came in, and the buckets are
rebuilt in it once. The first bucket is small (1 MiB) so that the network gets busy early;
the others hold up to ``bucket_cap_mb`` (25 MiB, PyTorch's default; a smaller cap makes the
first bucket smaller too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import backend, distributed
from .module import Module

__all__ = ["DistributedDataParallel", "global_mean_loss"]

MiB = 2**20
FIRST_BUCKET_BYTES = 1 * MiB
"""The first bucket's size: the gradients of the last layers, sent as early as possible."""


class _Bucket:
    """Parameters whose gradients are averaged together: one flat buffer, reused every
    step, in which each parameter's ``.grad`` is a view."""

    def __init__(self, params: list, xp, dtype, reports: int):
        self.params = params
        self.buffer = xp.zeros(sum(int(p.data.size) for p in params), dtype=dtype)
        self.views = []
        offset = 0
        for param in params:
            view = self.buffer[offset:offset + param.data.size].reshape(param.data.shape)
            view[...] = param.grad  # what has been accumulated so far stays
            param.grad = view
            self.views.append(view)
            offset += param.data.size
        # How many layer backwards must still report before every gradient here is final
        # (one per parameter, or more for a parameter that several layers share).
        self.reports = reports
        self.waiting = reports
        self.work = None  # the all-reduce on its way


class DistributedDataParallel(Module):
    """Wraps ``module`` so that ``backward`` averages its gradients over the ranks. The
    arguments have PyTorch's names.

    Args:
        module: the model, already on its device.
        device_ids: accepted for PyTorch's spelling: None, or one device id. minifcn puts
            nothing anywhere: the model stays where its parameters are.
        broadcast_buffers: copy rank 0's buffers (running statistics) to every rank at the
            start of each training forward, as PyTorch does. Without SyncBatchNorm each
            rank's statistics would otherwise drift apart; with it they are equal anyway,
            and ``False`` saves the messages.
        process_group: the ranks to average over (default: the world).
        bucket_cap_mb: the largest bucket, in MiB (default 25, as PyTorch); the first is
            at most 1 MiB.

    On construction every rank checks that the others hold a model of the same shapes,
    then takes rank 0's parameters and buffers, so that every copy starts equal.

    ``state_dict()`` keys start with ``module.``, as PyTorch's; save ``ddp.module``'s
    for a checkpoint that loads into the bare model.
    """

    def __init__(self, module: Module, device_ids=None, *, broadcast_buffers: bool = True,
                 process_group=None, bucket_cap_mb: float | None = None):
        super().__init__()
        where = "DistributedDataParallel"
        if not isinstance(module, Module):
            raise TypeError(f"{where}: expected a minifcn Module, got {type(module).__name__}")
        if device_ids is not None and len(list(device_ids)) != 1:
            raise ValueError(f"{where}: device_ids must be None or one device per rank, got "
                             f"{device_ids!r}")
        cap = 25.0 if bucket_cap_mb is None else bucket_cap_mb
        if not cap > 0:
            raise ValueError(f"{where}: bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.process_group = process_group or distributed._resolve(None)
        self.bucket_bytes = int(cap * MiB)
        self._syncing = True  # False inside no_sync()
        self._in_backward = False  # True while backward() runs the module's backward
        self._check_replicas_match()
        self._sync_module_states()
        owners = [layer for layer in module.modules()
                  if any(p.requires_grad for p in layer._parameters.values())]
        self._reports = {}  # id(parameter) -> how many layers own it (and report it ready)
        for layer in owners:
            for param in layer._parameters.values():
                if param.requires_grad:
                    self._reports[id(param)] = self._reports.get(id(param), 0) + 1
        trainable = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
        self._build_buckets(trainable[::-1])
        self._arrival_order = []  # the first step's order of ready parameters
        self._rebuilt = False
        self._hooks = [layer.register_full_backward_hook(self._on_layer_done)
                       for layer in owners]

    # --- set-up ---------------------------------------------------------------------------
    def _check_replicas_match(self) -> None:
        """Every rank must wrap the same architecture: compare names, shapes and dtypes."""
        mine = [(name, tuple(array.shape), str(array.dtype))
                for name, array in self.module.state_dict().items()]
        everyone = self.process_group.all_gather_object(mine)
        for rank, theirs in enumerate(everyone):
            if theirs != mine:
                different = next((f"{a} against {b}" for a, b in zip(mine, theirs,
                                                                       strict=False)
                                  if a != b), f"{len(mine)} arrays against {len(theirs)}")
                raise ValueError(f"DistributedDataParallel: rank {rank}'s model differs from "
                                 f"rank {self.process_group.rank}'s: {different}; every "
                                 f"rank must build the same model")

    def _sync_module_states(self) -> None:
        """Rank 0's parameters and buffers on every rank."""
        xp_of = backend.get_array_module
        for param in self.module.parameters():
            param.data = xp_of(param.data).ascontiguousarray(param.data)
            self.process_group.broadcast(param.data, src=0)
        self._broadcast_buffers()

    def _broadcast_buffers(self) -> None:
        works = [self.process_group.broadcast(array, src=0, async_op=True)
                 for _, array in self.module.named_buffers()]
        for work in works:
            if work is not None:
                work.wait()

    def _build_buckets(self, params: list) -> None:
        """Buckets over ``params`` in that order (the order their gradients arrive in):
        a new bucket at each change of device or dtype, and when one is full."""
        self._buckets, groups, size = [], [], 0
        limit = min(FIRST_BUCKET_BYTES, self.bucket_bytes)
        for param in params:
            nbytes = int(param.data.nbytes)
            same_kind = groups and (backend.device_of(param.data), param.data.dtype) == (
                backend.device_of(groups[-1][-1].data), groups[-1][-1].data.dtype)
            if not same_kind or size + nbytes > limit:
                if groups:
                    limit = self.bucket_bytes
                groups.append([])
                size = 0
            groups[-1].append(param)
            size += nbytes
        for group in groups:
            first = group[0].data
            self._buckets.append(_Bucket(group, backend.get_array_module(first), first.dtype,
                                         sum(self._reports[id(p)] for p in group)))
        self._bucket_of = {id(p): bucket for bucket in self._buckets for p in bucket.params}
        self._next_to_send = 0

    # --- the step ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.training and self.broadcast_buffers and self.process_group.size > 1:
            self._broadcast_buffers()
        return self.module(*args, **kwargs)

    def _on_layer_done(self, layer: Module, grad_input, grad_output) -> None:
        """A layer's backward has finished: its parameters' gradients are final. Send every
        bucket that is complete, in bucket order (every rank must start its collectives in
        the same order)."""
        if not (self._syncing and self._in_backward):
            return  # no_sync(), or the bare model's own backward: gradients stay local
        for param in layer._parameters.values():
            if not param.requires_grad:
                continue
            bucket = self._bucket_of[id(param)]
            if bucket.work is not None:
                raise RuntimeError(f"DistributedDataParallel: {type(layer).__name__}'s backward "
                                   f"ran twice in one step, after its gradients were sent; "
                                   f"call forward before each backward")
            bucket.waiting -= 1
            if not self._rebuilt and param not in self._arrival_order:
                self._arrival_order.append(param)
        self._send_ready_buckets()

    def _send_ready_buckets(self, everything: bool = False) -> None:
        while self._next_to_send < len(self._buckets):
            bucket = self._buckets[self._next_to_send]
            if bucket.waiting > 0 and not everything:
                break
            bucket.work = self.process_group.all_reduce(bucket.buffer, async_op=True)
            self._next_to_send += 1
        # MPI moves a non-blocking message along only while the program calls into it.
        for bucket in self._buckets[:self._next_to_send]:
            bucket.work.is_completed()

    def backward(self, dy):
        """The module's backward, with every gradient averaged over the ranks by the time
        it returns (except inside :meth:`no_sync`). Returns the module's dx."""
        for bucket in self._buckets:
            for param, view in zip(bucket.params, bucket.views, strict=True):
                if param.grad is not view:
                    raise RuntimeError("DistributedDataParallel: a parameter's .grad was "
                                       "replaced after wrapping (by .to(), or by assigning "
                                       "it); move the model before wrapping it, and add into "
                                       ".grad in place")
        self._in_backward = True
        try:
            dx = self.module.backward(dy)
        finally:
            self._in_backward = False
        if self._syncing:
            self._finish_averaging()
        return dx

    def _finish_averaging(self) -> None:
        # Parameters whose layer did not run its backward this step (unused) still take
        # part, with the gradient they have: every rank must send every bucket.
        self._send_ready_buckets(everything=True)
        size = self.process_group.size
        for bucket in self._buckets:
            bucket.work.wait()
            if size > 1:
                bucket.buffer /= size
            bucket.work, bucket.waiting = None, bucket.reports
        self._next_to_send = 0
        if not self._rebuilt:
            self._rebuilt = True
            arrived = {id(p) for p in self._arrival_order}
            late = [p for bucket in self._buckets for p in bucket.params
                    if id(p) not in arrived]
            self._build_buckets(self._arrival_order + late)
            self._arrival_order = []

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Within the block, backward only accumulates this rank's gradients (for gradient
        accumulation over several small batches); the first backward after it averages
        everything accumulated."""
        previous, self._syncing = self._syncing, False
        try:
            yield
        finally:
            self._syncing = previous

    def buckets(self) -> list[list[str]]:
        """The parameter names of each bucket, in sending order (for reading and tests)."""
        names = {id(p): name for name, p in self.module.named_parameters()}
        return [[names[id(p)] for p in bucket.params] for bucket in self._buckets]

    def extra_repr(self) -> str:
        return (f"world_size={self.process_group.size}, buckets={len(self._buckets)}, "
                f"broadcast_buffers={self.broadcast_buffers}")


def global_mean_loss(loss, criterion, process_group=None) -> tuple[float, float]:
    """The whole global batch's mean loss from each rank's mean over its own share, and the
    ``dloss`` each rank gives ``criterion.backward`` so that DDP's average of the ranks'
    gradients is the gradient of that mean.

    Args:
        loss: this rank's mean loss (a 0-d array or a number), from ``criterion``'s last
            forward.
        criterion: the loss module; its ``mean_denominator`` says what the mean divided
            by (the pixels that count, or the sum of their class weights).
        process_group: the ranks (default: the world).

    Returns:
        (loss, dloss): the same ``loss`` on every rank, and ``dloss = N * w_r / W`` for
        this rank's denominator ``w_r`` out of the total ``W`` over the N ranks.

    Why not simply average the ranks' means, as DDP does with gradients: a mean over a
    rank's pixels counts each pixel 1 / w_r, and with void pixels (or class weights) the
    ranks' ``w_r`` differ, so the plain average weighs some pixels more than others. The
    whole batch's mean is ``sum_r w_r * loss_r / W``; rank r's share of its gradient is
    ``w_r / W`` of its own mean's, and DDP then divides the sum by N. One small all-reduce
    (two numbers) per step; a rank whose pixels are all void adds nothing. In a world of
    one, ``(loss, 1.0)``, and ``criterion`` is not asked.
    """
    group = process_group
    if group is None and distributed.is_initialized():
        group = distributed._resolve(None)
    if group is None or group.size == 1:
        return float(loss), 1.0
    weight = float(criterion.mean_denominator)
    sums = backend.np.array([float(loss) * weight if weight else 0.0, weight])
    group.all_reduce(sums)
    total_loss, total_weight = sums
    mean = total_loss / total_weight if total_weight else float("nan")
    return float(mean), group.size * weight / total_weight if total_weight else 0.0
