"""Stateless forward/backward pairs: ``op_forward(...) -> (y, cache)`` and
``op_backward(dy, cache) -> gradients``. The layers in ``minifcn.nn`` wrap these; the naive
loop versions beside the fast ones (``conv2d_naive``, ``max_pool2d_naive``, ...) are kept
for teaching and as test oracles."""

from .activation import leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward
from .conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_input_grad,
    conv2d_naive,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose2d_naive,
)
from .dropout import dropout2d_forward, dropout_backward, dropout_forward
from .im2col import col2im, conv_output_size, conv_transpose_output_size, im2col
from .linear import (
    flatten_backward,
    flatten_forward,
    flatten_shape,
    linear_backward,
    linear_forward,
    linear_naive,
)
from .loss import (
    cross_entropy_backward,
    cross_entropy_forward,
    cross_entropy_probs_backward,
    cross_entropy_probs_forward,
    log_softmax,
    softmax,
)
from .merge import (
    add_backward,
    add_forward,
    center_crop_offset,
    concat_backward,
    concat_forward,
    crop_backward,
    crop_forward,
)
from .norm import batch_norm_backward, batch_norm_forward
from .pad import pad2d_backward, pad2d_forward
from .pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_avg_pool2d_naive,
    avg_pool2d_backward,
    avg_pool2d_forward,
    avg_pool2d_naive,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    max_pool2d_naive,
    max_unpool2d_backward,
    max_unpool2d_forward,
)
from .upsample import upsample_backward, upsample_forward, upsample_output_size

__all__ = [
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_naive",
    "add_backward", "add_forward", "avg_pool2d_backward", "avg_pool2d_forward",
    "avg_pool2d_naive", "batch_norm_backward", "batch_norm_forward", "center_crop_offset",
    "col2im", "concat_backward", "concat_forward", "conv2d_backward", "conv2d_forward",
    "conv2d_input_grad", "conv2d_naive", "conv_output_size", "conv_transpose2d_backward",
    "conv_transpose2d_forward", "conv_transpose2d_naive", "conv_transpose_output_size",
    "crop_backward", "crop_forward", "cross_entropy_backward", "cross_entropy_forward",
    "cross_entropy_probs_backward", "cross_entropy_probs_forward",
    "dropout2d_forward", "dropout_backward", "dropout_forward", "flatten_backward",
    "flatten_forward", "flatten_shape", "im2col", "leaky_relu_backward", "leaky_relu_forward",
    "linear_backward", "linear_forward", "linear_naive", "log_softmax", "max_pool2d_backward",
    "max_pool2d_forward", "max_pool2d_indices", "max_pool2d_naive", "max_unpool2d_backward",
    "max_unpool2d_forward", "pad2d_backward", "pad2d_forward", "relu_backward", "relu_forward",
    "softmax", "upsample_backward", "upsample_forward", "upsample_output_size",
]
