"""Exercise: bilinear up-sampling (both align_corners), forward and backward."""

from __future__ import annotations

from hypothesis import strategies as st

from ... import backend
from ... import functional as F
from ...backend import np
from ...testing.strategies import upsample_configs
from ..common import config_dict, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like, only_where


def _case(drawn, unset: bool) -> dict:
    """A drawn Upsample problem as the exercise's arguments: the output size (a scale factor
    becomes the size it gives) and align_corners, False sometimes given as None."""
    shape, kwargs = drawn
    size, _ = F.upsample_output_size(shape[2:], kwargs.get("size"), kwargs.get("scale_factor"))
    align = kwargs["align_corners"]
    return {"shape": shape, "size": size, "align_corners": None if unset and not align else align}


cases = st.tuples(upsample_configs().filter(lambda d: d[1]["mode"] == "bilinear"),
                  st.booleans()).map(lambda t: _case(*t))
small_cases = cases.filter(lambda c: np.prod(c["shape"]) <= 12
                           and c["size"][0] * c["size"][1] <= 64)

SHAPE = "y is (N, C, OH, OW) with (OH, OW) = size"


def source(in_size: int, out_size: int, align_corners) -> np.ndarray:
    """(OUT,) float64: where each output pixel samples the input (PyTorch's rule), clamped
    to [0, in - 1] as bilinear interpolation's edge replication does."""
    dst = np.arange(out_size, dtype=np.float64)
    if out_size == in_size:
        return dst
    if align_corners:
        return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    return np.clip((dst + 0.5) * in_size / out_size - 0.5, 0.0, in_size - 1)


def _outside(in_size: int, out_size: int, align_corners) -> np.ndarray:
    """(OUT,) bool: output pixels whose unclamped source lies outside [0, in - 1]."""
    if align_corners or out_size == in_size:
        return np.zeros(out_size, dtype=bool)
    raw = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    return (raw < 0) | (raw > in_size - 1)


def _symptoms(case, other):
    """What y looks like when the other align_corners formula, or no clamping, was used."""
    H, W = case["shape"][2:]
    size, align = case["size"], case["align_corners"]
    border = (_outside(H, size[0], align)[:, None] | _outside(W, size[1], align)[None, :])
    return (
        looks_like(lambda e: other,
                   f"y is what align_corners={not align} gives: "
                   + ("with align_corners=False the pixel CENTRES line up, src = (dst + 0.5) * "
                      "H / OH - 0.5, clamped at 0" if not align else
                      "with align_corners=True the CORNER pixels line up, src = dst * (H - 1) "
                      "/ (OH - 1)")),
        only_where(lambda e: border,
                   "y is wrong only near the border, where the source position falls outside "
                   "the input: clamp src at 0 (src = max(src, 0)) and take the second pixel "
                   "as min(i0 + 1, H - 1)"),
    )


def _forward(learner, case):
    x, = inputs_for(case, case["shape"])
    size, align = case["size"], case["align_corners"]
    y, _ = is_tuple_of(learner.upsample_forward(x, size, "bilinear", align), 2,
                       "upsample_forward")
    expected, _ = F.upsample_forward(x, size, "bilinear", align)
    other, _ = F.upsample_forward(x, size, "bilinear", not align)
    compare("y", y, expected, config=case, shape_hint=SHAPE, symptoms=_symptoms(case, other))


def check_forward(learner):
    count = for_all(cases, lambda case: _forward(learner, case), examples=25)
    return (f"{count} configurations: inputs 1-9 x 1-9, outputs 1-36 per axis, align_corners "
            f"True, False and None")


