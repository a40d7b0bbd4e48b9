"""Optimizers and learning-rate schedules: PyTorch's numbers, frozen parameters, state
round trips, devices, and argument errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minifcn import backend
from minifcn.nn.module import Parameter
from minifcn.optim import (
    SGD,
    Adam,
    AdamW,
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    PolyLR,
    SequentialLR,
    StepLR,
    make_scheduler,
)

SHAPES = ((3, 4), (5,), (2, 1, 3))


def _problem(seed: int, steps: int, shapes=SHAPES):
    """Initial weights and one gradient per step for each shape, float64, on the host."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(shape) for shape in shapes]
    grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(steps)]
    return weights, grads


def _run(optimizer, params, grads) -> None:
    """Step ``optimizer`` once per entry of ``grads`` (host arrays), on the params' device."""
    xp = backend.get_array_module(params[0].data)
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = xp.asarray(grad) if xp is not np else grad.copy()
        optimizer.step()


def _compare_with_torch(torch, ours, theirs, steps: int = 6, seed: int = 0) -> None:
    """Step ``ours(params)`` and ``theirs(tensors)`` side by side; weights agree each step."""
    weights, grads = _problem(seed, steps)
    params = [Parameter(w.copy()) for w in weights]
    tensors = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt, topt = ours(params), theirs(tensors)
    for step, step_grads in enumerate(grads):
        for param, tensor, grad in zip(params, tensors, step_grads, strict=True):
            param.grad[...] = grad
            tensor.grad = torch.tensor(grad)
        opt.step()
        topt.step()
        for param, tensor in zip(params, tensors, strict=True):
            np.testing.assert_allclose(param.data, tensor.detach().numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=f"after step {step + 1}")
    return opt, topt, params, tensors


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.02, momentum=0.8, dampening=0.1, weight_decay=0.05),
    dict(lr=0.02, momentum=0.95, weight_decay=5e-4, nesterov=True),
]


def _config_id(config: dict) -> str:
    return ",".join(f"{name}={value}" for name, value in config.items())


@pytest.mark.torch
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=_config_id)
def test_sgd_matches_torch(torch, config):
    opt, topt, params, tensors = _compare_with_torch(
        torch, lambda p: SGD(p, **config), lambda t: torch.optim.SGD(t, **config))
    if config.get("momentum"):
        for param, tensor in zip(params, tensors, strict=True):
            np.testing.assert_allclose(opt.state[param]["momentum_buffer"],
                                       topt.state[tensor]["momentum_buffer"].numpy(),
                                       rtol=1e-12, atol=1e-12)


