"""The run directory: config, weights, metrics and resumable training state, all written atomically.

Layout (README, "Configs and run directories"): `config.yaml`, `model.safetensors`, `metrics.json`, `log.csv`, `curves.png`,
`train_state.safetensors` + `train_state.json`, and `.lock`, held by the process training into it. Nothing here
unpickles anything.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as save_tensors_bytes

from saliency.infra.config import dump_yaml, from_dict, read_yaml, to_dict
from saliency.infra.errors import ConfigError, OutputError, UserError

if TYPE_CHECKING:
    from saliency.infra.distributed import World

T = TypeVar("T")
log = logging.getLogger(__name__)

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
TRAIN_STATE = "train_state.safetensors"
TRAIN_STATE_META = "train_state.json"
CURVES = "curves.png"  # training loss and the validation metric per epoch, drawn by the trainers
LOG = "log.csv"  # one row per epoch: training loss, validation metrics, learning rate
LOCK = ".lock"  # flock-ed by the process training into the run directory, which writes its pid into it
DESCRIPTION = (CONFIG, "tokenizer.json")  # the files that say what the weights mean (tokenizer.json: a captioner's)
CHECKSUM = "sha256"  # the entry of a safetensors file's metadata, or of a JSON file, that holds a digest of the rest


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write to a temp file in the same folder, fsync (unless not `durable`: outputs a rerun remakes, where a
    power cut may lose the last few but a crash never leaves half of one), then rename: readers see old or new,
    never half. A write that fails (disk full, I/O error, read-only folder) removes its temp file, leaves the
    old file as it was and raises a one-line `OutputError` naming the file and the reason."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600: give it the mode open() would
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{path}: could not be written ({error.strerror or error})") from None
        raise


@functools.cache
def _umask() -> int:
    """This process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def try_flock(handle, wait: bool = False) -> bool:
    """Take an exclusive `fcntl.flock` on open file `handle` (waiting for it when `wait`); False when another
    process holds it. The OS releases it when its holder exits or is killed, so no lock outlives its process. On
    a filesystem without flock (some network filesystems) it warns once and goes on unlocked."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as error:
        log.warning("%s: cannot be locked (%s); make sure no other process writes here", handle.name,
                    error.strerror or error)
    return True


def require_writable(folder: str | Path) -> None:
    """Make and remove a temp file in `folder` or, while it does not exist, in the nearest folder above it, so that
    an output folder that cannot be written (read-only, no permission) stops a command with one line before any
    work rather than after it. Creates nothing."""
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as error:
        raise OutputError(f"{folder}: not writable ({error.strerror or error})") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: str | Path) -> str:
    """sha1 of a file's bytes (weights that shape the features)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _json_digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def atomic_write_checked_json(path: str | Path, data: dict) -> None:
    """`atomic_write_json` of `data` and a last entry `"sha256"`, the digest of the rest (`load_checked_json`)."""
    atomic_write_json(path, {**data, CHECKSUM: _json_digest(data)})


