"""Does distillation by feature statistics work? Teachers, distilled students and baselines on held-out synthetic data.

    python benchmarks/saliency_distillation.py [--teachers teacher-resnet50,...] [--n 800] [--out runs/bench-distill]

For each teacher: train it on synthetic SALICON-layout data, then train the same student five ways
with the same data, budget and seed — ground truth only (no KD), the paper's statistics (first +
second order + output), the FitNets hint baseline, and the first-order / second-order / output-only
ablations — and score all of them with the seven metrics on the held-out test split. Existing runs
are reused, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from saliency.config import apply_overrides, from_dict
from saliency.data import open_dataset
from saliency.distill import DistillConfig
from saliency.evaluate import evaluate_model
from saliency.models import load
from saliency.rundir import atomic_write_json
from saliency.synthetic import write_salicon
from saliency.train import SaliencyRunConfig, SaliencyTrainer, continue_training

STUDENTS = {  # run name → distillation preset (None: ground truth only)
    "student-no-kd": None,
    "student-statistics": "statistics",
    "student-fitnets": "fitnets",
    "student-first-order": "first-order",
    "student-second-order": "second-order",
    "student-output-only": "output-only",
}
COLUMNS = ["CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC"]


def train(out: Path, overrides: list[str], teacher: Path | None = None, preset: str | None = None) -> float:
    """Train one run (continuing it if interrupted, skipping it if finished); returns its training seconds."""
    config = from_dict(SaliencyRunConfig, apply_overrides({}, overrides))
    if teacher is not None:
        config.teacher = str(teacher)
        config.distill = DistillConfig.preset(preset)
    return continue_training(SaliencyTrainer, config, out)["train_seconds_this_session"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="teacher-resnet50")
    parser.add_argument("--n", type=int, default=800, help="synthetic images (70/15/15 train/val/test)")
    parser.add_argument("--size", default="96x128", help="training and evaluation resolution")
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--student-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-distill")
    parser.add_argument("--json", default="benchmarks/results/saliency_distillation.json")
    args = parser.parse_args()
    out = Path(args.out)
    height, width = (int(v) for v in args.size.split("x"))
    data = out / "data"
    if not (data / "synthetic_meta.json").is_file():
        write_salicon(data, n=args.n, seed=args.seed, size=(height, width))
    common = [f"data.root={data}", f"data.size=[{height}, {width}]", f"seed={args.seed}"]
    held_out = open_dataset(data, split="test")
    results: dict = {"n_images": args.n, "size": [height, width], "held_out_images": len(held_out), "teachers": {}}
    for teacher_name in args.teachers.split(","):
        teacher_dir = out / teacher_name
        run_dirs = {teacher_name: teacher_dir}
        rows = {teacher_name: {"train_seconds": train(teacher_dir, common + [
            f"model.name={teacher_name}", "model.options={pretrained: false}",
            f"optim.epochs={args.teacher_epochs}", "optim.lr=1e-3"])}}
        student = common + ["model.name=student", f"optim.epochs={args.student_epochs}", "optim.lr=3e-3"]
        for name, preset in STUDENTS.items():
            run_dirs[name] = out / f"{teacher_name}--{name}" if preset else out / name  # no-KD is shared by all teachers
            rows[name] = {"train_seconds": train(run_dirs[name], student, teacher_dir if preset else None, preset)}
        for name, run_dir in run_dirs.items():
            model = load(run_dir)
            rows[name].update(evaluate_model(model, held_out, (height, width), metrics=COLUMNS, progress=False))
            rows[name]["params"] = sum(p.numel() for p in model.parameters())
        teacher_cc = rows[teacher_name]["CC"]
        for row in rows.values():
            row["CC_vs_teacher"] = row["CC"] / teacher_cc
        results["teachers"][teacher_name] = rows
        print(f"\n## {teacher_name}: held-out synthetic test split ({len(held_out)} images, {height}x{width})")
        print(f"{'model':<24}" + "".join(f"{c:>10}" for c in COLUMNS) + f"{'CC/teacher':>12}{'params':>11}")
        for name, row in rows.items():
            print(f"{name:<24}" + "".join(f"{row[c]:>10.4f}" for c in COLUMNS) + f"{row['CC_vs_teacher']:>12.3f}{row['params']:>11,}")
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