ADAM_CONFIGS = [
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
    (Adam, dict(lr=0.01, weight_decay=0.1)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (Adam, dict(lr=0.01, weight_decay=0.05, amsgrad=True)),
    (AdamW, dict(lr=0.01)),
    (AdamW, dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.torch
@pytest.mark.parametrize("cls, config", [
    pytest.param(cls, config, id=f"{cls.__name__}-{_config_id(config)}")
    for cls, config in ADAM_CONFIGS])
def test_adam_matches_torch(torch, cls, config):
    torch_cls = getattr(torch.optim, cls.__name__)
    opt, topt, params, tensors = _compare_with_torch(
        torch, lambda p: cls(p, **config), lambda t: torch_cls(t, **config), steps=8)
    for param, tensor in zip(params, tensors, strict=True):
        state, theirs = opt.state[param], topt.state[tensor]
        assert state["step"] == int(theirs["step"]) == 8
        for name in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if config.get("amsgrad")
                                                 else ()):
            np.testing.assert_allclose(state[name], theirs[name].numpy(), rtol=1e-12,
                                       atol=1e-15, err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("cls", [SGD, Adam], ids=["SGD", "Adam"])
def test_param_groups_match_torch(torch, cls):
    """Per-group overrides of lr / weight decay / momentum, as PyTorch reads them."""
    base = dict(lr=0.01, weight_decay=0.01) | (dict(momentum=0.9) if cls is SGD else {})
    override = dict(lr=0.1) | (dict(momentum=0.5, nesterov=True) if cls is SGD
                               else dict(betas=(0.5, 0.9)))

    def groups(params):
        return [{"params": params[:2], **override}, {"params": params[2:]}]

    torch_cls = getattr(torch.optim, cls.__name__)
    opt, _, _, _ = _compare_with_torch(torch, lambda p: cls(groups(p), **base),
                                       lambda t: torch_cls(groups(t), **base))
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.01


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda p: Adam(p, lr=0.1, weight_decay=0.1),
                                  lambda p: AdamW(p, lr=0.1)], ids=["SGD", "Adam", "AdamW"])
def test_step_skips_frozen_params_and_leaves_grads_alone(make):
    weights, grads = _problem(seed=1, steps=3)
    params = [Parameter(w.copy()) for w in weights]
    params[1].requires_grad = False
    opt = make(params)
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad[...] = grad
        opt.step()
        for param, grad in zip(params, step_grads, strict=True):
            np.testing.assert_array_equal(param.grad, grad)  # weight decay made a new array
    np.testing.assert_array_equal(params[1].data, weights[1])
    assert params[1] not in opt.state
    for k in (0, 2):
        assert not np.allclose(params[k].data, weights[k])


def test_zero_grad_and_lr_property():
    params = [Parameter(np.ones((2, 2))), Parameter(np.ones(3))]
    opt = SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1)
    for param in params:
        param.grad[...] = 3.0
    grads = [param.grad for param in params]
    opt.zero_grad()
    for param, grad in zip(params, grads, strict=True):
        assert param.grad is grad and not grad.any()  # zeroed in place
    assert opt.lr == 0.1
    opt.lr = 0.25
    assert [group["lr"] for group in opt.param_groups] == [0.25, 0.25]


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda p: Adam([{"params": p[:1], "lr": 0.05}, {"params": p[1:]}], lr=0.01, amsgrad=True),
], ids=["SGD", "Adam-groups"])
@pytest.mark.parametrize("through_npz", [False, True], ids=["dict", "npz"])
def test_state_round_trip_continues_identically(make, through_npz):
    weights, grads = _problem(seed=2, steps=7)
    params = [Parameter(w.copy()) for w in weights]
    opt = make(params)
    _run(opt, params, grads[:4])
    state = opt.state_dict()
    if through_npz:  # the flat state must be storable without pickle
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **state)
        buffer.seek(0)
        with np.load(buffer, allow_pickle=False) as archive:
            state = {key: archive[key] for key in archive.files}

    resumed_params = [Parameter(p.data.copy()) for p in params]
    resumed = make(resumed_params)
    resumed.load_state_dict(state)
    _run(opt, params, grads[4:])
    _run(resumed, resumed_params, grads[4:])
    for param, other in zip(params, resumed_params, strict=True):
        np.testing.assert_array_equal(param.data, other.data)
    assert resumed.param_groups == [{**g, "params": r["params"]} for g, r in
                                    zip(opt.param_groups, resumed.param_groups, strict=True)]
    for param, other in zip(params, resumed_params, strict=True):
        for name, value in opt.state[param].items():
            if name != "step":
                assert resumed.state[other][name] is not value  # copied, not shared
            np.testing.assert_array_equal(resumed.state[other][name], value)


def test_load_state_dict_refuses_mismatches():
    params = [Parameter(np.zeros((2, 3))), Parameter(np.zeros(4))]
    opt = SGD(params, lr=0.1, momentum=0.9)
    _run(opt, params, [[np.ones((2, 3)), np.ones(4)]])
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: group 0 of the state has 2 "
                                         r"parameters, this optimizer's has 1"):
        SGD(params[:1], lr=0.1).load_state_dict(state)
    other = [Parameter(np.zeros((3, 2))), Parameter(np.zeros(4))]
    with pytest.raises(ValueError, match=r"state.0.momentum_buffer has shape \(2, 3\), "
                                         r"parameter 0 has shape \(3, 2\)"):
        SGD(other, lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="unexpected key 'momentum'"):
        SGD(params, lr=0.1).load_state_dict({**state, "momentum": 0.9})
    with pytest.raises(ValueError, match="lr must be >= 0"):
        SGD(params, lr=0.1).load_state_dict({**state, "param_groups.0.lr": -1.0})


@pytest.mark.parametrize("make, error, match", [
    (lambda p: SGD(p, lr=-0.1), ValueError, r"SGD: lr must be >= 0"),
    (lambda p: SGD(p, lr="0.1"), TypeError, r"SGD: lr must be a number"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), ValueError, r"SGD: momentum must be >= 0"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, r"SGD: nesterov momentum needs"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "dampening == 0"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), ValueError, r"Adam: betas\[1\] must be >= 0.0 and < 1"),
    (lambda p: Adam(p, betas=0.9), TypeError, r"Adam: betas must be a pair"),
    (lambda p: Adam(p, eps=-1e-8), ValueError, r"Adam: eps must be >= 0"),
    (lambda p: AdamW(p, weight_decay=-0.01), ValueError, r"AdamW: weight_decay must be >= 0"),
    (lambda p: SGD([], lr=0.1), ValueError, r"SGD: got an empty parameter list"),
    (lambda p: SGD(p[0], lr=0.1), TypeError, r"SGD: params must be an iterable"),
    (lambda p: SGD([p[0].data], lr=0.1), TypeError, r"SGD: params must be Parameters .* "
                                                    r"got ndarray at position 0"),
    (lambda p: SGD([p[0], p[0]], lr=0.1), ValueError, r"SGD: a parameter appears twice"),
    (lambda p: SGD([{"lr": 0.1}], lr=0.1), TypeError, r"SGD: a parameter group must be"),
])
def test_bad_arguments(make, error, match):
    params = [Parameter(np.zeros(3))]
    with pytest.raises(error, match=match):
        make(params)


