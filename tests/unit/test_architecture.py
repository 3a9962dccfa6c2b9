"""The import graph is the architecture in the README picture (issue 14).

Every ``import sparktf...`` in the package, at module level or inside a function, is an
edge. The packages sit in layers, lowest first; an edge may point down or sideways
within a layer's own package, never up, and never between two packages of one layer
(so training does not import evaluation, nor evaluation training). Only the runner
and the CLI import the stage modules, and no library package sees the whole
``Config``: the stages translate it into arguments.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import sparktf

SRC = Path(sparktf.__file__).parent

#: Lowest first. A package may import packages of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_environ", "_lazy", "errors", "version"),
    ("tfenv", "workdir"),
    ("config",),
    ("data", "tfrecord"),
    ("spark",),
    ("distributed", "models"),
    ("training", "evaluation"),
    ("tuning",),
    ("retrieval",),
    ("registry",),
    ("inference",),
    ("online",),
    ("experiments",),
    ("monitoring",),
    ("serving",),
    ("checks", "runlog"),
    ("stages",),
    ("cli", "__init__"),
)
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}

LIBRARIES = ("data", "tfrecord", "distributed", "models", "training", "evaluation", "retrieval", "registry")
LIBRARIES += ("inference", "online", "experiments", "monitoring", "serving", "tuning")

STAGE_MODULES = {f"sparktf.stages.{s}" for s in ("generate", "validate", "features", "tfrecords", "train")} | {
    f"sparktf.stages.{s}" for s in ("evaluate", "register", "index", "recommend", "serve")
}


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("sparktf", *parts)).removesuffix(".__init__")
        out[name] = path
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module imported, names imported from it)`` for every sparktf import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "sparktf"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "sparktf":
                found.append((node.module, [a.name for a in node.names]))
    return found


@functools.cache
def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in _modules().items():
        for target, names in _imports(path):
            edges[module].add(target)
            # ``from sparktf.stages import train`` imports the module sparktf.stages.train.
            edges[module].update(f"{target}.{n}" for n in names if f"{target}.{n}" in _modules())
    return edges


def test_no_upward_or_sideways_arrow_between_packages() -> None:
    wrong = []
    for module, targets in _edges().items():
        src = _package(module)
        for target in targets:
            dst = _package(target)
            if src == dst:
                continue
            assert src in RANK and dst in RANK, f"{module} -> {target}: put {src!r}/{dst!r} in LAYERS"
            if RANK[dst] >= RANK[src]:
                wrong.append(f"{module} -> {target} ({src} is not above {dst})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _edges().items():
        graph[_package(module)].update(_package(t) for t in targets if _package(t) != _package(module))
    seen: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            assert seen.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_only_the_runner_and_the_cli_import_stage_modules() -> None:
    allowed = {"sparktf.stages.runner", "sparktf.cli"}
    wrong = [
        f"{module} -> {target}"
        for module, targets in _edges().items()
        for target in targets
        if target in STAGE_MODULES and module not in allowed
    ]
    assert not wrong, "stage modules imported by others:\n" + "\n".join(sorted(wrong))


def test_library_packages_never_see_the_whole_config() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, path in _modules().items()
        if _package(module) in LIBRARIES
        for target, names in _imports(path)
        if target == "sparktf.config"
        for name in names
        if name in ("Config", "load_config", "Workdir")
    ]
    wrong += [
        f"{module} imports {target}"
        for module, targets in _edges().items()
        if _package(module) in LIBRARIES
        for target in targets
        if _package(target) in ("stages", "cli", "checks")
    ]
    assert not wrong, "library code holding Config glue:\n" + "\n".join(sorted(wrong))


def test_every_stage_module_is_in_the_runner() -> None:
    from sparktf.stages.runner import STAGES

    names = {s.run.__module__ for s in STAGES}
    assert names == STAGE_MODULES - {"sparktf.stages.serve"}
    assert [s.name for s in STAGES] == [
        "generate", "validate", "features", "tfrecords", "train", "evaluate", "register", "index", "recommend"
    ]  # fmt: skip
