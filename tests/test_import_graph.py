"""The import graph of services/: dependencies point down, and no two packages need each other.

Read from the source with `ast` (nothing is imported), so an import inside a function counts as
much as one at the top: a lazy import still ties the two modules together.

Layers, lowest first (docs/errors.md and the README's layout section say the same):

0. `services.common` — settings, Kafka clients, Avro, dead letters, errors;
1. `services.ksql_server.{types,values,errors}` — the KSQL server's value types;
2. `services.ksql_server.formats` — the KSQL codecs;
3. `services.model_registry` — the one place the trainer and the scorer share;
4. every other service (broker, schema registry, KSQL server, producer, trainer, scorer, alerts);
5. `services.stack`, `services.pipeline`, `services.console`, `services.cli`,
   `services.bench_cli`, `services.ksql_conformance` — the top (the console shows every service:
   KSQL, registry, scorer; the conformance harness drives the KSQL server's engine).

A module may import from its own layer or a lower one, never a higher one. Cycles are checked
between units: a package whose modules all sit in one directory is one unit; a module that sits
beside subpackages (`services/cli.py`, `services/common/kafka.py`, `services/ksql_server/engine.py`)
is a unit of its own, as are the layer-1 modules.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import services

ROOT = Path(services.__file__).parent
LAYER_1 = {
    "services.ksql_server.types",
    "services.ksql_server.values",
    "services.ksql_server.errors",
}
TOP = {"stack", "pipeline", "console", "cli", "bench_cli", "ksql_conformance"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, is a package's __init__)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()
PACKAGES = {name for name, (_path, is_package) in MODULES.items() if is_package}


def _resolve(name: str) -> str | None:
    """The module of services/ that `name` (a module, or a name inside one) refers to."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imported(module: str) -> set[str]:
    path, is_package = MODULES[module]
    package = module if is_package else module.rsplit(".", 1)[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                inner = f"{source}.{alias.name}"
                names.append(inner if inner in MODULES else source)
    found = {_resolve(name) for name in names if name.split(".")[0] == "services"}
    return {name for name in found if name is not None and name != module}


EDGES = {module: _imported(module) for module in MODULES}


def layer(module: str) -> int:
    if module == "services.common" or module.startswith("services.common."):
        return 0
    if module in LAYER_1:
        return 1
    if module.startswith("services.ksql_server.formats"):
        return 2
    if module.startswith("services.model_registry"):
        return 3
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in TOP:
        return 5
    return 4


def unit(module: str) -> str:
    """The node of the cycle check that `module` belongs to (see the module docstring)."""
    if module in LAYER_1 or module in PACKAGES:
        return module
    parent = module.rsplit(".", 1)[0]
    mixed = any(p.startswith(parent + ".") for p in PACKAGES)
    return module if mixed else parent


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_parser_sees_imports() -> None:
    assert "services.common.errors" in EDGES["services.cli"]
    assert "services.ksql_server.types" in EDGES["services.ksql_server.formats.base"]
    assert layer("services.ksql_server.formats.avro") == 2 and layer("services.cli") == 5


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in sorted(EDGES.items())
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in EDGES.items():
        for target in targets:
            if unit(module) != unit(target):
                graph[unit(module)].add(unit(target))
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" ↔ ".join(cycle) for cycle in cycles)


def test_services_do_not_import_each_other() -> None:
    """Services meet in the shared layers (common, model_registry), not in each other's code."""
    crossing = [
        f"{module} imports {target}"
        for module, targets in sorted(EDGES.items())
        for target in sorted(targets)
        if layer(module) == layer(target) == 4 and module.split(".")[1] != target.split(".")[1]
    ]
    assert not crossing, "\n".join(crossing)


def test_the_ksql_server_keeps_its_compiler_layers_apart() -> None:
    """A statement travels parse → plan → compile → run (docs/ksql-engine.md): the expression
    compiler and the DDL rules do not reach up into the planner's or the runtime's code, and the
    server never imports its conformance harness (a test tool that drives it from above)."""
    rules = {
        "services.ksql_server.expressions": ("services.ksql_server.planner",),
        "services.ksql_server.ddl": ("services.ksql_server.runtime",),
        "services.ksql_server": ("services.ksql_conformance",),
    }
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(EDGES.items())
        for prefix, banned in rules.items()
        if module == prefix or module.startswith(prefix + ".")
        for target in sorted(targets)
        if any(target == b or target.startswith(b + ".") for b in banned)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected
