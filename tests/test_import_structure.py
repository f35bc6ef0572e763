"""The house's structure, read from the imports: vidcap uses saliency only through its public seams, and no two
modules of the project import each other, directly or round a loop."""
from __future__ import annotations

import ast
from pathlib import Path

import saliency

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("saliency", "vidcap")
# what vidcap may import of saliency: its public surface, the shared plumbing and the synthetic world
SEAMS = ("saliency", "saliency.infra", "saliency.world")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, at any depth of its code (a deferred import is still a dependency);
    `from package import name` counts as importing the module that defines `name` (saliency's lazy surface too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    found.add(full)
                elif node.module == "saliency" and alias.name in saliency._PUBLIC:
                    found.add(saliency._PUBLIC[alias.name])
                else:
                    found.add(node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def test_vidcap_imports_saliency_only_through_its_public_seams():
    known = modules()
    reached = {(name, target) for name, path in known.items() if name.startswith("vidcap")
               for target in _raw_saliency_imports(path)}
    beyond = sorted((name, target) for name, target in reached
                    if not any(target == seam or target.startswith(f"{seam}.") for seam in SEAMS[1:])
                    and target != "saliency")
    assert not beyond, beyond


def _raw_saliency_imports(path: Path) -> set[str]:
    """The saliency modules named in `path`'s import statements, as written."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] == "saliency"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "saliency":
            names.add(node.module)
    return names


def test_every_public_name_of_saliency_resolves():
    for name in saliency.__all__:
        assert getattr(saliency, name) is not None, name


def test_no_import_loops():
    known = modules()
    graph = {name: {target for target in imported(path, known) if target in known and target != name}
             for name, path in known.items()}
    # a package's __init__ that only hands on its children's names is not a loop with them
    loops = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1 and not _init_of(target, trail[trail.index(target):]):
                loops.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, loops


def _init_of(package: str, cycle: list[str]) -> bool:
    """True when the loop only passes through `package`'s own __init__ and its children (a registry's families
    imported by the package to register them, each importing the registry module)."""
    return all(module == package or module.startswith(f"{package}.") for module in cycle)


def test_the_house_drawing_is_drawn_from_the_code_with_no_room_importing_another_in_a_loop(tmp_path):
    """docs/house.png comes from `python docs/house.py`, which refuses to draw rooms that import each other."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "docs" / "house.py"), "--out", str(tmp_path / "house.png")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "house.png").stat().st_size > 10_000
