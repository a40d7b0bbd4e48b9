"""minifcn: fully convolutional segmentation built from scratch on NumPy or CuPy.

Every layer writes its forward *and* backward pass by hand; the API follows PyTorch's names,
argument orders, NCHW layout, weight layouts and ``state_dict`` keys.
"""

from . import backend, checks
from .backend import get_array_module, manual_seed, to_device, to_numpy
from .functional.parallel import get_num_threads, set_num_threads
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__version__ = "0.1.0"

__all__ = ["backend", "checks", "enable_grad", "get_array_module", "get_num_threads",
           "is_grad_enabled", "manual_seed", "no_grad", "set_grad_enabled", "set_num_threads",
           "to_device", "to_numpy"]
