"""PyTorch 2.13's own module tests, run against minifcn.

PyTorch tests its modules on samples it keeps in ``torch.testing._internal``:

- ``common_modules.module_db``: per module, ``module_inputs_func(..., training=...)`` gives
  constructor and forward arguments for training and for evaluation mode, and
  ``module_error_inputs_func`` gives inputs the module must refuse;
- ``common_nn``: the older dictionaries ``module_tests``, ``get_new_module_tests()`` and
  ``criterion_tests``. Their 2-D ``F.interpolate`` tests count as ``Upsample``'s, whose
  forward that function is (the functional's keywords are the layer's arguments).

This file takes every sample whose module minifcn has (the same class name in
``minifcn.nn``) and runs it, in float64, in training and in evaluation mode, through both
libraries. PyTorch's module is built from the sample's constructor arguments and moved to
float64; its parameters and buffers are then moved off their initial values (seeded: batch
norm's unit weights and 0/1 running statistics would hide a mix-up); minifcn's is built
from the same arguments, moved to float64 and loaded with PyTorch's ``state_dict``. Both
take the same input (NumPy copies of PyTorch's tensors) and, for backward, the same
seeded random upstream gradient. Compared, each entry within 1e-9 x max(1, |PyTorch's|):
every output (an array, of PyTorch's shape and dtype), dx, every parameter's gradient, and
the ``state_dict`` after the step (running statistics, ``num_batches_tracked``); minifcn
must not write into its input either. Where a module draws random numbers (dropout in
training with 0 < p < 1) only what is deterministic, shapes and dtypes, is compared.

Verdicts, one test per sample (id ``Layer-mode-index-description``; common_nn's indices
start with ``nn``):

- "match" (also: both libraries refuse it, minifcn with a ValueError or TypeError naming
  the layer);
- "refused clearly": minifcn raises a ValueError or TypeError naming the layer, for one of
  the differences it documents (``DOCUMENTED_REFUSALS``); counted and listed;
- anything else fails with a one-line reproduction: another exception, a wrong number, a
  result where PyTorch refuses, a refusal for an undocumented reason or without naming
  the layer.

The error inputs must be refused by PyTorch as its sample says (else the sample tests
nothing) and by minifcn with a ValueError or TypeError naming the layer, at construction
or in forward. The last test checks the totals (running any sample the others did not,
under ``-k``) and prints the tally.
"""

from __future__ import annotations

import collections
import contextlib
import random
import re
import types
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

from minifcn import backend, nn

torch = pytest.importorskip("torch", reason="PyTorch is the tests' reference oracle: "
                                            "pip install torch==2.13.0")
pytest.importorskip("expecttest", reason="torch.testing._internal (PyTorch's module test "
                                         "samples) imports expecttest: pip install expecttest")

pytestmark = pytest.mark.torch

TOLERANCE = 1e-9
SEED = 2013
MODES = {True: "train", False: "eval"}

# What minifcn refuses on purpose where PyTorch accepts, as the words of its message (README,
# "A short tour": "Refused, with the reason"; Upsample's modes: minifcn/nn/upsample.py, "nearest
# or bilinear"). A clear refusal of anything else fails.
DOCUMENTED_REFUSALS = {
    "inplace=True": r"inplace=True is not supported",
    "a 3-D input PyTorch reads as (N, C, L)": r"expected x of rank 4 .*\(N, C, L\)",
    "deprecated size_average/reduce": r"deprecated in PyTorch, use reduction",
    "Upsample mode other than nearest/bilinear": r"^Upsample\(.*mode must be one of "
                                                 r"\('nearest', 'bilinear'\)",
}
RANDOM_LAYERS = {"Dropout", "Dropout2d"}  # their training-mode values are random