def check_ramp(learner):
    """The identity bilinear interpolation is built on: a linear ramp a*i + b*j + c comes
    out as the same ramp, read at each output pixel's source position."""
    def body(case):
        N, C, H, W = case["shape"]
        size, align = case["size"], case["align_corners"]
        a, b, c = (v.reshape(1, C, 1, 1) for v in inputs_for(case, (C,), (C,), (C,)))
        rows, cols = np.arange(H).reshape(1, 1, H, 1), np.arange(W).reshape(1, 1, 1, W)
        x = np.broadcast_to(a * rows + b * cols + c, (N, C, H, W)).copy()
        y, _ = is_tuple_of(learner.upsample_forward(x, size, "bilinear", align), 2,
                           "upsample_forward")
        src_h = source(H, size[0], align).reshape(1, 1, -1, 1)
        src_w = source(W, size[1], align).reshape(1, 1, 1, -1)
        expected = np.broadcast_to(a * src_h + b * src_w + c, (N, C, *size))
        other = (a * source(H, size[0], not align).reshape(1, 1, -1, 1)
                 + b * source(W, size[1], not align).reshape(1, 1, 1, -1) + c)
        compare("y of the ramp x = a*i + b*j + c", y, expected, config=case, shape_hint=SHAPE,
                rtol=1e-9, atol=1e-9, symptoms=_symptoms(case, other))
    for_all(cases, body, examples=10)
    return ("a ramp comes out as the ramp at src = dst * (H - 1) / (OH - 1) (corners) or "
            "(dst + 0.5) * H / OH - 0.5 clamped to [0, H - 1] (centres)")


def _lost_gradient(dy):
    def symptom(got, expected):
        have, want = got.sum(axis=(2, 3)), dy.sum(axis=(2, 3))
        if not np.allclose(have, want, rtol=1e-9, atol=1e-9):
            return ("the sum of dx over each map differs from the sum of dy: every output is a "
                    "blend whose weights add up to 1, so the gradient it sends back must add "
                    "up to its dy. Are contributions to the same input pixel ADDED "
                    "(xp.add.at, +=), not overwritten?")
        return None
    return symptom


def _backward(learner, case):
    x, = inputs_for(case, case["shape"])
    size, align = case["size"], case["align_corners"]
    y, cache = is_tuple_of(learner.upsample_forward(x, size, "bilinear", align), 2,
                           "upsample_forward")
    dy = inputs_for((case, "dy"), (*case["shape"][:2], *size))[0]
    dx = learner.upsample_backward(dy, cache)
    _, ref_cache = F.upsample_forward(x, size, "bilinear", align)
    compare("dx", dx, F.upsample_backward(dy, ref_cache), config=case,
            shape_hint="dx has x's shape (N, C, H, W)", symptoms=(_lost_gradient(dy),))


def check_backward(learner):
    for_all(cases, lambda case: _backward(learner, case), examples=20)


def check_numerical(learner):
    notes = []

    def body(case):
        x, = inputs_for(case, case["shape"])
        notes.append(gradient_check(learner, "upsample_forward", "upsample_backward",
                                    dict(x=x), ["x"],
                                    dict(size=case["size"], mode="bilinear",
                                         align_corners=case["align_corners"]), case))

    for_all(small_cases, body, examples=5)
    return notes[-1] if notes else None


def gpu_case(learner, xp):
    case = config_dict({"shape": (2, 3, 3, 5), "size": (7, 8)}, gpu=1)
    x, = inputs_for(case, case["shape"])
    dy, = inputs_for((case, "dy"), (2, 3, 7, 8))
    out = {}
    for align in (False, True):
        y, cache = learner.upsample_forward(xp.asarray(x), (7, 8), "bilinear", align)
        dx = learner.upsample_backward(xp.asarray(dy), cache)
        if backend.get_array_module(dx) is not xp:
            raise CheckFailed("upsample_backward returned a NumPy array for GPU inputs: make "
                              "dx with xp (xp = get_array_module(dy))")
        out[f"y (align_corners={align})"], out[f"dx (align_corners={align})"] = y, dx
    return out


EXERCISE = Exercise(
    number=11,
    name="upsample",
    title="Bilinear up-sampling, align_corners False and True, and its backward",
    summary="bilinear resize as PyTorch samples it; dx sends each output's gradient back to "
            "the pixels it read",
    functions=("upsample_forward", "upsample_backward"),
    lesson="06_upsampling",
    reference=lambda: {"upsample_forward": F.upsample_forward,
                       "upsample_backward": F.upsample_backward},
    checks=[
        Check("forward", "forward: y equals minifcn's bilinear up-sampling (PyTorch's "
                         "sampling), shape = size", check_forward),
        Check("ramp", "a linear ramp comes out as the same ramp, read at the source positions",
              check_ramp),
        Check("backward", "backward: dx equals minifcn's", check_backward, ("forward",)),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("forward",)),
        gpu_check(gpu_case, ("forward", "backward"), "forward and backward"),
    ],
)
