"""Stateless forward/backward pairs: ``op_forward(...) -> (y, cache)``,
``op_backward(dy, cache) -> gradients``. The layers in ``minifcn.nn`` wrap these."""