@dataclass(repr=False)
class Sample:
    """One PyTorch test sample: how to build the module, what to feed it, in which mode.

    ``inputs``/``input_kwargs`` are the forward's arguments (torch tensors as PyTorch's
    test made them); the first positional one (or ``input=``) is differentiated. For an
    error input, ``error`` is (when PyTorch refuses it, the error type, its regex)."""

    id: str
    layer: str
    source: str
    args: tuple
    kwargs: dict
    inputs: tuple
    input_kwargs: dict = field(default_factory=dict)
    training: bool = True
    error: tuple | None = None
    note: str = ""  # why the sample could not be read, if it could not

    def __repr__(self) -> str:
        return f"Sample({self.id})"

    def reproduction(self) -> str:
        """One line: the call, where the sample comes from, and how to rerun it."""
        arguments = ", ".join([*map(describe, self.args),
                               *(f"{k}={describe(v)}" for k, v in self.kwargs.items())])
        forward = ", ".join([*map(describe, self.inputs),
                             *(f"{k}={describe(v)}" for k, v in self.input_kwargs.items())])
        mode = "" if self.training else ".eval()"
        test = "test_error_input" if self.error else "test_sample"
        return (f"nn.{self.layer}({arguments}).to(dtype='float64'){mode}({forward}) [from "
                f"{self.source}]; rerun: python -m pytest "
                f"'tests/test_torch_module_suite.py::{test}[{self.id}]'")


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"<{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}>"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(map(describe, value))
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else (
            f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    return repr(value)


# --- the samples ---------------------------------------------------------------------------

def minifcn_layers() -> set[str]:
    """The layers minifcn has under PyTorch's names (containers aside)."""
    return {name for name in nn.__all__
            if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
            and hasattr(torch.nn, name) and name not in {"Module", "Sequential"}}


def module_db_samples(common_modules, layers) -> tuple[list[Sample], list[Sample]]:
    samples, errors = [], []
    for info in common_modules.module_db:
        name = info.module_cls.__name__
        if name not in layers:
            continue
        for training in (True, False):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(SEED)
                inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                                 requires_grad=False, training=training)
            for index, sample in enumerate(inputs):
                forward = sample.forward_input
                desc = sample.desc
                samples.append(Sample(
                    id="-".join(filter(None, [name, MODES[training], str(index), desc])),
                    layer=name, source=f"module_db {info.name}[{index}] {desc!r}",
                    args=sample.constructor_input.args, kwargs=sample.constructor_input.kwargs,
                    inputs=forward.args, input_kwargs=forward.kwargs, training=training))
        if info.module_error_inputs_func is None:
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            error_inputs = info.module_error_inputs_func(info, device="cpu",
                                                         dtype=torch.float64,
                                                         requires_grad=False, training=True)
        for index, error_input in enumerate(error_inputs):
            sample = error_input.module_error_input
            errors.append(Sample(
                id=f"{name}-error-{index}", layer=name,
                source=f"module_db {info.name} error input {index}",
                args=sample.constructor_input.args, kwargs=sample.constructor_input.kwargs,
                inputs=sample.forward_input.args, input_kwargs=sample.forward_input.kwargs,
                error=(error_input.error_on.name, error_input.error_type,
                       error_input.error_regex)))
    return samples, errors


