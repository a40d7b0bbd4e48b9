"""The capstone: one training step of FCN-8s with your layers equals one with minifcn's,
and then with nothing but yours.

Two checks, so that the way there shows: the step is compared with whichever layers the
folder has (minifcn's stand in for the rest, as ``minifcn train --layers`` uses them), and
the capstone is complete when no layer of minifcn's is left in it."""

from __future__ import annotations

from ... import backend, nn
from ...backend import np
from ...data import Shapes
from ...models import build_model
from ...nn.module import trace_calls
from ...optim import Adam
from ..capstone import LearnerLayers, load_layers, use_layers
from ..framework import (
    Check,
    CheckFailed,
    CheckResult,
    Exercise,
    ExerciseReport,
    NotImplementedYet,
    compare,
)

# One step at the default recipe's learning rate, float64, small enough to run in seconds.
BATCH, IMAGE_SIZE, LR, SEED = 2, 64, 3e-3, 0


def _copy(value):
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return backend.to_numpy(value).copy() if backend.is_array(value) else value


class _Tape:
    """Every leaf layer's forward output and backward result, in the order they happen."""

    def __init__(self, model: nn.Module):
        self.records: list[tuple[str, str, object]] = []
        names = {id(module): name for name, module in model.named_modules()}
        self._leaves = {id(m): names[id(m)] for m in model.modules() if not m._modules}
        for module in model.modules():
            if id(module) in self._leaves:
                self._wrap_backward(module)

    def _wrap_backward(self, module) -> None:
        original, name = module.backward, self._leaves[id(module)]

        def backward(*args, **kwargs):
            result = original(*args, **kwargs)
            self.records.append(("backward", name, _copy(result)))
            return result
        object.__setattr__(module, "backward", backward)  # this instance only

    def observe(self, module, inputs, output) -> None:
        if id(module) in self._leaves:
            self.records.append(("forward", self._leaves[id(module)], _copy(output)))


def _one_step(folder: str | None):
    """Build FCN-8s (float64, seed 0), run one Adam step on two toy images; return the
    model, the tape and, with ``folder``, the table of which layer is whose and the
    :class:`LearnerLayers` it came from."""
    backend.manual_seed(SEED)
    model = build_model("fcn8s", 4, dtype="float64", device="cpu")
    criterion = nn.CrossEntropyLoss(ignore_index=Shapes.ignore_index, dtype="float64")
    rows = layers = None
    if folder is not None:
        layers = load_layers(folder)
        rows = use_layers(model, layers)
        criterion = layers.criterion(criterion)
    data = Shapes(BATCH, IMAGE_SIZE, SEED, split="train")
    images, masks = data.images.astype(np.float64), data.masks.astype(np.int64)
    tape = _Tape(model)
    model.train()
    with trace_calls(tape.observe):
        logits = model(images)
    loss = criterion(logits, masks)
    model.zero_grad()
    model.backward(criterion.backward())
    tape.records.append(("loss", "the loss", _copy(loss)))
    Adam(model.parameters(), lr=LR).step()
    return model, tape, rows, layers


def _whose(rows, name: str) -> str:
    for path, kind, source in rows or []:
        if path == name:
            return f"{kind}, {source}"
    return "minifcn's"