def test_runs_on_the_device_of_its_params(bk):
    """Steps on device params give NumPy's numbers; the state follows ``to(device)``."""
    weights, grads = _problem(seed=3, steps=6)
    on_host = [Parameter(w.copy()) for w in weights]
    reference = Adam(on_host, lr=0.01, weight_decay=0.01, amsgrad=True)
    _run(reference, on_host, grads)

    # Three steps on the host, then model and optimizer move to the backend's device.
    params = [Parameter(w.copy()) for w in weights]
    opt = Adam(params, lr=0.01, weight_decay=0.01, amsgrad=True)
    _run(opt, params, grads[:3])
    for param in params:
        param.data = backend.to_device(param.data, bk.device)
        param.grad = backend.to_device(param.grad, bk.device)
    assert opt.to(bk.device) is opt
    _run(opt, params, grads[3:])
    for param, expected in zip(params, on_host, strict=True):
        assert bk.owns(param.data) and param.data.dtype == np.float64
        np.testing.assert_allclose(bk.numpy(param.data), expected.data, rtol=1e-12, atol=0)
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert bk.owns(opt.state[param][name])

    # A state left behind on the host is a clear error on a device that is not the host.
    opt.to("cpu")
    if bk.device != "cpu":
        with pytest.raises(TypeError, match=r"Adam.step \(parameter 0.*optimizer.to\(device\)"):
            opt.step()


def test_load_state_dict_moves_state_to_the_params_device(bk):
    weights, grads = _problem(seed=4, steps=2)
    host_params = [Parameter(w.astype(np.float32)) for w in weights]
    opt = SGD(host_params, lr=0.1, momentum=0.9)
    _run(opt, host_params, grads)
    params = [Parameter(bk.asarray(w)) for w in weights]  # float64 on the device
    moved = SGD(params, lr=0.1, momentum=0.9)
    moved.load_state_dict(opt.state_dict())
    for param, host in zip(params, host_params, strict=True):
        buffer = moved.state[param]["momentum_buffer"]
        assert bk.owns(buffer) and buffer.dtype == np.float64
        np.testing.assert_array_equal(bk.numpy(buffer), opt.state[host]["momentum_buffer"])


# --- learning-rate schedules --------------------------------------------------------------

def _lrs(scheduler, steps: int) -> list[list[float]]:
    """Each group's lr at creation and after each of ``steps`` steps."""
    seen = [[group["lr"] for group in scheduler.optimizer.param_groups]]
    assert scheduler.get_last_lr() == seen[0]
    for _ in range(steps):
        scheduler.step()
        seen.append([group["lr"] for group in scheduler.optimizer.param_groups])
        assert scheduler.get_last_lr() == seen[-1]
    return seen


def _torch_lrs(torch, make, steps: int, lrs=(0.1, 0.03)) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)])
    scheduler = make(torch.optim.lr_scheduler, opt)
    seen = [[group["lr"] for group in opt.param_groups]]
    for _ in range(steps):
        opt.step()  # PyTorch warns when the scheduler steps before the optimizer
        scheduler.step()
        seen.append([group["lr"] for group in opt.param_groups])
    return seen


def _our_lrs(make, steps: int, lrs=(0.1, 0.03)) -> list[list[float]]:
    import minifcn.optim as optim

    opt = SGD([{"params": [Parameter(np.zeros(1))], "lr": lr} for lr in lrs])
    return _lrs(make(optim, opt), steps)


SCHEDULE_CASES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10),
    "CosineAnnealingLR-eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=3),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=6),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=3), m.CosineAnnealingLR(o, T_max=9)],
        milestones=[3]),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(SCHEDULE_CASES))
def test_schedules_match_torch(torch, name):
    ours = _our_lrs(SCHEDULE_CASES[name], steps=25)  # well past T_max / total_iters
    theirs = _torch_lrs(torch, SCHEDULE_CASES[name], steps=25)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.torch