class _Recorder:
    """Stands for ``torch.nn`` in a common_nn ``constructor`` lambda: builds PyTorch's
    module and records the class name and arguments it was built with."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def build(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return getattr(torch.nn, name)(*args, **kwargs)
        return build


def recorded_call(constructor):
    """(name, args, kwargs) of the one ``nn.X(...)`` call of a common_nn constructor lambda
    (which reads ``nn`` from its module's globals), or None."""
    recorder = _Recorder()
    replica = types.FunctionType(constructor.__code__, {**constructor.__globals__,
                                                        "nn": recorder},
                                 constructor.__name__, constructor.__defaults__,
                                 constructor.__closure__)
    try:
        replica()
    except Exception:  # noqa: BLE001 -- not understood: the sample says so
        return None
    return recorder.calls[0] if len(recorder.calls) == 1 else None


def common_nn_argument(test: dict, name: str):
    """common_nn's rule (``TestBase._get_arg``): the value, ``<name>_fn()``, or a standard
    normal tensor of ``<name>_size`` (nested lists of sizes give lists)."""
    if name in test:
        return test[name]
    if name + "_fn" in test:
        return test[name + "_fn"]()

    def tensors(size):
        return [tensors(s) for s in size] if isinstance(size, list) else torch.randn(size)
    return tensors(test[name + "_size"])


def as_float64(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(map(as_float64, value))
    return value


def functional_keywords(constructor, function) -> dict | None:
    """The keywords a common_nn ``wrap_functional(function, **kwargs)`` module calls
    ``function`` with, or None when ``constructor`` is not such a module."""
    cells = [cell.cell_contents for cell in getattr(constructor.forward, "__closure__",
                                                    None) or ()]
    if not any(cell is function for cell in cells):
        return None
    return next((cell for cell in cells if isinstance(cell, dict)), None)


def common_nn_module(test: dict, layers) -> tuple[str, tuple, dict, str] | None:
    """(layer, args, kwargs, note) of a common_nn test whose module minifcn has, else None.

    ``torch.nn.Upsample``'s forward is ``F.interpolate(x, size, scale_factor, mode,
    align_corners, ...)``: the 2-D interpolate tests (4-D inputs) are Upsample's, with the
    functional's keywords as the constructor's."""
    name = test.get("module_name") or (test.get("fullname") or "").split("_")[0]
    if name == "interpolate" and "Upsample" in layers:
        if len(test.get("input_size", ())) != 4:
            return None  # 1-D and 3-D resizing: not a 2-D layer's
        kwargs = functional_keywords(test["constructor"], torch.nn.functional.interpolate)
        note = "" if kwargs is not None else "its F.interpolate keywords could not be read"
        return "Upsample", (), dict(kwargs or {}), note
    if name not in layers:
        return None
    if "constructor" not in test:
        return name, tuple(test.get("constructor_args", ())), {}, ""
    call = recorded_call(test["constructor"])
    if call is None or call[0] != name:
        return name, (), {}, "its constructor's arguments could not be read"
    return name, tuple(call[1]), dict(call[2]), ""


def common_nn_samples(common_nn, common_utils, layers) -> list[Sample]:
    samples, counts = [], collections.Counter()
    # get_new_module_tests() seeds torch's, Python's and NumPy's global (legacy) generators:
    # put them back as they were.
    numpy_state = np.random.get_state()  # noqa: NPY002 -- the global one it seeds
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]), common_utils.set_default_dtype(torch.float64):
        try:
            tests = [*common_nn.module_tests, *common_nn.get_new_module_tests(),
                     *common_nn.criterion_tests]
            for test in tests:
                module = common_nn_module(test, layers)
                if module is None:
                    continue
                name, args, kwargs, note = module
                torch.manual_seed(SEED + len(samples))
                inputs = as_float64(common_nn_argument(test, "input"))
                inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
                if "target" in test or "target_fn" in test or "target_size" in test:
                    inputs.append(as_float64(common_nn_argument(test, "target")))
                inputs += list(test.get("extra_args", ()))
                fullname = test.get("fullname") or name
                desc = test.get("desc") or fullname.partition("_")[2]
                index = counts[name]
                counts[name] += 1
                for training in (True, False):
                    samples.append(Sample(
                        id="-".join(filter(None, [name, MODES[training], f"nn{index}",
                                                  desc])),
                        layer=name, source=f"common_nn {fullname} {desc!r}", args=args,
                        kwargs=kwargs, inputs=tuple(inputs), training=training, note=note))
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)
    return samples


@contextlib.contextmanager
def import_side_effects_undone():
    """Importing ``common_utils`` freezes ``torch.backends``' flags for the whole process
    and registers and loads hypothesis profiles of PyTorch's, one of them named "dev" as
    minifcn's (whose settings the other test files rely on): both are put back."""
    frozen = torch.backends.flags_frozen()
    try:
        from hypothesis import settings
        from hypothesis.errors import InvalidArgument
    except ImportError:
        settings = None
    profiles, current = {}, None
    if settings is not None:
        current = settings.get_current_profile_name()
        for name in ("dev", "pytorch_ci", "debug"):  # the names common_utils registers
            with contextlib.suppress(InvalidArgument):
                profiles[name] = settings.get_profile(name)
    try:
        yield
    finally:
        if not frozen:
            torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
        if settings is not None:
            for name, profile in profiles.items():
                settings.register_profile(name, profile)
            settings.load_profile(current)


