"""Side-by-side speed and size of saliency models: params, MB, GFLOPs, ms/image, speed ratio to the first."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from saliency.models import available_models, build_untrained, load
from saliency.infra.errors import UserError


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
        model(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def benchmark(specs: list[str], size: tuple[int, int] = (288, 384), batch: int = 1, rounds: int = 5,
              iters: int = 5, warmup: int = 2, progress: bool = True) -> list[dict]:
    """Time every model in interleaved rounds (so machine noise hits all alike); median ms per image."""
    models = {spec: resolve_model(spec).eval() for spec in specs}
    x = torch.randn(batch, 3, *size)
    for model in models.values():
        for _ in range(warmup):
            model(x)
    times: dict[str, list[float]] = {spec: [] for spec in specs}
    for _ in tqdm(range(rounds), desc="benchmark rounds", disable=not progress, leave=False):
        for spec, model in models.items():
            start = time.perf_counter()
            for _ in range(iters):
                model(x)
            times[spec].append((time.perf_counter() - start) * 1000 / (iters * batch))
    rows = []
    for spec, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        rows.append({"model": spec, "params": params, "mb": params * 4 / 2**20,
                     "gflops": gflops_per_image(model, size), "ms_per_image": statistics.median(times[spec])})
    for row in rows:
        row["speed_ratio_vs_first"] = rows[0]["ms_per_image"] / row["ms_per_image"]
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of `benchmark` rows."""
    header = f"{'model':<24}{'params':>12}{'MB':>9}{'GFLOPs':>9}{'ms/image':>10}{'speed vs first':>16}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['model']:<24}{r['params']:>12,}{r['mb']:>9.2f}{r['gflops']:>9.2f}"
                     f"{r['ms_per_image']:>10.1f}{r['speed_ratio_vs_first']:>15.2f}x")
    return "\n".join(lines)
