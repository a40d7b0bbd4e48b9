"""Assertions for testing layers, with failure messages written for a person.

Each raises ``AssertionError`` whose message says which quantity is wrong, where (the worst
index), what came and what was expected there, by how much against which tolerance, and the
configuration being tested; gradient checks add a hint where the numbers show a known kind of
mistake (a gradient that is zero everywhere, off by a constant factor or a sign, or the right
values in the wrong places).

- :func:`assert_close_to` / :func:`mismatch_report`: an output against a reference.
- :func:`assert_gradients`: a module's ``backward`` (input and every parameter) against
  central differences in float64 along a random upstream gradient (:mod:`minifcn.gradcheck`).
- :func:`assert_pair_gradients`: the same for a stateless ``forward``/``backward`` pair.
- :func:`assert_gradients_accumulate`: ``backward`` adds into ``.grad`` and skips a frozen
  parameter (what a gradient check alone does not see).
- :func:`assert_adjoint`: ``<A x, y> == <x, A^T y>`` for a linear map and its transpose.
- :func:`assert_output_shape` with the output-size formulas (:func:`conv_output_size`,
  :func:`conv_transpose_output_size`, :func:`pool_output_size`, :func:`upsample_output_size`).

Arrays may live on any backend (NumPy, CuPy, the strict stand-in); they are compared on the
host. Nothing here needs hypothesis or pytest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from fractions import Fraction

from ..backend import Generator, get_array_module, is_array, np, to_numpy
from ..functional import conv_output_size, conv_transpose_output_size, upsample_output_size
from ..functional.pool import pool_output_size
from ..gradcheck import ArrayCheck, GradCheckReport, gradcheck, gradcheck_module

__all__ = [
    "CONV_OUTPUT_FORMULA",
    "CONV_TRANSPOSE_OUTPUT_FORMULA",
    "POOL_OUTPUT_FORMULA",
    "assert_adjoint",
    "assert_close_to",
    "assert_gradients",
    "assert_gradients_accumulate",
    "assert_output_shape",
    "assert_pair_gradients",
    "conv_output_size",
    "conv_transpose_output_size",
    "describe_config",
    "mismatch_report",
    "pool_output_size",
    "upsample_output_size",
]

CONV_OUTPUT_FORMULA = "OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1 (and the same for OW)"
"""A convolution's output size in words, to pass as ``assert_output_shape(...,
formula=CONV_OUTPUT_FORMULA)`` so that a wrong shape's message shows the rule."""
CONV_TRANSPOSE_OUTPUT_FORMULA = ("OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1 "
                                 "(and the same for OW)")
"""A transposed convolution's output size in words, for ``assert_output_shape(...,
formula=...)``."""
POOL_OUTPUT_FORMULA = ("OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1, ceil instead of floor "
                       "with ceil_mode=True (and the same for OW)")
"""A pooling layer's output size in words, for ``assert_output_shape(..., formula=...)``."""


def describe_config(config) -> str:
    """``key=value, ...`` for a dataclass or a dict; ``repr`` for anything else."""
    if config is None:
        return ""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)]
    elif isinstance(config, dict):
        items = list(config.items())
    else:
        return repr(config)
    return ", ".join(f"{key}={value!r}" for key, value in items)


def _config_line(config) -> str:
    return f"\n  configuration: {describe_config(config)}" if config is not None else ""


def _host(value, name: str):
    try:
        return to_numpy(value)
    except TypeError as error:  # a list of device arrays, an object array, ...
        raise TypeError(f"{name}: expected an array (NumPy, CuPy or the stand-in) or a number, "
                        f"got {type(value).__name__}") from error


