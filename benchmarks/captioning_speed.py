"""Captioning time per video, stage by stage, with saliency none / each teacher / the student, in one run.

    python benchmarks/captioning_speed.py [--videos 4] [--json benchmarks/results/captioning_speed.json]

The captioner is the MSR-VTT preset (16 frames at 224×224, ResNet-50 encoder, saliency at 224×224,
3-layer decoder, beam 3); weights are random, which does not change the time, and every caption is
generated to the full length (`min_new_tokens`), so the decoder costs the same in every row and the
differences are the saliency model's. Clips: synthetic videos and a generated 720p 10 s clip.
Prints seconds per video for decode, saliency, encoder and decoder, and the student's saving over
each teacher (the target: at least 40% less time per video than teacher-embedded captioning).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from saliency.infra.config import load_config
from saliency.models import build_untrained
from saliency.infra.rundir import atomic_write_json
from vidcap.captioner import Captioner, with_saliency
from vidcap.data.datasets import open_caption_dataset
from vidcap.reports.evaluation import STAGES
from vidcap.data.synthetic import write_msrvtt, write_test_pattern
from vidcap.tokenizer import CaptionTokenizer
from vidcap.run import VidcapRunConfig

SALIENCY = ["none", "teacher-vgg16", "teacher-resnet50", "teacher-densenet121", "teacher-mobilenetv2", "student"]


def captioner(config: VidcapRunConfig, tokenizer: CaptionTokenizer, saliency: str) -> Captioner:
    """The preset captioner with `saliency` maps (a registry name, random weights) or none."""
    config.captioner.encoder.pretrained = False
    source = "none" if saliency == "none" else ("student" if saliency == "student" else "teacher")
    captioner_config = with_saliency(config.captioner, source, weighting="residual")
    torch.manual_seed(0)  # the same encoder and decoder weights in every row
    model = build_untrained(saliency).eval() if saliency != "none" else None
    return Captioner(captioner_config, tokenizer, model).eval()


def seconds_per_video(model: Captioner, videos: list[Path], length: int) -> dict[str, float]:
    model.caption_files(videos[:1], min_new_tokens=length)  # warm-up: allocations, decord, thread pools
    timings: dict[str, float] = {}
    model.caption_files(videos, timings, min_new_tokens=length)
    per_video = {stage: timings.get(stage, 0.0) / len(videos) for stage in STAGES}
    return per_video | {"total": sum(per_video.values())}


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [f"\n## {title}", f"{'saliency':<22}" + "".join(f"{s:>10}" for s in (*STAGES, "total")) + f"{'vs student':>12}"]
    student = rows["student"]["total"]
    for name, row in rows.items():
        saving = f"{100 * (1 - student / row['total']):>11.0f}%" if name.startswith("teacher") else ""
        lines.append(f"{name:<22}" + "".join(f"{row[s]:>10.3f}" for s in (*STAGES, "total")) + saving)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/vidcap/msrvtt.yaml")
    parser.add_argument("--videos", type=int, default=4, help="synthetic videos timed per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated 720p clip")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--saliency", default=",".join(SALIENCY))
    parser.add_argument("--json", default="benchmarks/results/captioning_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(VidcapRunConfig, args.config)
    length = config.captioner.max_length
    results = {"config": args.config, "threads": torch.get_num_threads(), "caption_tokens": length, "clips": {}}
    with tempfile.TemporaryDirectory() as folder:
        write_msrvtt(Path(folder) / "synthetic", n=max(10, args.videos), size=(120, 160), n_frames=32, progress=False)
        data = open_caption_dataset(Path(folder) / "synthetic", split="train")
        tokenizer = CaptionTokenizer.build([c for item in data.items for c in item.captions], min_count=1,
                                           max_length=config.captioner.max_length)
        clips = {"synthetic 120x160, 32 frames": [item.path for item in data.items[:args.videos]],
                 f"generated 720p, {args.seconds:.0f} s": [write_test_pattern(Path(folder) / "clip720p.mp4", (720, 1280),
                                                                              args.seconds, 30.0)]}
        for title, videos in clips.items():
            rows = {name: seconds_per_video(captioner(load_config(VidcapRunConfig, args.config), tokenizer, name), videos, length)
                    for name in args.saliency.split(",")}
            print(table(f"{title}: seconds per video ({len(videos)} videos, {torch.get_num_threads()} threads)", rows))
            results["clips"][title] = rows
    atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
