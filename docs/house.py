"""Draws docs/house.png, the map of the code: its rooms (folders and groups of modules), what each holds, and which
room imports which, read from the code's own import statements, so the picture cannot drift from the code.

    python docs/house.py [--out docs/house.png]

A room stands above every room it imports; an arrow runs from the importer down to the imported room. `saliency`
(left) never imports `vidcap` (right); vidcap enters saliency through its public surface, its plumbing
(`saliency.infra`) and its synthetic world (`saliency.world`) only.
"""
from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the headless backend is chosen)
from matplotlib.patches import FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# (room, the modules it holds as dotted prefixes, what it is); a module belongs to the room of its longest prefix
ROOMS = [
    ("saliency.infra", ("saliency.infra",), "shared plumbing: errors, configs, run dirs,\nCLI, distributed, media, training loop"),
    ("saliency.world", ("saliency.world",), "the synthetic world: rules, render, gaze,\nwords, captions, layout writers, baselines"),
    ("saliency.data", ("saliency.data",), "dataset readers (SALICON, MIT1003, CAT2000,\nDHF1K, folders), transforms, unlabelled pool"),
    ("saliency.models", ("saliency.models",), "model registry, one file per family,\nthe one backbone registry"),
    ("saliency: learning", ("saliency.metrics", "saliency.losses", "saliency.distill", "saliency.evaluate"),
     "metrics, losses, distillation statistics,\nevaluation"),
    ("saliency: runs", ("saliency.run", "saliency.train", "saliency.pretrain"),
     "run config, load/save, trainer,\nsynthetic pretraining"),
    ("saliency: inference", ("saliency.export", "saliency.backends", "saliency.predict", "saliency.bench"),
     "ONNX export, onnxruntime (int8),\npredict, bench"),
    ("saliency (face)", ("saliency.cli", "saliency"), "the public surface (__init__)\nand the `saliency` command"),
    ("vidcap.data", ("vidcap.data",), "frames (sampling, decoding),\ncaption datasets (MSR-VTT, MSVD, folders)"),
    ("vidcap.model", ("vidcap.model",), "encoder, weighting (a strategy per mode),\nsaliency sources, decoder, captioner"),
    ("vidcap.run", ("vidcap.run",), "a captioner run: config,\nload/save"),
    ("vidcap.inference", ("vidcap.inference",), "many videos overlapped, the front end\non onnxruntime, saliency overlays"),
    ("vidcap.evaluation", ("vidcap.evaluation",), "caption metrics (pycocoevalcap), grounding,\n`vidcap eval`, reports"),
    ("vidcap.training", ("vidcap.training",), "feature cache, cross-entropy\ntraining, SCST"),
    ("vidcap.app", ("vidcap.app",), "caption folders, long videos,\nformats, overlays, web page"),
    ("vidcap.demo", ("vidcap.demo",), "the staged demo:\nworld → models → report"),
    ("vidcap (face)", ("vidcap.cli", "vidcap"), "`vidcap.load`/`save`\nand the `vidcap` command"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str | None:
    best, length = None, -1
    for name, prefixes, _ in ROOMS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = name, len(prefix)
    return best


def imports(path: Path) -> set[str]:
    """The project modules `path` imports (any depth of its code; `from package import name` as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name.split(".")[0] in ("saliency", "vidcap")}


def room_graph() -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """{room: {imported room: import statements}} and each room's lines of code."""
    edges: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lines: dict[str, int] = defaultdict(int)
    for package in ("saliency", "vidcap"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = room_of(module_name(path))
            lines[source] += len(path.read_text(encoding="utf-8").splitlines())
            targets = {room_of(name) for name in imports(path)} - {None, source}
            for target in targets:
                edges[source][target] += 1
    return edges, lines


def floors(edges: dict[str, dict[str, int]], rooms: list[str]) -> dict[str, int]:
    """Each room's floor among `rooms`: 0 for a room that imports none of them, else one above the highest it imports."""
    floor: dict[str, int] = {}

    def height(room: str, trail: tuple[str, ...] = ()) -> int:
        if room not in floor:
            assert room not in trail, f"rooms import each other in a loop: {' -> '.join((*trail, room))}"
            below = [target for target in edges.get(room, {}) if target in rooms]
            floor[room] = 1 + max((height(target, (*trail, room)) for target in below), default=-1)
        return floor[room]

    for room in rooms:
        height(room)
    return floor


def direct(edges: dict[str, dict[str, int]], rooms: list[str]) -> list[tuple[str, str]]:
    """The arrows between `rooms` that no longer path implies (a → c is left out when a → b → c): what to draw."""
    def reaches(start: str, goal: str, skip: tuple[str, str]) -> bool:
        seen, todo = set(), [start]
        while todo:
            room = todo.pop()
            for target in edges.get(room, {}):
                if (room, target) == skip or target not in rooms or target in seen:
                    continue
                if target == goal:
                    return True
                seen.add(target)
                todo.append(target)
        return False

    return [(source, target) for source in rooms for target in edges.get(source, {})
            if target in rooms and not reaches(source, target, (source, target))]


def draw(out: Path) -> None:
    edges, lines = room_graph()
    caption = {name: text for name, _, text in ROOMS}
    columns = {0: [name for name, _, _ in ROOMS if name.startswith("saliency")],
               1: [name for name, _, _ in ROOMS if name.startswith("vidcap")]}
    width, height, step = 4.6, 1.0, 1.45  # a room's box and the distance between floors, in axes units
    position, top = {}, 0
    for column, rooms in columns.items():
        floor = floors(edges, rooms)
        top = max(top, max(floor.values()))
        for level in set(floor.values()):
            here = [room for room in rooms if floor[room] == level]
            for index, room in enumerate(here):
                x = 4 + column * 11.5 + (index - (len(here) - 1) / 2) * (width + 0.3)
                position[room] = (x, level * step)
    figure, axes = plt.subplots(figsize=(17, 1.3 * (top + 1) + 2))

    def arrow(source: str, target: str, colour: str, width_: float = 1.2, bend: float = 0.0) -> None:
        (x0, y0), (x1, y1) = position[source], position[target]
        axes.annotate("", xy=(x1, y1 + height / 2 + 0.03), xytext=(x0, y0 - height / 2 - 0.03),
                      arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": width_, "alpha": 0.8,
                                  "shrinkA": 0, "shrinkB": 0, "connectionstyle": f"arc3,rad={bend}"})

    for rooms in columns.values():
        for source, target in direct(edges, rooms):
            arrow(source, target, "#6f6f6f", bend=0.0 if position[source][0] == position[target][0] else 0.1)
    seams = sorted({target for source in columns[1] for target in edges.get(source, {}) if target in columns[0]})
    for seam in seams:  # vidcap's ways into saliency, drawn once each from vidcap's lowest room
        users = [source for source in columns[1] if seam in edges.get(source, {})]
        x, y = position[seam][0] + width / 2, position[seam][1]
        axes.annotate(f"from {len(users)} of vidcap's\n{len(columns[1])} rooms", xy=(x + 0.03, y), xytext=(x + 1.6, y),
                      fontsize=8.5, color="#b03a2e", ha="left", va="center",
                      arrowprops={"arrowstyle": "-|>", "color": "#b03a2e", "linewidth": 1.6})
    for name, (x, y) in position.items():
        colour = "#e8eef7" if name.startswith("saliency") else "#f7ece8"
        edge = "#b03a2e" if name in seams else "#555555"
        axes.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04",
                                      facecolor=colour, edgecolor=edge, linewidth=1.6 if name in seams else 1.1))
        axes.text(x, y + 0.24, f"{name}  ({lines[name]:,} lines)", ha="center", va="center", fontsize=10,
                  fontweight="bold")
        axes.text(x, y - 0.15, caption[name], ha="center", va="center", fontsize=8.5, color="#333333")
    axes.text(4, top * step + 1.0, "saliency: prediction and distillation\n(imports nothing of vidcap)", ha="center",
              fontsize=13, fontweight="bold", color="#2f4f7f")
    axes.text(15.5, top * step + 1.0, "vidcap: captioning with saliency-weighted features\n(uses saliency through the "
              "rooms outlined in red only)", ha="center", fontsize=13, fontweight="bold", color="#7f3f2f")
    axes.text(9.5, -1.05, "A room stands above the rooms it imports; an arrow runs from the importer down (an import "
              "that a longer path already implies is not drawn).\nDrawn from the code's imports by "
              "`python docs/house.py`.", ha="center", fontsize=9, color="#444444")
    axes.set_xlim(-1.0, 21.0)
    axes.set_ylim(-1.5, top * step + 1.8)
    axes.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "house.png")
    draw(parser.parse_args().out)


if __name__ == "__main__":
    main()