def mismatch_report(got, expected, *, name: str = "output", rtol: float = 1e-7,
                    atol: float = 1e-9, config=None) -> str | None:
    """None when ``got`` is close to ``expected``, else a message that explains how it is not.

    Close means, entry by entry, ``|got - expected| <= atol + rtol * |expected|`` (NaN matches
    NaN, an infinity the same infinity). The message names ``name``, the shapes if they differ,
    else the worst entry (the one furthest outside its tolerance) with both values, the largest
    absolute and relative errors, how many entries are off, and ``config`` as ``key=value``.
    """
    got_h, expected_h = _host(got, f"{name} (got)"), _host(expected, f"{name} (expected)")
    if got_h.shape != expected_h.shape:
        return (f"{name} has the wrong shape: got {tuple(got_h.shape)}, expected "
                f"{tuple(expected_h.shape)}" + _config_line(config))
    g = got_h.astype(np.float64)
    e = expected_h.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(e)
    same_inf = np.isinf(g) & (g == e)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_nan | same_inf, 0.0, np.abs(g - e))
        allowed = atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN against a number is infinitely off
    off = diff > allowed
    if not off.any():
        return None
    count = int(off.sum())
    # the worst entry: furthest outside its own tolerance
    with np.errstate(divide="ignore", invalid="ignore"):
        outside = np.where(off, diff / allowed, -1.0)
        relative = np.where(off, diff / np.abs(e), 0.0)
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(outside), np.inf, outside))),
                             g.shape)
    index = tuple(int(i) for i in worst)
    dtypes = (f" (got dtype {got_h.dtype}, expected {expected_h.dtype})"
              if got_h.dtype != expected_h.dtype else "")
    return (f"{name} differs from the expected values{dtypes}: {count} of {g.size} entries "
            f"({count / g.size:.1%}) are off by more than atol + rtol * |expected| "
            f"(rtol={rtol:g}, atol={atol:g}).\n"
            f"  worst at index {index}: got {float(g[worst])!r}, expected {float(e[worst])!r} "
            f"(off by {float(diff[worst]):.3g})\n"
            f"  max abs error {float(diff.max()):.3g}, "
            f"max relative error {float(np.nanmax(relative)):.3g}" + _config_line(config))


def assert_close_to(got, expected, *, name: str = "output", rtol: float = 1e-7,
                    atol: float = 1e-9, config=None) -> None:
    """``AssertionError`` with :func:`mismatch_report`'s message unless ``got`` is close to
    ``expected`` (arrays on any backend, or numbers)."""
    report = mismatch_report(got, expected, name=name, rtol=rtol, atol=atol, config=config)
    if report is not None:
        raise AssertionError(report)


# ---------------------------------------------------------------------------------------
# Gradients


def _hint(label: str, check: ArrayCheck, rtol: float) -> str:
    """A hint for the few patterns that the numbers show unambiguously, else ''."""
    a = np.asarray(check.analytic_values, dtype=np.float64)
    n = np.asarray(check.numerical_values, dtype=np.float64)
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(n).all()):
        return ""
    a_max, n_max = float(np.abs(a).max()), float(np.abs(n).max())
    if a_max == 0.0 and n_max > 0.0:
        return (f"{label} is 0 everywhere: does backward return it (for a parameter: add it "
                f"into .grad)?")
    # the numerical derivatives carry about 1e-8 of relative rounding; a match up to 1e-5 of
    # the largest value is a match
    close = 1e-5 * max(a_max, n_max)
    if n_max <= close:
        return (f"the output does not depend on this quantity (the central differences are 0), "
                f"yet backward gives {label} nonzero values")
    if float(np.abs(a - n).max()) <= 1e-3 * max(a_max, n_max):
        return ""  # wrong only a little (rounding, a small term): no pattern to read
    big = np.abs(n) > 1e-3 * n_max
    factor = float(np.median(a[big] / n[big]))
    # Only a simple fraction (2, 1/2, 1/N, -1) says "a scale": with equal inputs, any wrong
    # elementwise derivative is also off by one constant factor, an arbitrary one.
    simple = Fraction(factor).limit_denominator(64)
    if (abs(factor - 1.0) > rtol and np.all(np.abs(a - factor * n) <= close)
            and abs(float(simple) - factor) <= 1e-6 * abs(factor) and abs(simple.numerator) <= 64):
        if simple == -1:
            return f"{label} has the wrong sign everywhere: got = -expected"
        return (f"{label} is off by the same factor everywhere: got = {simple} x expected "
                f"(a missing or extra scale, e.g. 1/N or 2?)")
    if not check.directional and a.size > 1 and np.all(np.abs(np.sort(a) - np.sort(n)) <= close):
        return (f"{label} has the right values in the wrong places (the same numbers, "
                f"permuted): a transposed or flipped weight or kernel, or swapped axes?")
    return ""


