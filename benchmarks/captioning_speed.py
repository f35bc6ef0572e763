"""Captioning time per video, stage by stage, per inference backend and saliency model; and videos per hour over a
folder of 720p clips, one video at a time vs the overlapped pipeline; all in one run.

    python benchmarks/captioning_speed.py [--videos 4] [--folder 20] [--json benchmarks/results/captioning_speed.json]

The captioner is the MSR-VTT preset (16 frames at 224×224, ResNet-50 encoder, saliency at 224×224, 3-layer decoder,
beam 3); weights are random, which does not change the time, and every caption is generated to the full length
(`min_new_tokens`), so the decoder costs the same in every row and the differences are the saliency model's and the
backend's. The saliency model and the encoder run on each backend (torch eager, onnxruntime float32, onnxruntime
int8 calibrated on frames of the synthetic clips, and the int8 encoder beside the float32 saliency model that keeps
the maps' peaks where float32 puts them); exports are cached in `--exports`. Clips: synthetic videos and a
generated 720p 10 s clip; the folder holds `--folder` copies of that clip. Prints seconds per video for decode,
saliency, encoder and decoder, the student's saving over each teacher on the same backend, and the folder's
throughput: one video at a time (`Captioner.caption_files`) and overlapped (`vidcap.inference.pipeline.caption_videos`).

Each section (a kind of clip, the folder) is written to `--json` as soon as it is measured, and a later run with the
same settings keeps the sections it finds there: an interrupted benchmark continues, and every ratio still comes from
rows measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from saliency.backends import BACKENDS, exported_session, on_backend
from saliency.infra.config import load_config
from saliency.infra.rundir import atomic_write_json
from saliency.models import build_untrained
from vidcap.inference.front_end_backend import backends_name, split_backends_name
from vidcap.model.captioner import Captioner, frames_to_tensor, with_saliency
from vidcap.data.datasets import open_caption_dataset
from saliency.infra.media import write_test_pattern
from saliency.world import write_msrvtt
from vidcap.data.video import read_frames
from vidcap.inference.pipeline import caption_videos
from vidcap.evaluation.reports.split_report import STAGES
from vidcap.run import VidcapRunConfig
from vidcap.model.tokenizer import CaptionTokenizer

BACKEND_ROWS = (*BACKENDS, backends_name("onnxruntime-int8", "onnxruntime"))  # + int8 encoder, float32 saliency
SALIENCY = ["none", "teacher-vgg16", "teacher-resnet50", "teacher-densenet121", "teacher-mobilenetv2", "student"]


def captioner(config: VidcapRunConfig, tokenizer: CaptionTokenizer, saliency: str) -> Captioner:
    """The preset captioner with `saliency` maps (a registry name, random weights) or none."""
    config.captioner.encoder.pretrained = False
    source = "none" if saliency == "none" else ("student" if saliency == "student" else "teacher")
    captioner_config = with_saliency(config.captioner, source, weighting="residual")
    torch.manual_seed(0)  # the same encoder and decoder weights in every row
    model = build_untrained(saliency).eval() if saliency != "none" else None
    return Captioner(captioner_config, tokenizer, model).eval()


def on(model: Captioner, backends: str, saliency: str, calibration: list, exports: Path) -> Captioner:
    """`model` with its encoder and saliency model on `backends` (a backend, or the encoder's and the saliency
    model's: `vidcap.inference.front_end_backend.backends_name`; int8 calibrated on `calibration` frame batches)."""
    encoder, saliency_backend = split_backends_name(backends)
    front, config = model.front, model.config
    if encoder != "torch":
        front.encoder.session = exported_session(front.encoder, encoder, config.sampler.size, exports,
                                                 f"encoder-{config.encoder.backbone}", lambda: calibration, "features",
                                                 spinning=False)  # as `vidcap.inference.front_end_backend.use_backend` runs them
    if front.saliency_model is not None and saliency_backend != "torch":
        front.saliency_model = on_backend(front.saliency_model, saliency_backend,
                                          config.saliency.size or config.sampler.size, exports, saliency,
                                          lambda: calibration, spinning=False)
    return model


def seconds_per_video(model: Captioner, videos: list[Path], length: int) -> dict[str, float]:
    model.caption_files(videos[:1], min_new_tokens=length)  # warm-up: allocations, decord, thread pools
    timings: dict[str, float] = {}
    model.caption_files(videos, timings, min_new_tokens=length)
    per_video = {stage: timings.get(stage, 0.0) / len(videos) for stage in STAGES}
    return per_video | {"total": sum(per_video.values())}


def folder_throughput(model: Captioner, videos: list[Path], length: int, overlapped: bool) -> dict[str, float]:
    """Wall-clock seconds for the whole folder and videos per hour, one at a time or overlapped."""
    model.caption_files(videos[:1], min_new_tokens=length)
    start = time.perf_counter()
    if overlapped:
        captions = [caption for _, caption, _ in caption_videos(model, list(enumerate(videos)), min_new_tokens=length)]
    else:
        captions = model.caption_files(videos, min_new_tokens=length)
    seconds = time.perf_counter() - start
    assert len(captions) == len(videos) and all(captions)
    return {"seconds": seconds, "videos_per_hour": 3600 * len(videos) / seconds}


def table(title: str, rows: dict[str, dict[str, dict[str, float]]]) -> str:
    width = max(len("backend"), *map(len, rows)) + 2
    lines = [f"\n## {title}", f"{'backend':<{width}}{'saliency':<22}" + "".join(f"{s:>10}" for s in (*STAGES, "total"))
             + f"{'vs student':>12}"]
    for backend, by_saliency in rows.items():
        student = by_saliency.get("student", {}).get("total")
        for name, row in by_saliency.items():
            saving = f"{100 * (1 - student / row['total']):>11.0f}%" if student and name.startswith("teacher") else ""
            lines.append(f"{backend:<{width}}{name:<22}" + "".join(f"{row[s]:>10.3f}" for s in (*STAGES, "total")) + saving)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/vidcap/msrvtt.yaml")
    parser.add_argument("--videos", type=int, default=4, help="synthetic videos timed per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated 720p clip")
    parser.add_argument("--folder", type=int, default=20, help="720p clips in the throughput folder (0: skip it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--saliency", default=",".join(SALIENCY))
    parser.add_argument("--backends", default=",".join(BACKEND_ROWS),
                        help="backends (a name runs encoder and saliency model on it; ENCODER+saliency-BACKEND each "
                             "on its own), default %(default)s")
    parser.add_argument("--exports", default="runs/bench/exports", help="cache of the exported models")
    parser.add_argument("--json", default="runs/bench/captioning_speed.json",
                        help="where the results go (default %(default)s; the committed reference is "
                             "benchmarks/results/captioning_speed.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(VidcapRunConfig, args.config)
    length = config.captioner.max_length
    backends = args.backends.split(",")
    results = {"config": args.config, "threads": torch.get_num_threads(), "caption_tokens": length,
               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "exports")}, "clips": {}}
    earlier = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    if earlier.get("settings") == results["settings"]:  # the sections an interrupted run of these settings finished
        results["clips"], results["folder"] = earlier["clips"], earlier.get("folder")
    with tempfile.TemporaryDirectory() as folder:
        write_msrvtt(Path(folder) / "synthetic", n=max(10, args.videos), size=(120, 160), n_frames=32, progress=False)
        data = open_caption_dataset(Path(folder) / "synthetic", split="train")
        tokenizer = CaptionTokenizer.build([c for item in data.items for c in item.captions], min_count=1,
                                           max_length=config.captioner.max_length)
        calibration = [frames_to_tensor(read_frames(item.path, config.captioner.sampler)).numpy()
                       for item in data.items[:4]]  # (16, 3, 224, 224) each
        clip = write_test_pattern(Path(folder) / "clip720p.mp4", (720, 1280), args.seconds, 30.0)
        clips = {"synthetic 120x160, 32 frames": [item.path for item in data.items[:args.videos]],
                 f"generated 720p, {args.seconds:.0f} s": [clip]}

        def build(backend: str, saliency: str) -> Captioner:
            model = captioner(load_config(VidcapRunConfig, args.config), tokenizer, saliency)
            return on(model, backend, saliency, calibration, Path(args.exports))

        for title, videos in clips.items():
            if title not in results["clips"]:
                results["clips"][title] = {backend: {name: seconds_per_video(build(backend, name), videos, length)
                                                     for name in args.saliency.split(",")} for backend in backends}
                atomic_write_json(args.json, results)
            print(table(f"{title}: seconds per video ({len(videos)} videos, {torch.get_num_threads()} threads)",
                        results["clips"][title]), flush=True)
        if args.folder and not results.get("folder"):
            many = []
            for index in range(args.folder):
                many.append(Path(folder) / "folder" / f"clip{index:02d}.mp4")
                many[-1].parent.mkdir(exist_ok=True)
                shutil.copyfile(clip, many[-1])
            throughput = {"videos": args.folder, "saliency": "student", "rows": {}}
            for backend in backends:
                model = build(backend, "student")
                for mode in ("one at a time", "overlapped"):
                    row = folder_throughput(model, many, length, overlapped=mode == "overlapped")
                    throughput["rows"][f"{backend}, {mode}"] = row
            results["folder"] = throughput
    if results.get("folder"):
        print(f"\n## a folder of {args.folder} 720p {args.seconds:.0f} s clips, student saliency: videos per hour")
        for name, row in results["folder"]["rows"].items():
            print(f"{name:<52}{row['seconds']:>9.1f} s{row['videos_per_hour']:>10.0f} videos/h")
    atomic_write_json(args.json, results)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
