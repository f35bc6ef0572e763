"""Does distillation by feature statistics work where saliency needs knowledge? The paper's regime in world v2.

    python benchmarks/saliency_distillation.py [--family mobilenetv2] [--pretrained RUN] [--student-seeds 0,1,2]

World v2 (gaze drawn by object knowledge; a colour heuristic fails there). A teacher backbone is pretrained on
synthetic object recognition (`saliency pretrain`, the stand-in for ImageNet) and trained on all the training
labels. The student starts from random weights and sees a small labelled set (`--labels`, default 200) plus the
training images without their maps (the unlabelled pool), which reach it only through the teacher. Arms, every
one with the same data, initial weights and seed:

- `no-kd`: the labelled images only, as many optimiser steps as a distilled student; `no-kd-3x`: three times that;
- `all-labels`: every training label, no teacher (an upper bound for the student);
- `output-only` (the teacher's maps as pseudo-labels on the pool), `fitnets`, `first-order`, `second-order`,
  `statistics` (both orders and the output): distilled with the pool.

`--sweep` first compares variants of the statistics preset's weights at seed 0 on the validation split; where one
beats the preset there, every seed also trains it (`statistics@NAME`) and the teacher's maps alone at its output
weight (`output-only@NAME`), so that what the statistics add is measured at the chosen weights too.

Scored on the held-out test split (per image, so that each arm's CC gain over `no-kd` of the same seed gets a
paired bootstrap 95% interval, and the share of the teacher − no-KD gap it closes), beside the world's baselines
(colour heuristic, centre prior, a second set of observers, the world's own density). Every run directory is kept
and reused: an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from saliency.world import baseline_scores
from saliency.data import open_dataset
from saliency.distill import DistillConfig
from saliency.evaluate import evaluate_model
from saliency.infra.commandline import parse_size
from saliency.infra.config import apply_overrides, from_dict
from saliency.infra.rundir import RunDir, atomic_write_json
from saliency.infra.stats import paired_bootstrap
from saliency.infra.training import continue_training
from saliency.models import build
from saliency.run import load
from saliency.models.components import count_parameters, model_size_mb
from saliency.pretrain import Pretrainer, PretrainConfig
from saliency.world import write_salicon
from saliency.train import SaliencyTrainer
from saliency.run import SaliencyRunConfig

ARMS = {  # name → (distillation preset or None, labels: "few" | "all", steps as a multiple of a distilled arm's)
    "no-kd": (None, "few", 1),  # the reference: trained first
    "statistics": ("statistics", "few", 1),
    "output-only": ("output-only", "few", 1),
    "first-order": ("first-order", "few", 1),
    "second-order": ("second-order", "few", 1),
    "fitnets": ("fitnets", "few", 1),
    "all-labels": (None, "all", 1),
    "no-kd-3x": (None, "few", 3),
}
STATISTIC_TERMS = ("attention", "channel_mean", "channel_variance", "gram", "position_similarity", "batch_similarity")
SWEEP = {  # variants of the statistics preset, trained at seed 0 and compared on the validation split only; the
    # first sweep ran when the preset's output weight was 1, and chose output 3 (now the preset): each variant is
    # spelt out. The last three vary the preset as it is now.
    "statistics": {},
    "output-1": {"output": 1.0},
    "statistics-x0.3": {"scale": 0.3, "output": 1.0},
    "statistics-x3": {"scale": 3.0, "output": 1.0},
    "covariance": {"second_order": "covariance", "output": 1.0},
    "output3-statistics-x3": {"scale": 3.0},
    "output3-statistics-x0.3": {"scale": 0.3},
    "output-10": {"output": 10.0},
}
COLUMNS = ["CC", "KLD", "NSS", "SIM"]
SPLITS = (0.7, 0.1, 0.2)  # train (labelled budget + the pool), validation (epoch selection), held-out test


def run_config(overrides: list[str]) -> SaliencyRunConfig:
    return from_dict(SaliencyRunConfig, apply_overrides({}, overrides))


def score(model, held_out, size: tuple[int, int]) -> tuple[dict[str, float], list[float]]:
    """Mean of each column on the held-out split, and the per-image CC (reading order) for paired comparisons."""
    per_image: dict[str, list[float]] = {}
    means = evaluate_model(model, held_out, size, metrics=COLUMNS, progress=False, per_image=per_image)
    return means, per_image["CC"]


def pretrained_backbone(args: argparse.Namespace, out: Path) -> Path:
    """The pretraining run the teacher starts from: `--pretrained`, or one trained (or continued) here."""
    if args.pretrained:
        return Path(args.pretrained)
    config = PretrainConfig(family=args.family, size=tuple(args.size), images_per_epoch=args.pretrain_images)
    config.optim.epochs = args.pretrain_epochs
    continue_training(Pretrainer, config, out / f"pretrain-{args.family}")
    return out / f"pretrain-{args.family}"


def arm_overrides(name: str, common: list[str], seed: int, labels: int, n_train: int, pool: int, args) -> list[str]:
    """The run config of arm `name`: its labels, pool and epochs so that its optimiser steps match the budget."""
    preset, label_set, multiple = ARMS[name]
    seen_per_epoch = labels + pool if preset else (labels if label_set == "few" else n_train)
    budget = args.student_epochs * (labels + pool) * multiple  # images a distilled arm sees in all
    epochs = max(1, round(budget / seen_per_epoch))
    overrides = common + [f"seed={seed}", "model.name=student", f"optim.epochs={epochs}", f"optim.lr={args.student_lr}"]
    return overrides + ([f"data.limit={labels}"] if label_set == "few" else [])


def varied(preset: str, variant: dict) -> DistillConfig:
    """Distillation preset `preset` with a SWEEP variant applied: `scale` multiplies every statistic's weight, the
    other keys set theirs."""
    config = DistillConfig.preset(preset)
    for term in STATISTIC_TERMS:
        setattr(config, term, getattr(config, term) * variant.get("scale", 1.0))
    for key, value in variant.items():
        if key != "scale":
            setattr(config, key, value)
    return config


def distilled_config(preset: str, variant: dict, overrides: list[str], teacher_dir: Path,
                     pool_dir: Path) -> SaliencyRunConfig:
    """The run config of a distilled arm: distillation preset `preset` varied by `variant` ({}: as it is)."""
    config = run_config(overrides)
    config.teacher, config.data.unlabeled = str(teacher_dir), str(pool_dir)
    config.distill = varied(preset, variant)
    return config


def sweep(args, common: list[str], data: Path, teacher_dir: Path, n_train: int, size: tuple[int, int],
          names: list[str]) -> dict:
    """Validation CC of the SWEEP variants `names` (seed 0, each its own run under OUT/sweep/; `statistics` is the
    preset, the arm's own run); the best one is the preset to commit. The test split is not read here."""
    validation = open_dataset(data, split="val")
    rows = {}
    for name in ["statistics", *[n for n in names if n != "statistics"]]:
        overrides = arm_overrides("statistics", common, 0, args.labels, n_train, n_train, args)
        config = distilled_config("statistics", SWEEP[name], overrides, teacher_dir, data / "images" / "train")
        run_dir = Path(args.out) / ("seed0/statistics" if name == "statistics" else f"sweep/{name}")
        continue_training(SaliencyTrainer, config, run_dir)
        means, _ = score(load(run_dir), validation, size)
        rows[name] = {"variant": SWEEP[name], "val_CC": means["CC"]}
    return {"validation_images": len(validation), "variants": rows,
            "chosen": max(rows, key=lambda name: rows[name]["val_CC"])}


def chosen_arms(results: dict) -> dict[str, tuple[str, str]]:
    """Where the validation sweep chose a variant other than the preset: its arm `statistics@NAME` and, as the
    control of what the statistics add at its weights, `output-only@NAME` (the teacher's maps alone, the variant's
    output weight) → (distillation preset, variant name); else none."""
    chosen = results.get("sweep", {}).get("chosen", "statistics")
    return {} if chosen == "statistics" else {f"{preset}@{chosen}": (preset, chosen)
                                              for preset in ("statistics", "output-only")}


def summarise(rows: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per arm over the seeds it has finished: mean CC, mean gain over no-KD, share of the gap closed, and how many
    seeds' intervals lie above 0."""
    summary = {}
    for name in dict.fromkeys(name for seed_rows in rows.values() for name in seed_rows):  # ARMS' order, then chosen
        per_seed = [rows[s][name] for s in rows if name in rows[s]]
        if not per_seed:
            continue
        row = {"seeds": len(per_seed)} | {column: statistics.mean(r[column] for r in per_seed) for column in COLUMNS}
        row["CC_std"] = statistics.stdev([r["CC"] for r in per_seed]) if len(per_seed) > 1 else 0.0
        if "gain" in per_seed[0]:
            row["gain"] = statistics.mean(r["gain"]["diff"] for r in per_seed)
            row["gap_closed"] = statistics.mean(r["gap_closed"] for r in per_seed)
            row["seeds_ci_above_0"] = sum(r["gain"]["ci95"][0] > 0 for r in per_seed)
        summary[name] = row
    return summary


def print_tables(results: dict) -> None:
    base = results["baselines"]
    print(f"\n## world v2, held-out test split ({results['held_out_images']} images, "
          f"{results['size'][0]}x{results['size'][1]}): baselines (CC)")
    print("  ".join(f"{k} {v:.3f}" for k, v in base.items()))
    teacher = results["teacher"]
    width = 2 + max(len("arm"), *(len(name) for rows in results["students"].values() for name in rows),
                    *(len(name) for name in results.get("sweep", {}).get("variants", {})))
    print(f"\n## teacher-{results['family']} (pretrained: held-out object accuracy "
          f"{results['pretraining']['object_accuracy']:.3f}; trained on {results['n_train']} labels)")
    print("  ".join(f"{c} {teacher[c]:.4f}" for c in COLUMNS) + f"  params {teacher['params']:,}")
    for seed, rows in results["students"].items():
        print(f"\n## students, seed {seed}: {results['labels']} labels + {results['pool']} unlabelled images")
        print(f"{'arm':<{width}}" + "".join(f"{c:>9}" for c in COLUMNS) + f"{'epochs':>8}{'CC gain [95% CI]':>30}{'gap':>8}")
        for name, row in rows.items():
            gain = row.get("gain")
            shown = f"{gain['diff']:+.4f} [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}]" if gain else ""
            gap = f"{row['gap_closed']:.0%}" if gain else ""
            print(f"{name:<{width}}" + "".join(f"{row[c]:>9.4f}" for c in COLUMNS) + f"{row['epochs']:>8}{shown:>30}{gap:>8}")
    added = [(seed, name, row["over_output_only"]) for seed, rows in results["students"].items()
             for name, row in rows.items() if "over_output_only" in row]
    if added:
        print("\n## what the statistics add to the output map at the same weights: CC, paired per image")
        for seed, name, diff in added:
            print(f"seed {seed}  {name:<{width}}{diff['diff']:+.4f} [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]")
    if "sweep" in results:
        print(f"\n## weight sweep, seed 0, validation split ({results['sweep']['validation_images']} images)")
        for name, row in results["sweep"]["variants"].items():
            print(f"{name:<{width}}{row['val_CC']:>9.4f}  {row['variant']}")
        print(f"chosen: {results['sweep']['chosen']}")
    print("\n## mean over the seeds each arm finished")
    print(f"{'arm':<{width}}{'seeds':>6}{'CC':>9}{'CC std':>9}{'gain':>9}{'gap':>8}{'seeds CI>0':>12}")
    for name, row in results["summary"].items():
        gain = f"{row['gain']:>+9.4f}{row['gap_closed']:>8.0%}{row['seeds_ci_above_0']:>9}/{row['seeds']}" \
            if "gain" in row else ""
        print(f"{name:<{width}}{row['seeds']:>6}{row['CC']:>9.4f}{row['CC_std']:>9.4f}{gain}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="mobilenetv2", help="teacher family (default mobilenetv2)")
    parser.add_argument("--pretrained", metavar="RUN", help="an existing `saliency pretrain` run (default: pretrain here)")
    parser.add_argument("--pretrain-images", type=int, default=8192, help="pretraining images per epoch")
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--n", type=int, default=2500, help="synthetic images (70/10/20 train/val/test)")
    parser.add_argument("--labels", type=int, default=200, help="labelled training images the students see")
    parser.add_argument("--size", type=parse_size, default=(96, 128), help="training and evaluation resolution, HxW")
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--student-epochs", type=int, default=3, help="epochs of a distilled arm over labels + pool")
    parser.add_argument("--student-lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the teacher")
    parser.add_argument("--student-seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset (no-kd is always trained)")
    parser.add_argument("--sweep", nargs="?", const=",".join(SWEEP), metavar="VARIANTS",
                        help="first train the statistics-weight variants (default all; comma-separated names of "
                             f"{', '.join(SWEEP)}) at seed 0 and compare them on the validation split; where one "
                             "other than the preset wins, every seed also trains it (`statistics@NAME`) and the "
                             "teacher's maps alone at its output weight (`output-only@NAME`)")
    parser.add_argument("--out", default="runs/bench-distill-v2")
    parser.add_argument("--json", default="runs/bench/saliency_distillation.json",
                        help="where the results go (default %(default)s; the committed reference is "
                             "benchmarks/results/saliency_distillation.json)")
    parser.add_argument("--table", action="store_true",
                        help="only print the tables of the results in --json, as far as they go (no training)")
    args = parser.parse_args()
    if args.table:
        results = json.loads(Path(args.json).read_text())
        print_tables(results | {"summary": summarise(results["students"])})
        return
    arms = ["no-kd", *[a for a in args.arms.split(",") if a != "no-kd"]]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arm {sorted(unknown)[0]!r} (known: {', '.join(ARMS)})")
    unknown = set(args.sweep.split(",") if args.sweep else []) - set(SWEEP)
    if unknown:  # before any training
        parser.error(f"unknown sweep variant {sorted(unknown)[0]!r} (known: {', '.join(SWEEP)})")
    out, size = Path(args.out), tuple(args.size)
    data = out / "data"
    if not (data / "synthetic_meta.json").is_file():
        write_salicon(data, n=args.n, seed=args.seed, size=size, splits=SPLITS, world="v2")
    held_out = open_dataset(data, split="test")
    n_train = len(open_dataset(data, split="train"))
    pool_dir = data / "images" / "train"  # every training image, its map unused: the unlabelled pool
    common = [f"data.root={data}", f"data.size=[{size[0]}, {size[1]}]", "val_metrics=[CC]", "select_by=CC"]

    pretrained = pretrained_backbone(args, out)
    teacher_dir = out / f"teacher-{args.family}"
    continue_training(SaliencyTrainer, run_config(common + [
        f"seed={args.seed}", f"model.name=teacher-{args.family}", f"model.options={{pretrained: {pretrained}}}",
        f"optim.epochs={args.teacher_epochs}", "optim.lr=1e-3"]), teacher_dir)
    teacher_model = load(teacher_dir)
    teacher_means, teacher_cc = score(teacher_model, held_out, size)
    student_params = count_parameters(build("student"))
    results = {"family": args.family, "size": list(size), "n_train": n_train, "labels": args.labels, "pool": n_train,
               "held_out_images": len(held_out), "settings": vars(args) | {"size": list(size)},
               "baselines": {k: statistics.mean(v) for k, v in baseline_scores(data, "test").items()},
               "pretraining": RunDir(pretrained).load_metrics()["final"] | {
                   "epochs_completed": RunDir(pretrained).completed_epochs(),
                   "epochs_planned": RunDir(pretrained).config_dict()["optim"]["epochs"]},
               "teacher": teacher_means | {"params": count_parameters(teacher_model), "mb": model_size_mb(teacher_model)},
               "student_params": student_params,
               "student_size_reduction": 1 - student_params / count_parameters(teacher_model),
               "students": {}}
    if args.sweep:
        results["sweep"] = sweep(args, common, data, teacher_dir, n_train, size, args.sweep.split(","))
        atomic_write_json(args.json, results)
    elif Path(args.json).is_file() and "sweep" in (earlier := json.loads(Path(args.json).read_text())):
        results["sweep"] = earlier["sweep"]  # a later run without --sweep keeps the committed sweep
    chosen = chosen_arms(results)
    for seed in (int(s) for s in args.student_seeds.split(",")):
        rows, per_image = {}, {}
        for name in arms + list(chosen):
            preset, variant = chosen[name] if name in chosen else (ARMS[name][0], "statistics")
            run_dir = out / f"seed{seed}" / name
            if name == f"statistics@{variant}" and seed == 0:
                run_dir = out / "sweep" / variant  # the sweep's run is this arm at seed 0
            overrides = arm_overrides(name if name in ARMS else preset, common, seed, args.labels, n_train, n_train,
                                      args)
            config = (distilled_config(preset, SWEEP[variant], overrides, teacher_dir, pool_dir) if preset
                      else run_config(overrides))
            continue_training(SaliencyTrainer, config, run_dir)
            means, per_image[name] = score(load(run_dir), held_out, size)
            rows[name] = means | {"epochs": config.optim.epochs}
            if name == "no-kd":
                gap = teacher_means["CC"] - means["CC"]
                rows[name]["teacher_minus_no_kd"] = paired_bootstrap(teacher_cc, per_image["no-kd"], seed=seed)
            else:
                rows[name]["gain"] = paired_bootstrap(per_image[name], per_image["no-kd"], seed=seed)
                rows[name]["gap_closed"] = rows[name]["gain"]["diff"] / gap if gap > 0 else math.nan
            statistics_arm = name.replace("output-only", "statistics", 1)
            if name.startswith("output-only") and statistics_arm in rows:  # what the statistics add to the map
                rows[statistics_arm]["over_output_only"] = paired_bootstrap(per_image[statistics_arm],
                                                                            per_image[name], seed=seed)
            results["students"][seed] = rows
            atomic_write_json(args.json, results)  # after every arm: a partial table survives an interruption
    results["summary"] = summarise(results["students"])
    atomic_write_json(args.json, results)
    print_tables(results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
