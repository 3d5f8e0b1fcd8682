"""The package's shape, checked from its source: one place chooses the device, the layers above
the kernel doors never name a kernel module, CuPy or NumPy's array functions, and no two
modules import each other (directly or around a circle)."""

from __future__ import annotations

import ast
import pathlib

import ember

ROOT = pathlib.Path(ember.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("ember",) + path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()
# The native extension modules: no source of theirs to parse, but imported by name all the same.
NATIVE = {"ember._C", "ember._cuda"}


def _is_package(name: str) -> bool:
    return (ROOT.joinpath(*name.split(".")[1:]) / "__init__.py").exists()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Every ember module ``name`` imports, anywhere in its source (function bodies too)."""
    package = name if _is_package(name) else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                module = f"{base}.{alias.name}"
                found.add(module if module in MODULES or module in NATIVE else base)
    return found


def test_only_the_backend_names_the_kernel_modules_and_cupy():
    allowed = {"ember.backend"}
    for name, tree in MODULES.items():
        imported = _imports(name, tree)
        bad = {m for m in imported if m in ("ember._C", "ember._cuda") or m.split(".")[0] == "cupy"}
        if name not in allowed:
            assert not bad, f"{name} imports {sorted(bad)}: reach kernels through ember.kernels and ember.backend"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_C", "_cuda") and name not in allowed:
                raise AssertionError(f"{name} uses .{node.attr} (line {node.lineno}): go through ember.backend")


def test_the_layers_above_the_doors_do_not_compute_with_numpy():
    # Differentiable ops and layers compute in their inputs' array namespace (NumPy, CuPy...).
    for name in ("ember.autograd.functions", "ember.autograd.shape_functions", "ember.autograd.nn_functions",
                 "ember.autograd.function", "ember.autograd.engine",
                 "ember.nn.functional", "ember.nn.layers", "ember.nn.init", "ember.nn.utils"):
        imported = _imports(name, MODULES[name])
        assert "numpy" not in imported, f"{name} imports NumPy"


def test_no_import_cycles():
    graph = {}
    for name, tree in MODULES.items():
        # A package importing its own submodules is how packages are assembled, not a cycle.
        graph[name] = {m for m in _imports(name, tree) if m in MODULES and m != name and not m.startswith(name + ".")}
    state, path = {}, []

    def visit(u):
        state[u] = "open"
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(v):] + [v]))
            if v not in state:
                visit(v)
        path.pop()
        state[u] = "done"

    for u in sorted(graph):
        if u not in state:
            visit(u)


def test_every_native_op_family_has_one_door():
    csrc_ops = {p.name for p in (ROOT.parents[1] / "csrc" / "ops").iterdir() if p.is_dir()} \
        if (ROOT.parents[1] / "csrc" / "ops").exists() else None
    doors = {p.stem for p in (ROOT / "kernels").glob("*.py") if not p.stem.startswith("_")}
    assert doors == {"gemm", "conv2d", "pool2d", "cross_entropy", "attention", "layer_norm", "eltwise", "optim_step",
                     "qmatmul"}
    if csrc_ops is not None:  # a source checkout: the doors mirror csrc/ops/
        assert doors == csrc_ops, f"kernels/ {sorted(doors)} vs csrc/ops/ {sorted(csrc_ops)}"
