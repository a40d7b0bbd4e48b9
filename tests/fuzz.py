"""The differential fuzzer of tests/test_fuzz_layers.py: one drawn case run through minifcn
and through PyTorch 2.13, and the verdict.

A case is a layer (or a functional entry point), its constructor arguments, and an input:
its shape (0 and 1 in any dimension, odd sizes, windows larger than the input), dtype
(float32, float64, float16, int64, bool), layout (contiguous, strided, negative strides,
Fortran order, read-only) and values (ordinary, NaN, infinities, huge). PyTorch is the
oracle:

- both accept: the outputs, dx and every parameter's gradient agree within the dtype's
  tolerance (NaN where PyTorch has NaN), and minifcn did not write into its input;
- both refuse: minifcn's error is a ValueError or TypeError that names the layer;
- minifcn refuses what PyTorch accepts: allowed when the error is such a clear one (minifcn
  refuses float16 and a few documented forms, e.g. ``inplace=True``); counted;
- anything else fails: another exception (a crash), a wrong number, or a result where
  PyTorch refuses. The failure message ends with a one-line reproduction.
"""

from __future__ import annotations

import collections
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import minifcn
from minifcn import nn

FLOAT = ("float32", "float64")
DTYPES = ("float32", "float64", "float16", "int64", "bool")
LAYOUTS = ("contiguous", "strided", "negative", "fortran", "readonly")
VALUES = ("normal", "nan", "inf", "huge")
TOLERANCE = {"float64": 1e-9, "float32": 2e-4, "float16": 2e-2}

