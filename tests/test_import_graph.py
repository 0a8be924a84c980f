"""The house's rules (issue 15), checked on the import graph of the installed packages.

Arrows run one way: firmware_bridge <- station -> fluxedge.common <- collector, with the
``fluxedge`` command and demo on top. Every import counts, also those inside functions or under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fluxedge", "station", "collector", "firmware_bridge")
STDLIB = sys.stdlib_module_names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module (or package) ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module
            found.add(parent)
            # ``from pkg import module`` imports pkg.module
            for alias in node.names:
                found.add(f"{parent}.{alias.name}")
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (names that are not modules are dropped)."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges = {}
    for mod, path in files.items():
        edges[mod] = {dep for dep in imports_of(path) if dep in files and dep != mod}
    return edges


def third_party_of(mod: str) -> set[str]:
    path = ROOT / (mod.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / mod.replace(".", "/") / "__init__.py"
    tops = {name.split(".")[0] for name in imports_of(path) if name}
    return {t for t in tops if t not in STDLIB and t not in PACKAGES and t != "__future__"}


def package_of(mod: str) -> str:
    if mod.startswith("fluxedge.common") or mod == "fluxedge":
        return "common"
    return mod.split(".")[0] if not mod.startswith("fluxedge.") else "fluxedge-top"


#: which packages each package may import (besides itself)
ALLOWED = {
    "firmware_bridge": set(),
    "common": set(),
    "station": {"firmware_bridge", "common"},
    "collector": {"common"},
    "fluxedge-top": {"firmware_bridge", "common", "station", "collector"},
}


EDGES = graph()


def test_the_graph_is_read():
    """The check sees the tree: the daemon imports its rooms, the command imports both sides."""
    assert "station.outbox.spool" in EDGES["station.daemon"]
    assert {"station.daemon", "collector.ingest"} <= EDGES["fluxedge.cli"]
    assert len(EDGES) > 100


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_arrows_run_one_way(pkg):
    wrong = sorted(f"{mod} -> {dep}" for mod, deps in EDGES.items() if package_of(mod) == pkg
                   for dep in deps if package_of(dep) != pkg and package_of(dep) not in ALLOWED[pkg])
    assert not wrong, "imports against the arrows:\n" + "\n".join(wrong)


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: every one of size 1."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in EDGES:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_flux_engine_imports_only_numpy_and_itself():
    engine = [m for m in EDGES if m == "station.flux" or m.startswith("station.flux.")]
    assert len(engine) > 15
    outside = sorted(f"{m} -> {d}" for m in engine for d in EDGES[m] if not d.startswith("station.flux"))
    assert not outside, outside
    libraries = {m: third_party_of(m) - {"numpy"} for m in engine}
    assert not any(libraries.values()), {m: libs for m, libs in libraries.items() if libs}


def test_no_private_module_of_another_package_is_imported():
    """``station.processing.fluxjob`` importing ``station.rawdata._assemble`` was the example: a
    module named ``_x`` is its package's business only."""
    wrong = []
    for mod, deps in EDGES.items():
        for dep in deps:
            parts = dep.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and p != "__init__"]
            if not private:
                continue
            owner = ".".join(parts[:private[0]])
            if mod != owner and not mod.startswith(owner + "."):
                wrong.append(f"{mod} -> {dep}")
    assert not wrong, wrong


def test_test_helpers_are_not_installed():
    """Simulators and test servers live in tests/, outside the installed packages (the demo keeps
    its one launcher, fluxedge.demo.servers)."""
    for name in ("fleet", "engine_adapter", "localservers"):
        assert not [m for m in EDGES if m.rsplit(".", 1)[-1] == name], name


SIDE_LOADS = """
import importlib, pkgutil, sys
side, other = sys.argv[1], sys.argv[2]
pkg = importlib.import_module(side)
for info in pkgutil.walk_packages(pkg.__path__, side + "."):
    importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m == other or m.startswith(other + "."))
print(" ".join(loaded))
"""


@pytest.mark.parametrize(("side", "other"), [("collector", "station"), ("station", "collector"),
                                             ("firmware_bridge", "station"), ("fluxedge.common", "station"),
                                             ("fluxedge.common", "collector")])
def test_importing_one_side_loads_nothing_of_the_other(side, other):
    """Run for real (``python -c``): import every module of one side; none of the other is loaded."""
    proc = subprocess.run([sys.executable, "-c", SIDE_LOADS, side, other], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing {side} loaded {proc.stdout.strip()}"
