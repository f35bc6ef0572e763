"""The report of one evaluation (`RUN/eval/<split>/report.md` and self-contained `report.html`): the metric
table ×100 as papers print it, seconds per video by stage, on synthetic data the grounding table (what the
captions say about the actor), and for a sample of videos a thumbnail strip with the saliency overlay, the
generated caption (and what it got right about the actor) and the references."""
from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from saliency.infra.errors import UserError
from saliency.infra.rundir import CURVES
from saliency.infra.figures import reliability_png
from saliency.infra.stats import spread
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd
from vidcap.evaluation.reports.document import Block, BulletList, Figure, Heading, Paragraph, Table, write_report
from vidcap.evaluation.caption_metrics import METRIC_KEYS
from vidcap.evaluation.grounding import ATTRIBUTES, OUTCOMES, describe_actor
from vidcap.inference.overlay import saliency_overlays
from vidcap.data.video import read_clip

log = logging.getLogger(__name__)

METRIC_LABELS = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_3": "BLEU-3", "Bleu_4": "BLEU-4",
                 "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}
STAGES = ("decode", "saliency", "encoder", "decoder")  # the captioner's pipeline, in order
SAMPLE_VIDEOS = 4
STRIP_FRAMES = 4
STRIP_SIZE = (108, 144)  # H×W of each thumbnail


def metric_row(metrics: dict[str, float]) -> list[str]:
    """The seven caption metrics ×100 with two decimals, in METRIC_KEYS order."""
    return [f"{100 * metrics[key]:.2f}" for key in METRIC_KEYS]


def stage_seconds(sec_per_video: dict[str, float]) -> list[tuple[str, float]]:
    """(stage, seconds per video) in pipeline order, with the total last; empty if nothing was timed."""
    rows = [(stage, sec_per_video[stage]) for stage in STAGES if stage in sec_per_video]
    return rows + [("total", sum(seconds for _, seconds in rows))] if rows else []


def thumbnail_strip(path: str | Path, config: CaptionerConfig, front: VisualFrontEnd | None) -> bytes:
    """JPEG of `STRIP_FRAMES` frames side by side, each with the front end's saliency blended in (if it has one)."""
    sampler = dataclasses.replace(config.sampler, n_frames=STRIP_FRAMES, size=STRIP_SIZE)
    clip = read_clip(path, sampler, previous=front is not None and front.needs_previous)
    frames = clip.frames  # (T, H, W, 3) uint8
    if front is not None and front.saliency_model is not None:
        frames = saliency_overlays(front, frames, clip.previous)
    gap = np.full((frames.shape[1], 3, 3), 255, dtype=np.uint8)
    strip = np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def sample_ids(video_ids: list[str], count: int = SAMPLE_VIDEOS) -> list[str]:
    """`count` ids spread evenly over the list (first and last included), so the sample is reproducible."""
    return [video_ids[i] for i in spread(len(video_ids), count)]


def grounding_blocks(grounding: dict) -> list[Block]:
    """The grounding section: per attribute the share of captions naming it right, wrong or not at all."""
    return [Heading("Grounding against the actor (% of videos)"),
            Paragraph(f"{100 * grounding['grounded']:.1f}% of {grounding['videos']} videos grounded: the caption names "
                      "the actor's shape and motion right and no attribute wrong. Right: names the true value and no "
                      "other; wrong: names another value; none: names no value of that attribute."),
            Table(["attribute", *OUTCOMES],
                  [[attribute, *[f"{100 * grounding[attribute][kind]:.1f}" for kind in OUTCOMES]]
                   for attribute in ATTRIBUTES])]


def grounding_line(actor: dict, result: dict) -> str:
    """One video's verdict in a sentence: the actor, each attribute's outcome, grounded or not."""
    verdicts = ", ".join(f"{attribute} {result[attribute]}" for attribute in ATTRIBUTES)
    return f"Actor: {describe_actor(actor)}; {verdicts}: {'grounded' if result['grounded'] else 'not grounded'}."


def _curves_figure(run_dir: Path) -> Figure | None:
    """The training curves the trainer keeps in the run directory (loss, validation CIDEr), if it has them."""
    path = run_dir / CURVES
    if not path.is_file():
        return None
    return Figure("curves.png", path.read_bytes(), "training loss and validation CIDEr per epoch (circle: the kept epoch)")


