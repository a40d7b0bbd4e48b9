"""Layers: thin stateful wrappers over ``minifcn.functional`` with PyTorch's signatures."""

from .module import Identity, Module, Parameter, Sequential
