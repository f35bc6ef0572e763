"""Speed and size of the student against every teacher, measured side by side in one run.

    python benchmarks/saliency_speed.py [--size 288x384] [--batches 1,8] [--json benchmarks/results/saliency_speed.json]

Prints params, MB, GFLOPs, ms/image for each model, the student's speed-up and size reduction over
each teacher, and the achieved GFLOP/s as a fraction of this machine's measured float32 matmul peak.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from saliency.bench import benchmark, format_table
from saliency.infra.commandline import parse_size
from saliency.infra.rundir import atomic_write_json

TEACHERS = ["teacher-vgg16", "teacher-resnet50", "teacher-densenet121", "teacher-mobilenetv2"]
FULL_SIZE = {"teacher-vgg16", "teacher-resnet50", "teacher-densenet121"}


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n×n matmul: the machine's practical compute ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(288, 384))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/saliency_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"measured float32 matmul peak {peak:.1f} GFLOP/s")
    results = {"size": list(args.size), "threads": torch.get_num_threads(), "matmul_peak_gflops": peak, "batches": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        rows = benchmark(TEACHERS + ["student"], size=args.size, batch=batch, rounds=args.rounds)
        student = rows[-1]
        for row in rows:
            row["achieved_gflops_per_s"] = row["gflops"] / (row["ms_per_image"] / 1000)
            row["fraction_of_peak"] = row["achieved_gflops_per_s"] / peak
        print(f"\n## input {args.size[0]}x{args.size[1]}, batch {batch}")
        print(format_table(rows))
        print(f"\n{'teacher':<24}{'student speed-up':>18}{'student size':>16}{'teacher GFLOP/s':>17}{'% of peak':>11}")
        for row in rows[:-1]:
            speedup = row["ms_per_image"] / student["ms_per_image"]
            smaller = 1 - student["params"] / row["params"]
            mark = "" if row["model"] in FULL_SIZE else "  (cheap teacher)"
            print(f"{row['model']:<24}{speedup:>17.2f}x{smaller:>15.2%}{row['achieved_gflops_per_s']:>17.1f}"
                  f"{row['fraction_of_peak']:>10.1%}{mark}")
            row["student_speedup"], row["student_size_reduction"] = speedup, smaller
        print(f"{'student':<24}{'':>18}{'':>16}{student['achieved_gflops_per_s']:>17.1f}{student['fraction_of_peak']:>10.1%}")
        results["batches"][str(batch)] = rows
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