def _index_text(check: ArrayCheck) -> str:
    if check.directional:
        return f"along random direction {check.index} (a directional derivative)"
    return f"at index {tuple(int(i) for i in check.index)}"


def _gradient_message(owner: str, report: GradCheckReport, labels: dict[str, str],
                      rtol: float, eps: float, seed: int, config) -> str | None:
    wrong = [name for name, check in report.arrays.items() if not check.error < rtol]
    if not wrong:
        return None
    worst = max(wrong, key=lambda name: report.arrays[name].error)
    check, label = report.arrays[worst], labels[worst]
    summary = ", ".join(f"{labels[name]} {check_.error:.1e} "
                        f"({'wrong' if name in wrong else 'ok'})"
                        for name, check_ in report.arrays.items())
    hint = _hint(label, check, rtol)
    return (f"{owner}: the gradient {label} is wrong.\n"
            f"  worst {_index_text(check)}: got {check.analytic!r} (from backward), expected "
            f"{check.numerical!r} (central differences, eps={eps:g})\n"
            f"  relative error {check.error:.3g} > tolerance rtol={rtol:g} "
            f"(float64, random upstream gradient dy, seed={seed}; relative to the larger of "
            f"the two values, at least 1e-3 of the largest gradient entry)\n"
            f"  every gradient checked: {summary}"
            + (f"\n  hint: {hint}" if hint else "") + _config_line(config))


def _require_float64(owner: str, what: str, array) -> None:
    if array.dtype.kind == "f" and array.dtype.itemsize != 8:
        raise TypeError(f"{owner}: {what} is {array.dtype}; gradient checks need float64 "
                        f"(float32 rounding, about 1e-7, swamps the central differences), e.g. "
                        f"x.astype('float64') and module.to(dtype='float64')")


def _check_gradient_array(owner: str, label: str, grad, like) -> None:
    """``AssertionError`` unless ``grad`` is an array shaped and placed like ``like``."""
    if grad is None:
        raise AssertionError(f"{owner}: backward returned None for {label}: does it return "
                             f"the gradient (e.g. end with `return dx`)?")
    if not is_array(grad):
        raise AssertionError(f"{owner}: backward returned a {type(grad).__name__} for {label}, "
                             f"expected an array of shape {tuple(like.shape)}")
    if get_array_module(grad) is not get_array_module(like):
        raise AssertionError(f"{owner}: {label} is a {type(grad).__module__}."
                             f"{type(grad).__name__}, but the input lives on "
                             f"{get_array_module(like).__name__}: build it with "
                             f"xp = get_array_module(x), not np.")
    if tuple(grad.shape) != tuple(like.shape):
        raise AssertionError(f"{owner}: {label} has shape {tuple(grad.shape)}, but the "
                             f"quantity it is the gradient of has shape {tuple(like.shape)}")


