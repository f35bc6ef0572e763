"""What int8 costs in accuracy: held-out saliency metrics of trained runs, and caption metrics of trained captioners,
with the models run by torch, onnxruntime float32 and onnxruntime int8 (calibrated on each run's training data).

    python benchmarks/int8_accuracy.py --runs runs/demo/teacher,runs/demo/student --data runs/demo/data/saliency \
        [--split test] [--captioners runs/demo/captioner-student] [--json benchmarks/results/int8_accuracy.json]

Saliency runs are scored at their training size on `--data`'s `--split` (CC, KLD, NSS, SIM); captioners on their own
data's `--caption-split` (BLEU-4, METEOR, ROUGE-L, CIDEr), their encoder and saliency model on each backend, and the
int8 encoder beside the float32 saliency model (`onnxruntime-int8+saliency-onnxruntime`), the decoder always torch; on
a synthetic world also their grounding (the share of videos whose caption names the actor's shape and motion right
and nothing wrong, and per attribute the share named right). Prints each backend's scores and int8 − float32
(onnxruntime); for captioners also each int8 configuration − float32 paired per video, with its bootstrap 95%
interval, so a change of a few captions is told from noise.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from saliency.backends import BACKENDS, run_on_backend
from saliency.data import open_dataset
from saliency.evaluate import evaluate_model
from saliency.infra.rundir import RunDir, atomic_write_json
from saliency.run import SaliencyRunConfig, load
from vidcap.inference.front_end_backend import backends_name, split_backends_name
from vidcap.evaluation.reports.comparison import paired_differences
from vidcap.evaluation.splits import evaluate_split

SALIENCY_METRICS = ["CC", "KLD", "NSS", "SIM"]
CAPTION_METRICS = ["Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
GROUNDING = ["grounded", "shape", "colour", "size", "motion"]  # `grounded` share, then each attribute named right
INT8_ENCODER = backends_name("onnxruntime-int8", "onnxruntime")  # int8 encoder, float32 saliency model
CAPTION_BACKENDS = (*BACKENDS, INT8_ENCODER)


def caption_scores(evaluation: dict) -> dict[str, float]:
    """The caption metrics of a `vidcap eval` result, and its grounding when the data is a synthetic world."""
    grounding = evaluation.get("grounding")
    if not grounding:
        return evaluation["metrics"]
    return evaluation["metrics"] | {"grounded": grounding["grounded"]} | {
        name: grounding[name]["right"] for name in GROUNDING[1:]}


def run_width(runs) -> int:
    """Width of the run column: at least 40, and room for the longest run path."""
    return max([40, *(len(run) + 2 for run in runs)])


def table(title: str, scores: dict[str, dict[str, dict[str, float]]], metrics: list[str], scale: float) -> str:
    """Rows: each run on each backend, then its int8 − float32 difference."""
    width = run_width(scores)
    lines = [f"\n## {title}", f"{'run':<{width}}{'backend':<40}" + "".join(f"{m:>10}" for m in metrics)]
    for run, by_backend in scores.items():
        for backend, row in by_backend.items():
            lines.append(f"{run:<{width}}{backend:<40}" + "".join(f"{scale * row[m]:>10.4f}" for m in metrics))
        for int8 in (name for name in by_backend if "int8" in name and "onnxruntime" in by_backend):
            diff = {m: by_backend[int8][m] - by_backend["onnxruntime"][m] for m in metrics}
            label = "int8 - float32" if int8 == "onnxruntime-int8" else "int8 encoder - float32"
            lines.append(f"{'':<{width}}{label:<40}" + "".join(f"{scale * diff[m]:>+10.4f}" for m in metrics))
    return "\n".join(lines)


def paired_table(paired: dict[str, dict[str, dict[str, dict]]]) -> str:
    """Per captioner and int8 configuration: − float32 in CIDEr and grounded (×100), paired per video, with the 95%
    interval."""
    lines = ["\n## captioning, int8 - float32 paired per video (×100, bootstrap 95% interval)"]
    width = run_width(paired)
    for run, by_backend in paired.items():
        for backend, differences in by_backend.items():
            cells = [f"{name} {100 * d['diff']:+.2f} [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
                     for name, d in differences.items()]
            lines.append(f"{run:<{width}}{backend:<40}" + "   ".join(cells))
    return "\n".join(lines)


def score_captioner(run: str, split: str, out: Path, backends: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The run's scores on each of `backends` (configurations of `CAPTION_BACKENDS`), and each int8 one − float32
    (onnxruntime, when among them) paired over the split's videos."""
    scores, per_video = {}, {}
    for name in backends:
        encoder, saliency = split_backends_name(name)
        scores[name] = caption_scores(evaluate_split(run, split, per_video=True, progress=False, out=out / name,
                                                     backend=encoder, saliency_backend=saliency))
        rows = json.loads((out / name / "per_video.json").read_text(encoding="utf-8"))
        per_video[name] = {row["video_id"]: row for row in rows}
    return scores, {name: paired_differences(per_video[name], per_video["onnxruntime"])
                    for name in backends if "int8" in name and "onnxruntime" in per_video}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="", help="comma-separated saliency run directories")
    parser.add_argument("--data", help="saliency dataset the runs are scored on")
    parser.add_argument("--split", default="test")
    parser.add_argument("--captioners", default="", help="comma-separated captioner run directories")
    parser.add_argument("--caption-split", default="test")
    parser.add_argument("--caption-backends", default=",".join(CAPTION_BACKENDS),
                        help="the captioners' backend configurations (default: all, %(default)s)")
    parser.add_argument("--json", default="runs/bench/int8_accuracy.json",
                        help="where the results go (default %(default)s; the committed reference is "
                             "benchmarks/results/int8_accuracy.json)")
    args = parser.parse_args()
    caption_backends = args.caption_backends.split(",")
    unknown = sorted(set(caption_backends) - set(CAPTION_BACKENDS))
    if unknown:
        parser.error(f"unknown caption backend {unknown[0]!r} (known: {', '.join(CAPTION_BACKENDS)})")
    results: dict = {"saliency": {}, "captioning": {}, "data": args.data, "split": args.split}
    runs = [run for run in args.runs.split(",") if run]
    if runs:
        held_out = open_dataset(args.data, split=args.split)
        results["images"] = len(held_out)
        for run in runs:
            size = RunDir(run).load_config(SaliencyRunConfig).data.size
            model = load(run)
            results["saliency"][run] = {
                backend: evaluate_model(run_on_backend(run, model, backend, size), held_out, size,
                                        metrics=SALIENCY_METRICS, progress=False) for backend in BACKENDS}
        print(table(f"saliency, {args.data} ({args.split}, {len(held_out)} images)", results["saliency"],
                    SALIENCY_METRICS, 1.0), flush=True)
    results["int8_vs_float32"] = {}  # captioner → int8 configuration → paired differences
    for run in (run for run in args.captioners.split(",") if run):
        with tempfile.TemporaryDirectory() as out:
            results["captioning"][run], results["int8_vs_float32"][run] = score_captioner(run, args.caption_split,
                                                                                          Path(out), caption_backends)
    if results["captioning"]:
        grounded = all("grounded" in row for by_backend in results["captioning"].values() for row in by_backend.values())
        print(table(f"captioning, split {args.caption_split} (×100)", results["captioning"],
                    CAPTION_METRICS + (GROUNDING if grounded else []), 100.0))
        print(paired_table(results["int8_vs_float32"]))
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
