"""``Module`` and ``Parameter``: the bookkeeping every layer shares.

A module registers what it owns by plain attribute assignment, as in PyTorch:
``self.weight = Parameter(...)`` makes a parameter, ``self.register_buffer("running_mean",
...)`` a buffer, ``self.conv1 = Conv2d(...)`` a child module. From that registry come
``parameters()``, ``state_dict()`` (PyTorch's key names: ``conv1.weight``,
``bn1.running_mean``, ``bn1.num_batches_tracked``), ``to(device, dtype)``, ``train()``
and ``eval()``.

Unlike PyTorch there is no autograd: every module writes ``backward(dy) -> dx`` by hand.
``backward`` *adds* into each parameter's ``.grad`` (so a parameter used twice collects
both contributions) and never writes into its arguments or its cache.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator

from .. import backend
from ..backend import get_array_module, is_array, to_device, to_numpy
from ..checks import check_cache, check_grad, check_same_device
from ..grad_mode import NO_GRAD_CACHE, is_grad_enabled

__all__ = ["Module", "Parameter", "RemovableHandle", "Sequential", "Identity", "accepts_unbatched",
           "trace_calls"]

# Callbacks that want to see every module call (``summary`` uses this to follow tensors
# through any model, skip connections included). Empty in ordinary use.
_call_observers: list[Callable] = []


@contextlib.contextmanager
def trace_calls(observer: Callable) -> Iterator[None]:
    """Within the block, ``observer(module, inputs, output)`` runs after every module call."""
    _call_observers.append(observer)
    try:
        yield
    finally:
        _call_observers.remove(observer)


class Parameter:
    """A trainable array ``data`` with its accumulated gradient ``grad`` (same shape).

    ``requires_grad=False`` freezes it: layers skip its gradient and optimizers skip it.
    """

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data`` (and of ``grad``), as a tuple."""
        return tuple(self.data.shape)

    @property
    def dtype(self):
        """The dtype of ``data``."""
        return self.data.dtype

    def zero_grad(self) -> None:
        """Set ``grad`` to zeros, in place (backward adds into it)."""
        self.grad[...] = 0.0

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{frozen})"


