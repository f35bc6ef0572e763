"""Does the captioner see the video, and does saliency help it? World v2, paired arms, controls, grounding.

    python benchmarks/captioning_quality.py --demo runs/demo [--videos 1600] [--seeds 0,1,2] \
        [--train-sizes 100,300,1000] [--arms ...] [--scst] [--set KEY=VALUE] [--json ...]

After `make demo` (its pretraining run is the grounded encoder's backbone, its teacher and student the saliency
models): a world of `--videos` synthetic videos of the demo's size and length, from another world seed, split
70/10/20 (1,600 videos: 320 held out). For every seed, the captioner arms none / uniform / shuffled / centre / teacher
/ student / ground-truth are trained on the largest training set with the same data, steps and initial weights
(`vidcap.model.captioner.build_part`), evaluated on the whole test split; per arm the CIDEr and grounded share with paired
(per video) bootstrap 95% intervals of the difference to `none`, and McNemar's exact test on per-video groundedness;
with several seeds also `pooled`: each video's scores averaged over the seeds, and the paired intervals of those;
a student's differences to its teacher likewise (`vs_teacher`).
The weighting of the maps is chosen first, on the validation split (`--weightings`, and with `--alphas` the
strength of those that have one; the student arm, seed 0, the smallest training set), never on the test split. The
learning curve trains none, student and ground-truth on the smaller training sets; `--scst` adds the self-critical
stage after the student's and none's cross-entropy runs. Every run directory is kept under `--out` and reused: an
interrupted benchmark continues where it stopped. `--saliency-runs DIR --tag NAME` takes the teacher and student
from DIR instead (e.g. models that see motion) and names their arms teacher-NAME and student-NAME, paired with the
same none, control and ground-truth runs.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
from dataclasses import replace
from pathlib import Path

from saliency.infra.config import load_config
from saliency.infra.rundir import atomic_write_json
from saliency.infra.stats import mcnemar
from saliency.infra.training import continue_training
from vidcap.model.captioner import with_saliency
from saliency.world import write_msrvtt
from vidcap.demo import PRETRAIN_RUN, DemoConfig
from vidcap.model.weighting import ALPHA_WEIGHTINGS
from vidcap.evaluation.grounding import ATTRIBUTES
from vidcap.evaluation.reports.comparison import load_per_video, paired_differences
from vidcap.run import VidcapRunConfig
from vidcap.training.scst import scst_stage
from vidcap.evaluation.splits import evaluate_split
from vidcap.training.train import CaptionTrainer

ARMS = ("none", "uniform", "shuffled", "centre", "teacher", "student", "ground-truth")
CURVE_ARMS = ("none", "student", "ground-truth")
MODELS = ("teacher", "student")  # arms whose maps come from the demo's saliency runs


def arm_config(base: VidcapRunConfig, arm: str, weighting: str, seed: int, size: int, demo: Path, out: Path,
               data: Path, pretrained: Path | None = None, models: Path | None = None) -> VidcapRunConfig:
    """The captioner of `arm`: the demo's captioning settings on this world's first `size` training videos, its
    encoder from `pretrained` (default: the demo's pretraining run), a teacher's or student's maps from the run of
    that name in `models` (default: the demo)."""
    config = copy.deepcopy(base)
    config.seed = seed
    config.data.root, config.data.limit, config.data.cache_dir = str(data), size, str(out / "feature-cache")
    if config.captioner.encoder.pretrained == PRETRAIN_RUN:
        config.captioner.encoder.pretrained = str(pretrained or demo / PRETRAIN_RUN)
    config.captioner = with_saliency(config.captioner, arm, str((models or demo) / arm) if arm in MODELS else None,
                                     weighting)
    return config


def with_alpha(base: VidcapRunConfig, alpha: float | None) -> VidcapRunConfig:
    """`base` with the weighting's strength `alpha` (None: the config's own)."""
    if alpha is None:
        return base
    encoder = replace(base.captioner.encoder, alpha=alpha)
    return replace(base, captioner=replace(base.captioner, encoder=encoder))


def candidates(weightings: list[str], alphas: list[float | None]) -> list[tuple[str, float | None]]:
    """The (weighting, alpha) pairs the validation split chooses among: every alpha for the weightings that have a
    strength, the config's own (None) for the others."""
    return [(weighting, alpha) for weighting in weightings
            for alpha in (alphas if weighting in ALPHA_WEIGHTINGS else [None])]


def candidate_name(weighting: str, alpha: float | None, tag: str | None) -> str:
    """The selection run's folder: `gate`, `gate-alpha4`, `gate-alpha4-TAG`."""
    return "-".join(filter(None, [weighting, None if alpha is None else f"alpha{alpha:g}", tag]))


