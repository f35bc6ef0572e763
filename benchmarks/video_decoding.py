"""Sampling 16 frames with decord against decoding every frame, on a generated 720p 10 s H.264 clip.

    python benchmarks/video_decoding.py [--seconds 10] [--rounds 3] [--json benchmarks/results/video_decoding.json]

Why the captioner samples: it needs 16 frames, and decord seeks to the keyframe before each and
decodes only from there, where a whole-clip decoder touches every frame. Rows, timed in one run:
decord's 16 segment frames (native size, and resized to 224×224 as the captioner reads them), decord
decoding every frame, and ffmpeg decoding every frame to raw RGB through a pipe.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import decord
import numpy as np

from saliency.infra.rundir import atomic_write_json
from saliency.infra.media import ffmpeg_path
from saliency.infra.media import write_test_pattern
from vidcap.data.video import FrameSamplerConfig, probe, read_frames, sample_indices


def decord_sampled(path: Path, n: int) -> int:
    reader = decord.VideoReader(str(path), num_threads=0)
    return len(reader.get_batch(sample_indices(len(reader), n).tolist()).asnumpy())


def captioner_read(path: Path, n: int) -> int:
    return len(read_frames(path, FrameSamplerConfig(n_frames=n, size=(224, 224))))


def decord_every_frame(path: Path) -> int:
    reader = decord.VideoReader(str(path), num_threads=0)
    return sum(len(reader.get_batch(list(range(s, min(s + 64, len(reader))))).asnumpy())
               for s in range(0, len(reader), 64))


def ffmpeg_every_frame(path: Path, width: int, height: int) -> int:
    raw = subprocess.run([ffmpeg_path(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:"], check=True, capture_output=True).stdout
    return len(np.frombuffer(raw, np.uint8)) // (width * height * 3)


def timed(work, rounds: int) -> tuple[float, int]:
    """Median seconds over `rounds` (after one warm-up) and the frames the work returned."""
    frames = work()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="runs/bench/video_decoding.json",
                        help="where the results go (default %(default)s; the committed reference is benchmarks/results/video_decoding.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = write_test_pattern(Path(folder) / "clip720p.mp4", (720, 1280), args.seconds, 30.0)
        info = probe(clip)
        rows = []
        for name, work in ((f"decord, {args.frames} segment frames (native)", lambda: decord_sampled(clip, args.frames)),
                           (f"decord, {args.frames} frames at 224x224 (vidcap read_frames)", lambda: captioner_read(clip, args.frames)),
                           ("decord, every frame", lambda: decord_every_frame(clip)),
                           ("ffmpeg to raw RGB, every frame", lambda: ffmpeg_every_frame(clip, info.width, info.height))):
            seconds, frames = timed(work, args.rounds)
            rows.append({"method": name, "frames": frames, "seconds": seconds})
    baseline = rows[-1]["seconds"]
    print(f"clip: {info.width}x{info.height}, {info.n_frames} frames, {info.duration:.1f} s, {info.codec}; "
          f"median of {args.rounds} rounds")
    print(f"{'method':<52}{'frames':>8}{'seconds':>10}{'vs ffmpeg all':>15}")
    for row in rows:
        row["speedup_vs_ffmpeg_all"] = baseline / row["seconds"]
        print(f"{row['method']:<52}{row['frames']:>8}{row['seconds']:>10.3f}{row['speedup_vs_ffmpeg_all']:>14.1f}x")
    atomic_write_json(args.json, {"clip": {"width": info.width, "height": info.height, "frames": info.n_frames,
                                         "seconds": info.duration}, "rows": rows})


if __name__ == "__main__":
    main()
