"""The package's structure as rules: read with ``ast`` from the source, nothing imported.

- no import circles between the package's modules (function-local imports count too);
- no name beginning with ``_`` imported from another module;
- a function-local import of the package's own modules only where a heavy library must stay lazy,
  said in a comment on that line;
- no module over 500 lines, except a data-only module (tables and constants, no functions);
- the layers keep their fences: ``core/`` imports nothing of the package outside ``core/``;
  ``store/`` imports no step, definition or command; ``steps/`` no definition or command; ``defs/``
  no command.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cbi_pipeline"
MAX_LINES = 500
HEAVY = ("torch", "numba", "mlflow", "lightgbm", "xgboost", "dagster", "matplotlib")
# What each layer may import from the package (the package root holds settings and definitions).
LAYER_MAY_IMPORT = {
    "core": {"core"},
    "store": {"core", "store", "settings"},
    "steps": {"core", "store", "steps", "settings"},
    "defs": {"core", "store", "steps", "defs", "settings"},
    "cli": {"core", "store", "steps", "defs", "cli", "settings", "definitions"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    names: tuple[str, ...]
    line: int
    local: bool  # inside a function
    comment: str  # the comments on the statement's lines and on the line above it


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    found: list[Import] = []

    def comments(node: ast.stmt) -> str:
        """Comments on the statement's lines and on the block of imports and comments just
        above it (one reason may head a group of lazy imports)."""
        first = node.lineno - 1
        while first > 0 and lines[first - 1].strip().startswith(("#", "from ", "import ")):
            first -= 1
        span = lines[first : (node.end_lineno or node.lineno)]
        return " ".join(line.split("#", 1)[1] for line in span if "#" in line)

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.split(".")[0] == "cbi_pipeline":
                    comment = comments(child)
                    names = tuple(a.name for a in child.names)
                    # `from cbi_pipeline.x import y` where y is a module imports that module.
                    for n in names:
                        sub = f"{child.module}.{n}"
                        target = sub if sub in known else child.module
                        found.append(Import(name, target, (n,), child.lineno, local, comment))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "cbi_pipeline":
                        found.append(
                            Import(name, alias.name, (), child.lineno, local, comments(child))
                        )
            visit(child, inside)

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    mods = modules()
    known = set(mods)
    return [i for name, path in mods.items() for i in _imports(name, path, known)]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-loop): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return cycles


def _edges(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for i in imports:
        # Importing a submodule runs its package's __init__ first, but the __init__ files here hold
        # only docstrings; the edge that matters is to the module itself.
        if i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cbi_pipeline"


# --- the rules ----------------------------------------------------------------------------------


def test_the_package_has_no_import_circle():
    cycles = find_cycles(_edges(all_imports()))
    assert cycles == [], f"import circles: {cycles}"


def test_no_private_name_is_imported_from_another_module():
    offending = [
        f"{i.source}:{i.line} imports {n} from {i.target}"
        for i in all_imports()
        for n in i.names
        if n.startswith("_")
    ]
    assert offending == []


def test_function_local_imports_of_the_package_are_only_for_heavy_libraries_and_say_so():
    offending = [
        f"{i.source}:{i.line} imports {i.target} inside a function without a reason naming "
        f"one of {HEAVY}"
        for i in all_imports()
        if i.local and not any(lib in i.comment for lib in HEAVY)
    ]
    assert offending == []


def _is_data_only(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)
    return all(isinstance(node, allowed) for node in tree.body)


def test_no_module_is_over_500_lines_except_data_only_tables():
    too_long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and not _is_data_only(path)
    }
    assert too_long == {}


def test_each_layer_imports_only_the_layers_below_it():
    offending = [
        f"{i.source}:{i.line} ({layer(i.source)}) imports {i.target} ({layer(i.target)})"
        for i in all_imports()
        if layer(i.source) in LAYER_MAY_IMPORT
        and layer(i.target) not in LAYER_MAY_IMPORT[layer(i.source)]
    ]
    assert offending == []


# --- the checker itself, on tiny graphs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_find_cycles_finds_exactly_the_circles(edges, expected):
    assert find_cycles(edges) == expected


def test_the_checker_reads_local_private_and_submodule_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "cbi_pipeline"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from cbi_pipeline.core import b\n")
    (pkg / "core" / "b.py").write_text(
        "def f():\n    from cbi_pipeline.core.a import _hidden  # no reason\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    imports = all_imports()
    assert {(i.source, i.target, i.local) for i in imports} == {
        ("cbi_pipeline.core.a", "cbi_pipeline.core.b", False),
        ("cbi_pipeline.core.b", "cbi_pipeline.core.a", True),
    }
    assert find_cycles(_edges(imports)) == [["cbi_pipeline.core.a", "cbi_pipeline.core.b"]]
