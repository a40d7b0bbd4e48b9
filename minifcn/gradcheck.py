"""Trust a hand-written backward by comparing it with finite differences.

For a module ``y = f(x; params)`` pick a random upstream gradient ``dy`` and look at the
scalar ``L = sum(y * dy)``. Its exact gradient is what ``backward(dy)`` returns (for ``x``)
and adds into ``.grad`` (for each parameter). Its numerical gradient, entry by entry, is the
central difference ``(L(a + eps) - L(a - eps)) / (2 eps)``. In float64 with ``eps = 1e-6``
the two agree to about 1e-8 or better when backward is right.

Why a *random* ``dy``: with ``dy = 1`` every output is weighted the same, so a backward that
mixes up two outputs (a missing transpose, a flipped kernel) still sums to the right number.

    report = gradcheck_module(Conv2d(2, 3, 3, dtype="float64"), x64)
    assert report.max_error < 1e-6, report

For inputs too large to perturb entry by entry, ``directions=k`` checks ``k`` random
directions ``v`` per array instead: ``<grad, v>`` against ``(L(a + eps v) - L(a - eps v)) /
(2 eps)``, relative to the typical size of such a derivative, ``|grad| / sqrt(n)``. A whole
network is full of kinks (ReLU, max-pool), and a step along ``v`` moves every entry at once;
a step that straddles a kink is recognised (the slope changes with the step, as in Chainer's
``detect_nondifferentiable``) and shrunk until it no longer does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from .backend import Generator, get_array_module

__all__ = ["ArrayCheck", "GradCheckReport", "gradcheck", "gradcheck_module"]

# Directional checks: two slopes (steps h and h/2) that differ by more than this, relative,
# reveal a kink inside the step; the step is then halved, up to KINK_HALVINGS times.
KINK_SIGNAL = 1e-6
KINK_HALVINGS = 6


@dataclass
class ArrayCheck:
    """The check of one array: its worst entry (or direction) and every value compared.

    ``index`` is the entry's index (a tuple) or, with ``directions``, the direction's number;
    ``analytic``/``numerical`` are the two values there. ``analytic_values`` and
    ``numerical_values`` hold every compared pair in order (entries in C order, or
    directions), for diagnosing *how* a gradient is wrong (zero, scaled, permuted).
    """

    error: float = 0.0
    where: str = ""
    index: tuple[int, ...] | int | None = None
    analytic: float = 0.0
    numerical: float = 0.0
    directional: bool = False
    analytic_values: list[float] = field(default_factory=list)
    numerical_values: list[float] = field(default_factory=list)


@dataclass
class GradCheckReport:
    """The outcome of a gradient check.

    ``max_error`` is the worst relative error found, ``where`` names the array and entry (or
    direction) it came from, ``errors`` holds the worst error of each checked array and
    ``arrays`` the details of each (:class:`ArrayCheck`).
    """

    max_error: float = 0.0
    where: str = ""
    errors: dict[str, float] = field(default_factory=dict)
    analytic: float = 0.0
    numerical: float = 0.0
    kinks_avoided: int = 0
    arrays: dict[str, ArrayCheck] = field(default_factory=dict)

    def __str__(self) -> str:
        per_array = ", ".join(f"{name}: {err:.2e}" for name, err in self.errors.items())
        kinks = f"; step halved {self.kinks_avoided} times off kinks" if self.kinks_avoided else ""
        return (f"worst relative error {self.max_error:.2e} at {self.where} "
                f"(analytic {self.analytic:.6g}, numerical {self.numerical:.6g}); {per_array}"
                f"{kinks}")


def _relative_error(analytic: float, numerical: float, floor: float) -> float:
    # Relative to the entry itself, but never to less than ``floor`` (a small share of the
    # array's largest gradient), so entries that are zero up to rounding do not dominate.
    return abs(analytic - numerical) / max(abs(analytic), abs(numerical), floor, 1e-300)


def _slope(objective, array, original, v, step: float) -> float:
    """Central difference of ``objective`` along ``v`` from ``original`` (restored after)."""
    array[...] = original + step * v
    plus = objective()
    array[...] = original - step * v
    minus = objective()
    array[...] = original
    return (plus - minus) / (2 * step)


def gradcheck(objective: Callable[[], float], arrays: dict, grads: dict, *, eps: float = 1e-6,
              directions: int | None = None, seed: int = 0) -> GradCheckReport:
    """Compare ``grads`` (analytic) with central differences of ``objective``.

    Args:
        objective: computes the scalar ``L`` from the *current contents* of ``arrays``.
        arrays: name -> float64 array that ``objective`` reads; perturbed in place and
            restored.
        grads: name -> the analytic ``dL/d array`` (same shape).
        eps: the finite-difference step.
        directions: ``None`` checks every entry; an int checks that many random directions.
        seed: seeds the random directions.
    """
    report = GradCheckReport()
    rng = Generator(seed)
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            continue
        if array.dtype.itemsize < 8:
            raise TypeError(f"gradcheck: {name} is {array.dtype}; finite differences need "
                            f"float64 (use module.to(dtype='float64') and float64 inputs)")
        xp = get_array_module(array)
        grad = grads[name]
        worst, entries = 0.0, []
        if directions is None:
            scale = float(xp.abs(grad).max()) if grad.size else 0.0
            for index in itertools.product(*(range(n) for n in array.shape)):
                original = float(array[index])
                array[index] = original + eps
                plus = objective()
                array[index] = original - eps
                minus = objective()
                array[index] = original
                entries.append((f"{name}{list(index)}", index, float(grad[index]),
                                (plus - minus) / (2 * eps), 1e-3 * scale))
        else:
            # A random unit direction v sees about |grad| / sqrt(n) of the gradient; relative
            # to that, an error e in the gradient shows as about |e| / |grad|, whatever the
            # direction happens to be (one nearly orthogonal to grad has a tiny derivative).
            typical = float(xp.sqrt((grad * grad).sum())) / max(array.size, 1) ** 0.5
            original = array.copy()
            for k in range(directions):
                v = rng.standard_normal(array.shape, dtype=array.dtype, xp=xp)
                v /= float(xp.sqrt((v * v).sum()))
                # A step that straddles a kink (a ReLU at 0, a max-pool changing its winner)
                # gives a slope that changes with the step, while on a smooth stretch steps
                # h and h/2 agree. Halve the step until they do (a few times at most, then
                # report whatever comes): a wrong backward is wrong at every step size.
                step, numerical = eps, _slope(objective, array, original, v, eps)
                for _ in range(KINK_HALVINGS):
                    finer = _slope(objective, array, original, v, step / 2)
                    if _relative_error(numerical, finer, typical) < KINK_SIGNAL:
                        break
                    report.kinks_avoided += 1
                    step, numerical = step / 2, finer
                entries.append((f"{name} along random direction {k}", k,
                                float((grad * v).sum()), numerical, typical))
        check = ArrayCheck(directional=directions is not None)
        for where, index, analytic, numerical, floor in entries:
            error = _relative_error(analytic, numerical, floor)
            check.analytic_values.append(analytic)
            check.numerical_values.append(numerical)
            if check.index is None or error > check.error:
                check.error, check.where, check.index = error, where, index
                check.analytic, check.numerical = analytic, numerical
            worst = max(worst, error)
            if error >= report.max_error:
                report.max_error, report.where = error, where
                report.analytic, report.numerical = analytic, numerical
        report.errors[name] = worst
        report.arrays[name] = check
    return report


def gradcheck_module(module, *inputs, eps: float = 1e-6, directions: int | None = None,
                     seed: int = 0, check_params: bool = True) -> GradCheckReport:
    """Gradient check of a module's ``backward`` over its float inputs and parameters.

    The module and inputs must be float64. ``module(*inputs)`` is called many times, so a
    module with randomness (dropout) must give the same result each call (e.g. a fixed mask).
    A module whose output is a scalar (a loss) gets a random scalar upstream gradient.
    Integer inputs (targets, indices) are passed through unchecked.
    """
    xp = get_array_module(*inputs)
    inputs = [x.copy() if x.dtype.kind == "f" else x for x in inputs]
    module.zero_grad()
    y = module(*inputs)
    dy = Generator(seed + 1).standard_normal(y.shape, dtype=y.dtype, xp=xp)
    backward_out = module.backward(dy)
    input_grads = backward_out if isinstance(backward_out, tuple) else (backward_out,)

    arrays, grads = {}, {}
    names = ["x"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]
    # backward returns gradients for the leading inputs only: indices (MaxUnpool2d) and
    # reference maps (Crop) that come after them receive none
    for name, x, dx in zip(names, inputs, input_grads, strict=False):
        if x.dtype.kind == "f":
            arrays[name], grads[name] = x, dx
    if check_params:
        for name, param in module.named_parameters():
            if param.requires_grad:
                arrays[name], grads[name] = param.data, param.grad.copy()

    def objective() -> float:
        return float((module(*inputs) * dy).sum())

    return gradcheck(objective, arrays, grads, eps=eps, directions=directions, seed=seed)
