"""Side-by-side speed and size of saliency models on inference backends: params, MB, GFLOPs, ms/image, FPS,
achieved GFLOP/s and its fraction of this machine's matmul peak (a probe in the same run), speed ratio to the first."""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from saliency.backends import EXPORT_FOLDER, exported_session, resolve_backend
from saliency.export import require_onnxruntime, run_calibration_images
from saliency.infra.errors import UserError
from saliency.models import available_models, build_untrained, count_parameters, model_size_mb
from saliency.run import load

CHANNELS_LAST = "torch-channels-last"  # torch eager on NHWC tensors: measured here, not a backend of the commands
BENCH_BACKENDS = ("torch", CHANNELS_LAST, "onnxruntime", "onnxruntime-int8")
PROBE_SIZE = 1024  # n of the n×n matmuls that measure the peak: big enough for full speed, a second in all


def resolve_model(spec: str) -> torch.nn.Module:
    """A registry name (random weights: speed does not depend on them) or a run directory."""
    if Path(spec).is_dir():
        return load(spec)
    if spec not in available_models():
        raise UserError(f"{spec!r}: neither a run directory nor a model name ({', '.join(available_models())})")
    return build_untrained(spec)


def gflops_per_image(model: torch.nn.Module, size: tuple[int, int]) -> float:
    """Forward-pass GFLOPs for one image (1 multiply-add = 2 FLOPs), counted by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, model.in_channels, *size))
    return counter.get_total_flops() / 1e9


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peaks(n: int = PROBE_SIZE, repeats: int = 10) -> dict[str, float]:
    """This machine's practical compute ceilings from n×n matmuls, best of `repeats`: `float32` GFLOP/s (the faster
    of torch and onnxruntime) and, with onnxruntime, `int8` GOP/s (its MatMulInteger, uint8 × int8 → int32)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    peaks = {"float32": 2 * n**3 / _best_seconds(lambda: a @ b, repeats) / 1e9}
    try:
        onnxruntime = require_onnxruntime()
    except UserError:
        return peaks
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    for kind, op, element, result, left, right in (
            ("float32", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32),
             rng.standard_normal((n, n), dtype=np.float32)),
            ("int8", "MatMulInteger", TensorProto.UINT8, TensorProto.INT32,
             rng.integers(0, 256, (n, n), dtype=np.uint8), rng.integers(-128, 128, (n, n), dtype=np.int8))):
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["c"])], "probe",
                                  [helper.make_tensor_value_info("a", element, [n, n])],
                                  [helper.make_tensor_value_info("c", result, [n, n])],
                                  [numpy_helper.from_array(right, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        speed = 2 * n**3 / _best_seconds(lambda: session.run(None, {"a": left}), repeats) / 1e9
        peaks[kind] = max(peaks.get(kind, 0.0), speed)
    return peaks


def runner(spec: str, model: torch.nn.Module, backend: str, x: torch.Tensor) -> Callable[[], object]:
    """One forward pass of `model` on batch `x` as `backend` runs it. onnxruntime exports of a run directory are
    cached in it (int8 calibrated on its training images); those of a registry name are made in memory, int8
    calibrated on random images (the speed does not depend on them)."""
    if backend == "torch":
        return lambda: model(x)
    if backend == CHANNELS_LAST:
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        return lambda: nhwc(x_nhwc)
    size = tuple(x.shape[-2:])
    if Path(spec).is_dir():
        folder, calibration = Path(spec) / EXPORT_FOLDER, lambda: run_calibration_images(spec, size)
    else:
        images = torch.randn(8, 1, *x.shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
        folder, calibration = None, lambda: list(images)
    session = exported_session(model, backend, size, folder, calibration=calibration, output="log_density")
    return lambda: session(x)


@torch.no_grad()
def benchmark(specs: list[str], size: tuple[int, int] = (288, 384), batch: int = 1, rounds: int = 5,
              iters: int = 5, warmup: int = 2, progress: bool = True, backends: tuple[str, ...] = ("torch",),
              peaks: dict[str, float] | None = None) -> list[dict]:
    """Time every (model, backend) in interleaved rounds (so machine noise hits all alike); median ms per image.
    `peaks` (`matmul_peaks()`, measured here when None) scale `peak_fraction`: int8 rows against the int8 peak."""
    unknown = [b for b in backends if b not in BENCH_BACKENDS]
    if unknown:
        raise UserError(f"unknown backend {unknown[0]!r} (known: {', '.join(BENCH_BACKENDS)})")
    backends = tuple(dict.fromkeys(b if b == CHANNELS_LAST else resolve_backend(b) for b in backends))
    peaks = peaks or matmul_peaks()
    models = {spec: resolve_model(spec).eval() for spec in specs}
    inputs = {spec: torch.randn(batch, model.in_channels, *size, generator=torch.Generator().manual_seed(0))
              for spec, model in models.items()}  # a motion model takes 6 channels
    runs = {(spec, backend): runner(spec, models[spec], backend, inputs[spec]) for spec in specs for backend in backends}
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in tqdm(range(rounds), desc="benchmark rounds", disable=not progress, leave=False):
        for key, run in runs.items():
            start = time.perf_counter()
            for _ in range(iters):
                run()
            times[key].append((time.perf_counter() - start) * 1000 / (iters * batch))
    flops = {spec: gflops_per_image(model, size) for spec, model in models.items()}
    rows = []
    for (spec, backend), samples in times.items():
        params = count_parameters(models[spec])
        ms = statistics.median(samples)
        achieved = flops[spec] / (ms / 1000)
        peak = peaks.get("int8") if backend == "onnxruntime-int8" else peaks["float32"]
        rows.append({"model": spec, "backend": backend, "params": params, "mb": model_size_mb(models[spec]),
                     "gflops": flops[spec], "ms_per_image": ms, "fps": 1000 / ms, "gflops_per_s": achieved,
                     "peak_fraction": achieved / peak if peak else None})
    for row in rows:
        row["speed_ratio_vs_first"] = rows[0]["ms_per_image"] / row["ms_per_image"]
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of `benchmark` rows."""
    header = (f"{'model':<24}{'backend':<21}{'params':>12}{'MB':>8}{'GFLOPs':>8}{'ms/image':>10}{'FPS':>9}"
              f"{'GFLOP/s':>9}{'% peak':>8}{'speed vs first':>16}")
    lines = [header, "-" * len(header)]
    for r in rows:
        share = f"{r['peak_fraction']:>8.1%}" if r["peak_fraction"] is not None else f"{'':>8}"
        lines.append(f"{r['model']:<24}{r['backend']:<21}{r['params']:>12,}{r['mb']:>8.2f}{r['gflops']:>8.2f}"
                     f"{r['ms_per_image']:>10.2f}{r['fps']:>9.1f}{r['gflops_per_s']:>9.1f}{share}"
                     f"{r['speed_ratio_vs_first']:>15.2f}x")
    return "\n".join(lines)