def report_blocks(run_dir: Path, config: CaptionerConfig, metrics: dict, samples: list[dict],
                  worst: list[dict] | None = None) -> list[Block]:
    """Everything the report says, in order. `samples`: dicts with video_id, caption, references, strip (JPEG)
    and, on synthetic data, grounding (a `grounding_line`)."""
    saliency = config.saliency
    source = "none" if saliency.source == "none" else f"{saliency.source} ({saliency.run})"
    blocks: list[Block] = [
        Paragraph(f"Run {run_dir.resolve().name}: {metrics['videos']} videos of split '{metrics['split']}' from {metrics['data']}; "
                  f"captions from {metrics['source']}. Saliency: {source}; feature weighting: "
                  f"{config.encoder.weighting}; encoder: {config.encoder.backbone}; beams: {config.num_beams}."),
        Heading("Caption metrics (×100)"),
        Table([METRIC_LABELS[key] for key in METRIC_KEYS], [metric_row(metrics["metrics"])]),
    ]
    stages = stage_seconds(metrics.get("sec_per_video", {}))
    if stages:
        blocks += [Heading("Time per video"),
                   Table(["stage", "seconds", "share"],
                         [[stage, f"{seconds:.4f}", f"{100 * seconds / stages[-1][1]:.0f}%"] for stage, seconds in stages])]
    if "grounding" in metrics:
        blocks += grounding_blocks(metrics["grounding"])
    if metrics.get("skipped"):
        blocks += [Heading("Skipped videos"),
                   BulletList([f"{entry['video_id']}: {entry['reason']}" for entry in metrics["skipped"]])]
    if samples:
        overlay = "with the saliency overlay, " if saliency.source != "none" and metrics["source"] == "model" else ""
        blocks.append(Heading("Sample videos"))
        for sample in samples:
            blocks += [Heading(sample["video_id"], level=3),
                       Figure(f"thumbs/{sample['video_id']}.jpg", sample["strip"],
                              f"{STRIP_FRAMES} frames {overlay}evenly spaced in time"),
                       Paragraph(f"Generated: {sample['caption']}"),
                       *([Paragraph(sample["grounding"])] if "grounding" in sample else []),
                       BulletList([f"reference: {text}" for text in sample["references"]])]
    if worst:
        grounded = ["grounded"] if all("grounding" in row for row in worst) else []
        blocks += [Heading("Worst captions by CIDEr"),
                   Table(["video", "caption", "CIDEr", "BLEU-4", "METEOR", *grounded],
                         [[row["video_id"], row["caption"], f"{100 * row['CIDEr']:.1f}", f"{100 * row['Bleu_4']:.1f}",
                           f"{100 * row['METEOR']:.1f}", *(["yes" if row["grounding"]["grounded"] else "no"] if grounded else [])]
                          for row in worst], numeric_from=2)]
    if "calibration" in metrics:
        calibration = metrics["calibration"]
        blocks += [Heading("Confidence against being grounded"),
                   Paragraph(f"Each caption's confidence (`vidcap.model.trust`), binned, against the share of those "
                             f"captions that are grounded; expected calibration error "
                             f"{100 * calibration['ece']:.1f} points."),
                   Figure("reliability.png", reliability_png(calibration["bins"], "grounded"),
                          "reliability diagram: on the diagonal, a confidence of p means grounded with probability p")]
    if "in_domain" in metrics:
        blocks.append(Paragraph(f"In domain (features like the training videos'): "
                                f"{100 * metrics['in_domain']['share']:.1f}% of {metrics['in_domain']['videos']} "
                                "videos; the others' captions are flagged."))
    curves = _curves_figure(run_dir)
    if curves is not None:
        blocks += [Heading("Training"), curves]
    return blocks


def write_eval_report(out: str | Path, run_dir: str | Path, config: CaptionerConfig, metrics: dict,
                      captions: dict[str, str], items: list, front: VisualFrontEnd | None,
                      worst: list[dict] | None = None, max_references: int = 5, grounding: dict[str, dict] | None = None,
                      actors: dict[str, dict] | None = None) -> tuple[Path, Path]:
    """Render and write `OUT/report.{md,html}` for an evaluation of run `run_dir`'s captions or, as `metrics`
    says, of a predictions file's; a sample video that cannot be read is left out. `grounding`: each video's
    `vidcap.evaluation.grounding.ground_caption` result against its actor in `actors`, on synthetic data."""
    by_id = {item.video_id: item for item in items if item.video_id in captions}
    samples = []
    for video_id in sample_ids(list(by_id)):
        try:
            strip = thumbnail_strip(by_id[video_id].path, config, front)
        except UserError as error:
            log.warning("no thumbnails for %s", error)
            continue
        samples.append({"video_id": video_id, "caption": captions[video_id], "strip": strip,
                        "references": by_id[video_id].captions[:max_references]})
        if grounding and video_id in grounding:
            samples[-1]["grounding"] = grounding_line(actors[video_id], grounding[video_id])
    run_dir = Path(run_dir)
    scored = run_dir.resolve().name if metrics["source"] == "model" else Path(metrics["source"]).name
    title = f"Caption evaluation: {scored}, split {metrics['split']}"
    return write_report(Path(out), title, report_blocks(run_dir, config, metrics, samples, worst))
