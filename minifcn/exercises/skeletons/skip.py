"""Exercise 13: Skip connections: the centre crop and the sum, forward and backward.

Check your work with:   minifcn exercises check skip
Read first:             lessons/09_fcn.py (and lessons/05_encoder.py on why crops are needed)

FCN-16s and FCN-8s add class scores from a finer layer (pool4, pool3) to the up-sampled
coarse scores. The up-sampled map is a little larger than the finer one, so it is first
CROPPED to the finer map's size, centred, and then the two are ADDED.

Notation: x (..., H, W), e.g. (N, C, H, W) score maps or (N, H, W) labels; the window
(OH, OW) = size, with OH <= H and OW <= W; offset = (top, left), its top-left pixel.

    centred offset:   top = (H - OH) // 2,  left = (W - OW) // 2
                      (an odd margin leaves its extra pixel at the bottom/right)
    crop:             y = x[..., top:top + OH, left:left + OW]
    its backward:     dx = zeros of x's shape, with dy put back where the window was cut
    sum:              y = xs[0] + xs[1] + ...
    its backward:     every input receives dy (dy/dxs[i] = 1)

The crop's backward is its adjoint: <crop(x), dy> = <x, crop_backward(dy)> for every x, dy.

Never write into an argument: in a network the inputs of a sum are still needed (by the
layers that made them), and one dy may feed two branches. add_forward must build a new
array (xs[0] + xs[1]), not add into xs[0].

GPU: write xp = get_array_module(dy) and use xp.zeros(..., dtype=dy.dtype), never np.<name>.
The checker runs your code on a strict CuPy stand-in.
"""

from minifcn.backend import get_array_module


def center_crop_offset(input_size, output_size):
    """(top, left) that centres an (OH, OW) window in an (H, W) map.

    Args:
        input_size: (H, W).
        output_size: (OH, OW), each no larger than the input's.

    Returns:
        (top, left): two ints.
    """
    raise NotImplementedError("Exercise 13: center_crop_offset")


def crop_forward(x, size, offset):
    """Cut an (OH, OW) window out of the last two axes of x.

    Args:
        x: (..., H, W).
        size: (OH, OW).
        offset: (top, left), with the window inside x.

    Returns:
        y: (..., OH, OW).
        cache: whatever your backward needs (e.g. x's shape and the offset).
    """
    raise NotImplementedError("Exercise 13: crop_forward")


def crop_backward(dy, cache):
    """Gradient of crop_forward.

    Args:
        dy: (..., OH, OW).
        cache: what your forward returned.

    Returns:
        dx: x's shape: dy inside the window, 0 outside (the cut-away border had no effect).
    """
    xp = get_array_module(dy)  # noqa: F841  (numpy or cupy: use it for every new array)
    raise NotImplementedError("Exercise 13: crop_backward")


def add_forward(*xs):
    """The sum of two or more arrays of one shape.

    Returns:
        y: a NEW array, xs[0] + xs[1] + ...; the inputs are left unchanged.
        cache: whatever your backward needs (e.g. how many inputs there were).
    """
    raise NotImplementedError("Exercise 13: add_forward")


def add_backward(dy, cache):
    """Gradient of add_forward.

    Returns:
        A tuple with one gradient per input, each equal to dy.
    """
    raise NotImplementedError("Exercise 13: add_backward")