def assert_gradients(module, *inputs, eps: float = 1e-6, rtol: float = 1e-6,
                     directions: int | None = None, seed: int = 0,
                     config=None) -> GradCheckReport:
    """Check ``module.backward`` against central differences, for its input(s) and every
    parameter (``named_parameters``, ``requires_grad``), with a random upstream gradient.

    Works for any :class:`minifcn.nn.Module`, a user's subclass with its own ``forward``,
    ``backward`` and ``Parameter`` s included: ``backward(dy)`` must return ``dx`` (a tuple for
    several inputs) and add each parameter's gradient into its ``.grad``.

    Args:
        module: float64 (``module.to(dtype="float64")``); called many times, so any randomness
            in it must repeat (a fixed dropout mask).
        *inputs: float64 arrays on the module's backend; integer inputs (targets) pass
            unchecked.
        eps: the central-difference step.
        rtol: the largest relative error allowed (see :mod:`minifcn.gradcheck`).
        directions: None checks every entry; an int checks that many random directions per
            array (for large inputs).
        seed: seeds the upstream gradient and the directions.
        config: shown in the failure message (a dataclass or dict prints as key=value).

    Returns:
        The :class:`~minifcn.gradcheck.GradCheckReport` (errors per array).

    Raises:
        TypeError: a float input or parameter is not float64.
        AssertionError: a gradient is missing, misshapen, on the wrong backend or wrong; the
            message names it (``dx``, ``weight.grad``, ...), the worst index, got (backward)
            vs expected (numerical), the relative error and the tolerance.
    """
    owner = f"assert_gradients({type(module).__name__})"
    if not inputs:
        raise TypeError(f"{owner}: give the input(s) to call the module with")
    for i, x in enumerate(inputs):
        if not is_array(x):
            raise TypeError(f"{owner}: input {i} is a {type(x).__name__}, expected an array")
        _require_float64(owner, "x" if len(inputs) == 1 else f"input {i}", x)
    params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    for name, param in params:
        _require_float64(owner, f"parameter {name}", param.data)

    # One forward/backward first, to say clearly what backward failed to give.
    module.zero_grad()
    y = module(*[x.copy() if x.dtype.kind == "f" else x for x in inputs])
    if not is_array(y):
        raise AssertionError(f"{owner}: forward returned a {type(y).__name__}, expected an "
                             f"array")
    dy = Generator(seed + 1).standard_normal(y.shape, dtype=y.dtype, xp=get_array_module(y))
    out = module.backward(dy)
    grads = out if isinstance(out, tuple) else (out,)
    labels = {}
    for i, x in enumerate(inputs):
        name, label = ("x", "dx") if len(inputs) == 1 else (f"input{i}", f"d(input {i})")
        labels[name] = label
        if x.dtype.kind == "f" and (i < len(grads) or i == 0):
            _check_gradient_array(owner, label, grads[i] if i < len(grads) else None, x)
    for name, param in params:
        labels[name] = f"{name}.grad"
        _check_gradient_array(owner, f"{name}.grad", param.grad, param.data)

    report = gradcheck_module(module, *inputs, eps=eps, directions=directions, seed=seed)
    message = _gradient_message(owner, report, labels, rtol, eps, seed, config)
    if message is not None:
        raise AssertionError(message)
    return report


