"""``BatchNorm2d``: batch normalization with PyTorch's arguments, buffers and state_dict keys."""

from __future__ import annotations

import functools
from numbers import Integral, Real

from .. import backend, checks, distributed
from ..functional.norm import (
    batch_norm_backward,
    batch_norm_forward,
    check_batch_statistics,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)
from .module import Module, Parameter

__all__ = ["BatchNorm2d", "SyncBatchNorm"]


class BatchNorm2d(Module):
    """Normalizes each channel of an (N, C, H, W) batch over N, H and W, then scales and
    shifts it by the learned ``weight`` and ``bias`` (C,).

    In training it uses the batch's statistics and updates ``running_mean`` and
    ``running_var`` (exponential average with ``momentum``, or the cumulative average when
    ``momentum=None``) and ``num_batches_tracked``; in evaluation (``.eval()``) it uses the
    running statistics, i.e. it is a fixed affine map. ``track_running_stats=False`` keeps
    no running statistics and always uses the batch's.

    state_dict keys, as PyTorch's: ``weight``, ``bias`` (if ``affine``), ``running_mean``,
    ``running_var``, ``num_batches_tracked`` (if ``track_running_stats``). As in PyTorch
    2.13, the keyword ``bias=False`` keeps the scale but drops the shift.

    As PyTorch 2.13:

    - the input must be a batch (N, C, H, W); one unbatched (C, H, W) sample is refused
      (pass ``x[None]``);
    - ``eps=0`` is accepted at construction and in evaluation with running statistics, but
      a forward that normalizes with batch statistics (training, or
      ``track_running_stats=False``) refuses it. A negative ``eps`` is refused at
      construction (PyTorch accepts it there and fails later);
    - a batch with no values (N = 0, or H or W = 0) gives an empty output, leaves the running
      statistics as they were (in training ``num_batches_tracked`` still counts it) and has
      zero parameter gradients.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        where = f"BatchNorm2d({num_features!r})"
        if not isinstance(num_features, Integral) or isinstance(num_features, bool):
            raise TypeError(f"{where}: num_features must be an int, got {num_features!r}")
        if num_features < 1:
            raise ValueError(f"{where}: num_features must be >= 1, got {num_features!r}")
        if not isinstance(eps, Real) or isinstance(eps, bool):
            raise TypeError(f"{where}: eps must be a number, got {eps!r}")
        if not eps >= 0.0:
            raise ValueError(f"{where}: eps must be >= 0, got {eps!r}")
        if momentum is not None:
            if not isinstance(momentum, Real) or isinstance(momentum, bool):
                raise TypeError(f"{where}: momentum must be a number or None, got {momentum!r}")
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"{where}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = checks.check_flag(where, "affine", affine)
        self.track_running_stats = checks.check_flag(where, "track_running_stats",
                                               track_running_stats)
        checks.check_flag(where, "bias", bias)
        self._where = where
        self._cache = None

        np = backend.np  # parameters and buffers start on the host, then move
        dtype = backend.resolve_dtype(dtype)
        # A missing weight or bias is None, absent from parameters() and state_dict(),
        # as in PyTorch.
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = None
            self.running_var = None
            self.num_batches_tracked = None
        self.to(device=device or backend.default_device())

    def reset_parameters(self) -> None:
        """PyTorch's initialization, in place: weight 1, bias 0, running statistics reset."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.data[...] = 1.0
        if self.bias is not None:
            self.bias.data[...] = 0.0

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked (in place, as PyTorch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
            self.num_batches_tracked[...] = 0

    def _arrays(self) -> list:
        """The arrays of the running statistics and parameters that exist."""
        arrays = [self.running_mean, self.running_var]
        arrays += [param.data for param in (self.weight, self.bias) if param is not None]
        return [a for a in arrays if a is not None]

    def forward(self, x):
        """x: (N, C, H, W) -> y: (N, C, H, W)."""
        arrays = self._arrays()
        if backend.is_array(x) and x.ndim == 3:
            raise ValueError(f"{self._where}: expected x of rank 4 (N, C, H, W), got x of "
                             f"shape {tuple(x.shape)}; BatchNorm2d needs a batch, as in "
                             f"PyTorch (for one (C, H, W) sample pass x[None])")
        checks.check_input(self._where, x, channels=self.num_features,
                           dtype=arrays[0].dtype if arrays else None)
        checks.check_same_device(self._where, x, *arrays)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and not self.eps > 0.0:
            raise ValueError(f"{self._where}: eps must be positive when normalizing with batch "
                             f"statistics (training, or track_running_stats=False), got "
                             f"{self.eps!r} (as in PyTorch)")
        if use_batch_stats and x.size:
            self._check_batch_size(x)  # before counting: a refused batch is not counted
        update_running_stats = self.training and self.track_running_stats
        momentum = 0.0  # unused unless the running statistics are updated
        if update_running_stats:
            self.num_batches_tracked[...] += 1  # in place: the buffer stays registered
            if self.momentum is None:  # cumulative average: 1/1, 1/2, 1/3, ... (a host sync)
                momentum = 1.0 / float(self.num_batches_tracked)
            else:
                momentum = float(self.momentum)

        y, cache, backward = self._normalize(x, use_batch_stats, momentum)
        if cache is not None and update_running_stats:
            self.running_mean[...] = cache.running_mean
            self.running_var[...] = cache.running_var
        self._cache = (cache, backward, tuple(y.shape), y.dtype)
        return y

    def _normalize(self, x, use_batch_stats: bool, momentum: float):
        """(y, functional cache, the functional backward) for ``x``.

        A batch with no values, in a forward with batch statistics, has no statistics to
        take: as PyTorch, the output is empty and the running statistics stay (the counter
        counts the batch); the cache is None."""
        if use_batch_stats and x.size == 0:
            return x.copy(), None, None
        y, cache = batch_norm_forward(
            x, *self._affine(), self.running_mean, self.running_var,
            training=use_batch_stats, momentum=momentum, eps=float(self.eps))
        return y, cache, batch_norm_backward

    def _check_batch_size(self, x) -> None:
        check_batch_statistics(self._where, x)

    def _affine(self):
        """(weight, bias) as arrays, None where the layer has none."""
        return (None if self.weight is None else self.weight.data,
                None if self.bias is None else self.bias.data)

    def backward(self, dy):
        """dy: (N, C, H, W) -> dx: (N, C, H, W); adds into weight.grad and bias.grad."""
        checks.check_cache(self._where, self._cache)
        cache, backward, shape, dtype = self._cache
        checks.check_grad(self._where, dy, shape, dtype)
        if cache is None:  # an empty batch: nothing reaches the parameters
            self._cache = None
            return dy.copy()
        checks.check_same_device(self._where, dy, cache.inv_std)
        dx, dweight, dbias = backward(dy, cache)
        for param, grad in ((self.weight, dweight), (self.bias, dbias)):
            if param is not None and param.requires_grad:
                param.grad += grad
        self._cache = None
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class SyncBatchNorm(BatchNorm2d):
    """Batch normalization whose training statistics are the whole batch's, when the batch
    is spread over the ranks of a data-parallel run (``torch.nn.SyncBatchNorm``).

    Each rank holds a shard of the batch. In training, the ranks exchange three numbers per
    channel in forward (each shard's count, mean and sum of squared deviations; one
    all-gather) and two in backward (the sums of ``dy`` and ``dy * xhat``; one all-reduce),
    so every rank normalizes by the whole batch's mean and variance and N ranks on B/N
    images each compute what one process computes on B. The gradients of ``weight`` and
    ``bias`` stay each rank's own: DistributedDataParallel averages them with the others.

    In evaluation (running statistics), or in a world of one, it is :class:`BatchNorm2d`
    exactly, and it has the same arguments (plus ``process_group``), buffers and
    state_dict keys, so checkpoints move freely between the two.
    ``SyncBatchNorm.convert_sync_batchnorm(model)`` swaps it in for every BatchNorm2d.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype, bias=bias)
        self._where = f"SyncBatchNorm({num_features!r})"
        self.process_group = process_group

    def _group(self):
        """The ranks to synchronize with, or None when this forward needs no exchange
        (evaluation, as in PyTorch, or a world of one)."""
        if not self.training or distributed.get_world_size(self.process_group) == 1:
            return None
        return self.process_group or distributed._resolve(None)

    def _check_batch_size(self, x) -> None:
        if self._group() is None:  # synchronized, only the whole batch's count matters
            super()._check_batch_size(x)

    def _normalize(self, x, use_batch_stats: bool, momentum: float):
        group = self._group()
        if group is None:
            return super()._normalize(x, use_batch_stats, momentum)
        xp = backend.get_array_module(x)

        def all_gather(stats):
            gathered = xp.empty((group.size,) + tuple(stats.shape), dtype=stats.dtype)
            group.all_gather_into_tensor(gathered.reshape(-1, stats.shape[1]), stats)
            return gathered

        # Even an empty shard takes part: the other ranks wait for its three numbers.
        y, cache = sync_batch_norm_forward(x, *self._affine(), self.running_mean,
                                           self.running_var, momentum, float(self.eps),
                                           all_gather)
        return y, cache, functools.partial(sync_batch_norm_backward,
                                           all_reduce=group.all_reduce)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """``module`` with every BatchNorm2d in it replaced by a SyncBatchNorm holding the
        same parameters (the same ``Parameter`` objects) and buffers, in its mode.

        Returns the converted module: a new one when ``module`` itself is a BatchNorm2d,
        else ``module``, changed in place (as PyTorch)."""
        if isinstance(module, BatchNorm2d) and not isinstance(module, SyncBatchNorm):
            arrays = module._arrays()
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group,
                            device=backend.device_of(arrays[0]) if arrays else None,
                            dtype=arrays[0].dtype if arrays else None,
                            bias=module.bias is not None or not module.affine)
            for name in ("weight", "bias", "running_mean", "running_var",
                         "num_batches_tracked"):  # the parameters and buffers themselves
                if getattr(module, name) is not None:
                    setattr(converted, name, getattr(module, name))
            converted.train(module.training)
            return converted
        for name, child in list(module._modules.items()):
            converted = cls.convert_sync_batchnorm(child, process_group)
            if converted is not child:  # in the old one's place: Sequential keeps its order
                module._modules[name] = converted
                object.__setattr__(module, name, converted)
        return module
