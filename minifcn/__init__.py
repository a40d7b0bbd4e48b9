"""minifcn: fully convolutional segmentation built from scratch on NumPy or CuPy.

Every layer writes its forward *and* backward pass by hand; the API follows PyTorch's names,
argument orders, NCHW layout, weight layouts and ``state_dict`` keys.
"""

from . import backend, checks
from .backend import get_array_module, manual_seed, to_device, to_numpy
from .functional.parallel import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["backend", "checks", "get_array_module", "get_num_threads", "manual_seed",
           "set_num_threads", "to_device", "to_numpy"]