@dataclass
class Case:
    """One drawn problem. ``args``/``kwargs`` build the layer in both libraries; ``inputs``
    are the shapes of the forward's array arguments (a loss has logits and a target)."""

    entry: str
    args: tuple
    kwargs: dict
    shape: tuple
    dtype: str = "float64"
    layout: str = "contiguous"
    values: str = "normal"
    seed: int = 0
    training: bool = True
    module_dtype: str | None = None  # the parameters' dtype; None: the input's (if float)
    extra: dict = field(default_factory=dict)  # entry-specific: a loss's target, ...

    def reproduction(self) -> str:
        arguments = ", ".join([*map(repr, self.args),
                               *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        mode = "" if self.training else ".eval()"
        extra = f", {self.extra}" if self.extra else ""
        return (f"{self.entry}({arguments}){mode} on a {self.layout} {self.dtype} input of "
                f"shape {self.shape} with {self.values} values (seed {self.seed}{extra})")


# The fuzz tests' settings: 80 cases per test in the dev and ci profiles, 1,200 in thorough.
EXAMPLES = 4 * settings().max_examples
fuzzing = settings(max_examples=EXAMPLES, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                          HealthCheck.function_scoped_fixture])


# --- drawing (inside hypothesis's st.composite strategies) ---------------------------------

def chance(draw, probability: float) -> bool:
    """True about ``probability`` of the time, and False in hypothesis's simplest example,
    so that a failure shrinks towards the ordinary. (Hypothesis favours the ends of a range:
    measured over 600 examples, ``floats(0, 1) < 0.05`` held 32% of the time, and
    ``integers(0, 999) < 50`` 12%; ``integers(0, 999) >= 950`` held 6%.)"""
    return draw(st.integers(0, 999)) >= 1000 * (1 - probability)


def extent(draw, high: int, zero: float = 0.05) -> int:
    """An axis length in 1..high, or 0 now and then."""
    return 0 if chance(draw, zero) else draw(st.integers(1, high))


def pair_or_int(draw, low: int, high: int, wrong_low=None):
    """A window argument as an int or a (height, width) pair in low..high; now and then the
    value ``wrong_low`` just outside PyTorch's range."""
    value = wrong_low if wrong_low is not None and chance(draw, 0.03) else draw(
        st.integers(low, high))
    if draw(st.booleans()):
        return value
    return (value, draw(st.integers(low, high)))


def input_settings(draw) -> dict:
    """Dtype (now and then float16, int64 or bool), layout, values, seed and mode."""
    dtype = draw(st.sampled_from(DTYPES)) if chance(draw, 0.2) else draw(
        st.sampled_from(FLOAT))
    values = draw(st.sampled_from(VALUES)) if chance(draw, 0.3) else "normal"
    return dict(dtype=dtype, layout=draw(st.sampled_from(LAYOUTS)), values=values,
                seed=draw(st.integers(0, 2**16)), training=draw(st.booleans()))


def image_shape(draw, channels: int, max_side: int = 9, unbatched: bool = True) -> tuple:
    """(N, C, H, W), sides from 1 to ``max_side`` and now and then 0; or (C, H, W) (an
    unbatched input); rarely the wrong channel count or a rank PyTorch does not take."""
    if chance(draw, 0.04):
        channels = draw(st.integers(0, 5))
    shape = (extent(draw, 3, zero=0.08), channels, extent(draw, max_side),
             extent(draw, max_side))
    if unbatched and chance(draw, 0.15):
        return shape[1:]
    if chance(draw, 0.02):
        return shape[:2]
    return shape


# --- a case's arrays -------------------------------------------------------------------------

def make_input(case: Case, shape=None, dtype=None, rng=None, values=None) -> np.ndarray:
    """The case's input as NumPy sees it: dtype, values and layout (another array of the
    case, e.g. a weight, with its own ``shape``, ``dtype``, ``rng`` and ``values``)."""
    shape = case.shape if shape is None else shape
    dtype = case.dtype if dtype is None else dtype
    values = case.values if values is None else values
    rng = rng or np.random.default_rng(case.seed)
    x = np.asarray(rng.standard_normal(shape))  # an array even for shape ()
    if dtype in ("float16", "float32", "float64"):
        if values == "nan" and x.size:
            x[rng.random(shape) < 0.1] = np.nan
        elif values == "inf" and x.size:
            x[rng.random(shape) < 0.1] = np.inf
            x[rng.random(shape) < 0.05] = -np.inf
        elif values == "huge":
            x = x * 1e30 if dtype != "float16" else x * 6e4
        with np.errstate(over="ignore"):  # huge float16 values become infinities: as meant
            x = x.astype(dtype)
    elif dtype == "int64":
        x = np.round(x * 3).astype(np.int64)
    else:
        x = x > 0
    return lay_out(np.asarray(x), case.layout)


def make_target(case: Case, logits: np.ndarray) -> np.ndarray:
    """Class indices (a fifth ignored; with ``out_of_range``, one past the classes) or, with
    ``probabilities``, class shares in the logits' layout."""
    rng = np.random.default_rng(case.seed + 2)
    classes = case.shape[0] if len(case.shape) == 1 else case.shape[1]
    target_shape = () if len(case.shape) == 1 else (case.shape[0], *case.shape[2:])
    if case.extra["probabilities"]:
        target = rng.dirichlet(np.ones(classes), size=target_shape or None)
        return np.moveaxis(np.asarray(target), -1, 1 if target_shape else 0).astype(
            logits.dtype if logits.dtype.kind == "f" else "float32")
    target = rng.integers(0, classes, target_shape)
    if target.size:
        target[rng.random(target_shape) < 0.2] = case.kwargs.get("ignore_index", -100)
        if case.extra["out_of_range"]:
            target.flat[0] = classes + 1
    return target


def lay_out(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "strided" and x.ndim:
        wide = np.repeat(x, 2, axis=-1)
        return wide[..., ::2]
    if layout == "negative" and x.ndim:
        return np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    return x


def to_torch(torch, x: np.ndarray, grad: bool):
    # A C-contiguous copy with the same values and dtype: the layouts are minifcn's test.
    # (PyTorch 2.13 reads a Fortran-ordered tensor's strides as a memory format: its batch
    # norm's dx for such an input came out 30x further from float64's than minifcn's.)
    tensor = torch.tensor(np.array(x, order="C"))
    if grad and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def attempt(call, quiet: bool = False):
    """("ok", value) or ("error", exception). ``quiet``: NumPy's warnings about arithmetic
    on NaN and infinities (inf - inf, ...) are not raised: a case that feeds them in asks
    for that arithmetic, and PyTorch does it silently. Anywhere else a warning, which the
    test suite turns into an error, is a failure of the case."""
    try:
        if quiet:
            with np.errstate(all="ignore"):
                return "ok", call()
        return "ok", call()
    except Exception as error:  # noqa: BLE001 -- the verdict classifies it
        return "error", error


def attempt_reference(call):
    """:func:`attempt` for PyTorch's side. PyTorch's warnings (e.g. that padding='same'
    with an even kernel copies the input) are advice, not refusals: the suite turns
    warnings into errors, so they are silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return attempt(call)


def clear_refusal(error: BaseException, names: tuple[str, ...]) -> str | None:
    """None when ``error`` is minifcn's clear kind of refusal (a ValueError or TypeError
    whose message names the layer or function); else what is wrong with it."""
    if not isinstance(error, (ValueError, TypeError)):
        return f"crashed with {type(error).__name__}: {error}"
    message = str(error)
    if not any(re.search(rf"\b{re.escape(name)}\b", message) for name in names):
        return f"refused without naming the layer ({' or '.join(names)}): {message}"
    return None


def compare(what: str, got, expected, dtype: str, non_finite_input: bool = False,
            padding_spreads_nan: bool = False) -> str | None:
    """None when ``got`` (minifcn) agrees with ``expected`` (PyTorch); else why not.

    Finite values agree within the dtype's tolerance, relative to the largest. With finite
    inputs NaN must meet NaN and an infinity the same infinity. With NaN or infinite inputs
    (``non_finite_input``) only which outputs are finite must agree, and the signs where
    both are infinite: whether ``0 * inf`` or ``inf - inf`` happens on the way depends on
    the order of the arithmetic, and PyTorch's own kernels differ there from one vector lane
    to the next (its bilinear up-sampling of one row gives NaN in one output row and an
    infinity in the next). ``padding_spreads_nan``: minifcn may be NaN where PyTorch is
    finite (a convolution's zero padding times a NaN in its GEMM, documented in
    minifcn/functional/conv.py)."""
    got = np.asarray(minifcn.to_numpy(got))
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return f"{what}: shape {got.shape}, PyTorch's {expected.shape}"
    if got.dtype.kind == "b" or expected.dtype.kind in "iub":
        return None if np.array_equal(got, expected) else f"{what}: values differ"
    both_inf = np.isinf(got) & np.isinf(expected)
    if not np.array_equal(np.sign(got[both_inf]), np.sign(expected[both_inf])):
        return f"{what}: infinities of opposite signs"
    # Overflow at the edge of the dtype's range: a value near the largest finite one may
    # round to infinity in one summation order and not in the other.
    near_edge = np.abs(np.where(np.isfinite(got), got, expected)) > 0.1 * np.finfo(
        got.dtype).max
    if non_finite_input:
        mismatch = (np.isfinite(got) != np.isfinite(expected)) & ~near_edge
        if padding_spreads_nan:
            mismatch &= ~(np.isnan(got) & np.isfinite(expected))
        if mismatch.any():
            where = tuple(int(i) for i in np.argwhere(mismatch)[0])
            return (f"{what}: finite in one only at {where} (minifcn {got[where]}, PyTorch "
                    f"{expected[where]})")
    else:
        for kind, test in (("NaN", np.isnan), ("infinite", np.isinf)):
            mismatch = test(got) != test(expected)
            if kind == "infinite":
                mismatch &= ~near_edge
            if mismatch.any():
                where = tuple(int(i) for i in np.argwhere(mismatch)[0])
                return (f"{what}: {kind} at {where} in one only (minifcn {got[where]}, "
                        f"PyTorch {expected[where]})")
    finite = np.isfinite(expected) & np.isfinite(got)
    if not finite.any():
        return None
    tolerance = TOLERANCE.get(dtype, 1e-9)
    scale = max(1.0, float(np.abs(expected[finite]).max()))
    error = float(np.abs(got[finite] - expected[finite]).max())
    if error > tolerance * scale:
        worst = np.argwhere(finite)[np.argmax(np.abs(got - expected)[finite])]
        return (f"{what}: off by {error:.3g} (tolerance {tolerance:g} x {scale:.3g}) at "
                f"{tuple(worst)}: minifcn {got[tuple(worst)]}, PyTorch "
                f"{expected[tuple(worst)]}")
    return None


def load_parameters(ours: nn.Module, theirs) -> None:
    """PyTorch's initial parameters and buffers into minifcn's layer (the same keys)."""
    state = {key: value.detach().numpy() for key, value in theirs.state_dict().items()}
    ours.load_state_dict(state)


class Verdicts:
    """What a fuzz file saw: case counts by verdict, overall and per entry point, and the
    judging of each stage (construction, forward, backward) of a case."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.by_entry: dict[str, collections.Counter] = collections.defaultdict(
            collections.Counter)
        # minifcn's refusals of what PyTorch accepts, by message with the numbers taken out
        self.differences: collections.Counter = collections.Counter()

    def count(self, case: Case, verdict: str) -> None:
        self.counts[verdict] += 1
        self.by_entry[case.entry][verdict] += 1

    def fail(self, case: Case, reason: str) -> None:
        self.count(case, "failed")
        raise AssertionError(f"{reason}\n  reproduce: {case.reproduction()}")

    def judge(self, case: Case, stage: str, theirs, ours, names) -> bool:
        """Whether both went on (True), or stopped in a way that is allowed (False); fails
        the case otherwise. ``theirs``/``ours`` are :func:`attempt`'s pairs."""
        (their_status, their_value), (our_status, our_value) = theirs, ours
        if our_status == "error":
            problem = clear_refusal(our_value, names)
            if problem:
                self.fail(case, f"{stage}: minifcn {problem}")
            self.count(case, "refused by both" if their_status == "error"
                       else "refused by minifcn")
            if their_status != "error":
                self.differences[re.sub(r"\d+|\(.*?\)", "#", str(our_value))[:90]] += 1
            return False
        if their_status == "error":
            first_line = str(their_value).splitlines()[0] if str(their_value) else ""
            self.fail(case, f"{stage}: minifcn accepted what PyTorch refuses "
                            f"({type(their_value).__name__}: {first_line})")
        return True

    def check(self, case: Case, stage: str, what: str, got, expected, dtype: str) -> None:
        weight_of_a_convolution = (what in ("weight.grad", "dweight")
                                   and case.entry.lower().startswith("conv"))
        problem = compare(what, got, expected, dtype, non_finite_input=case.values != "normal",
                          padding_spreads_nan=weight_of_a_convolution)
        if problem:
            self.fail(case, f"{stage}: {problem}")

    def summary(self, differences: bool = False) -> str:
        lines = [f"{sum(self.counts.values())} cases: " + ", ".join(
            f"{count} {verdict}" for verdict, count in self.counts.most_common())]
        for entry, counts in sorted(self.by_entry.items()):
            lines.append(f"  {entry}: " + ", ".join(
                f"{count} {verdict}" for verdict, count in counts.most_common()))
        if differences:
            lines.append("minifcn refused where PyTorch went on:")
            lines += [f"  {count} x {message}" for message, count in
                      self.differences.most_common()]
        return "\n".join(lines)

    def report(self, title: str, capsys) -> None:
        """The last test of a fuzz file (pytest keeps a file's order): print the tally
        (``pytest -s`` shows it) and check that most cases got as far as comparing numbers;
        a fuzzer whose cases were nearly all refused would check little."""
        cases = sum(self.counts.values())
        if cases == 0:
            pytest.skip("runs after its file's fuzz tests")
        with capsys.disabled():
            print(f"\n{title}: {self.summary(differences=True)}")
        assert self.counts["agreed"] >= 0.5 * cases, self.summary()
