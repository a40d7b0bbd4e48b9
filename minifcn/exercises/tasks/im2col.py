"""Exercise 3: im2col and col2im, the convolution's windows as one matrix, and back."""

from __future__ import annotations

import itertools

from ... import functional as F
from ...backend import np
from ...testing.assertions import CONV_OUTPUT_FORMULA, assert_adjoint
from ...testing.strategies import conv_configs
from ..common import coverage, gpu_check, inputs_for
from ..framework import Check, CheckFailed, Exercise, compare, for_all, only_where

SHAPE = f"(C*KH*KW, N*OH*OW), with {CONV_OUTPUT_FORMULA}"
GEOMETRY = ("kernel_size", "stride", "padding", "dilation")
ADDED = ("col2im is wrong only at pixels that several windows read: their contributions "
         "must be ADDED (x_padded[...] += ..., not =)")


def _case(config):
    return {"batch": config.batch, "channels": config.in_channels, "size": config.size,
            **{key: getattr(config, key) for key in GEOMETRY}}


cases = conv_configs(max_extra=4).map(_case)
# kernels that overlap on purpose: col2im must add where windows share pixels
overlapping = cases.filter(lambda c: any(s < d * (k - 1) + 1 for k, s, d in zip(
    c["kernel_size"], c["stride"], c["dilation"], strict=True)))


def _geometry(case):
    """kernel_size, stride, padding, dilation: always (height, width) pairs here, as
    minifcn.functional.im2col takes them."""
    return tuple(tuple(case[key]) for key in GEOMETRY)


def _x_shape(case):
    return (case["batch"], case["channels"], *case["size"])


def _cols_shape(case):
    OH, OW = F.conv_output_size(*[case[key] for key in ("size", *GEOMETRY)])
    KH, KW = case["kernel_size"]
    return (case["channels"] * KH * KW, case["batch"] * OH * OW)


def _layouts(case):
    """(name, rearrange) for each wrong order of the rows' (C, KH, KW) and the columns'
    (N, OH, OW); the likeliest slips first."""
    C, (KH, KW), N = case["channels"], case["kernel_size"], case["batch"]
    OH, OW = F.conv_output_size(*[case[key] for key in ("size", *GEOMETRY)])
    rows, cols = ("C", "KH", "KW"), ("N", "OH", "OW")
    sizes = dict(C=C, KH=KH, KW=KW, N=N, OH=OH, OW=OW)
    likely = [(("KH", "KW", "C"), cols), (rows, ("OH", "OW", "N"))]
    others = [(r, c) for r in itertools.permutations(rows)
              for c in itertools.permutations(cols) if (r, c) not in likely]
    for r, c in likely + others:
        if (r, c) == (rows, cols):
            continue
        order = [(*rows, *cols).index(axis) for axis in (*r, *c)]

        def rearrange(e, order=order, r=r):
            six = e.reshape([sizes[a] for a in (*rows, *cols)]).transpose(order)
            return six.reshape(int(np.prod([sizes[a] for a in r])), -1)

        yield f"rows ({', '.join(r)}), columns ({', '.join(c)})", rearrange


def _im2col(learner, case):
    x = inputs_for(case, _x_shape(case))[0]
    cols = learner.im2col(x, *_geometry(case))
    expected = F.im2col(x, *_geometry(case))
    got_shape = tuple(getattr(cols, "shape", ()))
    if got_shape == expected.shape[::-1] and expected.shape[0] != expected.shape[1]:
        raise CheckFailed(f"cols has shape {got_shape}; expected {expected.shape}",
                          symptom="cols is transposed: one ROW per (c, i, j) kernel entry, "
                                  "one COLUMN per (n, oh, ow) window, so that "
                                  "weight.reshape(F, -1) @ cols is the convolution",
                          config=case)

    def layout(got, e):
        for name, rearrange in _layouts(case):
            if got.shape == e.shape and np.allclose(got, rearrange(e), rtol=1e-12, atol=0.0):
                return (f"cols holds the right windows in another order: {name}. Lay out "
                        f"rows (C, KH, KW) to match weight.reshape(F, C*KH*KW), and columns "
                        f"(N, OH, OW): cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, "
                        f"oh*SH + i*DH, ow*SW + j*DW]")
        return None

    compare("cols", cols, expected, shape_hint=SHAPE, config=case, symptoms=(layout,))


