"""What the two pooling exercises (max_pool2d, avg_pool2d) share: drawn cases, the
arguments as a learner receives them, and the windows' coverage."""

from __future__ import annotations

from hypothesis import strategies as st

from ...functional.pool import pool_output_size
from ...testing.strategies import pool_configs
from ..common import arg, coverage

SHAPE = ("OH = (H + 2*PH - KH) // SH + 1 (and the same for OW), with SH = KH when stride "
         "is None; y is (N, C, OH, OW)")


def _case(config, default_stride: bool) -> dict:
    """A drawn PoolConfig as a dict, without ceil_mode (not this exercise's argument);
    ``stride`` None means the default (the kernel size)."""
    return {"batch": config.batch, "channels": config.channels, "size": config.size,
            "kernel_size": config.kernel_size,
            "stride": None if default_stride else config.stride, "padding": config.padding}


def cases(overlapping: bool = False, max_extra: int = 4):
    """Pooling problems: kernel 1-5 (2-5 when overlapping), stride 1-3 or the default,
    padding up to half the kernel, non-square, batch 1-3, channels 1-4."""
    default = st.just(False) if overlapping else st.booleans()
    return st.tuples(pool_configs(max_extra=max_extra, overlapping=overlapping),
                     default).map(lambda t: _case(*t))


def stride_of(case) -> tuple[int, int]:
    return tuple(case["kernel_size"] if case["stride"] is None else case["stride"])


def kwargs_of(case) -> dict:
    """kernel_size, stride, padding as the learner receives them (ints or pairs)."""
    return dict(kernel_size=arg(case["kernel_size"]),
                stride=None if case["stride"] is None else arg(case["stride"]),
                padding=arg(case["padding"]))


def x_shape(case) -> tuple[int, int, int, int]:
    return (case["batch"], case["channels"], *case["size"])


def output_size(case) -> tuple[int, int]:
    return pool_output_size(case["size"], case["kernel_size"], stride_of(case),
                            case["padding"])


def overlap(case):
    """(H, W) bool: the pixels that more than one window reads."""
    return coverage(case["size"], case["kernel_size"], stride_of(case), case["padding"]) > 1


OVERLAP = ("dx is wrong only at pixels that several windows read: each window's share must "
           "be ADDED (dx[...] += ..., not =)")
