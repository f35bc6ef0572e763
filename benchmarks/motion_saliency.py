"""Do saliency models that see motion find a video's actor? Held-out frames of the synthetic world in the DHF1K layout.

    python benchmarks/motion_saliency.py --data runs/motion/dhf1k --runs runs/motion/teacher,runs/motion/teacher-still \
        [--split test] [--json runs/bench/motion_saliency.json]

In world v2 a moving object draws six times the gaze of a still one, so the actor of a video is mostly the object
that moves, which no single frame shows. Per saliency run (at its training size): CC, KLD, NSS and SIM on the
split's annotated frames, and the share of frames whose map peaks on the actor (inside its box), overall and by
the actor's motion; the ground-truth maps' share is the ceiling (their observers are a sample). Every run after the
first gets the paired difference in that share to the first, per video, with its bootstrap 95% interval. Each run
sees the frames as it was trained to (a motion model the frame `model.options.motion` frames back). A run already in
`--json` (same data and split, same weights) is reused, so an interrupted benchmark resumes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from saliency import load, world
from saliency.data import open_dataset
from saliency.evaluate import evaluate_model, predict_maps
from saliency.infra.rundir import WEIGHTS, RunDir, atomic_write_json
from saliency.infra.stats import paired_bootstrap
from saliency.models.components import motion_gap
from saliency.run import SaliencyRunConfig

METRICS = ["CC", "KLD", "NSS", "SIM"]


def on_actor(probability: np.ndarray, scene: world.Scene, t: int) -> bool:
    """Whether the map's peak lies inside the actor's box at frame `t` (0-based)."""
    y, x = np.unravel_index(np.argmax(probability), probability.shape)
    x0, y0, x1, y1 = world.actor_box(scene, t)
    return bool(x0 <= x <= x1 and y0 <= y <= y1)


def peak_hits(reader, scenes: dict[int, world.Scene], maps) -> dict[str, list[tuple[str, bool]]]:
    """Per actor motion, (video, whether the map of `maps(sample)` peaks on the actor) for every frame."""
    hits: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for index in range(len(reader)):
        sample = reader[index]
        video, frame = sample.name.split("/")
        scene = scenes[int(video)]
        hits[scene.motion].append((video, on_actor(maps(sample), scene, int(frame) - 1)))
    return hits


def shares(hits: dict[str, list[tuple[str, bool]]]) -> dict:
    """The share of frames on the actor, overall and by motion."""
    every = [hit for rows in hits.values() for _, hit in rows]
    return {"all": float(np.mean(every)), "frames": len(every),
            "by_motion": {motion: float(np.mean([hit for _, hit in rows])) for motion, rows in sorted(hits.items())}}


def per_video(hits: dict[str, list[tuple[str, bool]]]) -> dict[str, float]:
    """Each video's share of frames on the actor."""
    frames: dict[str, list[bool]] = defaultdict(list)
    for rows in hits.values():
        for video, hit in rows:
            frames[video].append(hit)
    return {video: float(np.mean(values)) for video, values in sorted(frames.items())}


def previous_results(path: str, data: str, split: str, meta_hash: str) -> dict:
    """What an earlier invocation measured on the same data (folder and `world`: its metadata's hash) and split
    (empty when there is none)."""
    try:
        earlier = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return earlier if (earlier.get("data"), earlier.get("split"), earlier.get("world")) == (data, split, meta_hash) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a synthetic DHF1K-layout folder (`saliency synth --layout dhf1k`)")
    parser.add_argument("--runs", required=True, help="comma-separated saliency run directories; the first is the reference")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", default="runs/bench/motion_saliency.json")
    args = parser.parse_args()
    meta_text = (Path(args.data) / world.META_NAME).read_text(encoding="utf-8")
    meta, meta_hash = json.loads(meta_text), hashlib.sha256(meta_text.encode()).hexdigest()
    reader = open_dataset(args.data, kind="dhf1k", split=args.split)
    scenes = {int(number): world.dhf1k_scene(meta["seed"], int(number), tuple(meta["size"]), meta["n_frames"],
                                             meta["world"])[0] for number in meta["videos"]}
    earlier = previous_results(args.json, args.data, args.split, meta_hash)
    done = earlier.get("runs", {})
    if "ground_truth" in earlier:  # the maps of the same data: reading every frame again gives the same share
        results = {key: earlier[key] for key in ("data", "split", "world", "videos", "ground_truth")} | {"runs": {}}
    else:
        truth = peak_hits(reader, scenes, lambda sample: sample.density)
        results = {"data": args.data, "split": args.split, "world": meta_hash, "videos": len(per_video(truth)),
                   "ground_truth": {"peak_on_actor": shares(truth)}, "runs": {}}
    truth_shares = results["ground_truth"]["peak_on_actor"]
    print(f"{args.data} ({args.split}): {results['videos']} videos, {truth_shares['frames']} annotated frames")
    print(f"{'ground truth':<36}{'':>40}   on actor {truth_shares['all']:.3f}")
    first = None
    for run in args.runs.split(","):
        weights = hashlib.sha256((Path(run) / WEIGHTS).read_bytes()).hexdigest()
        if done.get(run, {}).get("weights_sha256") == weights and done[run].get("reference") == first:
            results["runs"][run] = row = done[run]
            scores, videos = row["metrics"], row["per_video"]
        else:
            size = tuple(RunDir(run).load_config(SaliencyRunConfig).data.size)
            model = load(run)
            frames = open_dataset(args.data, kind="dhf1k", split=args.split, frame_gap=motion_gap(model) or 1)
            scores = evaluate_model(model, frames, size, metrics=METRICS, progress=False)
            hits = peak_hits(frames, scenes,
                             lambda sample: predict_maps(model, [sample.image], size, [sample.previous])[0])
            row = {"motion": motion_gap(model), "weights_sha256": weights, "metrics": scores,
                   "peak_on_actor": shares(hits)}
            videos = per_video(hits)
            if first is not None:
                reference = results["runs"][first]["per_video"]
                row["vs_first"] = paired_bootstrap([videos[v] for v in reference], list(reference.values()))
                row["reference"] = first
            results["runs"][run] = row = row | {"per_video": videos}
        first = first or run
        atomic_write_json(args.json, results)
        cells = "".join(f"{name} {value:.4f}  " for name, value in scores.items())
        versus = row.get("vs_first")
        diff = "" if versus is None else (f"  vs first {versus['diff']:+.3f} "
                                           f"[{versus['ci95'][0]:+.3f}, {versus['ci95'][1]:+.3f}]")
        print(f"{run:<36}{cells:>40} on actor {row['peak_on_actor']['all']:.3f}{diff}  "
              f"{ {k: round(v, 2) for k, v in row['peak_on_actor']['by_motion'].items()} }", flush=True)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