@given(total_iters=st.integers(1, 12), power=st.floats(0.1, 3.0))
def test_poly_matches_torch_polynomial(torch, total_iters, power):
    ours = _our_lrs(lambda m, o: m.PolyLR(o, total_iters, power), steps=total_iters + 3)
    theirs = _torch_lrs(torch, lambda m, o: m.PolynomialLR(o, total_iters, power),
                        steps=total_iters + 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert ours[-1] == [0.0, 0.0]


def test_poly_is_the_fcn_formula():
    """Checked against the formula written out, independently of PyTorch."""
    seen = _our_lrs(lambda m, o: m.PolyLR(o, total_iters=8), steps=10, lrs=(0.2,))
    expected = [0.2 * (1 - min(t, 8) / 8) ** 0.9 for t in range(11)]
    np.testing.assert_allclose([lr for (lr,) in seen], expected, rtol=1e-15, atol=0)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["constant", "step", "cosine", "poly"])
def test_make_scheduler_with_warmup_matches_torch(torch, name):
    total, warmup = 20, 4
    main = {"constant": lambda m, o: m.ConstantLR(o, factor=1.0, total_iters=0),
            "step": lambda m, o: m.StepLR(o, step_size=(total - warmup) // 3, gamma=0.1),
            "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=total - warmup),
            "poly": lambda m, o: m.PolynomialLR(o, total_iters=total - warmup, power=0.9)}[name]

    def torch_schedule(m, o):
        first = m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=warmup)
        return m.SequentialLR(o, [first, main(m, o)], milestones=[warmup])

    ours = _our_lrs(lambda m, o: make_scheduler(name, o, total, warmup_steps=warmup), total)
    theirs = _torch_lrs(torch, torch_schedule, total)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_make_scheduler_without_warmup():
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    assert isinstance(make_scheduler("poly", opt, 10), PolyLR)
    assert isinstance(make_scheduler("cosine", opt, 10), CosineAnnealingLR)
    assert isinstance(make_scheduler("step", opt, 10), StepLR)
    assert isinstance(make_scheduler("constant", opt, 10), ConstantLR)
    assert _lrs(make_scheduler("constant", opt, 3), 3) == [[0.1]] * 4
    with pytest.raises(ValueError, match=r"make_scheduler: unknown schedule 'linear'; choose "
                                         r"one of \('constant', 'step', 'cosine', 'poly'\)"):
        make_scheduler("linear", opt, 10)
    with pytest.raises(ValueError, match=r"warmup_steps \(10\) must be less than total_steps"):
        make_scheduler("poly", opt, 10, warmup_steps=10)


@pytest.mark.parametrize("make", [
    lambda o: make_scheduler("cosine", o, 12, warmup_steps=3),
    lambda o: StepLR(o, step_size=2, gamma=0.5),
], ids=["warmup-cosine", "StepLR"])
def test_scheduler_state_round_trip(make):
    """Resuming: fresh optimizer and scheduler, then both load their states."""
    opt = SGD([{"params": [Parameter(np.zeros(1))], "lr": 0.1},
               {"params": [Parameter(np.zeros(1))], "lr": 0.02}])
    scheduler = make(opt)
    _lrs(scheduler, 5)
    opt_state, scheduler_state = opt.state_dict(), scheduler.state_dict()
    expected = _lrs(scheduler, 6)

    resumed_opt = SGD([{"params": [Parameter(np.zeros(1))], "lr": 0.1},
                       {"params": [Parameter(np.zeros(1))], "lr": 0.02}])
    resumed_opt.load_state_dict(opt_state)
    resumed = make(resumed_opt)
    resumed.load_state_dict(scheduler_state)
    assert _lrs(resumed, 6) == expected


@pytest.mark.parametrize("make, error, match", [
    (lambda o: StepLR(o, step_size=0), ValueError, r"StepLR: step_size must be >= 1"),
    (lambda o: StepLR(o, step_size=2.5), TypeError, r"StepLR: step_size must be an int"),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, r"CosineAnnealingLR: T_max must"),
    (lambda o: PolyLR(o, total_iters=10, power=-1.0), ValueError, r"PolyLR: power must be >= 0"),
    (lambda o: ConstantLR(o, factor=2.0), ValueError, r"ConstantLR: factor must be >= 0.0 and "
                                                      r"<= 1.0"),
    (lambda o: LinearLR(o, start_factor=0.0), ValueError, r"LinearLR: start_factor must be > 0"),
    (lambda o: StepLR("sgd", step_size=2), TypeError, r"StepLR: expected an Optimizer, got str"),
    (lambda o: SequentialLR(o, [StepLR(o, 2)], milestones=[3]), ValueError,
     r"SequentialLR: expects one milestone fewer than schedulers"),
    (lambda o: SequentialLR(o, [StepLR(o, 2), StepLR(SGD([Parameter(np.zeros(1))]), 2)], [3]),
     ValueError, r"SequentialLR: scheduler 1 \(StepLR\) belongs to another optimizer"),
])
def test_bad_scheduler_arguments(make, error, match):
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(error, match=match):
        make(opt)