def collect() -> tuple[list[Sample], list[Sample]]:
    with import_side_effects_undone():
        import torch.testing._internal.common_modules as common_modules
        import torch.testing._internal.common_nn as common_nn
        import torch.testing._internal.common_utils as common_utils
    layers = minifcn_layers()
    samples, errors = module_db_samples(common_modules, layers)
    return samples + common_nn_samples(common_nn, common_utils, layers), errors


SAMPLES, ERROR_INPUTS = collect()


# --- running one sample ------------------------------------------------------------------

class Failure(Exception):
    """The verdict "failed", with why."""


class Refused(Exception):
    """The verdict "refused clearly", with the documented reason."""


def host(value):
    """A sample's argument for minifcn: tensors as NumPy arrays; arrays copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy().copy()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(map(host, value))
    if isinstance(value, dict):
        return {k: host(v) for k, v in value.items()}
    return value


def leaf(value, grad: bool):
    """A fresh PyTorch leaf with the sample's values, requiring grad if asked."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().clone()
    return value.requires_grad_(True) if grad and value.is_floating_point() else value


def perturb(module, rng) -> None:
    """Move PyTorch's parameters and buffers off their initial values, in place."""
    with torch.no_grad():
        for _, param in module.named_parameters():
            param.add_(torch.from_numpy(0.2 * rng.standard_normal(tuple(param.shape))))
        for key, buffer in module.named_buffers():
            if key.endswith("running_mean"):
                buffer.add_(torch.from_numpy(0.3 * rng.standard_normal(tuple(buffer.shape))))
            elif key.endswith("running_var"):
                buffer.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, tuple(buffer.shape))))
            elif key.endswith("num_batches_tracked"):
                buffer.fill_(3)


def clear_refusal(error: BaseException, layer: str) -> str | None:
    """None when ``error`` is a ValueError or TypeError naming the layer; else what it is."""
    if not isinstance(error, (ValueError, TypeError)):
        return f"crashed with {type(error).__name__}: {error}"
    if not re.search(rf"\b{layer}\b", str(error)):
        return f"refused without naming {layer}: {type(error).__name__}: {error}"
    return None


def same_layout(what: str, ours, theirs: np.ndarray) -> np.ndarray:
    """minifcn's result on the host, after checking it is an array of PyTorch's shape and
    dtype."""
    if not backend.is_array(ours):
        raise Failure(f"{what}: minifcn gave a {type(ours).__name__}, not an array")
    ours = backend.to_numpy(ours)
    if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
        raise Failure(f"{what}: minifcn's is {ours.dtype} {ours.shape}, PyTorch's "
                      f"{theirs.dtype} {theirs.shape}")
    return ours


def compare(what: str, ours, theirs) -> None:
    """minifcn's array against PyTorch's: kind, shape, dtype, NaNs and every entry within
    TOLERANCE x max(1, |PyTorch's|)."""
    theirs = np.asarray(theirs)
    ours = same_layout(what, ours, theirs)
    if theirs.dtype.kind != "f":
        if not np.array_equal(ours, theirs):
            raise Failure(f"{what}: the values differ")
        return
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        raise Failure(f"{what}: NaN where PyTorch has none, or the other way round")
    finite = ~np.isnan(theirs)
    error = np.abs(ours - theirs)[finite]
    bound = TOLERANCE * np.maximum(1.0, np.abs(theirs[finite]))
    if error.size and not np.all(error <= bound):
        worst = int(np.argmax(error / bound))
        raise Failure(f"{what}: off by {error[worst]:.3g} (tolerance {bound[worst]:.3g}); "
                      f"minifcn {ours[finite][worst]!r}, PyTorch {theirs[finite][worst]!r}")


def random_in_training(sample: Sample) -> bool:
    p = sample.kwargs.get("p", sample.args[0] if sample.args else 0.5)
    return sample.layer in RANDOM_LAYERS and sample.training and 0.0 < p < 1.0


def differentiated(inputs: list, kwargs: dict):
    """The argument whose gradient backward returns: the first positional, or ``input=``."""
    return inputs[0] if inputs else kwargs.get("input")


