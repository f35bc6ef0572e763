"""Inference backends for frozen image networks: torch eager, or the network exported to ONNX and run by onnxruntime
in float32 or int8 (`saliency.export`).

Exports are cached in a folder of the run (`RUN/export/`), named after a digest of the weights, the input size and
the backend, each with a checked JSON record of its own digest, written atomically. A cached export is used only
when its bytes match that record and, for float32, its output matches the torch model's on a check batch (so an
export made by older model code is stale too); an int8 export only when it was made from that float32 export.
Anything else is rebuilt, never used.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from saliency.export import (INPUT, input_channels, max_difference, onnx_float32, quantize_int8,
                             require_onnxruntime, run_calibration_images)
from saliency.infra.errors import OutputError, UserError
from saliency.infra.rundir import atomic_write_bytes, atomic_write_checked_json, load_checked_json

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
AUTO = "auto"  # the fastest backend installed (`resolve_backend`)
EXPORT_FOLDER = "export"  # where a run directory keeps its exports
EXPORT_FORMAT = 2  # in every cache key: bump it when exports are made differently, so that older ones go stale
PARITY = 1e-4  # float32 export vs torch: max |difference|, relative to the output's scale when that exceeds 1

Calibration = Callable[[], Iterable[np.ndarray]]  # int8 calibration batches `[n,3,H,W]`; called only to build one

log = logging.getLogger(__name__)


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(name: str | None, device: torch.device | str = "cpu") -> str:
    """`name` checked; `auto` (or None) → onnxruntime on a CPU when installed (3–6× torch eager there), else torch
    (on a GPU torch is the fast one). An onnxruntime backend, `auto` on a CPU included, runs on torch when
    onnxruntime is not installed, with one warning line per process."""
    name = AUTO if name is None else name
    if name not in (AUTO, *BACKENDS):
        raise UserError(f"unknown backend {name!r} (known: {AUTO}, {', '.join(BACKENDS)})")
    if name == "torch" or (name == AUTO and torch.device(device).type != "cpu"):
        return "torch"
    if not onnxruntime_installed():
        warn_torch_instead(name)
        return "torch"
    return "onnxruntime" if name == AUTO else name


@functools.cache
def warn_torch_instead(name: str) -> None:
    """The one line saying that backend `name` runs on torch for want of onnxruntime (once per process and name:
    a command resolves its backend for each model it runs)."""
    wanted = "the fastest backend (auto)" if name == AUTO else name
    log.warning("onnxruntime is not installed: running on torch instead of %s (pip install onnxruntime)", wanted)


class OnnxSession:
    """An export on onnxruntime's CPU provider: float `[N,3,H,W]` at the exported H×W → its output, returned on
    the input's device. `spinning`: its threads busy-wait between operators (a small model runs 1.4× faster alone),
    which steals the cores from any other thread working at the same time (a video decoder, torch).

    An image's output depends on the export's bytes and the image alone, bit for bit (cached features and resumed
    runs rely on it): one operator at a time, deterministic kernels, and onnxruntime's CPU kernels share work out
    by output element, so neither a fresh session, the thread count nor the other images of a batch change it
    (tested: tests/saliency/test_backends.py, tests/vidcap/inference/test_front_end_backend.py)."""

    def __init__(self, onnx: bytes, size: tuple[int, int], backend: str, spinning: bool = True):
        onnxruntime = require_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the command's `threads`, as torch uses them
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.use_deterministic_compute = True
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self.size, self.backend = tuple(size), backend

    def batch_is_dynamic(self) -> bool:
        """Whether the export takes any batch size (its input's first dimension is named, not a number)."""
        return not isinstance(self.session.get_inputs()[0].shape[0], int)

    def accepts(self, x: Tensor) -> bool:
        """Whether `x` has the H×W this export was made for."""
        return tuple(x.shape[-2:]) == self.size

    def __call__(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {INPUT: x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


class ExportedModel(nn.Module):
    """`model` whose inputs of the exported H×W run on its onnxruntime export; inputs of any other size (an overlay
    at the video's own resolution) run `model` itself."""

    def __init__(self, model: nn.Module, session: OnnxSession):
        super().__init__()
        self.model, self.session = model, session
        self.in_channels = input_channels(model)  # what the model takes: a motion model 6 channels
        self.motion_gap = getattr(model, "motion_gap", 0)  # and how many frames back it looks

    def forward(self, x: Tensor) -> Tensor:
        return self.session(x) if self.session.accepts(x) else self.model(x)


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state: every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ExportCache:
    """`folder/<name>-<backend>-<H>x<W>-<key>.onnx` and its record `….onnx.json` (`{"onnx_sha256", "source",
    ...}`); `folder` None keeps nothing. A folder that cannot be written is warned about, and the export used from
    memory."""

    def __init__(self, folder: str | Path | None, name: str, size: tuple[int, int], key: str):
        self.folder, self.name, self.size, self.key = None if folder is None else Path(folder), name, size, key

    def path(self, backend: str) -> Path:
        return self.folder / f"{self.prefix(backend)}{self.key[:16]}.onnx"

    def prefix(self, backend: str) -> str:
        return f"{self.name}-{backend}-{self.size[0]}x{self.size[1]}-"

    def read(self, backend: str, source: str | None = None) -> bytes | None:
        """The cached bytes, or None when absent, damaged (warned) or made from another `source` (float32 export)."""
        if self.folder is None:
            return None
        path = self.path(backend)
        record = path.with_name(path.name + ".json")
        if not (path.is_file() and record.is_file()):  # none, or a build interrupted before its record
            return None
        try:
            meta = load_checked_json(record)
            data = path.read_bytes()
        except (UserError, OSError) as error:
            log.warning("%s: cached export unreadable (%s): rebuilt", path, error)
            return None
        if meta.get("onnx_sha256") != hashlib.sha256(data).hexdigest():
            log.warning("%s: cached export damaged (its bytes do not match its record): rebuilt", path)
            return None
        return data if meta.get("source") == source else None

    def write(self, backend: str, data: bytes, source: str | None = None) -> None:
        """Store `data` (atomically, then its record), and remove the exports of other weights of this name, backend
        and size."""
        if self.folder is None:
            return
        path = self.path(backend)
        try:
            atomic_write_bytes(path, data)
            atomic_write_checked_json(path.with_name(path.name + ".json"), {
                "onnx_sha256": hashlib.sha256(data).hexdigest(), "source": source, "backend": backend,
                "size": list(self.size), "key": self.key, "format": EXPORT_FORMAT,
                "torch": torch.__version__, "onnxruntime": require_onnxruntime().__version__})
        except OutputError as error:
            log.warning("%s; the export is used from memory this time", error)
            return
        for old in self.folder.glob(f"{self.prefix(backend)}*.onnx*"):
            if not old.name.startswith(path.name):
                old.unlink(missing_ok=True)


def exported_session(module: nn.Module, backend: str, size: tuple[int, int], folder: str | Path | None = None,
                     name: str = "model", calibration: Calibration | None = None, output: str = "output",
                     spinning: bool = True) -> OnnxSession:
    """An onnxruntime session of frozen `module` at input `size` for `backend` (onnxruntime or onnxruntime-int8),
    from the cache in `folder` or built there: float32 checked against torch (≤ `PARITY`), int8 quantized from it
    with `calibration()` batches. `spinning` as `OnnxSession` takes it."""
    module = module if all(p.device.type == "cpu" for p in module.parameters()) else copy.deepcopy(module).cpu()
    module = module.eval()
    key = hashlib.sha256(f"{weights_digest(module)}/{output}/{EXPORT_FORMAT}".encode()).hexdigest()
    cache = ExportCache(folder, name, size, key)
    fp32 = cache.read("onnxruntime")
    session = None if fp32 is None else OnnxSession(fp32, size, "onnxruntime", spinning)
    if session is not None and (why := stale(module, session, size)):
        log.warning("%s: cached export %s: rebuilt", cache.path("onnxruntime"), why)
        session = None
    if session is None:
        try:
            fp32 = onnx_float32(module, size, output)
        except UserError:
            raise  # onnxruntime missing, or a batch the exporter fixed: its own message
        except Exception as error:  # the exporter's own errors are long; their first line says which operation
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{name}: torch could not export it to ONNX ({reason}); use --backend torch") from None
        session = OnnxSession(fp32, size, "onnxruntime", spinning)
        error = max_difference(module, session, size, relative=True)
        if error > PARITY:
            raise UserError(f"{name}: its ONNX export differs from torch by {error:.1e} (> {PARITY:.0e}); "
                            "use --backend torch")
        cache.write("onnxruntime", fp32)
    if backend == "onnxruntime":
        return session
    source = hashlib.sha256(fp32).hexdigest()
    int8 = cache.read(backend, source)
    if int8 is None:
        if calibration is None:
            raise UserError(f"{name}: int8 needs calibration images")
        int8 = quantize_int8(fp32, calibration())
        cache.write(backend, int8, source)
    return OnnxSession(int8, size, backend, spinning)


def stale(module: nn.Module, session: OnnxSession, size: tuple[int, int]) -> str | None:
    """Why a cached float32 export of `module` must not be used (made by older code), or None when it may."""
    if not session.batch_is_dynamic():
        return "has a fixed batch size (older code?)"
    if max_difference(module, session, size, relative=True) > PARITY:
        return "no longer computes what the model does (older code?)"
    return None


def on_backend(model: nn.Module, backend: str, size: tuple[int, int], folder: str | Path | None = None,
               name: str = "model", calibration: Calibration | None = None, output: str = "log_density",
               spinning: bool = True) -> nn.Module:
    """Frozen `model` itself for torch, else an `ExportedModel` running its export at `size` on onnxruntime."""
    if backend == "torch":
        return model
    return ExportedModel(model, exported_session(model, backend, size, folder, name, calibration, output, spinning))


def run_on_backend(run_dir: str | Path, model: nn.Module, backend: str | None, size: tuple[int, int]) -> nn.Module:
    """A saliency run's model on `backend` (checked; `auto`: the fastest installed) at input `size`: exports cached
    in `RUN/export/`, int8 calibrated on the run's own training images."""
    device = next(model.parameters()).device
    return on_backend(model, resolve_backend(backend, device), size, Path(run_dir) / EXPORT_FOLDER,
                      calibration=lambda: run_calibration_images(run_dir, size))
