"""The import graph of the package: no cycle, and the dependencies point the way the data flows.

Every ``import`` and ``from ... import`` under ``edgessl/`` counts, at module level or inside a function.
``import a.b.c`` is an edge to ``a.b.c``; a package's ``__init__`` is the package. Importing a submodule of
another package runs that package's ``__init__`` first, so such an import is also an edge to the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgessl"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, name: str) -> set[str]:
    """Every module a file imports, absolute, with relative imports resolved against ``name``."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)  # from pkg import submodule
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: package modules it imports}``, parents of an imported submodule included (see above)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for target in imported_names(path, name):
            if target not in files:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                # a package this module is inside of is already being imported: no edge
                if parent in files and not (name == parent or name.startswith(parent + ".")):
                    edges.add(parent)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def all_imports() -> dict[str, set[str]]:
    """``{module: every module it imports}``, third-party ones included."""
    return {module_name(p): imported_names(p, module_name(p)) for p in sorted(ROOT.rglob("*.py"))}


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import a.b.c\nfrom . import sib\ndef f():\n    from ..up import thing\n    import torch.nn\n")
    assert imported_names(f, "edgessl.pkg.m") == {
        "a.b.c", "edgessl.pkg", "edgessl.pkg.sib", "edgessl.up", "edgessl.up.thing", "torch.nn"
    }  # fmt: skip
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_a_cycle_through_a_package_init_and_a_function_is_found(tmp_path):
    """The cycle this package once had: the loaders' package imported the generator inside load(), and the
    generator imported the types, a submodule of that package (whose __init__ runs first)."""
    pkg = tmp_path / "edgessl"
    (pkg / "datasets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "datasets" / "__init__.py").write_text("from .types import T\ndef load():\n    from edgessl.synthetic import g\n")
    (pkg / "datasets" / "types.py").write_text("T = 1\n")
    (pkg / "synthetic.py").write_text("from edgessl.datasets.types import T\ndef g():\n    return T\n")
    assert find_cycle(import_graph(pkg)) == ["edgessl.datasets", "edgessl.synthetic", "edgessl.datasets"]
    (pkg / "datasets" / "__init__.py").write_text("from .types import T\n")
    assert find_cycle(import_graph(pkg)) is None


def test_no_import_cycle():
    graph = import_graph()
    assert "edgessl.datasets" in graph and "edgessl.synthetic" in graph  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("side", ["edgessl.trainer", "edgessl.export"])
def test_trainer_and_export_use_only_the_bundle_format_of_the_runtime(side):
    # the runtime's files: the bundle, and the user state with its mounting (export-c --state turns the C stream)
    allowed = {"edgessl.edge_runtime.bundle", "edgessl.edge_runtime.enroll", "edgessl.edge_runtime.mounting"}
    bad = {
        f"{mod} imports {target}"
        for mod, targets in all_imports().items()
        if mod == side or mod.startswith(side + ".")
        for target in targets
        if (target == "edgessl.edge_runtime" or target.startswith("edgessl.edge_runtime."))
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    }
    assert not bad, f"{side} reaches into the runtime beyond its bundle format: {sorted(bad)}"


@pytest.mark.parametrize("side", ["edgessl.edge_runtime", "edgessl.firmware_bridge"])
def test_device_side_never_imports_torch_or_the_training_side(side):
    forbidden = ("torch", "edgessl.trainer", "edgessl.export")
    bad = {
        f"{mod} imports {target}"
        for mod, targets in all_imports().items()
        if mod == side or mod.startswith(side + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    }
    assert not bad, f"{side} must run without torch and the trainer: {sorted(bad)}"