def assert_gradients_accumulate(module, x, dy, *, rtol: float = 1e-10, atol: float = 1e-12,
                                config=None) -> None:
    """Check the two rules of ``.grad`` that a gradient check alone does not see.

    - ``backward`` ADDS into each parameter's ``.grad`` (``param.grad += ...``), as PyTorch
      does, so that a layer used twice, or several losses, sum their gradients: three
      forward/backward passes must leave three times what one pass leaves.
    - A frozen parameter (``requires_grad=False``) gets no gradient, and freezing it changes
      neither ``dx`` nor the other parameters' gradients. Each trainable parameter is frozen
      in turn and unfrozen again.

    Args:
        module: a :class:`minifcn.nn.Module` with at least one trainable parameter; its
            gradients are zero when this returns.
        x: the input to call it with; dy: the upstream gradient (random, never ones).
        rtol, atol: as :func:`assert_close_to`, entry by entry.
        config: shown in the failure message.

    Raises:
        ValueError: the module has no trainable parameter.
        AssertionError: a gradient was assigned instead of added, or a frozen parameter got
            one, or freezing changed another gradient; the message names it.
    """
    owner = f"assert_gradients_accumulate({type(module).__name__})"
    params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{owner}: the module has no trainable parameter to check")

    def one_pass():
        module(x)
        return to_numpy(module.backward(dy)).copy()

    module.zero_grad()
    dx = one_pass()
    once = {name: to_numpy(p.grad).copy() for name, p in params}
    one_pass()
    one_pass()
    for name, p in params:
        report = mismatch_report(p.grad, 3 * once[name], name=f"{name}.grad after three "
                                 f"forward/backward passes", rtol=rtol, atol=atol,
                                 config=config)
        if report is not None:
            got = to_numpy(p.grad)
            scale = float(np.vdot(got, once[name]) / max(np.vdot(once[name], once[name]),
                                                          1e-300))
            raise AssertionError(
                f"{owner}: {report}\n  {name}.grad is {scale:.3g} times one pass's gradient, "
                f"expected 3: backward must ADD into .grad (param.grad += ...), never assign "
                f"it (param.grad = ...).")
    for frozen, param in params:
        module.zero_grad()
        param.requires_grad = False
        try:
            dx_frozen = one_pass()
        finally:
            param.requires_grad = True
        if np.any(to_numpy(param.grad)):
            raise AssertionError(
                f"{owner}: {frozen} has requires_grad=False, yet backward wrote into "
                f"{frozen}.grad: skip a frozen parameter's gradient (as PyTorch's "
                f"output_mask does)." + _config_line(config))
        checks = [(f"dx with {frozen} frozen", dx_frozen, dx)]
        checks += [(f"{name}.grad with {frozen} frozen", p.grad, once[name])
                   for name, p in params if name != frozen]
        for label, got, expected in checks:
            report = mismatch_report(got, expected, name=label, rtol=rtol, atol=atol,
                                     config=config)
            if report is not None:
                raise AssertionError(f"{owner}: freezing {frozen} must change nothing else. "
                                     f"{report}")
    module.zero_grad()


def assert_pair_gradients(forward: Callable, backward: Callable, inputs: dict,
                          wrt: Sequence[str], *, static: dict | None = None, eps: float = 1e-6,
                          rtol: float = 1e-6, seed: int = 0, config=None) -> GradCheckReport:
    """Check a stateless pair ``forward(**inputs, **static) -> (y, cache)`` and
    ``backward(dy, cache) -> gradients`` against central differences, as
    :func:`assert_gradients` does for a module.

    ``backward`` returns one array (one name in ``wrt``) or a tuple whose leading entries are
    the gradients of the names in ``wrt``, in order (``conv2d_backward``'s ``(dx, dweight,
    dbias)`` for ``wrt=["x", "weight", "bias"]``). ``inputs`` holds the arrays (float64 for those
    in ``wrt``; integer targets pass unchecked), ``static`` everything else (stride, padding...).
    The gradient of ``name`` is called ``d<name>`` in messages (``dx``, ``dweight``).

    Raises:
        TypeError: a name in ``wrt`` is not a float64 array of ``inputs``.
        AssertionError: a gradient is missing (None), misshapen, on the wrong backend, or wrong.
    """
    owner = f"assert_pair_gradients({getattr(forward, '__name__', 'forward')})"
    static = dict(static or {})
    wrt = list(wrt)
    for name in wrt:
        if name not in inputs or not is_array(inputs[name]):
            raise TypeError(f"{owner}: {name!r} in wrt must name an array in inputs "
                            f"({sorted(inputs)})")
        _require_float64(owner, name, inputs[name])
    arrays = {name: (value.copy() if is_array(value) and value.dtype.kind == "f" else value)
              for name, value in inputs.items()}

    def run():
        result = forward(**arrays, **static)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise AssertionError(f"{owner}: forward must return (y, cache), got "
                                 f"{type(result).__name__}")
        return result

    y, cache = run()
    if not is_array(y):
        raise AssertionError(f"{owner}: forward's y is a {type(y).__name__}, expected an array")
    dy = Generator(seed + 1).standard_normal(y.shape, dtype=y.dtype, xp=get_array_module(y))
    out = backward(dy, cache)
    grads = list(out) if isinstance(out, tuple) else [out]
    labels = {name: f"d{name}" for name in wrt}
    if len(grads) < len(wrt):
        raise AssertionError(f"{owner}: backward returned {len(grads)} gradient(s), expected "
                             f"{len(wrt)}: {', '.join(labels.values())}, in that order")
    for name, grad in zip(wrt, grads, strict=False):
        _check_gradient_array(owner, labels[name], grad, arrays[name])
    # copies: a backward may hand back a view of its cache, which the differences then move
    analytic = {name: grad.copy() for name, grad in zip(wrt, grads, strict=False)}

    def objective() -> float:
        return float((run()[0] * dy).sum())

    report = gradcheck(objective, {name: arrays[name] for name in wrt}, analytic, eps=eps,
                       seed=seed)
    message = _gradient_message(owner, report, labels, rtol, eps, seed, config)
    if message is not None:
        raise AssertionError(message)
    return report