def check_im2col(learner):
    count = for_all(cases, lambda case: _im2col(learner, case))
    return (f"{count} configurations: kernel 1-5, stride 1-3, padding 0-2, dilation 1-2, "
            f"non-square, batch 1-3, channels 1-4")


def _col2im(learner, case):
    shape = _cols_shape(case)
    cols = inputs_for((case, "cols"), shape)[0]
    got = learner.col2im(cols, _x_shape(case), *_geometry(case))
    overlap = coverage(case["size"], *_geometry(case)) > 1

    def layout(got, e):
        for _, rearrange in _layouts(case):
            candidate = F.col2im(rearrange(cols), _x_shape(case), *_geometry(case))
            if np.allclose(got, candidate, rtol=1e-12, atol=1e-12):
                return ("col2im reads cols in another order than im2col writes it: rows "
                        "run over (C, KH, KW), columns over (N, OH, OW)")
        return None

    compare("col2im(cols)", got, F.col2im(cols, _x_shape(case), *_geometry(case)),
            shape_hint="x_shape (N, C, H, W)", config=case,
            symptoms=(only_where(lambda e: overlap, ADDED), layout))


def check_col2im(learner):
    count = for_all(overlapping, lambda case: _col2im(learner, case))
    return f"{count} configurations, all with overlapping windows"


def check_adjoint(learner):
    def body(case):
        geometry = _geometry(case)
        try:
            assert_adjoint(lambda x: learner.im2col(x, *geometry),
                           lambda c: learner.col2im(c, _x_shape(case), *geometry),
                           _x_shape(case), _cols_shape(case), config=case)
        except AssertionError as error:
            raise CheckFailed(str(error), config=case,
                              symptom="col2im must be im2col's transpose: every entry of "
                                      "cols goes back, ADDED, to the pixel it was copied "
                                      "from (and padding entries are dropped)") from None

    count = for_all(cases, body, examples=15)
    return f"<im2col(x), c> == <x, col2im(c)> on {count} configurations (random x and c)"


def check_round_trip(learner):
    def body(case):
        x = inputs_for(case, _x_shape(case))[0]
        geometry = _geometry(case)
        back = learner.col2im(learner.im2col(x, *geometry), _x_shape(case), *geometry)
        overlap = coverage(case["size"], *geometry) > 1
        compare("col2im(im2col(x))", back, x * coverage(case["size"], *geometry),
                config=case, shape_hint="x's shape (N, C, H, W)",
                symptoms=(only_where(lambda e: overlap, ADDED),))

    count = for_all(overlapping, body, examples=15)
    return f"{count} configurations with overlapping windows"


def gpu_case(learner, xp):
    case = {"gpu": 1, "batch": 2, "channels": 3, "size": (5, 6), "kernel_size": (3, 2),
            "stride": (2, 1), "padding": (1, 1), "dilation": (1, 2)}
    x = xp.asarray(inputs_for(case, _x_shape(case))[0])
    cols = learner.im2col(x, *_geometry(case))
    c = xp.asarray(inputs_for((case, "cols"), _cols_shape(case))[0])
    return dict(cols=cols, image=learner.col2im(c, _x_shape(case), *_geometry(case)))


EXERCISE = Exercise(
    number=3,
    name="im2col",
    title="im2col and col2im",
    summary="every window as a column of one matrix; col2im adds them back (its adjoint)",
    functions=("im2col", "col2im"),
    lesson="01_convolution",
    reference=lambda: {"im2col": F.im2col, "col2im": F.col2im},
    checks=[
        Check("im2col", "im2col: cols equals minifcn's, (C*KH*KW, N*OH*OW) in its layout",
              check_im2col),
        Check("col2im", "col2im: equals minifcn's where windows overlap", check_col2im),
        Check("adjoint", "col2im is the adjoint (transpose) of im2col", check_adjoint,
              ("im2col",)),
        Check("round trip", "col2im(im2col(x)) is x times the number of windows reading each "
                            "pixel", check_round_trip, ("im2col",)),
        gpu_check(gpu_case, ("im2col", "col2im"), "im2col and col2im"),
    ],
)