def load_checked_json(path: str | Path) -> dict:
    """The object `atomic_write_checked_json` wrote, without its checksum; a one-line UserError naming the file
    when it is not a JSON object or its content no longer matches the checksum. The checksum is the last entry,
    known by its key or by its value (64 hex digits), so one damaged byte in either is caught too; files written
    before checksums have neither and load unchecked."""
    try:
        data = json.loads(Path(path).read_bytes())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object")
    if data:
        key, value = next(reversed(data.items()))
        if key == CHECKSUM or _is_digest(value):
            del data[key]
            if value != _json_digest(data):
                raise UserError(f"{path}: damaged (its content does not match the checksum it was written with)")
    return data


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically save contiguous CPU copies of `tensors` (shared storage is fine), with a checksum of the header
    and the tensor data in the metadata: `safetensors_problem` then notices a flipped byte anywhere in the file."""
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    unchecked = save_tensors_bytes(plain, metadata=metadata)
    start = 8 + int.from_bytes(unchecked[:8], "little")
    checksum = _checksum(json.loads(unchecked[8:start]), [memoryview(unchecked)[start:]])
    atomic_write_bytes(path, save_tensors_bytes(plain, metadata={**(metadata or {}), CHECKSUM: checksum}))


def _checksum(header: dict, data: Iterable[bytes]) -> str:
    """sha256 of a safetensors header (less its checksum entry) and of the tensor data after it. The tensors'
    offsets are relative to the data, so adding the checksum to the header leaves them as they were."""
    metadata = header.get("__metadata__")
    rest = {**header, "__metadata__": {k: v for k, v in (metadata if isinstance(metadata, dict) else {}).items()
                                       if k != CHECKSUM}}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode())
    for block in data:
        digest.update(block)
    return digest.hexdigest()


SAFETENSORS_MAX_HEADER = 100_000_000  # bytes; the safetensors library refuses longer headers too
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))  # pickle protocols 2–5 (torch.save)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default zip container, which holds a pickle


def safetensors_header(path: str | Path) -> dict | None:
    """The header of a file laid out as safetensors defines it (a little-endian u64 header length N with
    8 + N within the file, then N bytes of a JSON object whose entries, but `__metadata__`, describe tensors),
    else None. (A damaged `__metadata__` key, which would hide the checksum, describes no tensor.)"""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if 2 <= length <= min(size - 8, SAFETENSORS_MAX_HEADER):
            try:
                header = json.loads(handle.read(length))
            except (UnicodeDecodeError, ValueError):
                return None
            if not isinstance(header, dict):
                return None
            tensors = (entry for name, entry in header.items() if name != "__metadata__")
            if all(isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= entry.keys() for entry in tensors):
                return header
    return None


def safetensors_problem(path: str | Path) -> str | None:
    """None when `path` is laid out as safetensors defines it and matches the checksum in its metadata (files
    written before checksums have none), else what it is instead: a pickle, a zip-wrapped torch checkpoint, or a
    damaged file. Decided by parsing, so no header length is mistaken for magic. Reads the whole file once."""
    header = safetensors_header(path)
    if header is not None:
        metadata = header.get("__metadata__")
        expected = metadata.get(CHECKSUM) if isinstance(metadata, dict) else None
        if expected is None:
            return None
        with open(path, "rb") as handle:
            handle.seek(8 + int.from_bytes(handle.read(8), "little"))
            if _checksum(header, iter(lambda: handle.read(1 << 20), b"")) == expected:
                return None
        return "damaged (its bytes do not match the checksum they were written with)"
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if head.startswith(PICKLE_MAGIC) or head.startswith(ZIP_MAGIC):
        return "this is a pickled checkpoint; only safetensors weights are loaded (pickles can run code)"
    if len(head) < 8:
        return f"not a valid safetensors file (only {size} bytes)"
    if not 2 <= length <= size - 8:
        return f"not a valid safetensors file (its header length {length} does not fit in {size} bytes: cut short?)"
    return "not a valid safetensors file (its header is not a JSON object describing tensors)"


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


def settings_change(saved: dict, config: Any) -> str | None:
    """The first difference between a run's saved config and `config` that changes what is trained: sections the
    config calls inert (its `inert_sections()`, e.g. distillation weights of a run without a teacher) are left out,
    so that a changed default there does not disown finished runs."""
    inert = set(getattr(config, "inert_sections", lambda: ())())
    given = to_dict(config)
    try:  # read as the run is loaded: a key added to the config since the run was written takes its default
        saved = to_dict(from_dict(type(config), saved))
    except ConfigError:
        pass  # a key the config no longer has: compared as written, so the difference is named
    return first_difference({k: v for k, v in saved.items() if k not in inert},
                            {k: v for k, v in given.items() if k not in inert})


def first_difference(saved: Any, given: Any, key: str = "") -> str | None:
    """The first key where config `given` differs from `saved` (plain data), as `key: old → new`; None if equal."""
    if isinstance(saved, dict) and isinstance(given, dict):
        for name in [*saved, *(name for name in given if name not in saved)]:
            change = first_difference(saved.get(name), given.get(name), f"{key}.{name}" if key else str(name))
            if change:
                return change
        return None
    if isinstance(saved, (list, tuple)) and isinstance(given, (list, tuple)):
        saved, given = list(saved), list(given)
    return None if saved == given else f"{key}: {saved!r} → {given!r}"


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
        """model.safetensors, recording the digests of config.yaml (and tokenizer.json) as they are now."""
        save_safetensors(state_dict, self.file(WEIGHTS), {**(metadata or {}), **self._description_digests()})

    def load_weights(self) -> dict[str, torch.Tensor]:
        return load_safetensors(self.file(WEIGHTS))

    def save_metrics(self, metrics: dict) -> None:
        atomic_write_checked_json(self.file(METRICS), metrics)

    def load_metrics(self) -> dict:
        """metrics.json ({} when there is none yet); a one-line UserError when it is damaged or not a run's metrics."""
        path = self.file(METRICS)
        if not path.is_file():
            return {}
        metrics = load_checked_json(path)
        missing = [key for key in ("final", "best_epoch", "select_by", "epochs") if key not in metrics]
        if missing:
            raise UserError(f"{path}: not the metrics of a training run (no {missing[0]!r})")
        return metrics

    def has_train_state(self) -> bool:
        return self.file(TRAIN_STATE).is_file()

    def completed_epochs(self) -> int:
        """Epochs the last checkpoint holds (0 when there is none), from the readable train-state summary."""
        summary = self.file(TRAIN_STATE_META)
        if not summary.is_file():
            return 0
        epoch = load_checked_json(summary).get("epoch")
        if type(epoch) is not int or epoch < 0:
            raise UserError(f"{summary}: not a train-state summary (no epoch count)")
        return epoch

    def _description_digests(self) -> dict[str, str]:
        """sha256 of config.yaml (and tokenizer.json) as they are now, as safetensors metadata."""
        return {f"{CHECKSUM}:{name}": hashlib.sha256(self.file(name).read_bytes()).hexdigest()
                for name in DESCRIPTION if self.file(name).is_file()}

    def check_unchanged_since(self, source: str) -> None:
        """A one-line UserError naming config.yaml or tokenizer.json when its bytes differ from those `source`
        (model.safetensors, train_state.safetensors) was written beside: a flipped byte there can change a value
        and so what the weights compute. Call it once the config has been parsed and checked, so that a
        malformed config gets its own message. Files written before these digests have none to compare."""
        recorded = (safetensors_header(self.file(source)) or {}).get("__metadata__")
        current = self._description_digests()
        for key, digest in (recorded if isinstance(recorded, dict) else {}).items():
            if key.startswith(f"{CHECKSUM}:") and current.get(key) != digest:
                raise UserError(f"{self.file(key.split(':', 1)[1])}: not the file {source} was saved with "
                                f"(damaged or edited since, or {source} comes from another run)")

    def prepare(self, resume: bool, config: Any) -> bool:
        """Check `--resume` against the folder; True when there is a train state to continue from. A run
        killed before its first checkpoint has its config but no train state: resuming it starts over. A run
        continues as its config.yaml describes it: a `config` that differs (another `--set`, another preset) is
        refused, since the folder would no longer say what was trained; a different run takes another --out."""
        if self.exists() and not resume:
            raise UserError(f"{self.path}: run directory already exists; "
                            "use --resume to continue it or choose another --out")
        if resume and not self.exists() and not self.has_train_state():
            raise UserError(f"{self.path}: nothing to resume (no config.yaml or train_state.safetensors)")
        if resume and self.exists():
            change = settings_change(self.config_dict(), config)
            if change:
                raise UserError(f"{self.file(CONFIG)}: --resume continues the run as it was configured, but {change}; "
                                "train the changed settings into another --out")
        return resume and self.has_train_state()

    @contextlib.contextmanager
    def lock(self, world: World) -> Iterator[None]:
        """Check that the folder can be written, then hold `RUN/.lock` (`fcntl.flock`) while training into it: a
        second process training into the same folder is refused with one line instead of interleaving its
        checkpoints with ours. The OS drops an flock when its holder exits or is killed, so no lock outlives its
        process. A run that stops before writing anything (bad data, say) removes the folder it made. Under
        torchrun only rank 0 writes the run directory, so only it locks; every rank raises."""
        handle, made = None, False

        def take() -> str | None:  # rank 0: None, or why the run cannot start
            nonlocal handle, made
            try:
                require_writable(self.path)
            except OutputError as error:
                return str(error)
            made = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.file(LOCK), "a+")
            if not try_flock(handle):
                handle.seek(0)
                return (f"{self.path}: another process (pid {handle.read().strip() or '?'}) is training into this "
                        "run directory")
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return None

        try:
            refusal = world.from_main(take)
            if refusal:
                raise UserError(refusal)
            yield
        finally:
            if handle is not None:
                if made and os.listdir(self.path) == [LOCK]:
                    self.file(LOCK).unlink()
                    self.path.rmdir()
                handle.close()

    def discard_partial_writes(self) -> list[Path]:
        """Delete the temp files of writes a killed process never finished (they are never read); returns them."""
        partial = [p for p in self.path.glob(".*.tmp") if p.is_file()]
        for path in partial:
            path.unlink()
        return partial

    def save_train_state(self, state: dict, summary: dict | None = None) -> None:
        """One atomic safetensors file holds tensors and skeleton; the JSON beside it is a readable summary."""
        skeleton, tensors = flatten_state(state)
        save_safetensors(tensors, self.file(TRAIN_STATE), {"skeleton": json.dumps(skeleton),
                                                           "summary": json.dumps(summary or {}),
                                                           **self._description_digests()})
        atomic_write_checked_json(self.file(TRAIN_STATE_META), summary or {})

    def rewrite_train_state_summary(self) -> None:
        """train_state.json from the summary inside train_state.safetensors: a process killed between writing
        the two leaves the JSON an epoch behind, and a resumed run that has nothing left to train would
        otherwise never rewrite it."""
        with safe_open(str(self.file(TRAIN_STATE)), framework="pt") as handle:
            summary = (handle.metadata() or {}).get("summary")
        if summary is not None:
            atomic_write_checked_json(self.file(TRAIN_STATE_META), json.loads(summary))

    def load_train_state(self) -> dict:
        path = self.file(TRAIN_STATE)
        tensors = load_safetensors(path)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "skeleton" not in metadata:
            raise UserError(f"{path}: not a train state written by this package")
        self.check_unchanged_since(TRAIN_STATE)
        return unflatten_state(json.loads(metadata["skeleton"]), tensors)