def arm_name(arm: str, tag: str | None) -> str:
    """The folder and result key of `arm`: a teacher or student from `--saliency-runs` carries its `--tag`."""
    return f"{arm}-{tag}" if tag and arm in MODELS else arm


def train_and_score(config: VidcapRunConfig, run: Path, split: str) -> dict[str, dict]:
    """Train (or reuse) the run, evaluate it on the whole `split` with per-video scores (or reuse them)."""
    continue_training(CaptionTrainer, config, run, progress=False)
    if not (run / "eval" / split / "per_video.json").is_file():
        evaluate_split(run, split, per_video=True, progress=False)
    return load_per_video(run, split)


def right_shares(row: dict) -> dict[str, float]:
    """Per attribute of the actor, 1.0 where a video's caption names it right, else 0.0 (a row averaged over seeds:
    the share of the seeds)."""
    grounding = row["grounding"]
    return grounding.get("right") or {attribute: float(grounding[attribute] == "right") for attribute in ATTRIBUTES}


def summary_row(per_video: dict[str, dict]) -> dict[str, float]:
    """CIDEr, the grounded share and, per attribute of the actor, the share of captions that name it right."""
    rows = per_video.values()
    return {"CIDEr": statistics.mean(r["CIDEr"] for r in rows),
            "grounded": statistics.mean(float(r["grounding"]["grounded"]) for r in rows),
            "right": {attribute: statistics.mean(right_shares(r)[attribute] for r in rows) for attribute in ATTRIBUTES},
            "videos": len(per_video)}


def versus(arm: dict[str, dict], none: dict[str, dict]) -> dict:
    """Paired differences to `none` with bootstrap intervals, and McNemar's test on groundedness."""
    videos = sorted(set(arm) & set(none))
    grounded = [[bool(table[v]["grounding"]["grounded"]) for v in videos] for table in (arm, none)]
    return paired_differences(arm, none) | {"mcnemar": mcnemar(*grounded)}


def versus_teacher(name: str, table: dict[str, dict], tables: dict[str, dict[str, dict]]) -> dict:
    """For a student arm whose teacher ran (`student-motion` → `teacher-motion`), `{"vs_teacher": ...}`: its paired
    differences to the teacher; else nothing."""
    teacher = "teacher" + name[len("student"):] if name.startswith("student") else None
    return {"vs_teacher": paired_differences(table, tables[teacher])} if teacher in tables else {}


