"""Corruption battery: damage one file of a run directory or of a feature cache in many ways (bytes flipped at
seeded offsets, the file cut short, replaced by another format) and classify what its real loader then does.
`tests/*/test_*corruption.py` run a sample, `benchmarks/corruption_battery.py` the long version. Nothing here is
imported by the commands themselves.

Good outcomes: loading stops with a one-line `UserError` naming the damaged file ("error"), or gives exactly what
the undamaged file gives ("identical"); a cache extracts again what was damaged, logs a warning and then serves
exactly the undamaged features ("rebuilt"). Bad ones: something else is loaded, or a cache repairs itself without
a word ("different"); any other failure: another exception, a message on several lines or one that does not name
the file ("failure")."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import pickle
import random
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image

from saliency.infra.errors import UserError

ERROR, IDENTICAL, REBUILT, DIFFERENT, FAILURE = "error", "identical", "rebuilt", "different", "failure"
OUTCOMES = (ERROR, IDENTICAL, REBUILT, DIFFERENT, FAILURE)
GOOD = {ERROR, IDENTICAL, REBUILT}


@dataclass
class Target:
    """One file to damage. `load()` runs the real loader over it and returns what it loaded, in values `same`
    compares; for a cache (`repairs`), `(what it serves, how many shards it wrote)`. `folder` is put back as it
    was after every case."""
    name: str
    path: Path
    kind: str  # "safetensors", "yaml" or "json": where its header ends, what text replaces it
    load: Callable[[], Any]
    folder: Path
    repairs: bool = False


def variants(data: bytes, kind: str, seed: int, flips: int, cuts: int) -> list[tuple[str, bytes]]:
    """(name, damaged bytes): `flips` bytes changed at seeded offsets (one bit, or XOR with a random byte; for
    safetensors half in the header, half in the tensor data), `cuts` truncations at seeded lengths, and the whole
    file replaced by a pickle, a torch.save zip, a PNG, JSON, YAML, random bytes or nothing."""
    rng = random.Random(seed)
    header_end = 8 + int.from_bytes(data[:8], "little") if kind == "safetensors" else None
    regions = [("header", 0, header_end), ("data", header_end, len(data))] if header_end else [("", 0, len(data))]
    cases = []
    for i in range(flips):
        region, start, end = regions[i % len(regions)]
        offset = rng.randrange(start, end)
        mask = 1 << rng.randrange(8) if (i // len(regions)) % 2 == 0 else rng.randrange(1, 256)
        damaged = bytearray(data)
        damaged[offset] ^= mask
        cases.append((f"xor 0x{mask:02x} at byte {offset}" + (f" ({region})" if region else ""), bytes(damaged)))
    for length in sorted(rng.sample(range(1, len(data)), min(cuts, len(data) - 1))):
        cases.append((f"cut to {length} of {len(data)} bytes", data[:length]))
    return cases + replacements(data, kind, rng)


def replacements(data: bytes, kind: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """The file replaced by another format; a YAML file by JSON of the same content and the reverse."""
    zipped, png = io.BytesIO(), io.BytesIO()
    torch.save({"weight": torch.ones(2)}, zipped)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(png, format="PNG")
    other = {"weight": [1.0, 2.0]}
    as_json = json.dumps(yaml.safe_load(data) if kind == "yaml" else other)
    as_yaml = yaml.safe_dump(json.loads(data) if kind == "json" else other)
    return [("pickle", pickle.dumps(other, protocol=4)), ("torch.save zip", zipped.getvalue()),
            ("PNG image", png.getvalue()), ("JSON", as_json.encode()), ("YAML", as_yaml.encode()),
            ("random bytes", rng.randbytes(len(data))), ("empty", b"")]


def same(a: Any, b: Any) -> bool:
    """Equal all the way down: tensors bit for bit (and dtype), containers element by element, NaN equal to NaN."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


