"""Exercise: the skip connection of FCN: a centre crop and a sum, forward and backward."""

from __future__ import annotations

from hypothesis import strategies as st

from ... import functional as F
from ...backend import np
from ...testing.assertions import assert_adjoint
from ..common import config_dict, gpu_check, gradient_check, inputs_for, is_tuple_of
from ..framework import Check, CheckFailed, Exercise, compare, for_all, looks_like


@st.composite
def crop_cases(draw):
    """x of rank 4 (score maps, N, C, H, W) or 3 (labels, N, H, W), a window size that fits,
    and an offset: the centred one or any other that keeps the window inside."""
    lead = draw(st.sampled_from([(1, 1), (2, 3), (3,), (1,)]))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    OH, OW = draw(st.integers(1, H)), draw(st.integers(1, W))
    if draw(st.booleans()):
        offset = ((H - OH) // 2, (W - OW) // 2)
    else:
        offset = (draw(st.integers(0, H - OH)), draw(st.integers(0, W - OW)))
    return {"shape": (*lead, H, W), "size": (OH, OW), "offset": offset}


@st.composite
def size_pairs(draw):
    H, W = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    return {"input_size": (H, W), "output_size": (draw(st.integers(1, H)),
                                                  draw(st.integers(1, W)))}


add_cases = st.fixed_dictionaries({
    "shape": st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5),
                       st.integers(1, 5)),
    "inputs": st.integers(2, 3),
})


def _as_pair(value, name: str, case) -> tuple[int, int]:
    try:
        top, left = value
        return int(top), int(left)
    except (TypeError, ValueError):
        raise CheckFailed(f"{name} should return two integers (top, left), got {value!r}",
                          config=case) from None


