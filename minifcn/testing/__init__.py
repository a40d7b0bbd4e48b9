"""Property-test your own layer: the toolkit minifcn's own test suite uses.

Install with ``pip install "minifcn[test]"`` (pytest and hypothesis). Three parts:

- :mod:`minifcn.testing.assertions` (re-exported here; needs neither pytest nor hypothesis):
  ``assert_gradients``, ``assert_pair_gradients``, ``assert_gradients_accumulate``,
  ``assert_close_to``, ``assert_adjoint``, ``assert_output_shape`` and the output-size
  formulas, each failing with a message that names the quantity, the worst index, got vs
  expected, the tolerance and the configuration.
- :mod:`minifcn.testing.strategies` (needs hypothesis): layer configurations PyTorch accepts
  (convolution, transposed convolution, pooling incl. overlapping windows, batch norm,
  up-sampling, the loss with ignored pixels) and input arrays (distinct values, or ties).
- :mod:`minifcn.testing.plugin`, a pytest plugin registered on install: the ``xp`` fixture runs
  a test on NumPy, on the strict CuPy stand-in (:mod:`minifcn.testing.strict_cupy`, which fails
  where CuPy would) and on CuPy where there is a GPU; hypothesis profiles dev/ci/thorough.

A hand-written layer, checked on every backend over drawn shapes (a test file)::

    from hypothesis import given
    from minifcn import get_array_module, nn
    from minifcn.testing import assert_gradients
    from minifcn.testing.strategies import arrays, nchw_shapes

    class Swish(nn.Module):                       # y = x * sigmoid(x), by hand
        def forward(self, x):
            self.x, self.s = x, 1.0 / (1.0 + get_array_module(x).exp(-x))
            return x * self.s

        def backward(self, dy):                   # dy * d/dx (x * s) = dy * s * (1 + x(1 - s))
            return dy * self.s * (1.0 + self.x * (1.0 - self.s))

    @given(x=arrays(nchw_shapes()))
    def test_swish_backward(x, xp):               # xp: numpy, then the strict CuPy stand-in
        assert_gradients(Swish(), xp.asarray(x))  # float64, random upstream gradient
"""

from . import assertions
from .assertions import *  # noqa: F403  (the public names, listed once, in assertions)

__all__ = list(assertions.__all__)