class _Warnings(logging.Handler):
    """Collects the warnings the packages log while a case runs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def classify(target: Target, expected: Any) -> tuple[str, str]:
    """(outcome, detail) of loading `target` as it is now, against `expected`, what it loads undamaged."""
    handler = _Warnings()
    loggers = [logging.getLogger(name) for name in ("saliency", "vidcap")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # what the commands would print: classified, not shown
            got = target.load()
    except UserError as error:
        message = str(error)
        if "\n" in message or str(target.path) not in message:
            return FAILURE, f"UserError not naming {target.path.name} on one line: {message}"
        return ERROR, message
    except BaseException as error:  # pyo3's PanicException (a Rust panic in `tokenizers`) is a BaseException
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return FAILURE, traceback.format_exception_only(error)[-1].strip()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    if not target.repairs:
        return (IDENTICAL, "") if same(got, expected) else (DIFFERENT, "loaded something else")
    (served, wrote), (undamaged, _) = got, expected
    if not same(served, undamaged):
        return DIFFERENT, "serves other features"
    if not wrote:
        return IDENTICAL, ""
    return (REBUILT, handler.messages[-1]) if handler.messages else (DIFFERENT, "re-extracted without a warning")


def run_battery(targets: list[Target], seed: int, flips: int, cuts: int) -> list[dict]:
    """Every variant of every target, each on a fresh copy of its folder; one record per case. The damaged file
    is a new file (not the old one rewritten), and the undamaged values are copied out, since loaded tensors can be
    views of memory-mapped files."""
    results = []
    for index, target in enumerate(targets):
        expected = copy.deepcopy(target.load())
        pristine = target.folder.with_name(target.folder.name + ".pristine")
        shutil.copytree(target.folder, pristine)
        try:
            for damage, data in variants(target.path.read_bytes(), target.kind, seed + index, flips, cuts):
                target.path.unlink()
                target.path.write_bytes(data)
                outcome, detail = classify(target, expected)
                results.append({"file": target.name, "damage": damage, "outcome": outcome, "detail": detail})
                shutil.rmtree(target.folder)
                shutil.copytree(pristine, target.folder)
        finally:
            shutil.rmtree(pristine)
    return results


def summarise(results: list[dict]) -> dict[str, dict[str, int]]:
    """File → {"cases": n, outcome: count, ...}, and "all" over every file."""
    table: dict[str, dict[str, int]] = {}
    for record in results:
        for key in (record["file"], "all"):
            row = table.setdefault(key, {"cases": 0, **{outcome: 0 for outcome in OUTCOMES}})
            row["cases"] += 1
            row[record["outcome"]] += 1
    return {key: table[key] for key in [*(k for k in table if k != "all"), "all"]}


# --------------------------------------------------------------------------------------------------
# Tiny runs to damage, made by the real commands


SALIENCY_TINY = ["--set", "data.size=[32, 64]", "--set", "data.batch_size=8", "--set", "optim.epochs=1",
                 "--set", "model.options={width: 8, depth: 1, decoder_width: 8}", "--set", "val_metrics=[CC]",
                 "--set", "threads=1", "--quiet"]


def require_success(status: int, command: str) -> None:
    if status != 0:
        raise RuntimeError(f"{command} exited with {status}")


def make_saliency_run(root: Path) -> Path:
    """`saliency synth` 12 images and `saliency train` a tiny student on them for one epoch; the run directory."""
    from saliency.cli import main

    require_success(main(["synth", str(root / "saliency-data"), "--n", "12", "--size", "32x64", "--quiet"]), "saliency synth")
    require_success(main(["train", "--set", f"data.root={root / 'saliency-data'}", *SALIENCY_TINY, "--out", str(root / "student")]),
        "saliency train")
    return root / "student"


def saliency_targets(run: Path) -> list[Target]:
    """The files of a saliency run, each with the loader that reads it."""
    import saliency
    from saliency.infra.config import to_dict
    from saliency.infra.rundir import RunDir
    from saliency.run import SaliencyRunConfig

    def model() -> dict:
        loaded = saliency.load(run)
        return {"spec": loaded.spec, "weights": loaded.state_dict(),
                "config": to_dict(RunDir(run).load_config(SaliencyRunConfig))}

    return run_targets("saliency", run, model, ["config.yaml", "model.safetensors"])


def run_targets(label: str, run: Path, model: Callable[[], Any], model_files: list[str]) -> list[Target]:
    from saliency.infra.rundir import RunDir

    kind = {".yaml": "yaml", ".json": "json", ".safetensors": "safetensors"}
    loaders = {**{name: model for name in model_files}, "train_state.safetensors": lambda: RunDir(run).load_train_state(),
               "train_state.json": lambda: RunDir(run).completed_epochs(), "metrics.json": lambda: RunDir(run).load_metrics()}
    return [Target(f"{label}/{name}", run / name, kind[Path(name).suffix], load, run) for name, load in loaders.items()]