def arm_rows(tables: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Each arm's summary, and for every arm but `none` (when it has run) its differences to `none`; for a student
    whose teacher ran, its paired differences to the teacher (`vs_teacher`)."""
    return {name: summary_row(table) | ({"vs_none": versus(table, tables["none"])}
                                        if name != "none" and "none" in tables else {})
            | versus_teacher(name, table, tables)
            for name, table in tables.items()}


def seed_mean(tables: list[dict[str, dict]]) -> dict[str, dict]:
    """Per video, CIDEr, grounded and the attributes named right, averaged over the seeds' tables (the videos all
    of them captioned)."""
    videos = sorted(set.intersection(*(set(table) for table in tables)))
    def mean(value) -> float:
        return statistics.mean(value(table) for table in tables)

    return {v: {"CIDEr": mean(lambda t: t[v]["CIDEr"]),
                "grounding": {"grounded": mean(lambda t: float(t[v]["grounding"]["grounded"])),
                              "right": {a: mean(lambda t, a=a: right_shares(t[v])[a]) for a in ATTRIBUTES}}}
            for v in videos}


def pooled_rows(by_seed: dict[int, dict[str, dict[str, dict]]]) -> dict[str, dict]:
    """Each arm that ran with every seed: its per-video scores averaged over the seeds, and the paired differences
    of those averages to `none`'s (bootstrap over videos: the seeds' noise is inside each video's average)."""
    arms = [name for name in next(iter(by_seed.values())) if all(name in rows for rows in by_seed.values())]
    means = {name: seed_mean([rows[name] for rows in by_seed.values()]) for name in arms}
    return {"seeds": sorted(by_seed),
            "arms": {name: summary_row(table) | ({"vs_none": paired_differences(table, means["none"])}
                                                 if name != "none" and "none" in means else {})
                     | versus_teacher(name, table, means)
                     for name, table in means.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml", help="the demo config whose captioning settings apply")
    parser.add_argument("--demo", default="runs/demo", help="a finished demo (pretraining, teacher and student runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the demo config, e.g. captioning.captioner.encoder.track=true")
    parser.add_argument("--pretrained", metavar="RUN", help="the encoder's `saliency pretrain` run (default: the demo's)")
    parser.add_argument("--saliency-runs", metavar="DIR", help="where the teacher and student runs are (default: --demo)")
    parser.add_argument("--tag", help="with --saliency-runs: their arms are named teacher-TAG and student-TAG")
    parser.add_argument("--out", default="runs/bench-captioning-v2")
    parser.add_argument("--videos", type=int, default=1600)
    parser.add_argument("--world-seed", type=int, default=1, help="another seed than the demo's world")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-sizes", default="100,300,1000", help="learning curve; the largest is the main table's")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--weightings", default="residual,gate,prior", help="chosen among on the validation split")
    parser.add_argument("--alphas", help="strengths of residual and gate (comma list) chosen among on the validation "
                                         "split with the weighting (default: the config's alpha)")
    parser.add_argument("--scst", action="store_true", help="also the self-critical stage of none and student")
    parser.add_argument("--json", default="runs/bench/captioning_quality.json",
                        help="where the results go (default %(default)s; the committed reference is "
                             "benchmarks/results/captioning_quality.json)")
    args = parser.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    pretrained = Path(args.pretrained) if args.pretrained else None
    models = Path(args.saliency_runs) if args.saliency_runs else None
    if bool(models) != bool(args.tag):
        parser.error("--saliency-runs and --tag go together: the tag keeps their arms apart from the demo's")
    demo_config = load_config(DemoConfig, args.config, args.set)
    world = demo_config.world
    data = out / "data"
    if not (data / "synthetic_meta.json").is_file():
        write_msrvtt(data, n=args.videos, seed=args.world_seed, size=tuple(world.size), n_frames=world.frames,
                     fps=world.fps, world=world.version)
    base = demo_config.captioning
    sizes = sorted(int(s) for s in args.train_sizes.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"videos": args.videos, "world_seed": args.world_seed, "train_sizes": sizes, "seeds": seeds,
                     "settings": vars(args)}

    def save() -> None:
        atomic_write_json(args.json, results)

    alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else [None]
    grid = candidates(args.weightings.split(","), alphas)
    if len(grid) > 1:
        chosen = {}
        for weighting, alpha in grid:
            config = arm_config(with_alpha(base, alpha), "student", weighting, seeds[0], sizes[0], demo, out, data,
                                pretrained, models)
            name = candidate_name(weighting, alpha, args.tag)
            chosen[name] = {"weighting": weighting, "alpha": alpha,
                            **summary_row(train_and_score(config, out / "select" / name, "val"))}
            print(f"validation {name}: {chosen[name]}", flush=True)
        best = max(chosen.values(), key=lambda row: (row["grounded"], row["CIDEr"]))
        weighting, alpha = best["weighting"], best["alpha"]
        results["weighting"] = {"validation": chosen, "chosen": weighting, "alpha": alpha}
        save()
    else:
        (weighting, alpha), = grid
        results["weighting"] = {"chosen": weighting, "alpha": alpha}
    base = with_alpha(base, alpha)
    print(f"weighting: {weighting}" + ("" if alpha is None else f", alpha {alpha:g}"), flush=True)

    results["main"], results["curve"] = {}, {}
    by_seed = {}
    for seed in seeds:
        rows = by_seed[seed] = {}
        for arm in args.arms.split(","):
            name = arm_name(arm, args.tag)
            config = arm_config(base, arm, weighting, seed, sizes[-1], demo, out, data, pretrained, models)
            rows[name] = train_and_score(config, out / f"seed{seed}" / f"n{sizes[-1]}" / name, "test")
            results["main"][str(seed)] = arm_rows(rows)
            save()
            print(f"seed {seed} {name}: {summary_row(rows[name])}", flush=True)
        if len(by_seed) > 1:
            results["pooled"] = pooled_rows(by_seed)
            save()
        for size in sizes[:-1]:
            curve = {}
            for arm in CURVE_ARMS:
                name = arm_name(arm, args.tag)
                config = arm_config(base, arm, weighting, seed, size, demo, out, data, pretrained, models)
                curve[name] = train_and_score(config, out / f"seed{seed}" / f"n{size}" / name, "test")
                results["curve"].setdefault(str(size), {})[str(seed)] = arm_rows(curve)
                save()
        if args.scst:
            for arm in ("none", "student"):
                xe = out / f"seed{seed}" / f"n{sizes[-1]}" / arm_name(arm, args.tag)
                xe_config = arm_config(base, arm, weighting, seed, sizes[-1], demo, out, data, pretrained, models)
                stage = scst_stage(xe_config, xe)
                scst = train_and_score(stage, xe / "scst", "test")
                xe_scores = load_per_video(xe, "test")
                results.setdefault("scst", {}).setdefault(str(seed), {})[arm_name(arm, args.tag)] = {
                    "xe": summary_row(xe_scores), "scst": summary_row(scst), "scst_vs_xe": versus(scst, xe_scores)}
                save()
    print(json.dumps(results, indent=1)[:4000])
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
