"""`vidcap compare RUN...`: evaluated runs side by side (e.g. saliency none / teacher / student) with the
differences to the first, as report.md, self-contained report.html, a bar chart PNG and compare.json. On
synthetic data each run's grounded share (`vidcap.evaluation.grounding`) sits beside its caption metrics."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from saliency.infra.errors import UserError
from saliency.infra.stats import paired_bootstrap
from saliency.infra.rundir import atomic_write_json, require_writable
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.reports.document import Block, Figure, Heading, Paragraph, Table, write_report
from vidcap.evaluation.caption_metrics import METRIC_KEYS
from vidcap.evaluation.grounding import ATTRIBUTES, ground_caption, load_actors
from saliency.infra.figures import metric_bars_png
from vidcap.evaluation.reports.split_report import METRIC_LABELS, STAGES, metric_row, sample_ids, stage_seconds
from vidcap.run import VidcapRunConfig, captioner_run

SAMPLE_CAPTIONS = 6


@dataclass
class EvaluatedRun:
    """One run's evaluation on a split, as `vidcap eval` left it."""
    name: str
    path: Path
    config: VidcapRunConfig
    metrics: dict
    captions: dict[str, str]

    @property
    def saliency(self) -> str:
        return self.config.captioner.saliency.source

    @property
    def grounded(self) -> float | None:
        """Share of videos whose caption names the actor right (None unless evaluated on synthetic data)."""
        return self.metrics.get("grounding", {}).get("grounded")

    @property
    def sec_per_video(self) -> float | None:
        stages = stage_seconds(self.metrics.get("sec_per_video", {}))
        return stages[-1][1] if stages else None


def load_evaluated_run(path: str | Path, split: str, name: str | None = None) -> EvaluatedRun:
    """Read RUN/eval/<split>/{metrics,predictions}.json; a one-line error says how to make them."""
    run = captioner_run(path)
    folder = Path(path) / "eval" / split
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        predictions = json.loads((folder / "predictions.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not evaluated on split {split!r}; run `vidcap eval --model {path} --split {split}` first") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{folder}: damaged evaluation files ({error}); run `vidcap eval` again") from None
    captions = {entry["video_id"]: entry["caption"] for entry in predictions}
    return EvaluatedRun(name or Path(path).resolve().name, Path(path), run.load_config(VidcapRunConfig), metrics, captions)


def load_per_video(run: Path, split: str) -> dict[str, dict]:
    """RUN/eval/SPLIT/per_video.json (what `vidcap eval --per-video` writes) by video id."""
    path = run / "eval" / split / "per_video.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; score every video with `vidcap eval --model {run} --split {split} --per-video`")
    return {row["video_id"]: row for row in json.loads(path.read_text(encoding="utf-8"))}


def paired_differences(arm: dict[str, dict], none: dict[str, dict]) -> dict[str, dict]:
    """CIDEr (and, on a synthetic world, grounded) of `arm` − `none` over the videos both captioned: the mean
    difference and its paired bootstrap 95% interval, `{"diff", "ci95"}`."""
    videos = sorted(set(arm) & set(none))
    differences = {}
    for name, value in (("CIDEr", lambda row: row["CIDEr"]), ("grounded", lambda row: float(row["grounding"]["grounded"]))):
        if name == "grounded" and not all("grounding" in table[v] for table in (arm, none) for v in videos):
            continue
        result = paired_bootstrap([value(arm[v]) for v in videos], [value(none[v]) for v in videos])
        differences[name] = {"diff": result["diff"], "ci95": result["ci95"]}
    return differences


def _percent_change(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.0f}%" if old > 0 else "n/a"


def _grounded_cell(share: float | None) -> str:
    """A grounded share ×100 for a table, "n/a" for a run evaluated on data without a synthetic world."""
    return "n/a" if share is None else f"{100 * share:.1f}"


def _grounded_delta(run: EvaluatedRun, first: EvaluatedRun) -> str:
    """Difference of grounded shares ×100 to the first run, "n/a" unless both have one."""
    if run.grounded is None or first.grounded is None:
        return "n/a"
    return f"{100 * (run.grounded - first.grounded):+.1f}"


def marked(caption: str, actor: dict[str, str] | None) -> str:
    """`caption`, and on a synthetic world what it got right (✓), wrong (✗) or left out (–) of the actor."""
    if actor is None:
        return caption
    outcome = ground_caption(caption, actor)
    marks = {"right": "✓", "wrong": "✗", "none": "–"}
    return f"{caption} ({', '.join(f'{name} {marks[outcome[name]]}' for name in ATTRIBUTES)})"


