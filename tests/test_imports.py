"""The import graph of src/gauge: no cycles, no upward imports (docs: /DESIGN.md "Layers").

Every module under src/gauge is parsed with `ast` (nothing is imported), and every
import statement in it is an edge: module level, inside functions and methods, inside
`try`, and `importlib.import_module("gauge....")` / `__import__` with a literal name.

How an import becomes an edge:

- Relative imports are resolved against the importing module's package.
- `from pkg import name` is an edge to `pkg.name` when that is a module (a submodule
  import), and to `pkg` (its `__init__`) otherwise. So `from gauge.model.rate import
  keys` is an edge to `gauge.model.rate.keys`, while `from gauge.model.rate import X`
  in `gauge.model.rate.keys` is an edge to the package `__init__` - a cycle when that
  `__init__` imports `keys`.
- `import a.b.c` is an edge to `a.b.c`, and also to the packages Python initialises
  on the way (`a`, `a.b`: their `__init__` runs first) - except the importer's own
  packages, which are already initialised (or initialising) when it runs. So a
  package `__init__` importing its submodules and a submodule importing a sibling is
  no cycle, while `gauge.model.api` importing `gauge.model.rate.adaptive` depends on
  `gauge.model.rate`'s `__init__` too (`~>` in the failure message). The same holds
  for the package named in `from pkg import name`.
- Names looked up at run time (lazy `__getattr__` tables, `import_module(variable)`)
  cannot be followed statically and are not edges; the `if TYPE_CHECKING:` mirror that
  such modules carry for type checkers is what the layer rule sees of them.

Which edges count for which rule:

- Cycles: only imports that execute at run time - module level or inside a function.
  An import under `if TYPE_CHECKING:` never executes, so it cannot take part in an
  import cycle and is not counted. A function-level import does count: moving an
  import into a function hides a cycle from Python's loader, it does not remove it.
- Layers: every edge, `TYPE_CHECKING` ones included (a type is a dependency too).
  `gauge.model` imports nothing from `gauge.evaluation`, `gauge.serve`, `gauge.cli`;
  `gauge.evaluation` nothing from `gauge.serve`, `gauge.cli`; `gauge.serve` nothing
  from `gauge.cli`. A top-level module (`gauge.scorer`, `gauge.log`, ...) that imports
  from a layer belongs to that layer for this rule (it re-exports it). Nothing outside
  `gauge.testing` imports `gauge.testing`: it is test support, not library code.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT_PACKAGE = "gauge"

# Layers, lowest first; a module may import from its own layer and the ones below.
LAYERS: tuple[str, ...] = ("gauge.model", "gauge.evaluation", "gauge.serve", "gauge.cli")
TESTING = "gauge.testing"


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `source`'s line `line`."""

    source: str
    target: str
    line: int
    type_only: bool = False
    implicit: bool = False  # a package whose __init__ runs on the way to the imported module

    def __str__(self) -> str:
        kind = " (TYPE_CHECKING)" if self.type_only else ""
        kind += " (its package __init__)" if self.implicit else ""
        return f"{self.source}:{self.line} -> {self.target}{kind}"


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def discover(src: Path = SRC, package: str = ROOT_PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of `package` under `src`."""
    modules: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `node`, with whether it sits under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, type_only
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _longest_known(name: str, modules: Mapping[str, object]) -> str | None:
    """`name` or its longest prefix that is a known module (`a.b.Attr` -> `a.b`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _targets(
    node: ast.AST, module: str, is_package: bool, modules: Mapping[str, object]
) -> list[str]:
    """The known modules that import node `node` in `module` loads (explicitly)."""
    found: list[str | None] = []
    if isinstance(node, ast.Import):
        found = [_longest_known(alias.name, modules) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            if node.level > 1:
                package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, node.module] if node.module else package)
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.append(submodule if submodule in modules else _longest_known(base, modules))
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (
            name in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found = [_longest_known(node.args[0].value, modules)]
    return [target for target in found if target is not None]


def module_edges(
    module: str, source: str, modules: Mapping[str, object], is_package: bool = False
) -> list[Edge]:
    """The import edges from `module`, whose code is `source`, to the known `modules`."""
    tree = ast.parse(source, filename=module)
    own = _packages(module, is_package)
    edges: dict[tuple[str, bool], Edge] = {}
    for node, type_only in _walk(tree):
        line = getattr(node, "lineno", 0)
        for target in _targets(node, module, is_package, modules):
            found = [Edge(module, target, line, type_only)]
            found += [
                Edge(module, package, line, type_only, implicit=True)
                for package in _packages(target, False)
                if package not in own and package in modules
            ]
            for edge in found:
                key = (edge.target, type_only)
                if edge.target == module:
                    continue
                # Keep the first line; an explicit import beats an implicit one.
                if key not in edges or (edge.implicit, line) < (
                    edges[key].implicit,
                    edges[key].line,
                ):
                    edges[key] = edge
    return sorted(edges.values(), key=lambda e: (e.target, e.type_only))


def _packages(module: str, is_package: bool) -> set[str]:
    """The packages Python initialises before `module` runs (`module` too, if a package)."""
    parts = module.split(".")
    own = {".".join(parts[:n]) for n in range(1, len(parts))}
    return own | {module} if is_package else own


def build_graph(src: Path = SRC, package: str = ROOT_PACKAGE) -> list[Edge]:
    """Every import edge among the modules of `package`."""
    modules = discover(src, package)
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges.extend(module_edges(name, path.read_text("utf-8"), modules, is_package))
    return edges


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    result.append(sorted(component))
    return result


def _shortest_cycle(graph: Mapping[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside `within` (start not repeated)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child not in within:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if child not in seen:
                seen.add(child)
                parent[child] = node
                queue.append(child)
    return []


def find_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Import cycles among run-time edges, each in import order.

    One shortest cycle through every module that is in a cycle (deduplicated), so each
    loop shows up on its own even when several loops share modules.
    """
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.type_only:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for component in _components(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        for start in component:
            cycle = _shortest_cycle(graph, start, members)
            if not cycle:
                continue
            first = cycle.index(min(cycle))
            canonical = tuple(cycle[first:] + cycle[:first])
            if canonical not in seen:
                seen.add(canonical)
                cycles.append(list(canonical))
    return sorted(cycles)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _own_layer(module: str) -> int | None:
    for rank, package in enumerate(LAYERS):
        if _in(module, package):
            return rank
    return None


def module_layers(edges: Iterable[Edge]) -> dict[str, int]:
    """Layer rank of every module; a top-level module takes the highest layer it imports."""
    edges = list(edges)
    layers: dict[str, int] = {}
    for edge in edges:
        for module in (edge.source, edge.target):
            rank = _own_layer(module)
            if rank is not None:
                layers[module] = rank
    changed = True
    while changed:
        changed = False
        for edge in edges:
            if _own_layer(edge.source) is not None or _in(edge.source, TESTING):
                continue
            rank = layers.get(edge.target)
            if rank is not None and rank > layers.get(edge.source, -1):
                layers[edge.source] = rank
                changed = True
    return layers


def layer_violations(edges: Iterable[Edge]) -> list[str]:
    """Upward imports and imports of gauge.testing from outside it, one line each."""
    edges = list(edges)
    layers = module_layers(edges)
    problems: list[str] = []
    for edge in edges:
        if edge.implicit:  # it comes with an explicit edge into the same package
            continue
        if _in(edge.target, TESTING) and not _in(edge.source, TESTING):
            problems.append(f"{edge}: only gauge.testing itself may import gauge.testing")
            continue
        own = _own_layer(edge.source)
        target = layers.get(edge.target)
        if own is None or target is None or target <= own:
            continue
        via = "" if _own_layer(edge.target) is not None else f" (re-exports {LAYERS[target]})"
        problems.append(f"{edge}{via}: {LAYERS[own]} must not import from {LAYERS[target]}")
    return sorted(problems)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> list[Edge]:
    return build_graph()


def _cycle_report(cycles: list[list[str]], edges: list[Edge]) -> str:
    """One line per cycle: `module:line ->` each import in turn, back to the first module.

    `~>` marks a package whose `__init__` runs because a submodule of it is imported.
    """
    runtime = {(e.source, e.target): e for e in edges if not e.type_only}
    lines = []
    for cycle in cycles:
        text = ""
        for source, target in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            edge = runtime[(source, target)]
            text += f"{source}:{edge.line} {'~>' if edge.implicit else '->'} "
        lines.append(f"  {text}{cycle[0]}")
    return "\n".join(lines)


def test_the_graph_covers_the_package(graph: list[Edge]) -> None:
    sources = {edge.source for edge in graph}
    # A parse that silently found nothing would make the rules below pass vacuously.
    assert len(discover()) > 50
    assert {"gauge.cli.main", "gauge.serve.app", "gauge.evaluation.runner"} <= sources
    assert any(_in(e.source, "gauge.serve") and _in(e.target, "gauge.model") for e in graph)
    assert any(
        e.source == "gauge.serve.app" and e.target == "gauge.serve.engines.base" for e in graph
    )


def test_no_import_cycles(graph: list[Edge]) -> None:
    cycles = find_cycles(graph)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) in src/gauge (module:line of each import; "
        "move the shared part into a lower module both can import):\n"
        + _cycle_report(cycles, graph)
    )


def test_imports_only_go_down(graph: list[Edge]) -> None:
    problems = layer_violations(graph)
    assert not problems, "upward imports in src/gauge:\n" + "\n".join(
        f"  {problem}" for problem in problems
    )


# --- the detector itself --------------------------------------------------------

_FAKE = {
    "gauge": "",
    "gauge.log": "from gauge.evaluation.journal import Journal\n",
    "gauge.model": "from gauge.model import a\n",
    "gauge.model.a": "from . import b\n",
    "gauge.model.b": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from gauge.serve.app import App\n"
        "    from gauge.model.a import A\n"
        "def f():\n"
        "    from gauge.model.c import C\n"
    ),
    "gauge.model.c": "import gauge.model.a\n",
    "gauge.model.d": "from gauge.log import Journal\n",
    "gauge.model.e": "from gauge.model import thing\n",
    "gauge.model.sub": "",
    "gauge.model.sub.x": "from .. import e\nfrom ..sub import y\n",
    "gauge.model.sub.y": "import importlib\nimportlib.import_module('gauge.testing.fake')\n",
    "gauge.evaluation.journal": "from gauge.cli import main\n",
    "gauge.cli": "",
    "gauge.cli.main": "from gauge.testing import fake\n",
    "gauge.testing": "from gauge.testing.fake import Fake\n",
    "gauge.testing.fake": "from gauge.model.a import A\n",
}


def _fake_graph() -> list[Edge]:
    packages = {"gauge", "gauge.model", "gauge.model.sub", "gauge.cli", "gauge.testing"}
    edges: list[Edge] = []
    for name, source in _FAKE.items():
        edges.extend(module_edges(name, source, _FAKE, is_package=name in packages))
    return edges


def test_detector_resolves_imports() -> None:
    pairs = {(e.source, e.target, e.type_only) for e in _fake_graph()}
    assert ("gauge.model", "gauge.model.a", False) in pairs  # `from pkg import submodule`
    assert ("gauge.model.a", "gauge.model.b", False) in pairs  # relative, level 1
    assert ("gauge.model.b", "gauge.model.c", False) in pairs  # inside a function
    assert ("gauge.model.b", "gauge.serve.app", True) not in pairs  # not a known module
    assert ("gauge.model.b", "gauge.model.a", True) in pairs  # under TYPE_CHECKING
    assert ("gauge.model.e", "gauge.model", False) in pairs  # a name: the package __init__
    assert ("gauge.model.sub.x", "gauge.model.e", False) in pairs  # relative, level 2
    assert ("gauge.model.sub.x", "gauge.model.sub.y", False) in pairs
    assert ("gauge.model.sub.y", "gauge.testing.fake", False) in pairs  # import_module


def test_detector_reports_cycles_in_order() -> None:
    edges = _fake_graph()
    # a -> b (relative) -> c (in a function) -> a; b -> a under TYPE_CHECKING is no cycle.
    assert find_cycles(edges) == [["gauge.model.a", "gauge.model.b", "gauge.model.c"]]
    assert "gauge.model.c:1 -> gauge.model.a" in _cycle_report(find_cycles(edges), edges)
    assert find_cycles([Edge("p.x", "p.y", 1, type_only=True), Edge("p.y", "p.x", 1)]) == []
    two_loops = [Edge(*pair, line=1) for pair in ("ab", "ba", "bc", "cb", "dd")]
    assert find_cycles(two_loops) == [["a", "b"], ["b", "c"], ["d"]]


def test_detector_counts_the_package_init_an_import_runs() -> None:
    fake = {
        "p": "",
        "p.pkg": "from p.pkg import a\nfrom p.other import f\n",
        "p.pkg.a": "from p.pkg.b import g\n",  # a sibling: p.pkg is its own package
        "p.pkg.b": "",
        "p.other": "\n\nfrom p.pkg.b import g\n",  # runs p.pkg's __init__ first
    }
    edges = [e for m, src in fake.items() for e in module_edges(m, src, fake, m in ("p", "p.pkg"))]
    assert Edge("p.other", "p.pkg", 3, implicit=True) in edges
    assert not any(e.source == "p.pkg.a" and e.target == "p.pkg" for e in edges)
    cycles = find_cycles(edges)
    assert cycles == [["p.other", "p.pkg"]]
    assert _cycle_report(cycles, edges) == "  p.other:3 ~> p.pkg:2 -> p.other"


def test_detector_reports_upward_imports() -> None:
    problems = layer_violations(_fake_graph())
    text = "\n".join(problems)
    # evaluation -> cli, model -> gauge.log (re-exports evaluation), testing from cli and model
    assert "gauge.evaluation.journal:1 -> gauge.cli.main" in text
    assert "gauge.model.d:1 -> gauge.log (re-exports gauge.evaluation)" in text
    assert "gauge.cli.main:1 -> gauge.testing.fake" in text
    assert "gauge.model.sub.y:2 -> gauge.testing.fake" in text
    assert len(problems) == 4, text
    model_to_serve = [Edge("gauge.model.x", "gauge.serve.app", 3, type_only=True)]
    assert layer_violations(model_to_serve) == [
        "gauge.model.x:3 -> gauge.serve.app (TYPE_CHECKING): "
        "gauge.model must not import from gauge.serve"
    ]


if __name__ == "__main__":  # python tests/test_imports.py: print the findings
    found = build_graph()
    print(_cycle_report(find_cycles(found), found))
    print("\n".join(layer_violations(found)))
