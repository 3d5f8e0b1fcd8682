"""python/ember/_C.pyi against ember._C itself: the same functions, with the same parameter names
in the same order (pybind11 writes each function's real signature as the first line of its
docstring)."""

import ast
import pathlib

import pytest

from ember import _C

STUB = pathlib.Path(_C.__file__).parent / "_C.pyi"
if not STUB.exists():  # an editable install loads the module from the build tree
    STUB = pathlib.Path(__file__).resolve().parents[1] / "python" / "ember" / "_C.pyi"


def stub_functions() -> dict[str, list[str]]:
    tree = ast.parse(STUB.read_text())
    return {node.name: [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            for node in tree.body if isinstance(node, ast.FunctionDef)}


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


@pytest.mark.parametrize("name", sorted(STUBBED))
def test_stub_matches_the_module(name):
    assert hasattr(_C, name), f"_C.pyi declares {name}, which ember._C does not have"
    assert native_parameters(getattr(_C, name)) == STUBBED[name]


def test_every_function_is_in_the_stub():
    assert [name for name in public_functions() if name not in STUBBED] == []


def test_every_function_is_documented():
    # The docstring's first line is pybind11's signature; the description follows it.
    undocumented = [name for name in public_functions()
                    if len(getattr(_C, name).__doc__.strip().splitlines()) < 2]
    assert undocumented == []
