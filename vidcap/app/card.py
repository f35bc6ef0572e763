"""A trained captioner's card (`vidcap info RUN`): what it was trained on, how it did, and how far to trust it."""
from __future__ import annotations

import json
from pathlib import Path

from saliency.infra.rundir import RunDir
from vidcap.model.trust import TRUST_FILE, Trust
from vidcap.run import VidcapRunConfig, captioner_run


def card(run_dir: str | Path) -> str:
    """The card of the captioner in `run_dir`, as Markdown text."""
    run = captioner_run(run_dir)
    config = run.load_config(VidcapRunConfig)
    metrics = RunDir(run_dir).load_metrics()
    trust = Trust.load(run.file(TRUST_FILE))
    about = trust.about or {}
    captioner = config.captioner
    lines = [f"# {run.path}", "", "## Trained on", ""]
    world = about.get("synthetic_world")
    if world:
        lines.append(f"- a synthetic world (version {world['version']}, seed {world['seed']}) of coloured shapes "
                     f"that move: it knows shapes, colours, sizes and motions, and nothing else")
    lines.append(f"- data: {config.data.root} ({about.get('train_videos', '?')} training videos, "
                 f"{about.get('val_videos', '?')} validation videos)")
    lines.append(f"- saliency: {captioner.saliency.source}" + (f" ({captioner.saliency.run})" if captioner.saliency.run
                                                             else "") + f", weighting {captioner.encoder.weighting}")
    lines.append(f"- encoder: {captioner.encoder.backbone} at stride {captioner.encoder.stride}; decoder: "
                 f"{captioner.decoder.layers} layers of width {captioner.decoder.hidden_size}")
    if metrics:
        lines.append(f"- best epoch {metrics['best_epoch']} of {len(metrics['epochs'])}: validation CIDEr "
                     f"{100 * metrics['final']['CIDEr']:.1f}")
    evaluated = run.path / "eval" / "test" / "metrics.json"
    if evaluated.is_file():
        scores = json.loads(evaluated.read_text(encoding="utf-8"))
        grounded = scores.get("grounding", {}).get("grounded")
        lines.append(f"- test split: CIDEr {100 * scores['metrics']['CIDEr']:.1f}, BLEU-4 "
                     f"{100 * scores['metrics']['Bleu_4']:.1f}" + ("" if grounded is None else
                                                                   f", grounded {100 * grounded:.1f}%"))
    lines += ["", "## How far to trust a caption", ""]
    if trust.threshold is None:
        lines.append("- no record of its training videos: no caption is flagged (`vidcap calibrate RUN` makes one)")
    else:
        lines.append(f"- a video whose features lie farther from its training videos' than {trust.threshold:.1f} "
                     f"(Mahalanobis; {100 * about.get('false_alarm', 0):g}% of held-out in-domain videos do) is "
                     "flagged: `in_domain` false, `?` before its caption in text and subtitles")
    if trust.slope is None:
        lines.append("- confidence: the geometric mean of the words' probabilities (not calibrated)")
    else:
        lines.append(f"- confidence: the probability the caption names the actor right, calibrated on "
                     f"{about.get('calibrated_on', 'the validation split')}")
    return "\n".join(lines)
