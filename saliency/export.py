"""ONNX export of a frozen image network (float32, checked against onnxruntime) and its int8 static quantization
(QDQ, per-channel weights) calibrated on the run's own training images."""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from saliency.infra.errors import DatasetError, UserError
from saliency.infra.rundir import RunDir, atomic_write_bytes
from saliency.infra.stats import spread

INPUT = "image"  # every export's input: float [N,C,H,W], ImageNet-normalised RGB (C=3; a motion model's C=6), N free
EXAMPLE_BATCH = 2  # the exporter's example input: with a batch of 1 it may specialise N to 1 (torch's 0/1 rule)
CHECK_BATCHES = (1, 2)  # parity is checked at each: a single image, and the dynamic batch
CALIBRATION_IMAGES = 64  # int8: enough to place every activation range; min-max calibration keeps only the ranges


def require_onnxruntime():
    """The onnxruntime module, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs onnxruntime, onnx and onnxscript: pip install onnxruntime onnx onnxscript") \
            from None
    return onnxruntime


def seeded_images(size: tuple[int, int], count: int, channels: int = 3) -> torch.Tensor:
    """A fixed random batch `[count,channels,H,W]` from its own generator: exporting and checking draw nothing from
    torch's global one, so a training run's random stream (dropout) is the same whether its export was cached or
    made."""
    return torch.randn(count, channels, *size, generator=torch.Generator().manual_seed(0))


def input_channels(model: torch.nn.Module) -> int:
    """The channels `model` takes: its `in_channels` (a saliency net: 3, or 6 seeing motion), else RGB's 3."""
    return getattr(model, "in_channels", 3)


def onnx_float32(model: torch.nn.Module, size: tuple[int, int], output: str = "log_density") -> bytes:
    """`model`'s forward as ONNX bytes (torch.export-based exporter): input `image` `[N,3,H,W]` with a dynamic
    batch N, H×W fixed to `size`; output named `output`. A one-line UserError if the exporter fixed N anyway."""
    require_onnxruntime()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        example = seeded_images(size, EXAMPLE_BATCH, input_channels(model))
        program = torch.onnx.export(model.eval(), (example,), dynamo=True,
                                    input_names=[INPUT], output_names=[output], dynamic_shapes=({0: batch},),
                                    verbose=False)
    fixed = program.model_proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    if fixed:
        raise UserError(f"the ONNX exporter fixed the batch dimension to {fixed} (torch {torch.__version__}); "
                        "use --backend torch")
    return program.model_proto.SerializeToString()


def max_difference(model: torch.nn.Module, run_onnx, size: tuple[int, int], relative: bool = False) -> float:
    """max |onnxruntime − torch| of the outputs on a seeded random image alone and in a batch of two (the batch
    axis is dynamic); `run_onnx` is ONNX bytes or a callable `[N,3,H,W]` tensor → tensor. `relative`: divided by
    the largest |torch output| when that exceeds 1 (features of any scale)."""
    run_onnx = plain_session(run_onnx) if isinstance(run_onnx, bytes) else run_onnx
    errors = []
    for count in CHECK_BATCHES:
        check = seeded_images(size, count, input_channels(model))
        with torch.no_grad():
            expected = model.eval()(check).numpy()
        error = float(np.abs(run_onnx(check).numpy() - expected).max())
        errors.append(error / max(1.0, float(np.abs(expected).max())) if relative else error)
    return max(errors)


def plain_session(onnx: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    """ONNX bytes on onnxruntime's CPU provider with its default options, as a `[N,3,H,W]` tensor → tensor call."""
    session = require_onnxruntime().InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {INPUT: x.numpy()})[0])


def quantize_int8(onnx: bytes, calibration: Iterable[np.ndarray]) -> bytes:
    """Static post-training quantization of float32 ONNX bytes: QDQ format, int8 weights per output channel, uint8
    activations whose ranges are the min and max seen on the `calibration` batches (`[n,3,H,W]` float32)."""
    require_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}

    with tempfile.TemporaryDirectory(prefix="saliency-int8-") as folder, root_logger_quiet():
        fp32, prepared, int8 = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(onnx)
        # ONNX Runtime's pre-processing (shape inference, graph optimisation) places the QDQ pairs better; its
        # symbolic shape inference fails on the models' centre-bias arithmetic and is not needed at fixed H×W.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return int8.read_bytes()


@contextlib.contextmanager
def root_logger_quiet() -> Iterator[None]:
    """Below ERROR, nothing logged through the root logger gets out, and logging.warning() configures no handler:
    onnxruntime's quantizer writes a warning there per tensor it leaves in float (DenseNet's batch norms), which
    would otherwise print hundreds of lines and leave a handler on the root logger for the whole process."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    root.addFilter(keep_errors := lambda record: record.levelno >= logging.ERROR)
    try:
        yield
    finally:
        root.removeFilter(keep_errors)
        root.removeHandler(guard)


def run_calibration_images(run_dir: str | Path, size: tuple[int, int],
                           count: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to `count` images of the saliency run's own training split, spread evenly over it, as the model's
    normalised `[1,C,H,W]` float32 batches at `size` (a motion model's with each frame's earlier frame); a
    one-line UserError naming the folder when it has none."""
    from saliency.data import open_dataset
    from saliency.evaluate import model_input
    from saliency.run import SaliencyRunConfig

    config = RunDir(run_dir).load_config(SaliencyRunConfig)
    data, motion = config.data, config.motion
    where = f"{data.root} (split {data.train_split})"
    try:
        reader = open_dataset(data.root, kind=data.kind, split=data.train_split, frame_gap=motion or 1)
    except UserError as error:
        raise UserError(f"int8 calibration needs the run's training images, looked in {where}: {error}") from None
    batches = []
    for index in spread(len(reader), count):
        try:
            sample = reader[index]
            batches.append(model_input([sample.image], size, [sample.previous], motion).numpy())  # (1, C, H, W)
        except DatasetError:
            continue  # an unreadable image calibrates nothing; the others do
    if not batches:
        raise UserError(f"int8 calibration needs the run's training images: none readable in {where}")
    return batches


def export_onnx(model: torch.nn.Module, path: str | Path, size: tuple[int, int], tolerance: float = 1e-4,
                calibration: Iterable[np.ndarray] | None = None) -> float:
    """Write `path` (dynamic batch, fixed H×W; int8 when `calibration` batches are given) atomically and return the
    float32 export's max |torch − onnxruntime| on random batches of one and two, which must stay within
    `tolerance`."""
    onnx = onnx_float32(model, size)
    error = max_difference(model, onnx, size)
    if error > tolerance:
        raise UserError(f"{path}: ONNX output differs from PyTorch by {error:.2e} (> {tolerance:.0e})")
    atomic_write_bytes(path, onnx if calibration is None else quantize_int8(onnx, calibration))
    return error
