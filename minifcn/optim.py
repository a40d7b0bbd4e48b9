"""Optimizers (SGD, Adam, AdamW) and learning-rate schedules, with PyTorch's update rules.

An optimizer holds ``Parameter`` objects (not arrays: ``Module.to`` and ``load_state_dict``
replace ``param.data``) and updates ``param.data`` in place from ``param.grad``:

    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = PolyLR(opt, total_iters=num_steps)
    for x, t in batches:
        opt.zero_grad()
        loss.forward(model(x), t); model.backward(loss.backward())
        opt.step()
        sched.step()

Every update is array arithmetic on the parameter's own device; hyperparameters are Python
floats and the step counter a Python int, so ``step()`` never waits for the GPU.

Parameter groups work as in PyTorch: ``SGD([{"params": head, "lr": 0.1}, {"params": body}],
lr=0.01)``; a group's own entries override the defaults.

``state_dict()`` is a flat mapping of string keys to arrays and numbers that ``np.savez``
stores without pickle: PyTorch's nested ``{"state": ..., "param_groups": ...}`` with its keys
joined by dots, parameters numbered in group order:

    param_groups.0.lr            0.01
    param_groups.0.params        array([0, 1, 2])
    state.0.momentum_buffer      array of the parameter's shape
    state.0.step                 12          (Adam)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from . import backend, checks
from .backend import get_array_module, np, to_device
from .nn.module import Parameter, array_shape

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "ConstantLR",
    "LinearLR",
    "StepLR",
    "CosineAnnealingLR",
    "PolyLR",
    "SequentialLR",
    "SCHEDULERS",
    "make_scheduler",
]


def _host_value(value):
    """A number or tuple as saved (Python, or a NumPy array after ``np.load``) as Python."""
    if backend.is_array(value):
        value = backend.to_numpy(value)
        return value.item() if value.ndim == 0 else tuple(value.tolist())
    return value


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

    Subclasses set ``defaults`` (the hyperparameters and their defaults), implement
    ``_check_group(group)`` and ``_update(param, state, group)``, and list in
    ``_scalar_state`` the state entries that are host numbers rather than arrays.
    """

    _scalar_state: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        # Keyed by the Parameter object itself (hashed by identity), as PyTorch keys by tensor.
        self.state: dict[Parameter, dict] = {}
        if isinstance(params, (Parameter, dict)) or not isinstance(params, Iterable):
            raise TypeError(f"{self._name}: params must be an iterable of Parameters or of "
                            f"parameter groups (dicts), got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def add_param_group(self, group: dict) -> None:
        """Add a group ``{"params": [...], **overrides}``; missing entries take the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{self._name}: a parameter group must be a dict with a 'params' "
                            f"entry, got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        seen = {p for g in self.param_groups for p in g["params"]}
        for position, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(f"{self._name}: params must be Parameters (e.g. "
                                f"model.parameters()), got {type(param).__name__} at position "
                                f"{position} of group {len(self.param_groups)}")
            if param in seen:
                raise ValueError(f"{self._name}: a parameter appears twice (position {position} "
                                 f"of group {len(self.param_groups)})")
            seen.add(param)
        group = {**self.defaults, **group, "params": params}
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        checks.check_number(self._name, "lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def _params(self) -> list[Parameter]:
        """Every parameter, numbered across groups in order (the state_dict's numbering)."""
        return [param for group in self.param_groups for param in group["params"]]

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for param in self._params():
            param.zero_grad()

    def step(self) -> None:
        """One update of every parameter that ``requires_grad``, from its ``.grad``."""
        in_groups = [(param, group) for group in self.param_groups for param in group["params"]]
        for index, (param, group) in enumerate(in_groups):
            if not param.requires_grad:
                continue
            state = self.state.setdefault(param, {})
            checks.check_same_device(
                f"{self._name}.step (parameter {index}; after moving the model, move the "
                f"optimizer too: optimizer.to(device))",
                param.data, param.grad, *(v for v in state.values() if backend.is_array(v)))
            self._update(param, state, group)

    def _update(self, param: Parameter, state: dict, group: dict) -> None:
        raise NotImplementedError

    def to(self, device: str) -> Optimizer:
        """Move the state arrays (momentum buffers, moments) to ``device``; returns ``self``."""
        backend.array_module(device)  # validates the name and that the device exists
        for state in self.state.values():
            for name, value in state.items():
                if backend.is_array(value):
                    state[name] = to_device(value, device)
        return self

    # --- state_dict ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The flat state (see the module docstring). Arrays are the optimizer's own (not
        copies), as in PyTorch; ``save_checkpoint`` copies them to the host."""
        flat = {}
        index = {param: i for i, param in enumerate(self._params())}
        for g, group in enumerate(self.param_groups):
            for name, value in group.items():
                if name == "params":
                    value = np.array([index[p] for p in value], dtype=np.int64)
                flat[f"param_groups.{g}.{name}"] = value
        for param in sorted(self.state, key=index.__getitem__):
            for name, value in self.state[param].items():
                flat[f"state.{index[param]}.{name}"] = value
        return flat

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state from ``state_dict()`` (or its ``np.load``-ed
        copy). State arrays are copied onto each parameter's device and dtype."""
        where = f"{self._name}.load_state_dict"
        params = self._params()
        groups: dict[int, dict] = {}
        states: dict[int, dict] = {}
        for key, value in state_dict.items():
            parts = key.split(".", 2)
            if len(parts) != 3 or parts[0] not in ("param_groups", "state") \
                    or not parts[1].isdigit():
                raise ValueError(f"{where}: unexpected key {key!r} (expected "
                                 f"'param_groups.<g>.<name>' or 'state.<i>.<name>')")
            target = groups if parts[0] == "param_groups" else states
            target.setdefault(int(parts[1]), {})[parts[2]] = value

        if sorted(groups) != list(range(len(self.param_groups))):
            raise ValueError(f"{where}: the state has {len(groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for g, group in enumerate(self.param_groups):
            size = len(backend.to_numpy(groups[g].get("params", ())))
            if size != len(group["params"]):
                raise ValueError(f"{where}: group {g} of the state has {size} parameters, this "
                                 f"optimizer's has {len(group['params'])}")
        for i, entries in states.items():
            if i >= len(params):
                raise ValueError(f"{where}: state for parameter {i}, but this optimizer has "
                                 f"only {len(params)} parameters")
            for name, value in entries.items():
                if name not in self._scalar_state and array_shape(value) != params[i].shape:
                    raise ValueError(f"{where}: state.{i}.{name} has shape {array_shape(value)}, "
                                     f"parameter {i} has shape {params[i].shape}")
        new_groups = []
        for g, group in enumerate(self.param_groups):
            new_group = {**group, **{name: _host_value(value) for name, value in groups[g].items()
                                     if name != "params"}}
            self._check_group(new_group)
            new_groups.append(new_group)

        # Everything checked: now change the optimizer.
        self.param_groups = new_groups
        self.state = {}
        for i, entries in states.items():
            param = params[i]
            self.state[param] = {
                name: (_host_value(value) if name in self._scalar_state
                       # astype copies, so the optimizer never shares an array with its source
                       else to_device(value, backend.device_of(param.data)).astype(param.dtype))
                for name, value in entries.items()}

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines += [f"    {name}: {value}" for name, value in sorted(group.items())
                      if name != "params"]
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``, per step:

        g = g + weight_decay * p                       (L2 penalty folded into the gradient)
        b = g                        on the first step (the buffer starts at the gradient)
        b = momentum * b + (1 - dampening) * g   afterwards
        g = g + momentum * b  if nesterov  else  b
        p = p - lr * g
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, group: dict) -> None:
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            checks.check_number(self._name, name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{self._name}: nesterov momentum needs momentum > 0 and "
                             f"dampening == 0, got momentum={group['momentum']}, "
                             f"dampening={group['dampening']}")

    def _update(self, param: Parameter, state: dict, group: dict) -> None:
        grad = param.grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data  # a new array: .grad is untouched
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (and, with ``decoupled_weight_decay``, ``AdamW``).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``:

        g = g + weight_decay * p                 (Adam: L2 penalty folded into the gradient)
        p = p * (1 - lr * weight_decay)          (AdamW instead: decay the weights directly)
        m = beta1 * m + (1 - beta1) * g          (m and v start at zero)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                    (amsgrad only; then v_max replaces v below)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The ``1 - beta**t`` factors undo the pull towards zero of moments that start at zero.
    State per parameter: ``step`` (a host int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
    amsgrad, ``max_exp_avg_sq``.
    """

    _scalar_state = ("step",)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_group(self, group: dict) -> None:
        for name in ("lr", "eps", "weight_decay"):
            checks.check_number(self._name, name, group[name])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{self._name}: betas must be a pair of numbers, got {betas!r}")
        group["betas"] = tuple(betas)
        for k, beta in enumerate(betas):
            checks.check_number(self._name, f"betas[{k}]", beta, 0.0, 1.0, high_inclusive=False)

    def _update(self, param: Parameter, state: dict, group: dict) -> None:
        xp = get_array_module(param.data)
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.data)
            state["exp_avg_sq"] = xp.zeros_like(param.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param.data)
        state["step"] += 1
        step = state["step"]

        grad = param.grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.data *= 1.0 - lr * weight_decay
            else:
                grad = grad + weight_decay * param.data  # a new array: .grad is untouched
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (grad * grad)
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]

        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + group["eps"]
        param.data -= (lr / bias_correction1) * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): the weights shrink by
    ``lr * weight_decay`` each step instead of the penalty entering the moments."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         decoupled_weight_decay=True)


# ---------------------------------------------------------------------------------------
# Learning-rate schedules
#
# Each schedule is a closed form ``lr(base_lr, t)`` of the step count ``t`` (0 at creation,
# +1 per ``step()``); PyTorch's schedulers compute the same numbers recursively. Creating a
# scheduler sets the optimizer's lr to its value at t = 0, like PyTorch's. Whether ``t``
# counts epochs or iterations is the caller's choice: call ``step()`` once per either.


class LRScheduler:
    """Base class: keeps ``last_epoch`` (the step count t) and the base learning rates, and
    writes ``lr(base_lr, t)`` into each parameter group after every ``step()``."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        # As PyTorch: the first scheduler records each group's starting lr as initial_lr,
        # which later schedulers and a reloaded optimizer state share.
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr(self, base_lr: float, t: int) -> float:
        """The learning rate ``t`` steps after the start, for a group starting at ``base_lr``."""
        raise NotImplementedError

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.lr(base_lr, self.last_epoch)

    def step(self) -> None:
        """Advance one step (epoch or iteration) and set the groups' learning rates."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group, as last set by this scheduler."""
        return [self.lr(base_lr, self.last_epoch) for base_lr in self.base_lrs]

    def state_dict(self) -> dict:
        """``{"last_epoch": t, "base_lrs": array}``: what ``load_state_dict`` restores."""
        return {"last_epoch": self.last_epoch,
                "base_lrs": np.array(self.base_lrs, dtype=np.float64)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step count and base learning rates from ``state_dict()`` (or its
        ``np.load``-ed copy) and set the groups' learning rates to match."""
        base_lrs = backend.to_numpy(state_dict["base_lrs"]).tolist()
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state has "
                             f"{len(base_lrs)} base learning rates, the optimizer has "
                             f"{len(self.optimizer.param_groups)} parameter groups")
        self.last_epoch = int(_host_value(state_dict["last_epoch"]))
        self.base_lrs = base_lrs
        self._apply()


class ConstantLR(LRScheduler):
    """``base_lr * factor`` for the first ``total_iters`` steps, then ``base_lr``
    (``torch.optim.lr_scheduler.ConstantLR``). ``factor=1.0`` keeps the lr constant."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5):
        checks.check_number(type(self).__name__, "factor", factor, 0.0, 1.0)
        self.factor = factor
        self.total_iters = checks.check_count(type(self).__name__, "total_iters", total_iters, 0)
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        return base_lr * self.factor if t < self.total_iters else base_lr


class LinearLR(LRScheduler):
    """The factor on ``base_lr`` goes linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then stays (``torch.optim.lr_scheduler.LinearLR``); a warmup."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5):
        name = type(self).__name__
        checks.check_number(name, "start_factor", start_factor, 0.0, 1.0)
        if start_factor == 0:
            raise ValueError(f"{name}: start_factor must be > 0, got {start_factor!r}")
        checks.check_number(name, "end_factor", end_factor, 0.0, 1.0)
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = checks.check_count(name, "total_iters", total_iters, 1)
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        progress = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


class StepLR(LRScheduler):
    """``base_lr * gamma ** (t // step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = checks.check_count(type(self).__name__, "step_size", step_size, 1)
        checks.check_number(type(self).__name__, "gamma", gamma)
        self.gamma = gamma
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``: half a cosine from
    ``base_lr`` down to ``eta_min`` at ``t = T_max`` (``torch.optim.lr_scheduler.
    CosineAnnealingLR``; past ``T_max`` it climbs back, as PyTorch's does)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = checks.check_count(type(self).__name__, "T_max", T_max, 1)
        checks.check_number(type(self).__name__, "eta_min", eta_min)
        self.eta_min = eta_min
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        cosine = (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0
        return self.eta_min + (base_lr - self.eta_min) * cosine


class PolyLR(LRScheduler):
    """The "poly" schedule of FCN/DeepLab: ``base_lr * (1 - t / total_iters) ** power``, and 0
    from ``t = total_iters`` on. PyTorch's ``PolynomialLR(total_iters, power)`` is the same
    formula (with default power 1.0 there)."""

    def __init__(self, optimizer: Optimizer, total_iters: int, power: float = 0.9):
        self.total_iters = checks.check_count(type(self).__name__, "total_iters", total_iters, 1)
        checks.check_number(type(self).__name__, "power", power)
        self.power = power
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        return base_lr * (1.0 - min(t, self.total_iters) / self.total_iters) ** self.power


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` restarted from its
    own t = 0, and so on (``torch.optim.lr_scheduler.SequentialLR``). The inner schedulers
    only supply their formulas: step this one, not them."""

    def __init__(self, optimizer: Optimizer, schedulers: list[LRScheduler],
                 milestones: list[int]):
        name = type(self).__name__
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers:
            raise ValueError(f"{name}: expects at least one scheduler")
        for index, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"{name}: item {index} of schedulers is a "
                                f"{type(scheduler).__name__}, not an LRScheduler")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"{name}: scheduler {index} ({type(scheduler).__name__}) "
                                 f"belongs to another optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"{name}: expects one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        for milestone in milestones:
            checks.check_count(name, "each milestone", milestone, 1)
        if milestones != sorted(milestones):
            raise ValueError(f"{name}: milestones must be increasing, got {milestones}")
        self.schedulers, self.milestones = schedulers, milestones
        super().__init__(optimizer)

    def lr(self, base_lr: float, t: int) -> float:
        index = bisect.bisect_right(self.milestones, t)
        start = self.milestones[index - 1] if index > 0 else 0
        return self.schedulers[index].lr(base_lr, t - start)


SCHEDULERS = ("constant", "step", "cosine", "poly")
"""The schedule names ``make_scheduler`` knows."""


def make_scheduler(name: str, optimizer: Optimizer, total_steps: int, *,
                   warmup_steps: int = 0, warmup_start_factor: float = 0.1,
                   step_size: int | None = None, gamma: float = 0.1, eta_min: float = 0.0,
                   power: float = 0.9) -> LRScheduler:
    """A scheduler by name, for the command line: ``"constant"``, ``"step"`` (``gamma`` every
    ``step_size`` steps, default a third of the run), ``"cosine"`` (to ``eta_min``) or
    ``"poly"`` (``power``), over ``total_steps`` calls of ``step()``.

    With ``warmup_steps > 0`` the lr first rises linearly from ``warmup_start_factor *
    base_lr`` to ``base_lr``, and the named schedule runs over the remaining steps.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"make_scheduler: unknown schedule {name!r}; choose one of {SCHEDULERS}")
    total_steps = checks.check_count("make_scheduler", "total_steps", total_steps, 1)
    warmup_steps = checks.check_count("make_scheduler", "warmup_steps", warmup_steps, 0)
    if warmup_steps >= total_steps:
        raise ValueError(f"make_scheduler: warmup_steps ({warmup_steps}) must be less than "
                         f"total_steps ({total_steps})")
    steps = total_steps - warmup_steps
    if name == "constant":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "step":
        main = StepLR(optimizer, step_size or max(1, steps // 3), gamma)
    elif name == "cosine":
        main = CosineAnnealingLR(optimizer, steps, eta_min)
    else:
        main = PolyLR(optimizer, steps, power)
    if warmup_steps == 0:
        return main
    warmup = LinearLR(optimizer, warmup_start_factor, 1.0, warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])
