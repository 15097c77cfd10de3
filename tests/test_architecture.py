"""docs/architecture.md, checked: the import order it documents is the order the code follows.

The page holds a table of parts, left to right (``| order | part | modules |``); this test parses it, reads every
import statement of every module of the library with ``ast`` (module level *and* inside functions: a lazy import
that dodges a circle is still a circle), and fails on

* a module the table does not place (a new module must be given its part);
* an import of a part further right in the order (lazy imports included);
* any circle between modules (lazy imports included);
* a private name (``_x``) imported from another module;
* the device side (every part left of ``converters``) reaching a workstation module.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

DOC = REPO / "docs" / "architecture.md"
ROOTS = {"edgepose": REPO / "edgepose", "edgepose.converters": REPO / "converters",
         "edgepose.calibration_data": REPO / "calibration_data"}  # fmt: skip


# ------------------------------------------------------------------------------------- reading the code
def library_modules() -> dict[str, Path]:
    """Every module of the library by dotted name (``converters/`` is installed as ``edgepose.converters``)."""
    out: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "edgepose" and parts[:1] in (["converters"], ["calibration_data"]):
                continue
            out[name] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int, bool]]:
    """(imported module, names taken from it, line, lazy) for every import of a library module in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name.split(".") if _is_package(path) else name.split(".")[:-1]
    lazy_lines = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "edgepose":
                    found.append((_longest_module(a.name, modules), [], node.lineno, node.lineno in lazy_lines))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "edgepose":
                continue
            names = [a.name for a in node.names]
            sub = [n for n in names if f"{target}.{n}" in modules]  # `from . import x`: x is a module
            rest = [n for n in names if n not in sub]
            for n in sub:
                found.append((f"{target}.{n}", [], node.lineno, node.lineno in lazy_lines))
            if rest or not sub:
                found.append((_longest_module(target, modules), rest, node.lineno, node.lineno in lazy_lines))
    return found


def _longest_module(dotted: str, modules: dict[str, Path]) -> str:
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or dotted


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, list[str], int, bool]]]:
    modules = library_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    records = []
    for name, path in modules.items():
        for target, names, line, lazy in imports_of(name, path, modules):
            if target != name and target in modules:
                edges[name].add(target)
                records.append((name, target, names, line, lazy))
        if _is_package(path) and "import_submodules(" in path.read_text():  # a registry folder imports them all
            for sub in modules:
                if sub.rsplit(".", 1)[0] == name and not sub.rsplit(".", 1)[1].startswith("_"):
                    edges[name].add(sub)
                    records.append((name, sub, [], 0, False))
    return edges, records


# ------------------------------------------------------------------------------------- reading the page
def documented_order() -> list[tuple[str, list[str]]]:
    """[(part, [module patterns])] in the page's order, from the table under "## Import order"."""
    text = DOC.read_text()
    section = text.split("## Import order", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        patterns = re.findall(r"`([^`]+)`", cells[2])
        rows.append((cells[1], patterns))
    return rows


def part_of(module: str, order: list[tuple[str, list[str]]]) -> tuple[int, str] | None:
    """(rank, part) of a module; the most specific pattern wins (``edgepose.bench.*`` < ``edgepose.bench.x``)."""
    best = None
    for rank, (part, patterns) in enumerate(order):
        for pat in patterns:
            if fnmatch.fnmatchcase(module, pat) or (pat.endswith(".*") and module == pat[:-2]):
                score = len(pat.rstrip("*"))
                if best is None or score > best[0]:
                    best = (score, rank, part)
    return None if best is None else (best[1], best[2])


# ------------------------------------------------------------------------------------- the checks
def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-loop): each is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan, recursive: the graph has a few hundred nodes
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_page_has_an_order_table():
    order = documented_order()
    assert len(order) >= 10, "docs/architecture.md: no '## Import order' table (| order | part | modules |)"
    assert [p for p, _ in order].count("converters") == 1


def test_every_module_has_a_documented_part():
    order = documented_order()
    missing = sorted(m for m in library_modules() if part_of(m, order) is None)
    assert not missing, f"modules docs/architecture.md does not place in the import order: {missing}"


def test_no_import_against_the_documented_order():
    order = documented_order()
    _, records = import_graph()
    bad = []
    for src, dst, _names, line, lazy in records:
        a, b = part_of(src, order), part_of(dst, order)
        if a is not None and b is not None and b[0] > a[0]:
            path = library_modules()[src].relative_to(REPO)
            bad.append(f"{path}:{line}: {src} ({a[1]}) imports {dst} ({b[1]}){' lazily' if lazy else ''}")
    assert not bad, "imports against docs/architecture.md's order:\n" + "\n".join(bad)


def test_no_import_circles_lazy_imports_included():
    edges, _ = import_graph()
    found = cycles(edges)
    assert not found, "import circles (function-level imports included):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_private_name_imported_across_modules():
    _, records = import_graph()
    bad = [f"{src}:{line} imports {n} from {dst}" for src, dst, names, line, _ in records
           for n in names if n.startswith("_") and not n.startswith("__")]  # fmt: skip
    assert not bad, "private names imported from other modules:\n" + "\n".join(bad)


def test_the_device_side_never_reaches_the_workstation_side():
    order = documented_order()
    edges, _ = import_graph()
    ws = next(rank for rank, (part, _) in enumerate(order) if part == "converters")
    device = [m for m in edges if (p := part_of(m, order)) is not None and p[0] < ws]

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in edges.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    bad = sorted(m for m in device if any(x.startswith("edgepose.converters") for x in reach(m)))
    assert not bad, f"device-side modules that reach edgepose.converters: {bad}"


def test_the_torch_model_is_imported_lazily_on_the_device_side():
    """``edgepose.models`` imports torch: a device-side module may import it only inside a function."""
    order = documented_order()
    ws = next(rank for rank, (part, _) in enumerate(order) if part == "converters")
    _, records = import_graph()
    bad = [f"{src}:{line}" for src, dst, _n, line, lazy in records
           if dst == "edgepose.models" and not lazy and src != "edgepose.models"
           and (p := part_of(src, order)) is not None and p[0] < ws]  # fmt: skip
    assert not bad, f"device-side modules importing the torch model at module level: {bad}"


# ------------------------------------------------------------------------------------- the checker checks
@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_the_circle_finder(edges, expected):
    assert cycles(edges) == expected


def test_lazy_and_relative_imports_are_read(tmp_path):
    """A function-level relative import is an edge, marked lazy, resolved to the module (not the package)."""
    pkg = tmp_path / "edgepose" / "p"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    from .b import _g, h\n    from edgepose.p import a\n")
    (pkg / "b.py").write_text("")
    modules = {"edgepose.p": pkg / "__init__.py", "edgepose.p.a": pkg / "a.py", "edgepose.p.b": pkg / "b.py"}
    got = imports_of("edgepose.p.a", pkg / "a.py", modules)
    assert ("edgepose.p.b", [], 1, False) in got
    assert ("edgepose.p.b", ["_g", "h"], 4, True) in got
    assert ("edgepose.p.a", [], 5, True) in got
