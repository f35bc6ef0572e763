"""The run directory: config, weights, metrics and resumable training state, all written atomically.

Layout (DESIGN.md): `config.yaml`, `model.safetensors`, `metrics.json`, `log.csv`, `curves.png`,
`train_state.safetensors` + `train_state.json`. Nothing here unpickles anything.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as save_tensors_bytes

from saliency.infra.config import dump_yaml, from_dict, read_yaml
from saliency.infra.errors import UserError

T = TypeVar("T")

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
TRAIN_STATE = "train_state.safetensors"
TRAIN_STATE_META = "train_state.json"
CURVES = "curves.png"  # training loss and the validation metric per epoch, drawn by the trainers
LOG = "log.csv"  # one row per epoch: training loss, validation metrics, learning rate


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically save contiguous CPU copies of `tensors` (shared storage is fine)."""
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save_tensors_bytes(plain, metadata=metadata))


SAFETENSORS_MAX_HEADER = 100_000_000  # bytes; the safetensors library refuses longer headers too
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))  # pickle protocols 2–5 (torch.save)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default zip container, which holds a pickle


def safetensors_problem(path: str | Path) -> str | None:
    """None when `path` is laid out as safetensors defines it (a little-endian u64 header length N with
    8 + N within the file, then N bytes of a JSON object), else what it is instead: a pickle, a zip-wrapped
    torch checkpoint, or a damaged file. Decided by parsing, so no header length is mistaken for magic."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if 2 <= length <= min(size - 8, SAFETENSORS_MAX_HEADER):
            try:
                header = json.loads(handle.read(length))
            except (UnicodeDecodeError, ValueError):
                header = None
            if isinstance(header, dict):
                return None
    if head.startswith(PICKLE_MAGIC) or head.startswith(ZIP_MAGIC):
        return "this is a pickled checkpoint; only safetensors weights are loaded (pickles can run code)"
    if len(head) < 8:
        return f"not a valid safetensors file (only {size} bytes)"
    if not 2 <= length <= size - 8:
        return f"not a valid safetensors file (its header length {length} does not fit in {size} bytes: cut short?)"
    return "not a valid safetensors file (its header is not a JSON object)"


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a pickle or a damaged file is refused with a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    problem = safetensors_problem(path)
    if problem:
        raise UserError(f"{path}: {problem}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path}: not a valid safetensors file ({error})") from None


def flatten_state(state: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested optimiser/scheduler/RNG state into a JSON skeleton and a flat tensor dict."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[key] = value
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, f"{key}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return {"__float__": repr(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {key} in a train state")

    return walk(state, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__float__" in skeleton:
            return float(skeleton["__float__"])
        return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    return skeleton


class RunDir:
    """One trained thing's folder; every result can be reproduced from it alone."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file(CONFIG).is_file()

    def require(self) -> "RunDir":
        """Fail with one line if this is not a run directory with weights."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: run directory not found")
        for name in (CONFIG, WEIGHTS):
            if not self.file(name).is_file():
                raise UserError(f"{self.path}: not a run directory (missing {name})")
        return self

    def save_config(self, config: Any) -> None:
        atomic_write_text(self.file(CONFIG), dump_yaml(config))

    def config_dict(self) -> dict:
        return read_yaml(self.file(CONFIG))

    def load_config(self, cls: type[T]) -> T:
        return from_dict(cls, self.config_dict(), str(self.file(CONFIG)))

    def save_weights(self, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
        save_safetensors(state_dict, self.file(WEIGHTS), metadata)

    def load_weights(self) -> dict[str, torch.Tensor]:
        return load_safetensors(self.file(WEIGHTS))

    def save_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.file(METRICS), metrics)

    def load_metrics(self) -> dict:
        path = self.file(METRICS)
        return json.loads(path.read_text()) if path.is_file() else {}

    def has_train_state(self) -> bool:
        return self.file(TRAIN_STATE).is_file()

    def completed_epochs(self) -> int:
        """Epochs the last checkpoint holds (0 when there is none), from the readable train-state summary."""
        summary = self.file(TRAIN_STATE_META)
        return json.loads(summary.read_text()).get("epoch", 0) if summary.is_file() else 0

    def prepare(self, resume: bool) -> bool:
        """Check `--resume` against the folder; True when there is a train state to continue from. A run
        killed before its first checkpoint has its config but no train state: resuming it starts over."""
        if self.exists() and not resume:
            raise UserError(f"{self.path}: run directory already exists; "
                            "use --resume to continue it or choose another --out")
        if resume and not self.exists() and not self.has_train_state():
            raise UserError(f"{self.path}: nothing to resume (no config.yaml or train_state.safetensors)")
        return resume and self.has_train_state()

    def discard_partial_writes(self) -> list[Path]:
        """Delete the temp files of writes a killed process never finished (they are never read); returns them."""
        partial = [p for p in self.path.glob(".*.tmp") if p.is_file()]
        for path in partial:
            path.unlink()
        return partial

    def save_train_state(self, state: dict, summary: dict | None = None) -> None:
        """One atomic safetensors file holds tensors and skeleton; the JSON beside it is a readable summary."""
        skeleton, tensors = flatten_state(state)
        save_safetensors(tensors, self.file(TRAIN_STATE), {"skeleton": json.dumps(skeleton)})
        atomic_write_json(self.file(TRAIN_STATE_META), summary or {})

    def load_train_state(self) -> dict:
        path = self.file(TRAIN_STATE)
        tensors = load_safetensors(path)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "skeleton" not in metadata:
            raise UserError(f"{path}: not a train state written by this package")
        return unflatten_state(json.loads(metadata["skeleton"]), tensors)
