"""Speed and size of the student against every teacher on every inference backend, measured side by side in one run.

    python benchmarks/saliency_speed.py [--size 288x384] [--batches 1,8] [--json benchmarks/results/saliency_speed.json]

Backends: torch eager, torch with channels-last tensors, onnxruntime float32 and onnxruntime int8 (static, QDQ,
per-channel; calibrated on random images, which does not change the speed). Prints, per batch size, params, MB,
GFLOPs, ms/image, FPS, achieved GFLOP/s and its fraction of this machine's matmul peak measured in the same run
(float32: the faster of torch and onnxruntime; int8 rows against onnxruntime's int8 MatMulInteger peak), then the
student's speed-up and size reduction over each teacher on the same backend.
"""
from __future__ import annotations

import argparse
import os
import platform

import torch

from saliency.bench import BENCH_BACKENDS, benchmark, format_table, matmul_peaks
from saliency.infra.commandline import parse_size
from saliency.infra.rundir import atomic_write_json

TEACHERS = ["teacher-vgg16", "teacher-resnet50", "teacher-densenet121", "teacher-mobilenetv2"]
FULL_SIZE = {"teacher-vgg16", "teacher-resnet50", "teacher-densenet121"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(288, 384))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default=",".join(BENCH_BACKENDS))
    parser.add_argument("--models", default=",".join(TEACHERS + ["student"]), help="the student last")
    parser.add_argument("--json", default="runs/bench/saliency_speed.json",
                        help="where the results go (default %(default)s; the committed reference is "
                             "benchmarks/results/saliency_speed.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends = tuple(args.backends.split(","))
    models = args.models.split(",")
    peaks = matmul_peaks()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; measured matmul peak {peaks['float32']:.1f} GFLOP/s float32, {peaks.get('int8', 0):.1f} GOP/s int8")
    results = {"size": list(args.size), "threads": torch.get_num_threads(), "matmul_peak_gflops": peaks["float32"],
               "int8_matmul_peak_gops": peaks.get("int8"), "batches": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        rows = benchmark(models, size=args.size, batch=batch, rounds=args.rounds, backends=backends, peaks=peaks)
        print(f"\n## input {args.size[0]}x{args.size[1]}, batch {batch}")
        print(format_table(rows))
        student = {row["backend"]: row for row in rows if row["model"] == models[-1]}
        print(f"\n{'teacher':<24}{'backend':<21}{'student speed-up':>18}{'student size':>14}")
        for row in rows:
            if row["model"] == models[-1]:
                continue
            row["student_speedup"] = row["ms_per_image"] / student[row["backend"]]["ms_per_image"]
            row["student_size_reduction"] = 1 - student[row["backend"]]["params"] / row["params"]
            mark = "" if row["model"] in FULL_SIZE else "  (cheap teacher)"
            print(f"{row['model']:<24}{row['backend']:<21}{row['student_speedup']:>17.2f}x"
                  f"{row['student_size_reduction']:>13.2%}{mark}")
        eager, best = student["torch"], min(student.values(), key=lambda row: row["ms_per_image"])
        summary = (f"\nstudent: fastest on {best['backend']}, {best['fps']:.0f} FPS, "
                   f"{eager['ms_per_image'] / best['ms_per_image']:.2f}x torch eager")
        if "onnxruntime" in student:
            summary += f"; onnxruntime float32 at {student['onnxruntime']['peak_fraction']:.1%} of the float32 peak"
        print(summary)
        results["batches"][str(batch)] = rows
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
