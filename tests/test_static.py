"""Only minifcn/backend.py may import NumPy or CuPy.

Every other module gets its array module from the backend (``xp = get_array_module(x)``, or
``np`` from ``minifcn.backend`` for host-side code), which is what keeps the layers runnable on
both devices. A direct ``import numpy`` is how ``np.zeros`` creeps into GPU code paths.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minifcn"
ALLOWED = {PACKAGE / "backend.py"}
ARRAY_LIBRARIES = {"numpy", "cupy", "cupyx", "cupy_backends"}


def imported_array_libraries(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, module) for each import of an array library in ``source``.

    Counts ``import``/``from`` statements and ``importlib.import_module("...")`` or
    ``__import__("...")`` calls with a literal name.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                             "__import__")):
            modules = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[0] in ARRAY_LIBRARIES]
    return found


def test_only_the_backend_imports_numpy_or_cupy():
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "backend.py" in files, f"no backend.py under {PACKAGE}"
    offending = [f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
                 for path in files if path not in ALLOWED
                 for line, module in imported_array_libraries(path.read_text(), str(path))]
    assert not offending, ("only minifcn/backend.py may import numpy/cupy; take `np` or "
                           "`get_array_module` from minifcn.backend instead:\n"
                           + "\n".join(offending))


@pytest.mark.parametrize("source", [
    "import numpy",
    "import numpy as np",
    "import os, numpy.linalg as la",
    "from numpy import zeros",
    "from numpy.lib.stride_tricks import as_strided",
    "import cupy",
    "from cupyx.scipy import ndimage",
    "def f():\n    import cupy as cp\n    return cp",
    "try:\n    import cupy\nexcept ImportError:\n    cupy = None",
    "import importlib\ncp = importlib.import_module('cupy')",
    "np = __import__('numpy')",
])
def test_the_check_sees_every_form_of_import(source):
    assert imported_array_libraries(source, "<test>")


@pytest.mark.parametrize("source", [
    "from .backend import np",
    "from minifcn.backend import get_array_module",
    "import numbers",
    "import numpyish",
    "x = 'import numpy'",
    "from . import numpy_helpers",
    "importlib.import_module('minifcn.backend')",
    "getattr(module, 'numpy')",
])
def test_the_check_ignores_other_imports(source):
    assert not imported_array_libraries(source, "<test>")