# ---------------------------------------------------------------------------------------
# Adjoints and shapes


def assert_adjoint(forward: Callable, transpose: Callable, x_shape: Sequence[int],
                   y_shape: Sequence[int], *, xp=np, seed: int = 0, rtol: float = 1e-10,
                   config=None) -> None:
    """``<A x, y> == <x, A^T y>`` for random float64 ``x`` (``x_shape``) and ``y`` (``y_shape``)
    on the array module ``xp``: ``forward(x)`` computes ``A x`` and ``transpose(y)`` computes
    ``A^T y`` (a convolution and its transposed convolution, a layer's forward and the input
    gradient of its backward, ...). Both must be linear and return arrays.

    Raises:
        AssertionError: a result has the wrong shape, or the two inner products differ by more
            than ``rtol`` relative to the larger; the message gives both and the gap.
    """
    generator = Generator(seed)
    x = generator.standard_normal(tuple(x_shape), dtype="float64", xp=xp)
    y = generator.standard_normal(tuple(y_shape), dtype="float64", xp=xp)
    ax, aty = forward(x), transpose(y)
    for what, value, shape in (("forward(x)", ax, y_shape), ("transpose(y)", aty, x_shape)):
        if not is_array(value) or tuple(value.shape) != tuple(shape):
            got = tuple(value.shape) if is_array(value) else type(value).__name__
            raise AssertionError(f"assert_adjoint: {what} gave {got}, expected shape "
                                 f"{tuple(shape)}" + _config_line(config))
    left, right = float((ax * y).sum()), float((x * aty).sum())
    gap = abs(left - right) / max(abs(left), abs(right), 1e-300)
    if not gap <= rtol:
        ratio = f"; their ratio is {right / left:.6g}" if left != 0.0 else ""
        raise AssertionError(f"assert_adjoint: transpose is not the adjoint of forward: "
                             f"<A x, y> = {left!r} but <x, A^T y> = {right!r} (random float64 "
                             f"x and y, seed={seed}); relative gap {gap:.3g} > rtol={rtol:g}"
                             f"{ratio}" + _config_line(config))


def assert_output_shape(got_shape, expected_shape, *, formula: str = "", config=None) -> None:
    """``AssertionError`` naming both shapes, the axes that differ, the formula and the
    configuration, unless ``got_shape == expected_shape`` (tuples, or arrays whose shapes are
    compared)."""
    got = tuple(int(n) for n in (got_shape.shape if is_array(got_shape) else got_shape))
    expected = tuple(int(n) for n in (expected_shape.shape if is_array(expected_shape)
                                      else expected_shape))
    if got == expected:
        return
    if len(got) == len(expected):
        axes = "; ".join(f"axis {axis}: got {g}, expected {e}"
                         for axis, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
    else:
        axes = f"got {len(got)} axes, expected {len(expected)}"
    raise AssertionError(f"output shape {got} differs from the expected {expected} ({axes})"
                         + (f"\n  formula: {formula}" if formula else "")
                         + _config_line(config))
