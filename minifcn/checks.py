"""Argument and input checks shared by the layers and the functional pairs.

Every check raises before any arithmetic, with a message that names the layer (``where``),
what it expected and what it got, e.g.
``Conv2d(3->16, kernel_size=(3, 3)): expected x with 3 channels, got x of shape (2, 4, 32, 32)``.
Wrong kinds of things are ``TypeError``; right kinds with wrong values are ``ValueError``.
"""

from __future__ import annotations

from numbers import Integral, Real

from .backend import get_array_module, is_array
from .grad_mode import NO_GRAD_CACHE

__all__ = [
    "as_pair",
    "check_cache",
    "check_count",
    "check_flag",
    "check_grad",
    "check_inplace",
    "check_input",
    "check_number",
    "check_operands",
    "check_probability",
    "check_same_device",
    "naming",
]


def as_pair(where: str, name: str, value, minimum: int | None = None) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, as PyTorch takes them) as a pair ``(h, w)``."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return pair


def check_flag(where: str, name: str, value) -> bool:
    """A True/False argument (1 and 0 are refused: they usually mean a misplaced argument)."""
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r}")
    return value


def check_count(where: str, name: str, value, minimum: int) -> int:
    """A whole number (not a bool) of at least ``minimum``."""
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_number(where: str, name: str, value, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = True) -> float:
    """A real number (not a bool) with ``low <= value`` (and ``<= high`` or ``< high``)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a number, got {value!r}")
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if value < low or too_high:
        bound = "" if high is None else f" and {'<=' if high_inclusive else '<'} {high}"
        raise ValueError(f"{where}: {name} must be >= {low}{bound}, got {value!r}")
    return float(value)


def check_inplace(where: str, inplace) -> bool:
    """PyTorch's ``inplace`` flag: ``False`` is accepted, ``True`` refused with a reason."""
    check_flag(where, "inplace", inplace)
    if inplace:
        raise ValueError(f"{where}: inplace=True is not supported: minifcn never overwrites "
                         f"a layer's input (with a skip connection the same x also feeds "
                         f"another branch); use inplace=False")
    return inplace


def check_probability(where: str, p) -> float:
    """A drop probability in [0, 1] (1 drops everything, as PyTorch allows)."""
    if not isinstance(p, Real) or isinstance(p, bool):
        raise TypeError(f"{where}: p must be a number in [0, 1], got {p!r}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{where}: p must be in [0, 1], got {p!r}")
    return float(p)


def check_input(where: str, x, *, ndim: int | None = 4, channels: int | None = None,
                dtype=None, name: str = "x", floating: bool = True, hint: str = "") -> None:
    """``x`` is an array of rank ``ndim`` (NCHW by default; ``None``: any rank) with the
    expected channels and dtype.

    ``floating``: a float array (True) or an integer one (False: labels, indices); ``hint``
    is added to the message when the kind is wrong. ``dtype``, when given, is the dtype of
    the layer's parameters: a float64 input to a float32 layer is refused rather than
    silently promoted.
    """
    if not is_array(x):
        raise TypeError(f"{where}: expected {name} to be an array, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        layout = {4: " (N, C, H, W)", 3: " (N, H, W)"}.get(ndim, "")
        raise ValueError(f"{where}: expected {name} of rank {ndim}{layout}, "
                         f"got {name} of shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{where}: expected {name} with {channels} channels, "
                         f"got {name} of shape {tuple(x.shape)}")
    if floating and x.dtype.kind != "f":
        raise TypeError(f"{where}: expected a float32 or float64 {name}{hint}, "
                        f"got dtype {x.dtype}")
    if not floating and x.dtype.kind not in "iu":
        raise TypeError(f"{where}: expected integer {name}{hint}, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{where}: {name} has dtype {x.dtype} but the layer's parameters are "
                        f"{dtype}; convert one of them (module.to(dtype=...))")


def check_operands(where: str, x, ndim=4, *, floating: bool | None = True,
                   **others) -> None:
    """The arrays of a call to a functional pair (``minifcn.functional``), before any
    arithmetic: the metadata checks a learner calling the function directly needs, cheap
    enough for every call (no pass over the values).

    ``x``: an array of rank ``ndim`` (an int, a tuple of ranks, or None for any), of a float
    dtype when ``floating`` (an integer one when False, any when None: a reshape or a copy
    works for every dtype). ``others``: ``name=array`` or ``name=(array, shape)``, each
    None (absent) or an array of x's dtype on x's device, and of ``shape`` when given (None
    in it: any size on that axis). The layers check more, in their own words (channels
    against their parameters, ...).
    """
    if floating is not None:
        check_input(where, x, ndim=None, floating=floating)
    elif not is_array(x):
        raise TypeError(f"{where}: expected x to be an array, got {type(x).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and x.ndim not in ranks:
        wanted = " or ".join(map(str, ranks))
        layout = " (N, C, H, W)" if ranks == (4,) else ""
        raise ValueError(f"{where}: expected x of rank {wanted}{layout}, got x of shape "
                         f"{tuple(x.shape)}")
    arrays = [x]
    for name, value in others.items():
        array, shape = value if isinstance(value, tuple) else (value, None)
        if array is None:
            continue
        if not is_array(array):
            raise TypeError(f"{where}: expected {name} to be an array, got "
                            f"{type(array).__name__}")
        if shape is not None and (array.ndim != len(shape) or any(
                want is not None and have != want
                for have, want in zip(array.shape, shape, strict=True))):
            wanted = tuple("any" if want is None else want for want in shape)
            raise ValueError(f"{where}: expected {name} of shape {wanted}, got "
                             f"{tuple(array.shape)}")
        if array.dtype != x.dtype:
            raise TypeError(f"{where}: {name} has dtype {array.dtype} but x has {x.dtype}; "
                            f"convert one of them (PyTorch refuses the mix too)")
        arrays.append(array)
    check_same_device(where, *arrays)


def check_same_device(where: str, *arrays) -> None:
    """All arrays on one device (NumPy vs CuPy); ``TypeError`` naming the layer otherwise."""
    try:
        get_array_module(*arrays)
    except TypeError as error:
        raise TypeError(f"{where}: {error}") from None


def check_cache(where: str, cache) -> None:
    """``backward`` needs what ``forward`` cached; refuse a backward with no forward before,
    or after a forward that kept nothing (under ``minifcn.no_grad()``)."""
    if cache is None:
        raise ValueError(f"{where}: backward called before forward (or twice after one "
                         f"forward); call forward first")
    if cache is NO_GRAD_CACHE:
        raise RuntimeError(f"{where}: backward after a forward made under minifcn.no_grad(), "
                           f"which kept nothing for it; run the forward outside no_grad")


def check_grad(where: str, dy, expected_shape, expected_dtype=None, name: str = "dy") -> None:
    """The upstream gradient has exactly the shape (and dtype) of the forward output."""
    if not is_array(dy):
        raise TypeError(f"{where}: expected {name} to be an array, got {type(dy).__name__}")
    if tuple(dy.shape) != tuple(expected_shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(expected_shape)} "
                         f"(the forward output's), got {tuple(dy.shape)}")
    if expected_dtype is not None and dy.dtype != expected_dtype:
        raise TypeError(f"{where}: expected {name} of dtype {expected_dtype} "
                        f"(the forward output's), got {dy.dtype}")


def naming(where: str, function, *args):
    """``function(*args)``, its ValueError or TypeError told again with ``where`` in front:
    for a layer calling a functional pair that checks its arguments, or a size helper
    (``conv_output_size``, ...) whose message says what does not fit but not who asked."""
    try:
        return function(*args)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: {error}") from None