def comparison_blocks(runs: list[EvaluatedRun], references: dict[str, list[str]],
                      actors: dict[str, dict[str, str]] | None = None) -> list[Block]:
    """Metric table, differences to the first run, time per stage, bar chart and captions side by side (on a
    synthetic world with the actor and what each caption got right or wrong of it)."""
    first = runs[0]
    labels = [METRIC_LABELS[key] for key in METRIC_KEYS]
    timed = all(run.sec_per_video is not None for run in runs)
    time_header = ["s/video"] if timed else []
    grounded = any(run.grounded is not None for run in runs)
    grounded_header = ["grounded"] if grounded else []
    note = (" Grounded: % of videos whose caption names the actor's shape and motion right and nothing wrong."
            if grounded else "")
    blocks: list[Block] = [
        Paragraph(f"{len(runs)} runs evaluated on split '{first.metrics['split']}' ({first.metrics['videos']} videos "
                  f"of {first.metrics['data']}). Scores ×100, as papers print them; differences are to {first.name}."
                  + note),
        Heading("Caption metrics (×100)"),
        Table(["run", "saliency", *labels, *grounded_header, *time_header],
              [[run.name, run.saliency, *metric_row(run.metrics["metrics"]),
                *([_grounded_cell(run.grounded)] if grounded else []),
                *([f"{run.sec_per_video:.3f}"] if timed else [])] for run in runs], numeric_from=2),
    ]
    if len(runs) > 1:
        rows = []
        for run in runs[1:]:
            deltas = [f"{100 * (run.metrics['metrics'][key] - first.metrics['metrics'][key]):+.2f}" for key in METRIC_KEYS]
            rows.append([f"{run.name} − {first.name}", *deltas,
                         *([_grounded_delta(run, first)] if grounded else []),
                         *([_percent_change(run.sec_per_video, first.sec_per_video)] if timed else [])])
        blocks += [Heading(f"Differences to {first.name}"), Table(["runs", *labels, *grounded_header, *time_header], rows)]
    if timed:
        stages = [stage for stage in STAGES if any(stage in run.metrics["sec_per_video"] for run in runs)]
        blocks += [Heading("Seconds per video by stage"),
                   Table(["run", *stages, "total"],
                         [[run.name, *[f"{run.metrics['sec_per_video'].get(stage, 0.0):.4f}" for stage in stages],
                           f"{run.sec_per_video:.4f}"] for run in runs])]
    bars = metric_bars_png([run.name for run in runs],
                           {METRIC_LABELS[key]: [100 * run.metrics["metrics"][key] for run in runs] for key in METRIC_KEYS},
                           title=f"split {first.metrics['split']}")
    blocks += [Heading("Chart"), Figure("metrics.png", bars, "caption metrics ×100 per run")]
    common = [video_id for video_id in first.captions if all(video_id in run.captions for run in runs)]
    if common:
        def actor(video_id: str) -> dict[str, str] | None:
            return actors.get(video_id) if actors else None

        def describe(who: dict[str, str] | None) -> str:
            return f"{who['size']} {who['colour']} {who['shape']}, {who['motion']}" if who else ""

        described = ["actor"] if actors else []
        blocks += [Heading("Captions side by side"),
                   Table(["video", *described, "a reference", *[run.name for run in runs]],
                         [[video_id, *([describe(actor(video_id))] if actors else []),
                           (references.get(video_id) or [""])[0],
                           *[marked(run.captions[video_id], actor(video_id)) for run in runs]]
                          for video_id in sample_ids(common, SAMPLE_CAPTIONS)], numeric_from=len(runs) + 3)]
    return blocks


def compare_runs(paths: list[str | Path], split: str = "test", out: str | Path | None = None,
                 names: list[str] | None = None, stem: str = "report", extra: Sequence[Block] = ()) -> tuple[Path, Path]:
    """Write the comparison of `paths` (each already evaluated on `split`) into `out`, `extra` blocks last;
    returns (md, html)."""
    if names and len(names) != len(paths):
        raise UserError(f"--names gives {len(names)} names for {len(paths)} runs")
    out = Path(out) if out else Path(paths[0]).resolve().parent / "compare"
    require_writable(out)
    runs = [load_evaluated_run(path, split, name) for path, name in zip(paths, names or [None] * len(paths))]
    if len({run.name for run in runs}) < len(runs):
        raise UserError("two runs have the same name; tell them apart with --names")
    splits = {(run.metrics["data"], run.metrics["split"]) for run in runs}
    if len(splits) > 1:
        raise UserError(f"the runs were evaluated on different data: {sorted(splits)}; compare like with like")
    dataset = open_caption_dataset(runs[0].metrics["data"], kind=runs[0].config.data.kind, split=split)
    references = {item.video_id: item.captions for item in dataset.items}
    atomic_write_json(out / "compare.json", {
        "split": split, "data": runs[0].metrics["data"],
        "runs": [{"name": run.name, "path": str(run.path), "saliency": run.saliency, "metrics": run.metrics["metrics"],
                  "sec_per_video": run.metrics.get("sec_per_video", {}),
                  **({"grounding": run.metrics["grounding"]} if "grounding" in run.metrics else {})} for run in runs]})
    blocks = comparison_blocks(runs, references, load_actors(dataset.root))
    return write_report(out, f"Caption comparison: {', '.join(run.name for run in runs)}", [*blocks, *extra], stem)