def check_center_offset(learner):
    def body(case):
        (H, W), (OH, OW) = case["input_size"], case["output_size"]
        got = _as_pair(learner.center_crop_offset((H, W), (OH, OW)), "center_crop_offset",
                       case)
        expected = F.center_crop_offset((H, W), (OH, OW))
        if got == expected:
            return
        if got == (0, 0):
            symptom = ("the offset is (0, 0): the window is cut from the top-left corner. A "
                       "centred window leaves (H - OH) // 2 rows above it and (W - OW) // 2 "
                       "columns to its left")
        elif got == ((H - OH + 1) // 2, (W - OW + 1) // 2):
            symptom = ("an odd margin puts its extra pixel at the top/left: (H - OH) // 2 "
                       "rounds down, which leaves it at the bottom/right, as minifcn's Crop "
                       "does")
        elif got == expected[::-1]:
            symptom = "top and left are swapped: return (top, left), rows first"
        else:
            symptom = "top = (H - OH) // 2 and left = (W - OW) // 2"
        raise CheckFailed(f"center_crop_offset(({H}, {W}), ({OH}, {OW})) returned {got}; "
                          f"expected {expected}", symptom=symptom, config=case)
    count = for_all(size_pairs(), body, examples=30)
    return f"{count} size pairs, odd and even margins"


def _crop(learner, case):
    x, = inputs_for(case, case["shape"])
    (top, left), (OH, OW) = case["offset"], case["size"]
    y, _ = is_tuple_of(learner.crop_forward(x, case["size"], case["offset"]), 2,
                       "crop_forward")
    expected, _ = F.crop_forward(x, case["size"], case["offset"])
    H, W = case["shape"][-2:]
    symptoms = [looks_like(lambda e: x[..., :OH, :OW],
                           "y is cut from the top-left corner: start the window at offset, "
                           "x[..., top:top + OH, left:left + OW]")]
    if left + OH <= H and top + OW <= W:
        symptoms.append(looks_like(lambda e: x[..., left:left + OH, top:top + OW],
                                   "top and left are swapped: offset is (top, left), rows "
                                   "first"))
    compare("y", y, expected, config=case, symptoms=tuple(symptoms),
            shape_hint="y is x's leading axes followed by size, (..., OH, OW): crop the last "
                       "two axes only")


def check_crop(learner):
    count = for_all(crop_cases(), lambda case: _crop(learner, case), examples=25)
    return f"{count} configurations: (N, C, H, W) score maps and (N, H, W) labels"


def _crop_backward(learner, case):
    x, = inputs_for(case, case["shape"])
    (OH, OW) = case["size"]
    _, cache = is_tuple_of(learner.crop_forward(x, case["size"], case["offset"]), 2,
                           "crop_forward")
    dy, = inputs_for((case, "dy"), (*case["shape"][:-2], OH, OW))
    dx = learner.crop_backward(dy, cache)
    _, ref_cache = F.crop_forward(x, case["size"], case["offset"])
    expected = F.crop_backward(dy, ref_cache)
    top_left = np.zeros_like(x)
    top_left[..., :OH, :OW] = dy
    compare("dx", dx, expected, config=case, shape_hint="dx has x's shape", symptoms=(
        looks_like(lambda e: top_left,
                   "dx puts dy at the top-left corner: put it back where the window was cut, "
                   "dx[..., top:top + OH, left:left + OW] = dy"),))
    # The identity behind it: crop_backward is the adjoint (transpose) of crop_forward.
    try:
        assert_adjoint(lambda v: learner.crop_forward(v, case["size"], case["offset"])[0],
                       lambda v: learner.crop_backward(v, cache), case["shape"],
                       dy.shape, config=case)
    except AssertionError as error:
        raise CheckFailed(str(error), config=case,
                          symptom="crop_backward must be the transpose of crop_forward: "
                                  "<crop(x), dy> = <x, crop_backward(dy)>") from None


def check_crop_backward(learner):
    for_all(crop_cases(), lambda case: _crop_backward(learner, case), examples=20)
    return "dx equals minifcn's, and <crop(x), dy> = <x, crop_backward(dy)>"


def _add(learner, case):
    xs = inputs_for(case, *[case["shape"]] * case["inputs"])
    copies = [x.copy() for x in xs]
    y, cache = is_tuple_of(learner.add_forward(*xs), 2, "add_forward")
    for i, (x, kept) in enumerate(zip(xs, copies, strict=True)):
        if not np.array_equal(x, kept):
            raise CheckFailed(
                f"add_forward changed its input {i} (xs[{i}]): after the call it is no longer "
                f"what was passed in", config=case,
                symptom="add_forward wrote into its input (xs[0] += ... or an out= argument): "
                        "in a network that array is still needed, by the layer that made it "
                        "and by the other branch of the skip; build a new array, y = xs[0] + "
                        "xs[1]")
    compare("y", y, sum(copies[1:], copies[0]), config=case,
            shape_hint="y has the inputs' common shape")
    dy, = inputs_for((case, "dy"), case["shape"])
    grads = learner.add_backward(dy, cache)
    if isinstance(grads, list):
        grads = tuple(grads)
    grads = is_tuple_of(grads, len(xs), "add_backward")
    for i, grad in enumerate(grads):
        compare(f"dx of input {i}", grad, dy, config=case, symptoms=(
            looks_like(lambda e: e / len(xs),
                       f"each input's gradient is dy / {len(xs)}: y = x0 + x1 + ..., so dy/dx_i "
                       f"= 1 and every input receives dy itself, undivided"),))


def check_add(learner):
    count = for_all(add_cases, lambda case: _add(learner, case), examples=15)
    return (f"{count} configurations with 2 and 3 inputs; the inputs are left unchanged; "
            f"every input receives dy")


class _Pairs:
    """The learner's functions under the names gradient_check calls: a crop, and an add of
    three arrays given by name."""

    def __init__(self, learner):
        self.crop_forward, self.crop_backward = learner.crop_forward, learner.crop_backward
        self.add_backward = learner.add_backward

        def add_forward(a, b, c):
            return learner.add_forward(a, b, c)
        self.add_forward = add_forward


def check_numerical(learner):
    pairs, notes = _Pairs(learner), []

    def body(case):
        x, = inputs_for(case, case["shape"])
        notes.append(gradient_check(pairs, "crop_forward", "crop_backward", dict(x=x), ["x"],
                                    dict(size=case["size"], offset=case["offset"]), case))

    for_all(crop_cases(), body, examples=4)
    case = {"shape": (2, 2, 3, 3), "inputs": 3}
    a, b, c = inputs_for(case, *[case["shape"]] * 3)
    notes.append(gradient_check(pairs, "add_forward", "add_backward", dict(a=a, b=b, c=c),
                                ["a", "b", "c"], {}, case))
    return notes[-1]


def gpu_case(learner, xp):
    case = config_dict({"shape": (2, 3, 7, 6), "size": (4, 3)}, gpu=1)
    x, a, b = (xp.asarray(v) for v in inputs_for(case, (2, 3, 7, 6), (2, 3, 4, 3),
                                                 (2, 3, 4, 3)))
    dy = xp.asarray(inputs_for((case, "dy"), (2, 3, 4, 3))[0])
    offset = learner.center_crop_offset((7, 6), (4, 3))
    y, cache = learner.crop_forward(x, (4, 3), offset)
    dx = learner.crop_backward(dy, cache)
    total, cache = learner.add_forward(y, a, b)
    grads = tuple(learner.add_backward(dy, cache))
    return dict(y=y, dx=dx, sum=total, **{f"dx of input {i}": g for i, g in enumerate(grads)})


EXERCISE = Exercise(
    number=13,
    name="skip",
    title="Skip connections: the centre crop and the sum, forward and backward",
    summary="FCN's skip: crop the up-sampled scores to the finer map's size, add; and back",
    functions=("center_crop_offset", "crop_forward", "crop_backward", "add_forward",
               "add_backward"),
    lesson="09_fcn",
    reference=lambda: {"center_crop_offset": F.center_crop_offset,
                       "crop_forward": F.crop_forward, "crop_backward": F.crop_backward,
                       "add_forward": F.add_forward, "add_backward": F.add_backward},
    checks=[
        Check("offset", "center_crop_offset: the centred window's (top, left), as minifcn's",
              check_center_offset),
        Check("crop", "crop_forward: the window at offset, as minifcn's", check_crop),
        Check("crop_backward", "crop_backward: dy back in place, zeros around (the adjoint "
                               "of the crop)", check_crop_backward, ("crop",)),
        Check("add", "add_forward and add_backward: a new sum; dy to every input", check_add),
        Check("numerical", "gradients agree with finite differences of your forward "
                           "(float64, random upstream gradient)", check_numerical,
              ("crop", "add")),
        gpu_check(gpu_case, ("offset", "crop", "crop_backward", "add"), "each function"),
    ],
)
