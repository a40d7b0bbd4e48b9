"""Only minifcn/backend.py may import NumPy or CuPy, with one named exception.

Every other module gets its array module from the backend (``xp = get_array_module(x)``, or
``np`` from ``minifcn.backend`` for host-side code), which is what keeps the layers runnable on
both devices. A direct ``import numpy`` is how ``np.zeros`` creeps into GPU code paths.

The exception is ``minifcn/testing/strict_cupy.py``, the strict CuPy stand-in: it *is* an
array library (a fake ``cupy`` whose arrays wrap NumPy's), so it has to import NumPy, and it
is test tooling that no layer computes with. The rest of ``minifcn/testing`` (the assertions,
the strategies, the pytest plugin) keeps the rule like any other module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minifcn"
ALLOWED = {PACKAGE / "backend.py", PACKAGE / "testing" / "strict_cupy.py"}
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
    assert not offending, ("only minifcn/backend.py (and the CuPy stand-in "
                           "minifcn/testing/strict_cupy.py) may import numpy/cupy; take `np` or "
                           "`get_array_module` from minifcn.backend instead:\n"
                           + "\n".join(offending))


def test_the_one_exception_is_the_stand_in_and_the_rest_of_testing_keeps_the_rule():
    assert ALLOWED == {PACKAGE / "backend.py", PACKAGE / "testing" / "strict_cupy.py"}
    testing = sorted((PACKAGE / "testing").glob("*.py"))
    assert PACKAGE / "testing" / "assertions.py" in testing
    assert imported_array_libraries((PACKAGE / "testing" / "strict_cupy.py").read_text(),
                                    "strict_cupy.py"), "the stand-in no longer imports NumPy?"


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
