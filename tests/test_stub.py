"""python/ember/_C.pyi against ember._C itself: the same functions, with the same parameter names
in the same order (pybind11 writes each function's real signature as the first line of its
docstring), and the same read-only properties."""

import ast
import pathlib

import pytest

from ember import _C

STUB = pathlib.Path(_C.__file__).parent / "_C.pyi"
if not STUB.exists():  # an editable install loads the module from the build tree
    STUB = pathlib.Path(__file__).resolve().parents[1] / "python" / "ember" / "_C.pyi"


def parameters(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]


def stub_functions() -> dict[str, list[str]]:
    """Each function's parameters, and each class's methods' as "Class.method"."""
    tree = ast.parse(STUB.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = parameters(node)
        elif isinstance(node, ast.ClassDef):
            found[node.name] = []
            found.update({f"{node.name}.{m.name}": parameters(m) for m in node.body if isinstance(m, ast.FunctionDef)})
    return found


def native_parameters(fn) -> list[str]:
    """Parameter names from pybind11's signature line, ``name(a: T, b: U = 1) -> R``."""
    line = fn.__doc__.splitlines()[0]
    assert line.startswith(fn.__name__ + "("), f"{fn.__name__}: no signature line in its docstring: {line!r}"
    params, depth, part = [], 0, ""
    for ch in line[len(fn.__name__) + 1:]:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            params.append(part)
            part = ""
        else:
            part += ch
    params.append(part)
    return [p.split(":")[0].split("=")[0].strip() for p in params if p.strip()]


def public_functions() -> list[str]:
    return sorted(name for name in dir(_C) if not name.startswith("_") and callable(getattr(_C, name)))


STUBBED = stub_functions()
PROPERTIES = {f"{c.name}.{m.name}" for c in ast.parse(STUB.read_text()).body if isinstance(c, ast.ClassDef)
              for m in c.body if isinstance(m, ast.FunctionDef)
              and any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list)}


def native(name: str):
    obj = _C
    for part in name.split("."):
        assert hasattr(obj, part), f"_C.pyi declares {name}, which ember._C does not have"
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(STUBBED))
def test_stub_matches_the_module(name):
    obj = native(name)
    if isinstance(obj, property):  # a read-only property: declared as one, with no setter
        assert STUBBED[name] == ["self"] and name in PROPERTIES and obj.fset is None
    elif isinstance(obj, type):
        methods = sorted(m for m in vars(obj) if not m.startswith("_") or m == "__init__")
        assert methods == sorted(n.split(".", 1)[1] for n in STUBBED if n.startswith(name + "."))
    else:
        assert native_parameters(obj) == STUBBED[name]


def test_every_function_is_in_the_stub():
    assert [name for name in public_functions() if name not in STUBBED] == []


def test_every_function_is_documented():
    # The docstring's first line is pybind11's signature; the description follows it.
    undocumented = [name for name in public_functions()
                    if len(getattr(_C, name).__doc__.strip().splitlines()) < 2]
    assert undocumented == []
