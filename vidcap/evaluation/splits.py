"""`vidcap eval`: caption a whole split (or read predictions from any system), score it, write the results.

Writes `RUN/eval/<split>/predictions.json` (`[{"video_id", "caption"}]`), `metrics.json` (corpus scores,
per-stage seconds, what was skipped), `report.md` + `report.html` and, with `per_video`, `per_video.json`
sorted worst CIDEr first. On a synthetic dataset (its root has `synthetic_meta.json`) each caption is also
scored against the world's actor (`vidcap.evaluation.grounding`): `metrics.json` gains `grounding`, each row of
`per_video.json` its attribute outcomes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from saliency import EXPORT_FOLDER
from saliency.infra.errors import UserError
from saliency.infra.rundir import atomic_write_json, require_writable
from saliency.infra.stats import reliability
from vidcap.inference.front_end_backend import use_backend
from vidcap.model.captioner import Captioner
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.caption_metrics import METRIC_KEYS, score, score_and_per_item
from vidcap.evaluation.grounding import ATTRIBUTES, ground_captions, grounding_summary, load_actors
from vidcap.inference.pipeline import caption_videos
from vidcap.evaluation.reports.split_report import write_eval_report
from vidcap.run import VidcapRunConfig, captioner_run, load_run


WORST_SHOWN = 5  # worst captions listed in the report when --per-video is given


def read_predictions(path: str | Path) -> dict[str, str]:
    """`[{"video_id": ..., "caption": ...}]` → {video id: caption}, with one-line errors naming the file."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: predictions file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise UserError(f'{path}: expected a list of {{"video_id", "caption"}} objects')
    predictions: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), str) or not isinstance(entry.get("caption"), str):
            raise UserError(f'{path}: entry {index} is not {{"video_id": str, "caption": str}}')
        if entry["video_id"] in predictions:
            raise UserError(f"{path}: video {entry['video_id']!r} has two predictions")
        predictions[entry["video_id"]] = entry["caption"]
    return predictions


def caption_split(model: Captioner, items, progress: bool = True) -> tuple[dict[str, str], dict[str, float], list]:
    """Beam-search captions for every item, decoding overlapped (`vidcap.inference.pipeline`); returns (captions, seconds per
    stage, skipped (id, reason)). The stages overlap, so their seconds add up to more than the time taken."""
    captions, timings, skipped = {}, {}, []
    results = caption_videos(model, [(item.video_id, item.path) for item in items], timings=timings)
    for video_id, caption, error in tqdm(results, total=len(items), desc="captioning", unit="video",
                                         disable=not progress):
        if error is not None:
            skipped.append((video_id, str(error)))
        else:
            captions[video_id] = caption
    return captions, timings, skipped


def evaluation_folder(run_dir: str | Path, split: str, predictions_file: str | Path | None = None) -> Path:
    """Where an evaluation is written: `RUN/eval/<split>/` for the run's own captions (what `vidcap compare`
    reads), `RUN/eval/<split>-<predictions file stem>/` for another system's, so neither overwrites the other."""
    name = split if predictions_file is None else f"{split}-{Path(predictions_file).stem}"
    return Path(run_dir) / "eval" / name


