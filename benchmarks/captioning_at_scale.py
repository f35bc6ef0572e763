"""Captioning at scale: a long 720p video by segment, a folder killed and resumed, a burst of uploads.

    python -m benchmarks.captioning_at_scale [--model runs/demo/captioner-student] [--minutes 60] [--clips 200]
        [--kills 3] [--uploads 20] [--json benchmarks/results/captioning_at_scale.json]

1. long video: a 1-minute 720p 30 fps `testsrc2` clip (2 s keyframes) joined `--minutes` times without
   re-encoding, captioned in 10 s segments by the real command in a child process: seconds, seconds per hour of
   video and the child's peak RSS.
2. resume: `--clips` synthetic clips captioned `--out results.jsonl` once uninterrupted and once SIGKILLed
   `--kills` times at seeded videos and resumed with the same command; the two files compared without timings.
3. uploads: `vidcap serve` (uvicorn, on a free local port) receives `--uploads` concurrent uploads of a 10 s clip,
   then an empty file, random bytes, a truncated mp4 and one twice the size limit; every status is counted, a
   dropped connection as an error, and the health check asked at the end.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.faults import run_child
from saliency.infra.media import ffmpeg_path
from saliency.infra.rundir import atomic_write_json
from saliency.infra.media import write_test_pattern


def long_video(model: str, minutes: int, work: Path) -> dict:
    """Caption a `minutes`-long 720p video in 10 s segments; time and peak memory of the command."""
    minute = write_test_pattern(work / "minute.mp4", seconds=60)
    (work / "list.txt").write_text("".join(f"file '{minute}'\n" for _ in range(minutes)))
    video = work / "long.mp4"
    subprocess.run([ffmpeg_path(), "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(work / "list.txt"),
                    "-c", "copy", str(video)], check=True, timeout=1800)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vidcap.cli", "caption", str(video), "--model", model,
                           "--segments", "10", "--format", "jsonl", "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    segments = len(json.loads(done.stdout)["segments"])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far: this one
    return {"minutes": minutes, "size": "1280x720", "fps": 30, "segments": segments, "seconds": round(seconds, 1),
            "seconds_per_hour_of_video": round(seconds * 60 / minutes, 1), "peak_rss_mb": round(peak_mb)}


def entries(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def resume(model: str, clips: int, kills: int, work: Path, seed: int = 0) -> dict:
    """An uninterrupted run and a run SIGKILLed `kills` times (at seeded videos) and resumed: the same file?"""
    data = work / "clips"
    subprocess.run([sys.executable, "-m", "vidcap.cli", "synth", str(data), "--n", str(clips), "--frames", "16",
                    "--size", "64x96", "--quiet"], check=True, capture_output=True)
    args = lambda out: ["caption", str(data), "--model", model, "--out", str(out), "--quiet"]  # noqa: E731
    reference = run_child("vidcap.cli", args(work / "reference.jsonl"))
    assert reference.returncode == 0, reference.stderr[-2000:]
    rng = random.Random(seed)
    points, killed = [rng.randint(2, max(2, clips // kills)) for _ in range(kills)], 0
    for point in points:  # each kill lands that many videos into what is left
        run = run_child("vidcap.cli", args(work / "killed.jsonl"), kill_at=point, kind="video")
        killed += run.returncode == -signal.SIGKILL
    final = run_child("vidcap.cli", args(work / "killed.jsonl"))
    assert final.returncode == 0, final.stderr[-2000:]
    same = entries(work / "reference.jsonl") == entries(work / "killed.jsonl")
    return {"clips": clips, "kill_points": points, "killed": killed, "lines": len(entries(work / "killed.jsonl")),
            "identical_ignoring_seconds": same}


def uploads(model: str, count: int, work: Path) -> dict:
    """`count` concurrent uploads of a 10 s clip, then the bad ones; statuses, errors, and health after."""
    from vidcap.run import load_run
    from vidcap.app.serve import create_app, listen, serve

    clip = write_test_pattern(work / "upload.mp4", size=(360, 640), seconds=10).read_bytes()
    limit_mb = 2 * len(clip) / 2**20
    sock = listen("127.0.0.1", 0)
    app = create_app(load_run(model)[0], model, work / "serve", max_upload_mb=limit_mb)
    threading.Thread(target=serve, args=(app, sock, True), daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    while True:
        try:
            httpx.get(f"{url}/api/health", timeout=5)
            break
        except httpx.TransportError:
            time.sleep(0.2)

    def post(data: bytes, name: str = "clip.mp4") -> int | str:
        try:
            return httpx.post(f"{url}/api/caption", files={"video": (name, data, "video/mp4")}, timeout=600).status_code
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"

    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        burst = [str(status) for status in pool.map(lambda _: post(clip), range(count))]
    seconds = time.perf_counter() - start
    bad = {"empty": post(b""), "random bytes": post(random.Random(0).randbytes(4096)),
           "truncated mp4": post(clip[: len(clip) // 2]), "twice the limit": post(b"\0" * int(2 * limit_mb * 2**20))}
    health = httpx.get(f"{url}/api/health", timeout=5).json()
    return {"uploads": count, "clip_mb": round(len(clip) / 2**20, 2), "limit_mb": round(limit_mb, 2),
            "statuses": {status: burst.count(status) for status in sorted(set(burst))}, "seconds": round(seconds, 1),
            "bad_uploads": bad, "health_after": health["status"], "pending_after": health["pending"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/demo/captioner-student", help="captioner run (default: the demo's)")
    parser.add_argument("--minutes", type=int, default=60, help="length of the long video (default 60)")
    parser.add_argument("--clips", type=int, default=200, help="synthetic clips for the resume check (default 200)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs before the run is let finish (default 3)")
    parser.add_argument("--uploads", type=int, default=20, help="concurrent uploads (default 20)")
    parser.add_argument("--json", default="runs/bench/captioning_at_scale.json",
                        help="where to write the figures (default %(default)s; the committed reference is "
                             "benchmarks/results/captioning_at_scale.json)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="captioning-at-scale-") as folder:
        work = Path(folder)
        # the long video first: its peak memory is read as the largest of the children so far
        for name, measure in (("long_video", lambda: long_video(args.model, args.minutes, work)),
                              ("resume", lambda: resume(args.model, args.clips, args.kills, work)),
                              ("uploads", lambda: uploads(args.model, args.uploads, work))):
            results[name] = measure()
            print(name, json.dumps(results[name]), flush=True)
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
