"""Helpers the exercises' checks share: inputs, arguments, gradient and GPU checks."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

from .. import backend
from ..backend import np
from .framework import Check, CheckFailed, Learner, NotImplementedYet, compare, on_strict_gpu

__all__ = ["arg", "compare_bias_grad", "config_dict", "conv_cases", "conv_problem", "coverage",
           "gradient_check", "gpu_check", "inputs_for", "is_tuple_of"]


def config_dict(config, **extra) -> dict:
    """A drawn configuration (a dataclass or dict) as a dict, with ``extra`` entries."""
    base = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {**base, **extra}


def inputs_for(config, *shapes, distinct: bool = False) -> list[np.ndarray]:
    """float64 inputs of the given shapes, the same for the same configuration every time.

    ``distinct=True`` gives every entry a different value (a shuffled ramp with a little
    noise), so that no max-pooling window has a tie.
    """
    seed = zlib.crc32(repr(config).encode())
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        if distinct:
            n = int(np.prod(shape))
            values = rng.permutation(n) + rng.uniform(0.05, 0.45, n)
            arrays.append((values / max(n, 1) * 4.0 - 2.0).reshape(shape))
        else:
            arrays.append(rng.standard_normal(shape))
    return arrays


def arg(pair):
    """A pair as the learner receives it: an int when both entries are equal, else a tuple.
    (The skeletons show how to accept both, as PyTorch does.)"""
    pair = tuple(int(v) for v in pair)
    return pair[0] if pair[0] == pair[1] else pair


def conv_cases(max_extra: int):
    """Drawn convolution cases as dicts (``conv_configs`` and whether there is a bias),
    without the arguments the convolution exercises do not take."""
    from hypothesis import strategies as st

    from ..testing.strategies import conv_configs

    def case(drawn) -> dict:
        config, bias = drawn
        result = config_dict(config, bias=bias)
        for unused in ("output_padding", "groups"):
            result.pop(unused, None)
        return result

    return st.tuples(conv_configs(max_extra=max_extra), st.booleans()).map(case)


def conv_problem(case: dict):
    """x (N, C, H, W), weight (F, C, KH, KW), bias (F,) or None, and the keyword arguments
    (stride, padding, dilation as a learner receives them) of a convolution case."""
    x, weight, bias = inputs_for(
        case, (case["batch"], case["in_channels"], *case["size"]),
        (case["out_channels"], case["in_channels"], *case["kernel_size"]),
        (case["out_channels"],))
    kwargs = dict(stride=arg(case["stride"]), padding=arg(case["padding"]),
                  dilation=arg(case["dilation"]))
    return x, weight, bias if case["bias"] else None, kwargs


def is_tuple_of(value, count: int, name: str) -> tuple:
    """``value`` if it is a tuple of ``count`` items; else a CheckFailed saying what came."""
    if not isinstance(value, tuple) or len(value) != count:
        got = (f"a tuple of {len(value)}" if isinstance(value, tuple)
               else f"a {type(value).__name__}")
        raise CheckFailed(f"{name} should return a tuple of {count} items, got {got}")
    return value


def compare_bias_grad(function: str, got, expected, has_bias: bool, shape_hint: str,
                      config) -> None:
    """dbias as a backward returns it: None when the forward had no bias, else compared."""
    if not has_bias:
        if got is not None:
            raise CheckFailed(f"{function} returned a dbias although bias was None",
                              symptom="return None as dbias when the forward had no bias",
                              config=config)
        return
    compare("dbias", got, expected, config=config, shape_hint=shape_hint)


def coverage(size, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """(H, W): how many windows read each input pixel (more than 1 where windows overlap)."""
    count = np.zeros([n + 2 * p for n, p in zip(size, padding, strict=True)], dtype=int)
    out = [(n + 2 * p - d * (k - 1) - 1) // s + 1
           for n, p, k, s, d in zip(size, padding, kernel, stride, dilation, strict=True)]
    for oh in range(out[0]):
        for ow in range(out[1]):
            rows = slice(oh * stride[0], oh * stride[0] + dilation[0] * (kernel[0] - 1) + 1,
                         dilation[0])
            cols = slice(ow * stride[1], ow * stride[1] + dilation[1] * (kernel[1] - 1) + 1,
                         dilation[1])
            count[rows, cols] += 1
    return count[padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]


def gradient_check(learner: Learner, forward: str, backward: str, inputs: dict,
                   wrt: list[str], static: dict, config, eps: float = 1e-6) -> str:
    """The learner's backward against central differences of the learner's forward, along
    a random upstream gradient, in float64. Returns a note with the worst error."""
    from ..testing.assertions import assert_pair_gradients

    try:
        forward_fn = getattr(learner, forward)
        forward_fn.__name__ = forward  # the report says "assert_pair_gradients(relu_forward)"
        report = assert_pair_gradients(forward_fn, getattr(learner, backward),
                                       inputs, wrt, static=static, eps=eps)
    except AssertionError as error:
        # The configuration is shown once, by the report, as the smallest failing one.
        message = str(error)
        symptom = None if "shape" in message else (
            "your backward does not match the slope of your own forward; compare the "
            "formula for this gradient with the forward line by line")
        raise CheckFailed(message, config=config, symptom=symptom) from None
    return f"worst relative error {report.max_error:.1e} (tolerance 1e-6)"


def gpu_check(case: Callable[[Learner, object], dict], requires: tuple[str, ...],
              what: str) -> Check:
    """A check that runs ``case(learner, xp)`` on NumPy and on the strict CuPy stand-in
    and requires the same results; ``case`` builds its inputs with ``xp.asarray`` and
    returns name -> array."""

    def run(learner: Learner) -> str:
        on_cpu = case(learner, np)
        try:
            with on_strict_gpu() as strict:
                on_gpu = case(learner, strict)
                on_gpu = {name: backend.to_numpy(value) if backend.is_array(value) else value
                          for name, value in on_gpu.items()}
        except NotImplementedYet:
            raise
        except CheckFailed as failure:
            raise CheckFailed(
                f"on the GPU path (CuPy arrays) {failure.message}",
                symptom="this runs on NumPy but would fail on CuPy. Look for np.<name> "
                        "applied to an array, or a NumPy array mixed with a GPU array: "
                        "write xp = get_array_module(x) and use xp.<name>; make new arrays "
                        "with xp.zeros(..., dtype=x.dtype)") from None
        for name, value in on_cpu.items():
            compare(f"{name} on the GPU path", on_gpu[name], backend.to_numpy(value),
                    rtol=1e-12, atol=1e-12)
        return None

    return Check("gpu", f"{what} runs unchanged on the GPU path (strict CuPy stand-in)",
                 run, requires)
