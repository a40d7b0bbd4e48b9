"""``summary(model, input_shape)``: a table of layers, shapes, parameters and geometry.

The model runs once on a zero input while every module call is observed
(:func:`minifcn.nn.module.trace_calls`). Each output array is tagged with its geometry
(:mod:`minifcn.models.geometry`) from the geometry of the arrays that went in, so the table
is right for any wiring, skip connections included, with no per-model bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import backend
from ..nn.module import trace_calls
from .geometry import Geometry, layer_geometry, merge_geometry

__all__ = ["LayerRow", "Summary", "summary"]

_MERGES = ("Add", "Concat")


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple
    params: int
    geometry: Geometry


@dataclass
class Summary:
    rows: list[LayerRow]
    input_shape: tuple
    total_params: int
    trainable_params: int

    @property
    def output(self) -> LayerRow:
        return self.rows[-1]

    def __str__(self) -> str:
        header = f"{'layer':<28}{'type':<17}{'output shape':<22}{'params':>9}{'RF':>7}{'stride':>8}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            g = row.geometry
            lines.append(f"{row.name:<28}{row.kind:<17}{str(row.output_shape):<22}"
                         f"{row.params:>9,}{g.rf:>7g}{g.jump:>8g}")
        lines.append("-" * len(header))
        lines.append(f"input {self.input_shape}; parameters {self.total_params:,} "
                     f"({self.trainable_params:,} trainable)")
        return "\n".join(lines)


def summary(model, input_shape) -> Summary:
    """Run ``model`` once on zeros of ``input_shape`` (N, C, H, W) and tabulate each layer.

    RF (receptive field) and stride are along the height axis, in input pixels.
    The model is put in evaluation mode for the pass and restored afterwards.
    """
    names = {id(module): name for name, module in model.named_modules()}
    xp = backend.array_module(model.device)
    dtype = next(iter(model.parameters())).dtype
    x = xp.zeros(tuple(input_shape), dtype=dtype)
    geometries = {id(x): (x, Geometry())}  # the array is kept so its id stays unique
    rows: list[LayerRow] = []

    def observe(module, inputs, output):
        if list(module.children()):
            return  # containers: their leaves are observed one by one
        known = [geometries[id(a)][1] for a in inputs if id(a) in geometries]
        if not known:
            return
        kind = type(module).__name__
        where = names.get(id(module), kind)
        if kind in _MERGES:
            g = merge_geometry(where, *known)
        else:
            g = layer_geometry(module, known[0])
        y = output[0] if isinstance(output, tuple) else output
        geometries[id(y)] = (y, g)
        params = sum(int(p.data.size) for p in module._parameters.values())
        rows.append(LayerRow(where, kind, tuple(y.shape), params, g))

    was_training = model.training
    model.eval()
    try:
        with trace_calls(observe):
            model(x)
    finally:
        model.train(was_training)
    return Summary(rows, tuple(input_shape), model.num_parameters(),
                   model.num_parameters(trainable_only=True))
