"""Corruption battery: damage every file a saliency run, a captioner run and a feature cache hold, and load it.

    python -m benchmarks.corruption_battery [--flips 30] [--cuts 8] [--seed 0] [--json benchmarks/results/corruption_battery.json]

A tiny student and a tiny captioner are trained by the real commands on generated data (the captioner's feature
cache gets two shards). Each file is then damaged in turn, `--flips` bytes changed at seeded offsets (one bit or a
random byte; for safetensors half in the header, half in the tensor data), cut short at `--cuts` seeded lengths,
and replaced by a pickle, a torch.save zip, a PNG, JSON, YAML, random bytes and nothing, and read by its real loader:
`saliency.load` and `vidcap.run.load_run` for config.yaml, tokenizer.json and model.safetensors,
`RunDir.load_train_state`, `completed_epochs` and `load_metrics` for the training state and metrics, and
`extract_splits` then a fresh `FeatureCache` for the cache. Outcomes (tests.support.corruption): a one-line error
naming the file, an identical load, a cache rebuilt with a warning (good); silently different, or any other
failure (bad). Exported ONNX files are left out: nothing in the project loads them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from tests.support import corruption
from tests.support import captioner_runs
from saliency.infra.rundir import atomic_write_json

COLUMNS = {"cases": "cases", corruption.ERROR: "one-line error", corruption.IDENTICAL: "identical",
           corruption.REBUILT: "rebuilt+logged", corruption.DIFFERENT: "silently different",
           corruption.FAILURE: "traceback/other"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=30, help="bytes changed, one case each, per file")
    parser.add_argument("--cuts", type=int, default=8, help="truncations per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="runs/bench/corruption_battery.json",
                        help="where the results go (default %(default)s; the committed reference is benchmarks/results/corruption_battery.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with contextlib.redirect_stdout(io.StringIO()):  # the commands' own summaries
            student = corruption.make_saliency_run(root)
            captioner, cache = captioner_runs.make_captioner_run(root)
        targets = [*corruption.saliency_targets(student), *captioner_runs.captioner_targets(captioner),
                   *captioner_runs.cache_targets(captioner, cache)]
        results = corruption.run_battery(targets, args.seed, args.flips, args.cuts)
    table = corruption.summarise(results)
    print(f"{'file':<36}" + "".join(f"{title:>{len(title) + 3}}" for title in COLUMNS.values()))
    for name, row in table.items():
        print(f"{name:<36}" + "".join(f"{row[key]:>{len(title) + 3}}" for key, title in COLUMNS.items()))
    bad = [r for r in results if r["outcome"] not in corruption.GOOD]
    for record in bad:
        print(f"BAD {record['file']}, {record['damage']}: {record['outcome']} ({record['detail']})")
    print(f"{len(results)} cases, {len(bad)} bad, {time.perf_counter() - started:.0f} s")
    atomic_write_json(args.json, {"settings": vars(args), "columns": COLUMNS, "table": table, "cases": results})


if __name__ == "__main__":
    main()