def evaluate_split(run_dir: str | Path, split: str = "test", predictions_file: str | Path | None = None,
                   per_video: bool = False, data_root: str | None = None, progress: bool = True,
                   out: str | Path | None = None, backend: str | None = None,
                   saliency_backend: str | None = None) -> dict:
    """Score the run's captions (or `predictions_file`) on the whole split into `out` (default:
    `evaluation_folder`), the front end on `backend` and its saliency model on `saliency_backend` (defaults: the
    run's, `vidcap.inference.front_end_backend.resolve_backends`); returns what metrics.json holds."""
    run = captioner_run(run_dir)
    out = Path(out) if out is not None else evaluation_folder(run_dir, split, predictions_file)
    require_writable(out)  # before captioning a whole split
    config = run.load_config(VidcapRunConfig)
    root = data_root or config.data.root
    dataset = open_caption_dataset(root, kind=config.data.kind, split=split)
    if not dataset.items:
        raise UserError(f"{root}: no readable videos in split {split!r} ({dataset.report()})")
    actors = load_actors(dataset.root)  # read before captioning, so a damaged record stops nothing long
    started = time.perf_counter()
    if predictions_file is not None:
        captions, timings = read_predictions(predictions_file), {}
        unknown = sorted(set(captions) - {item.video_id for item in dataset.items})
        if unknown:
            raise UserError(f"{predictions_file}: {len(unknown)} prediction(s) for videos not in the {split} split, "
                            f"e.g. {unknown[0]!r}")
        skipped = [(item.video_id, "no prediction") for item in dataset.items if item.video_id not in captions]
        front = None
    else:
        model = load_run(run_dir)[0]
        use_backend(model.front, config, backend, run.file(EXPORT_FOLDER), saliency_backend)
        captions, timings, skipped = caption_split(model, dataset.items, progress)
        front = model.front
    gts = {item.video_id: item.captions for item in dataset.items if item.video_id in captions}
    if not gts:
        raise UserError(f"nothing to score: no video of the {split} split has a caption")
    res = {video_id: captions[video_id] for video_id in gts}
    if per_video:
        corpus, per_item = score_and_per_item(gts, res)
    else:
        corpus, per_item = score(gts, res), None
    atomic_write_json(out / "predictions.json", [{"video_id": v, "caption": c} for v, c in res.items()])
    captioned = len(res)
    grounding = ground_captions(res, actors or {})
    metrics = {
        "split": split, "data": str(root), "videos": captioned, "source": str(predictions_file or "model"),
        "metrics": corpus, "skipped": [{"video_id": v, "reason": r} for v, r in skipped],
        "seconds": {"total": time.perf_counter() - started, **timings},
        "sec_per_video": {stage: seconds / captioned for stage, seconds in timings.items()},
    }
    if grounding:
        metrics["grounding"] = grounding_summary(grounding)
    metrics |= trust_summary(res, grounding)
    atomic_write_json(out / "metrics.json", metrics)
    worst = None
    if per_item is not None:
        rows = [{"video_id": v, "caption": res[v], **scores, "references": gts[v][:5],
                 **({"grounding": grounding[v]} if v in grounding else {})} for v, scores in per_item.items()]
        worst = sorted(rows, key=lambda row: row["CIDEr"])
        atomic_write_json(out / "per_video.json", worst)
    write_eval_report(out, run_dir, config.captioner, metrics, res, dataset.items, front,
                      worst[:WORST_SHOWN] if worst else None, grounding=grounding, actors=actors)
    return metrics


def trust_summary(captions: dict[str, str], grounding: dict[str, dict]) -> dict:
    """What the model's captions say of themselves (`Caption`s; nothing for another system's plain strings): the
    share of the videos it takes for its own kind (`in_domain`, where known) and, where grounding is known, how well
    confidence matches being grounded (`calibration`: `reliability` bins and the expected calibration error)."""
    rated = {video: caption for video, caption in captions.items() if hasattr(caption, "confidence")}
    summary = {}
    known = [caption.in_domain for caption in rated.values() if caption.in_domain is not None]
    if known:
        summary["in_domain"] = {"share": sum(known) / len(known), "videos": len(known)}
    scored = [video for video in rated if video in grounding]
    if scored:
        summary["calibration"] = reliability([rated[video].confidence for video in scored],
                                             [grounding[video]["grounded"] for video in scored])
    return summary


def format_metrics(metrics: dict) -> str:
    """The metric table ×100, as papers print it, plus seconds per video by stage."""
    lines = [f"{metrics['videos']} videos, split {metrics['split']} ({metrics['source']})"]
    lines += [f"  {name:<8}{100 * metrics['metrics'][name]:7.2f}" for name in METRIC_KEYS]
    if metrics["sec_per_video"]:
        stages = ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in metrics["sec_per_video"].items())
        lines.append(f"  seconds per video: {stages}")
    if "grounding" in metrics:
        lines.append(format_grounding(metrics["grounding"]))
    if "in_domain" in metrics:
        lines.append(f"  in domain (like the training videos): {100 * metrics['in_domain']['share']:.1f}% of "
                     f"{metrics['in_domain']['videos']} videos")
    if "calibration" in metrics:
        lines.append(f"  confidence against being grounded: expected calibration error "
                     f"{100 * metrics['calibration']['ece']:.1f} points")
    if metrics["skipped"]:
        lines.append(f"  skipped {len(metrics['skipped'])} video(s), e.g. {metrics['skipped'][0]['video_id']}")
    return "\n".join(lines)


def format_grounding(grounding: dict) -> str:
    """One line: the grounded share and, per attribute, the share of captions that name it right, ×100."""
    right = ", ".join(f"{attribute} {100 * grounding[attribute]['right']:.0f}%" for attribute in ATTRIBUTES)
    return (f"  grounded {100 * grounding['grounded']:.1f}% of {grounding['videos']} videos "
            f"(shape and motion right, nothing wrong); named right: {right}")