def check_step(folder: str) -> tuple[list, LearnerLayers]:
    """Compare the two steps record by record: the first record that differs names the
    layer (its forward output, or its backward result when its incoming gradient was right).
    Returns the table of which layer is whose and the folder's :class:`LearnerLayers`."""
    reference, ref_tape, _, _ = _one_step(None)
    yours, your_tape, rows, layers = _one_step(folder)
    if not any(source.startswith("yours") for _, _, source in rows):
        raise CheckFailed("none of your layers is in the model yet: every layer is still "
                          "minifcn's, so there is nothing to compare",
                          symptom="finish (and check) relu, conv2d, max_pool2d, batch_norm, "
                                  "dropout, conv_transpose2d, skip or cross_entropy first")
    for (phase, name, expected), (_, _, got) in zip(ref_tape.records, your_tape.records,
                                                     strict=True):
        whose = _whose(rows, name)
        what = {"forward": f"the output of {name} ({whose})",
                "backward": f"the input gradient returned by {name}.backward ({whose})",
                "loss": "the loss"}[phase]
        pairs = zip(got, expected, strict=True) if isinstance(expected, tuple) else \
            [(got, expected)]
        for got_part, expected_part in pairs:
            compare(what, got_part, expected_part, rtol=1e-8, atol=1e-10, symptoms=(
                lambda g, e, phase=phase: (
                    "everything before this layer matched, so this layer's "
                    + ("forward" if phase == "forward" else "backward")
                    + " is where the two steps part: run its exercise's check"),))
    for name, param in yours.named_parameters():
        expected = dict(reference.named_parameters())[name].grad
        compare(f"the gradient of {name}", param.grad, backend.to_numpy(expected),
                rtol=1e-8, atol=1e-10)
    your_state, ref_state = yours.state_dict(), reference.state_dict()
    for key, expected in ref_state.items():
        compare(f"{key} after the Adam step", your_state[key], backend.to_numpy(expected),
                rtol=1e-8, atol=1e-10, symptoms=(lambda g, e: (
                    "every layer output and gradient matched, so look at how the gradient "
                    "reaches the parameter: is it ADDED into .grad (+=), and is dweight / "
                    "dbias returned for this parameter?"),))
    return rows, layers


def check_all_yours(layers: LearnerLayers) -> str:
    """Raise :class:`CheckFailed` naming every layer exercise minifcn still stands in for."""
    left = {name: source for name, source in layers.sources.items()
            if not source.startswith("yours")}
    if left:
        why = {name: source.removeprefix("minifcn's (").removesuffix(")")
               for name, source in left.items()}
        raise CheckFailed(f"{len(left)} of {len(layers.sources)} layer exercises are still "
                          f"minifcn's in this step:\n"
                          + "\n".join(f"  {name}: {reason}" for name, reason in why.items()),
                          symptom="the step above matched with the layers you have; finish "
                                  "and check these exercises, and FCN-8s runs on yours alone")
    return f"all {len(layers.sources)} layer exercises are yours, the loss included"


def _run(exercise: Exercise, folder: str) -> ExerciseReport:
    report = ExerciseReport(exercise, folder)
    check, complete = exercise.checks
    try:
        rows, layers = check_step(folder)
    except ValueError as error:  # not a folder
        report.load_failure = CheckFailed(str(error))
        return report
    except NotImplementedYet as stub:
        report.not_implemented = stub
        report.results += [CheckResult(check, "todo"), CheckResult(complete, "todo")]
        return report
    except CheckFailed as failure:
        report.results += [CheckResult(check, "fail", failure=failure),
                           CheckResult(complete, "skip")]
        return report
    report.results.append(CheckResult(check, "pass", note=layer_table(rows)))
    try:
        report.results.append(CheckResult(complete, "pass", note=check_all_yours(layers)))
    except CheckFailed as failure:
        report.results.append(CheckResult(complete, "fail", failure=failure))
    return report


def layer_table(rows) -> str:
    """How many layers of each type are yours, and which exercise they came from."""
    counts: dict[tuple[str, str], int] = {}
    for _, kind, source in rows:
        counts[kind, source] = counts.get((kind, source), 0) + 1
    return "\n".join(f"{count:>3} x {kind:<16}{source}"
                     for (kind, source), count in sorted(counts.items()))


EXERCISE = Exercise(
    number=15,
    name="capstone",
    title="FCN-8s with your layers: one training step equals minifcn's",
    summary="swap your layers into FCN-8s; then minifcn train --layers DIR",
    functions=(),
    lesson="09_fcn",
    reference=dict,
    checks=[Check("step", "one training step of FCN-8s (float64) with your layers equals "
                          "one with minifcn's: every layer's output and gradient, the loss "
                          "and every parameter after Adam", lambda learner: None),
            Check("complete", "every layer of that step is yours: none of minifcn's is left",
                  lambda learner: None, requires=("step",))],
    runner=_run,
)