def run_torch(sample: Sample, rng):
    """PyTorch's side: (state before, outputs, dy, dx, parameter grads, state after)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's own warnings are not minifcn's
        module = getattr(torch.nn, sample.layer)(*sample.args, **sample.kwargs)
        module.to(torch.float64).train(sample.training)
        perturb(module, rng)
        before = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        inputs = [leaf(v, i == 0) for i, v in enumerate(sample.inputs)]
        kwargs = {k: leaf(v, not inputs and k == "input")
                  for k, v in sample.input_kwargs.items()}
        output = module(*inputs, **kwargs)
        outputs = output if isinstance(output, tuple) else (output,)
        dy = np.asarray(rng.standard_normal(tuple(outputs[0].shape)), dtype=np.float64)
        if outputs[0].requires_grad:
            outputs[0].backward(torch.from_numpy(dy))
        x = differentiated(inputs, kwargs)
        dx = None if x is None or x.grad is None else x.grad.numpy()
        grads = {name: None if p.grad is None else p.grad.numpy()
                 for name, p in module.named_parameters()}
        after = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    return before, tuple(o.detach().numpy() for o in outputs), dy, dx, grads, after


def attempt(stage: str, sample: Sample, call):
    """``call()``, or the verdict its exception gives: "refused clearly" for a documented
    difference, else a Failure."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 -- the verdict classifies it
        problem = clear_refusal(error, sample.layer)
        if problem is not None:
            raise Failure(f"{stage}: {problem}") from error
        for reason, pattern in DOCUMENTED_REFUSALS.items():
            if re.search(pattern, str(error)):
                raise Refused(reason) from error
        raise Failure(f"{stage}: refused what PyTorch accepts, for no documented reason: "
                      f"{type(error).__name__}: {error}") from error


def check_sample(sample: Sample) -> None:
    """Raises Failure or Refused; returns when everything matches."""
    if sample.note:
        raise Failure(sample.note)
    rng = np.random.default_rng([SEED, zlib.crc32(sample.id.encode())])
    try:
        before, outputs, dy, dx, grads, after = run_torch(sample, rng)
    except Exception as error:  # noqa: BLE001 -- PyTorch refuses: minifcn must too
        try:
            layer = getattr(nn, sample.layer)(*host(sample.args), **host(sample.kwargs))
            layer.to(dtype="float64").train(sample.training)
            layer(*host(sample.inputs), **host(sample.input_kwargs))
        except Exception as ours:  # noqa: BLE001
            problem = clear_refusal(ours, sample.layer)
            if problem:
                raise Failure(f"both refuse, but minifcn {problem}") from ours
            return
        raise Failure(f"accepted what PyTorch refuses ({type(error).__name__}: "
                      f"{error})") from error

    layer = attempt("construction", sample,
                    lambda: getattr(nn, sample.layer)(*host(sample.args),
                                                      **host(sample.kwargs)))
    attempt("to(float64)", sample, lambda: layer.to(dtype="float64"))
    attempt("load_state_dict", sample, lambda: layer.load_state_dict(before))
    layer.train(sample.training)
    inputs, kwargs = host(sample.inputs), host(sample.input_kwargs)
    copies = host((inputs, kwargs))
    output = attempt("forward", sample, lambda: layer(*inputs, **kwargs))
    ours = output if isinstance(output, tuple) else (output,)
    if len(ours) != len(outputs):
        raise Failure(f"forward: {len(ours)} outputs, PyTorch's {len(outputs)}")
    for a, b in zip([*inputs, *kwargs.values()], [*copies[0], *copies[1].values()],
                    strict=True):
        if isinstance(a, np.ndarray) and not np.array_equal(a, b, equal_nan=True):
            raise Failure("forward: minifcn wrote into its input")
    if random_in_training(sample):  # random values: only their layout is PyTorch's
        same_layout("forward output", ours[0], outputs[0])
        if dx is not None:
            same_layout("dx", attempt("backward", sample, lambda: layer.backward(dy)), dx)
        return
    for i, (got, expected) in enumerate(zip(ours, outputs, strict=True)):
        compare("forward output" + (f" {i}" if len(outputs) > 1 else ""), got, expected)
    if dx is None:
        return
    got_dx = attempt("backward", sample, lambda: layer.backward(dy))
    compare("dx", got_dx, dx)
    params = dict(layer.named_parameters())
    if set(params) != set(grads):
        raise Failure(f"parameters {sorted(params)}, PyTorch's {sorted(grads)}")
    for name, grad in grads.items():
        compare(f"{name}.grad", params[name].grad,
                np.zeros(params[name].shape) if grad is None else grad)
    state = layer.state_dict()
    for key, value in after.items():
        compare(f"state_dict[{key!r}] after the step", state[key], value)