class RemovableHandle:
    """What ``register_full_backward_hook`` returns: ``handle.remove()`` takes the hook off."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


def _firing_backward_hooks(backward):
    """``backward`` followed by the module's backward hooks, which see ``(dx,)`` and
    ``(dy,)``. Only the outermost call of a module fires them: a subclass whose backward
    calls ``super().backward`` is one backward, not two."""

    @functools.wraps(backward)
    def run(self, *args, **kwargs):
        if not is_grad_enabled():
            where = getattr(self, "_where", type(self).__name__)
            raise RuntimeError(f"{where() if callable(where) else where}: backward inside "
                               f"minifcn.no_grad(), where forwards keep nothing for it; leave "
                               f"the no_grad block first")
        hooks = self.__dict__.get("_backward_hooks")
        if not hooks or self.__dict__.get("_in_backward"):
            return backward(self, *args, **kwargs)
        object.__setattr__(self, "_in_backward", True)
        try:
            dx = backward(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_in_backward", False)
        for hook in list(hooks.values()):
            replaced = hook(self, (dx,), tuple(args[:1]) or tuple(kwargs.values())[:1])
            if replaced is not None:
                dx = replaced[0]
        return dx

    return run


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` (cache what backward needs) and ``backward(dy)``
    (return ``dx``, add into parameter grads). ``__call__`` is ``forward``.
    """

    training: bool

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Every backward a subclass writes fires the module's backward hooks when it is
        # done (register_full_backward_hook); without hooks it costs one dict lookup.
        if "backward" in cls.__dict__:
            cls.backward = _firing_backward_hooks(cls.__dict__["backward"])

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def register_full_backward_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` each time this module's backward
        has finished, as PyTorch's hook of the same name: ``grad_input`` is ``(dx,)``,
        ``grad_output`` is ``(dy,)``. By then the module has added its parameters'
        gradients into ``.grad``, which is what DistributedDataParallel waits for. A hook
        may return a tuple ``(new_dx,)`` to replace ``dx``; it must not change its
        arguments."""
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}.register_full_backward_hook: expected a "
                            f"callable, got {type(hook).__name__}")
        hooks = self.__dict__.get("_backward_hooks")
        if hooks is None:
            hooks = OrderedDict()
            object.__setattr__(self, "_backward_hooks", hooks)
        key = max(hooks, default=-1) + 1
        hooks[key] = hook
        return RemovableHandle(hooks, key)

    # --- registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # a new array for a buffer stays a buffer
            return
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """A non-trainable array in the state_dict (running statistics, counters).

        Later assignments (``self.running_mean = new``) replace the array and keep it a
        buffer. ``None`` registers nothing in the state_dict, as in PyTorch.
        """
        setattr(self, name, array)
        self._buffers[name] = True  # the value lives on the attribute; this keeps order

    def add_module(self, name: str, module: Module) -> None:
        """Register ``module`` as the child ``name`` (the same as ``self.name = module``;
        for names that are not identifiers, such as Sequential's "0", "1", ...)."""
        setattr(self, name, module)

    # --- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module (name ``prefix``, "" by default) and
        every module below it, depth first in registration order."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every module below it (``named_modules`` without the names)."""
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator[Module]:
        """The direct children only, in registration order."""
        yield from self._modules.values()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, Parameter)`` for every parameter below this module, with the
        keys of ``state_dict`` ("0.weight", "encoder.stage1.conv.bias")."""
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> Iterator[Parameter]:
        """Every Parameter below this module (what an optimizer is given)."""
        for _, param in self.named_parameters():
            yield param

    def _local_buffers(self) -> Iterator[tuple[str, object]]:
        """This module's own buffers, skipping those set to None (absent, as in PyTorch)."""
        for name in self._buffers:
            array = getattr(self, name)
            if array is not None:
                yield name, array

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        """``(dotted name, array)`` for every buffer below this module (running statistics,
        counters); a buffer set to None is left out, as in PyTorch."""
        for prefix, module in self.named_modules():
            for name, array in module._local_buffers():
                yield (f"{prefix}.{name}" if prefix else name), array

    def num_parameters(self, trainable_only: bool = False) -> int:
        """The number of parameter entries below this module; with ``trainable_only``,
        those of parameters with ``requires_grad`` only."""
        return sum(int(p.data.size) for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    # --- modes and gradients ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set ``training`` to ``mode`` on this module and every module below it (dropout
        drops, batch norm uses the batch's statistics); returns ``self``."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """``train(False)``: dropout passes its input through, batch norm uses its running
        statistics; returns ``self``."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to zeros (backward adds into it: call this once
        per step)."""
        for param in self.parameters():
            param.zero_grad()

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (``False``) or unfreeze every parameter below this module."""
        for param in self.parameters():
            param.requires_grad = bool(requires_grad)
        return self

    # --- device and dtype ---------------------------------------------------------------
    @property
    def device(self) -> str:
        """Where the first parameter or buffer lives (``"cpu"`` for a module with none)."""
        for param in self.parameters():
            return backend.device_of(param.data)
        for _, array in self.named_buffers():
            return backend.device_of(array)
        return "cpu"

    def to(self, device: str | None = None, dtype=None) -> Module:
        """Move (``device``) and/or cast (``dtype``, floating arrays only) every parameter,
        gradient and buffer, in place; returns ``self`` as PyTorch does."""
        if device is not None:
            backend.array_module(device)  # validates the name and that the device exists
        if dtype is not None:
            dtype = backend.resolve_dtype(dtype)

        def convert(array):
            if device is not None:
                array = to_device(array, device)
            if dtype is not None and array.dtype.kind == "f" and array.dtype != dtype:
                array = array.astype(dtype)
            return array

        for module in self.modules():
            for param in module._parameters.values():
                param.data = convert(param.data)
                param.grad = convert(param.grad)
            for name, array in module._local_buffers():
                object.__setattr__(module, name, convert(array))
            module._after_to(device, dtype)
        return self

    def _after_to(self, device, dtype) -> None:
        """Hook for modules that hold device-bound state besides parameters and buffers."""

    # --- state_dict ---------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Parameters then buffers of each module, in registration order, with PyTorch's
        dotted keys. The values are the module's own arrays (not copies), as in PyTorch."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                state[dot + name] = param.data
            for name, array in module._local_buffers():
                state[dot + name] = array
        return state

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers, keeping their device and
        dtype. Accepts NumPy arrays, CuPy arrays, or anything ``numpy.asarray`` takes (e.g.
        ``{k: v.numpy() for k, v in torch_model.state_dict().items()}``).

        A missing, unexpected or mis-shaped key is a ``ValueError`` that lists them all
        (missing and unexpected are tolerated when ``strict=False``; shapes never are).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [f"{k}: expected {tuple(own[k].shape)}, got {array_shape(state_dict[k])}"
                      for k in own if k in state_dict
                      and array_shape(state_dict[k]) != tuple(own[k].shape)]
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"shape mismatch for {mismatched}")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))

        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                if dot + name in state_dict:
                    param.data = _like(state_dict[dot + name], param.data)
            for name, current in module._local_buffers():
                if dot + name in state_dict:
                    object.__setattr__(module, name, _like(state_dict[dot + name], current))

    # --- forward / backward -------------------------------------------------------------
    def forward(self, x):
        """Compute the output from ``x`` and keep what ``backward`` needs. Subclasses
        write it; ``module(x)`` calls it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        """Given ``dy``, the gradient of the loss with respect to the last forward's
        output: add the parameters' gradients into their ``.grad`` and return ``dx``, the
        gradient with respect to the input. Subclasses write it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        if "input" in kwargs and not args and (
                "input" not in inspect.signature(self.forward).parameters):
            # PyTorch's keyword for a layer's input (linear(input=x)), which minifcn's
            # forward calls x (the loss: logits): the same, first, argument
            args = (kwargs.pop("input"),)
        output = self.forward(*args, **kwargs)
        if not is_grad_enabled():
            self._forget_backward_state()
        for observer in _call_observers:
            observer(self, args, output)
        return output

    def _forget_backward_state(self) -> None:
        """Under ``no_grad``, right after this module's forward: drop what it kept for its
        backward (a layer keeps it in ``_cache``), so that it is freed now, and mark the
        cache so that a backward says why it cannot run."""
        if "_cache" in self.__dict__:
            object.__setattr__(self, "_cache", NO_GRAD_CACHE)

    # --- printing -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown in the module's repr, as in ``Conv2d(3, 16, kernel_size=(3,
        3), ...)``; "" here."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): {child!r}".replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not lines else head + "\n  " + "\n  ".join(lines) + "\n)"


def array_shape(value) -> tuple[int, ...]:
    """The shape of an array of any backend, or of anything NumPy can read (lists)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else tuple(backend.np.shape(value))


def _like(value, reference):
    """``value`` as a fresh array with ``reference``'s device and dtype."""
    xp = get_array_module(reference)
    host = value if backend.is_array(value) else backend.np.asarray(value)
    return xp.asarray(to_numpy(host).astype(reference.dtype, copy=True))


def accepts_unbatched(cls):
    """Class decorator: the layer also takes one unbatched sample (C, H, W), as PyTorch's
    image layers do, and answers it unbatched.

    The layer's own ``forward``/``backward`` are written for (N, C, H, W) only. For a 3-D
    ``x`` the wrapped ``forward`` adds the batch axis (also to any other 3-D array argument,
    such as MaxUnpool2d's ``indices``), calls the layer on (1, C, H, W) and removes the axis
    again from the output (from each array of a tuple output, such as ``(y, indices)``); the
    wrapped ``backward`` checks ``dy`` against that unbatched output, adds the axis to it
    and removes it from ``dx``. A layer can read ``self._unbatched`` during its forward
    (ConvTranspose2d does, for its ``output_size``). Any other rank is refused naming both
    layouts. The layer must have a ``_where`` string naming it for messages.
    """
    forward, backward = cls.forward, cls.backward

    @functools.wraps(forward)
    def wrapped_forward(self, x, *args, **kwargs):
        if is_array(x) and x.ndim not in (3, 4):
            raise ValueError(f"{self._where}: expected x of rank 3 (C, H, W) or 4 "
                             f"(N, C, H, W), got x of shape {tuple(x.shape)}")
        unbatched = is_array(x) and x.ndim == 3
        object.__setattr__(self, "_unbatched", unbatched)
        if not unbatched:
            return forward(self, x, *args, **kwargs)
        for i, a in enumerate(args, start=1):
            if is_array(a) and a.ndim != 3:
                raise ValueError(f"{self._where}: x is one unbatched sample of shape "
                                 f"{tuple(x.shape)}, but argument {i} has shape "
                                 f"{tuple(a.shape)}; give both with or both without the "
                                 f"batch axis")
        args = tuple(a[None] if is_array(a) else a for a in args)
        output = forward(self, x[None], *args, **kwargs)
        output = tuple(o[0] for o in output) if isinstance(output, tuple) else output[0]
        y = output[0] if isinstance(output, tuple) else output
        object.__setattr__(self, "_unbatched_output", (tuple(y.shape), y.dtype))
        return output

    @functools.wraps(backward)
    def wrapped_backward(self, dy):
        if not getattr(self, "_unbatched", False):
            return backward(self, dy)
        shape, dtype = self._unbatched_output
        check_grad(self._where, dy, shape, dtype)
        dx = backward(self, dy[None])
        return None if dx is None else dx[0]

    cls.forward, cls.backward = wrapped_forward, wrapped_backward
    return cls


class WeightedLayer(Module):
    """What layers with a ``weight`` and an optional ``bias`` (Conv2d, ConvTranspose2d,
    Linear) share: a backward through their functional ``_backward_fn(dy, cache,
    output_mask)``, which skips the products of frozen parameters.

    Subclasses set ``_backward_fn`` and ``_where``, and in ``forward`` keep
    ``self._cache = (functional cache, output shape)``.
    """

    _backward_fn = None
    needs_input_grad = True
    """False: ``backward`` computes no ``dx`` (its products skipped) and returns None.
    For a model's first layer, whose input is the image: nothing needs d(image)."""

    def reset_parameters(self, generator: backend.Generator | None = None) -> None:
        """PyTorch's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in
        the weight's inputs per output (I for Linear, C/G*KH*KW for a convolution).

        (PyTorch writes it as ``kaiming_uniform_(weight, a=sqrt(5))``, which is the same.)
        """
        from . import init  # init needs Parameter from this module: imported on use

        generator = generator or backend.Generator()
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight.shape)
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound, generator=generator)

    @staticmethod
    def _release(cache) -> None:
        """Called once backward is done with ``cache`` (convolutions recycle buffers)."""

    def _forget_backward_state(self) -> None:
        """Under no_grad the cache is done with as soon as forward returns: its buffers go
        back to the workspace now, for the next layer's im2col to reuse."""
        cache = self.__dict__.get("_cache")
        if isinstance(cache, tuple):
            self._release(cache[0])
        super()._forget_backward_state()

    def backward(self, dy):
        """``dx`` for the ``x`` of the last forward; adds into ``weight.grad`` and
        ``bias.grad`` (frozen parameters are skipped, their matrix products too)."""
        check_cache(self._where, self._cache)
        cache, output_shape = self._cache
        check_grad(self._where, dy, output_shape, self.weight.dtype)
        check_same_device(self._where, dy, self.weight.data)
        output_mask = (self.needs_input_grad, self.weight.requires_grad,
                       self.bias is not None and self.bias.requires_grad)
        dx, dweight, dbias = self._backward_fn(dy, cache, output_mask)
        self._release(cache)
        if dweight is not None:
            self.weight.grad += dweight
        if dbias is not None:
            self.bias.grad += dbias
        self._cache = None
        return dx


class Sequential(Module):
    """Modules applied in order; ``backward`` walks them in reverse."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {index} is a {type(module).__name__}, "
                                f"not a Module")
            self.add_module(str(index), module)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def forward(self, x):
        """Each module's forward in turn, each given the last one's output."""
        for module in self:
            x = module(x)
        return x

    def backward(self, dy):
        """Each module's backward in reverse order; returns the first module's ``dx``."""
        for module in reversed(list(self)):
            dy = module.backward(dy)
        return dy


class Identity(Module):
    """Returns its input; its gradient passes through unchanged."""

    def forward(self, x):
        """Returns ``x`` itself."""
        return x

    def backward(self, dy):
        """Returns ``dy`` itself."""
        return dy
