"""The package's architecture, held by parsing its import statements (no import runs).

Layers, lowest first: a module may import its own layer and the layers below it, never one
above. The engine sits below the workloads (a job is anything with the engine's small
protocol; the workloads' ``simulate_*`` helpers build a Simulation), metrics are pure
functions that anything from the workloads up may call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[1] / "sim"

LAYERS = [
    {"units", "errors"},
    {"spec"},
    {"modelspec"},
    {"catalog"},
    {"fabric"},
    {"network"},
    {"collectives"},
    {"compute"},
    {"metrics", "engine"},
    {"workload"},
    {"cost"},
    {"report", "review", "validation", "cli", "experiment"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}

# model parts that run no simulated time: they must not import simpy
PURE = ["workload/models.py", "workload/training/spec.py", "workload/training/parallelism.py",
        "workload/training/schedule.py", "workload/training/memory.py",
        "workload/training/stage_cost.py", "workload/training/comm.py",
        "workload/training/result.py", "workload/serving/spec.py",
        "workload/serving/lengths.py", "workload/serving/arrivals.py",
        "workload/serving/iteration.py", "workload/serving/policies.py",
        "workload/serving/result.py", "workload/serving/plot.py",
        "workload/training/plan.py", "review/economics.py", "review/verdict.py", "review/sensitivity.py",
        "review/figures.py", "review/report.py", "metrics.py", "compute.py",
        "collectives/algorithms.py", "modelspec.py", "catalog.py", "spec.py", "units.py"]


def _modules():
    for p in sorted(SIM.rglob("*.py")):
        rel = p.relative_to(SIM)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield p, parts


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _imports(path: Path, parts: list[str]):
    """(line, absolute dotted module inside sim or a package name, names, types only)."""
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_lines(tree)
    pkg = parts if path.name == "__init__.py" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1] if node.level > 1 else pkg
                mod = ["sim", *base, *(node.module.split(".") if node.module else [])]
            else:
                mod = (node.module or "").split(".")
            yield (node.lineno, mod, [a.name for a in node.names],
                   node.lineno in typing_only)
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name.split("."), [], node.lineno in typing_only


def _layer(parts: list[str]) -> int | None:
    return RANK.get(parts[0]) if parts else None


def test_every_module_has_a_layer():
    missing = ["/".join(parts) for _, parts in _modules() if parts and _layer(parts) is None]
    assert not missing, f"add these to LAYERS: {missing}"


def test_imports_run_one_way():
    bad = []
    for path, parts in _modules():
        if not parts:
            continue  # sim/__init__.py: the public API re-exports every layer
        own = _layer(parts)
        for line, mod, _names, _typing in _imports(path, parts):
            if mod[0] != "sim" or len(mod) < 2:
                continue
            target = _layer(mod[1:])
            if target is not None and target > own:
                bad.append(f"sim/{'/'.join(parts)}:{line} imports {'.'.join(mod)}")
    assert not bad, "a lower layer imports a higher one:\n" + "\n".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path, parts in _modules():
        for line, mod, names, _typing in _imports(path, parts):
            if mod[0] != "sim":
                continue
            priv = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if priv or any(m.startswith("_") and not m.startswith("__") for m in mod):
                bad.append(f"sim/{'/'.join(parts)}:{line}: {'.'.join(mod)} {priv}")
    assert not bad, "\n".join(bad)


def test_no_private_attribute_of_another_object():
    """``x._name`` only on ``self``/``cls`` (a class's own state)."""
    bad = []
    for path, parts in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                bad.append(f"sim/{'/'.join(parts)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("rel", PURE)
def test_pure_model_files_do_not_import_simpy(rel):
    path = SIM / rel
    parts = list(Path(rel).with_suffix("").parts)
    used = [".".join(mod) for _, mod, _, _ in _imports(path, parts)
            if mod[0] == "simpy" or mod[1:2] in (["engine"], ["network"])]
    assert not used, f"{rel} imports {used}"


def test_no_import_cycle_inside_the_fabric_package():
    """Cycles among sim/fabric's modules only through imports for type hints."""
    graph: dict[str, set[str]] = {}
    for path, parts in _modules():
        if parts[:1] != ["fabric"]:
            continue
        me = "/".join(parts)
        graph[me] = set()
        for _, mod, names, typing_only in _imports(path, parts):
            if typing_only or mod[:2] != ["sim", "fabric"]:
                continue
            targets = ["/".join(mod[1:3])] if len(mod) > 2 else [f"fabric/{n}" for n in names]
            graph[me].update(t for t in targets if t != "fabric/__init__")
    seen, stack = set(), []

    def visit(n: str) -> None:
        if n in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}")
        if n in seen:
            return
        stack.append(n)
        for m in graph.get(n, ()):
            visit(m)
        stack.pop()
        seen.add(n)

    for n in graph:
        visit(n)


def test_the_checker_catches_a_forbidden_import(tmp_path):
    """The parser sees relative imports at their real depth (a check that cannot fail
    would hold nothing)."""
    f = tmp_path / "x.py"
    f.write_text("from ...engine import Simulation\nfrom ..network.models import _Active\n")
    found = list(_imports(f, ["fabric", "sub", "x"]))
    assert found[0][1] == ["sim", "engine"]
    assert found[1][1] == ["sim", "fabric", "network", "models"]
    assert _layer(["engine"]) > _layer(["fabric"])
