"""The package's imports flow one way: no module imports (at the top or lazily inside a function) a module that
imports it back, directly or through others. Imports under ``if TYPE_CHECKING:`` are annotations only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stylemix"


def module_imports() -> dict[str, set[str]]:
    """``{module: the stylemix modules it imports}`` over every file of the package (the package itself left out)."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module in names:
                deps.add(node.module)
            deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names)
        graph[name] = deps - {name, "stylemix"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                found.append(path[path.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, path + [dep])
        done.add(node)

    for name in sorted(graph):
        visit(name, [name])
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = module_imports()
    assert "stylemix.segment" in graph and "stylemix.parts.step" in graph["stylemix.segment"]
    assert cycles(graph) == []


def declared_names() -> dict[str, set[str]]:
    """``{module: its __all__}`` for every module of the package that declares one."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                found[name] = set(ast.literal_eval(node.value))
    return found


def test_every_module_declares_its_public_names():
    graph = module_imports()
    assert sorted(set(graph) - set(declared_names())) == []


def test_names_are_imported_from_the_module_that_declares_them():
    """Library and benchmark code imports each name from a module whose ``__all__`` lists it (or a submodule)."""
    declared, modules = declared_names(), set(module_imports())
    files = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "benchmarks").glob("*.py")]
    wrong = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in declared:
                wrong += [f"{path.name}:{node.lineno} {a.name} from {node.module}" for a in node.names
                          if a.name not in declared[node.module] and f"{node.module}.{a.name}" not in modules]
    assert wrong == []