def verdict(sample: Sample) -> tuple[str, str]:
    """("match", ""), ("refused", the documented reason) or ("failed", why)."""
    try:
        check_sample(sample)
    except Refused as refusal:
        return "refused", str(refusal)
    except Failure as failure:
        return "failed", str(failure)
    return "match", ""


def error_verdict(sample: Sample) -> tuple[str, str]:
    """("refused", minifcn's message) or ("failed", why)."""
    error_on, error_type, regex = sample.error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = getattr(torch.nn, sample.layer)(*sample.args, **sample.kwargs)
            if error_on == "FORWARD_ERROR":
                module(*sample.inputs, **sample.input_kwargs)
    except Exception as error:  # noqa: BLE001 -- compared with what the sample expects
        if not isinstance(error, error_type) or not re.search(regex, str(error)):
            return "failed", (f"PyTorch refuses it, but not with {error_type.__name__} "
                              f"{regex!r}: {type(error).__name__}: {error}")
    else:
        return "failed", f"PyTorch 2.13 accepts it (expected {error_type.__name__} {regex!r})"
    try:
        layer = getattr(nn, sample.layer)(*host(sample.args), **host(sample.kwargs))
        layer.to(dtype="float64")  # refused for its error, not for float64 input
        layer(*host(sample.inputs), **host(sample.input_kwargs))
    except Exception as error:  # noqa: BLE001 -- the verdict classifies it
        problem = clear_refusal(error, sample.layer)
        return ("failed", problem) if problem else ("refused", f"{type(error).__name__}: "
                                                               f"{error}")
    return "failed", f"accepted what PyTorch refuses ({error_type.__name__}: {regex})"


VERDICTS: dict[str, tuple[str, str]] = {}  # by sample id, as the tests below saw them


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample(sample):
    VERDICTS[sample.id] = kind, detail = verdict(sample)
    if kind == "failed":
        pytest.fail(f"{detail}\n  {sample.reproduction()}", pytrace=False)


@pytest.mark.parametrize("sample", ERROR_INPUTS, ids=[s.id for s in ERROR_INPUTS])
def test_error_input(sample):
    VERDICTS[sample.id] = kind, detail = error_verdict(sample)
    if kind != "refused":
        pytest.fail(f"{detail}\n  {sample.reproduction()}", pytrace=False)


def test_every_sample_matches_or_is_refused_clearly(capsys):
    """The totals, over every sample (those the tests above did not run are run here)."""
    for sample in SAMPLES:
        if sample.id not in VERDICTS:
            VERDICTS[sample.id] = verdict(sample)
    for sample in ERROR_INPUTS:
        if sample.id not in VERDICTS:
            VERDICTS[sample.id] = error_verdict(sample)
    kinds = collections.Counter(VERDICTS[s.id][0] for s in SAMPLES)
    reasons = collections.Counter(VERDICTS[s.id][1] for s in SAMPLES
                                  if VERDICTS[s.id][0] == "refused")
    errors_refused = sum(VERDICTS[s.id][0] == "refused" for s in ERROR_INPUTS)
    why = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    ok = kinds["match"] + kinds["refused"]
    line = (f"PyTorch module tests: {ok} of {len(SAMPLES)} match or are refused clearly "
            f"({kinds['match']} matched, {kinds['refused']} refused" +
            (f": {why}" if why else "") + f"); {errors_refused} of {len(ERROR_INPUTS)} "
            f"error inputs refused")
    with capsys.disabled():
        print(f"\n{line}")
    failed = [f"{s.id}: {VERDICTS[s.id][1]}" for s in [*SAMPLES, *ERROR_INPUTS]
              if VERDICTS[s.id][0] == "failed"]
    assert not failed, line + "\n" + "\n".join(failed)
    assert len(ERROR_INPUTS) >= 12 and errors_refused == len(ERROR_INPUTS), line
    assert SAMPLES, "no PyTorch sample found for minifcn's layers"
