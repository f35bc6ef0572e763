"""Does distillation by feature statistics work? Teachers, distilled students and baselines on held-out synthetic data.

    python benchmarks/saliency_distillation.py [--teachers teacher-resnet50,...] [--n 800] [--student-seeds 0,1,2]

For each teacher: train it on synthetic SALICON-layout data, then train the same student six ways
with the same data, budget and seed — ground truth only (no KD), the paper's statistics (first +
second order + output), the FitNets hint baseline, and the first-order / second-order / output-only
ablations — and score all of them with the seven metrics on the held-out test split. With several
student seeds (same data and teacher, different initialisation and batch order) it also prints each
metric's mean, and each student's CC gain over the no-KD student of the same seed. Existing runs are
reused, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from saliency.infra.commandline import parse_size
from saliency.infra.config import apply_overrides, from_dict
from saliency.data import open_dataset
from saliency.distill import DistillConfig
from saliency.evaluate import evaluate_model
from saliency.models import load
from saliency.infra.rundir import atomic_write_json
from saliency.synthetic import write_salicon
from saliency.infra.training import continue_training
from saliency.train import SaliencyRunConfig, SaliencyTrainer

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


def student_dir(out: Path, teacher_name: str, name: str, seed: int, base_seed: int) -> Path:
    """Where a student run lives: the no-KD student is shared by all teachers; seeds other than the base get a suffix."""
    run = name if STUDENTS[name] is None else f"{teacher_name}--{name}"
    return out / (run if seed == base_seed else f"{run}-seed{seed}")


def score(run_dir: Path, held_out, size: tuple[int, int]) -> dict[str, float]:
    """The seven metrics of a trained run on the held-out split, and its parameter count."""
    model = load(run_dir)
    row = evaluate_model(model, held_out, size, metrics=COLUMNS, progress=False)
    row["params"] = sum(p.numel() for p in model.parameters())
    return row


def summarise(students: dict[int, dict[str, dict]], teacher_cc: float) -> dict[str, dict]:
    """Per student: each metric's mean and std over seeds, and its CC gain over the no-KD student of the same seed."""
    seeds = list(students)
    summary = {}
    for name in next(iter(students.values())):
        row = {}
        for column in COLUMNS:
            values = [students[s][name][column] for s in seeds]
            row[column] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        gains = [students[s][name]["CC"] - students[s]["student-no-kd"]["CC"] for s in seeds]
        row["CC_vs_teacher"] = row["CC"]["mean"] / teacher_cc
        row["CC_gain_over_no_kd"] = {"mean": statistics.mean(gains), "wins": sum(g > 0 for g in gains)}
        summary[name] = row
    return summary


def print_tables(teacher_name: str, teacher: dict, students: dict[int, dict[str, dict]], summary: dict,
                 held_out_images: int, size: tuple[int, int]) -> None:
    header = f"{'model':<24}" + "".join(f"{c:>10}" for c in COLUMNS)
    for seed, rows in students.items():
        print(f"\n## {teacher_name}: held-out synthetic test split ({held_out_images} images, {size[0]}x{size[1]}), student seed {seed}")
        print(header + f"{'CC/teacher':>12}{'params':>11}")
        for name, row in {teacher_name: teacher, **rows}.items():
            print(f"{name:<24}" + "".join(f"{row[c]:>10.4f}" for c in COLUMNS)
                  + f"{row['CC'] / teacher['CC']:>12.3f}{row['params']:>11,}")
    if len(students) > 1:
        print(f"\n## {teacher_name}: mean over {len(students)} student seeds (std of CC; CC gain over no-KD, seeds won)")
        print(header + f"{'CC std':>9}{'CC gain':>9}{'won':>5}")
        for name, row in summary.items():
            gain = row["CC_gain_over_no_kd"]
            print(f"{name:<24}" + "".join(f"{row[c]['mean']:>10.4f}" for c in COLUMNS)
                  + f"{row['CC']['std']:>9.4f}{gain['mean']:>+9.4f}{gain['wins']:>3}/{len(students)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="teacher-resnet50")
    parser.add_argument("--n", type=int, default=800, help="synthetic images (70/15/15 train/val/test)")
    parser.add_argument("--size", type=parse_size, default=(96, 128), help="training and evaluation resolution, HxW")
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--student-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the teachers")
    parser.add_argument("--student-seeds", default=None,
                        help="comma-separated seeds to train every student with (default: --seed)")
    parser.add_argument("--students", default=",".join(STUDENTS),
                        help="comma-separated subset of the students (student-no-kd, the reference, is always trained)")
    parser.add_argument("--out", default="runs/bench-distill")
    parser.add_argument("--json", default="runs/bench/saliency_distillation.json",
                        help="where the results go (default %(default)s; the committed reference is benchmarks/results/saliency_distillation.json)")
    args = parser.parse_args()
    out = Path(args.out)
    height, width = args.size
    seeds = [int(s) for s in args.student_seeds.split(",")] if args.student_seeds else [args.seed]
    unknown = set(args.students.split(",")) - set(STUDENTS)
    if unknown:
        parser.error(f"unknown student {sorted(unknown)[0]!r} (known: {', '.join(STUDENTS)})")
    chosen = {name: preset for name, preset in STUDENTS.items() if name == "student-no-kd" or name in args.students.split(",")}
    data = out / "data"
    if not (data / "synthetic_meta.json").is_file():
        write_salicon(data, n=args.n, seed=args.seed, size=(height, width))
    common = [f"data.root={data}", f"data.size=[{height}, {width}]"]
    held_out = open_dataset(data, split="test")
    results: dict = {"n_images": args.n, "size": [height, width], "held_out_images": len(held_out),
                     "student_seeds": seeds, "teachers": {}}
    for teacher_name in args.teachers.split(","):
        teacher_dir = out / teacher_name
        teacher = {"train_seconds": train(teacher_dir, common + [
            f"seed={args.seed}", f"model.name={teacher_name}", "model.options={pretrained: false}",
            f"optim.epochs={args.teacher_epochs}", "optim.lr=1e-3"])}
        teacher.update(score(teacher_dir, held_out, (height, width)))
        students: dict[int, dict[str, dict]] = {}
        for seed in seeds:
            student = common + [f"seed={seed}", "model.name=student", f"optim.epochs={args.student_epochs}", "optim.lr=3e-3"]
            students[seed] = {}
            for name, preset in chosen.items():
                run_dir = student_dir(out, teacher_name, name, seed, args.seed)
                row = {"train_seconds": train(run_dir, student, teacher_dir if preset else None, preset)}
                row.update(score(run_dir, held_out, (height, width)))
                students[seed][name] = row
        summary = summarise(students, teacher["CC"])
        results["teachers"][teacher_name] = {"teacher": teacher, "students": students, "summary": summary}
        print_tables(teacher_name, teacher, students, summary, len(held_out), (height, width))
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
