"""How far the captioners' trust goes: the share of the synthetic test split they take for their own kind (target
≥ 95% in domain), the share of real files and of ffmpeg's generated clips they flag (target ≥ 95% flagged), and how
well confidence matches being grounded on the test split (expected calibration error, reliability bins).

    python -m benchmarks.trust --runs runs/demo/captioner-none,runs/demo/captioner-teacher,runs/demo/captioner-student

A run without a trust record gets one first (`vidcap calibrate`). Resumable: the JSON keeps every run measured.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.real_media import real_media
from saliency.infra.media import write_test_pattern
from saliency.infra.rundir import atomic_write_json
from saliency.infra.stats import reliability
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.grounding import ground_captions, load_actors
from vidcap.inference.pipeline import caption_videos
from vidcap.model.trust import TRUST_FILE
from vidcap.run import load_run
from vidcap.training.trust import fit_trust

GENERATED = ("testsrc2", "mandelbrot", "life", "cellauto", "smptebars", "rgbtestsrc")


def captions(model, videos: list[tuple[str, str]]) -> dict:
    return {key: caption for key, caption, error in caption_videos(model, videos) if error is None}


def measure(run: str, real: list[Path]) -> dict:
    if not (Path(run) / TRUST_FILE).is_file():
        fit_trust(run, progress=False)
    model, config = load_run(run)
    test = open_caption_dataset(config.data.root, split="test").items
    synthetic = captions(model, [(item.video_id, item.path) for item in test])
    grounded = ground_captions(synthetic, load_actors(config.data.root) or {})
    with tempfile.TemporaryDirectory() as folder:
        generated = captions(model, [(name, str(write_test_pattern(Path(folder) / f"{name}.mp4",
                                                                    size=tuple(config.captioner.sampler.size),
                                                                    seconds=2, fps=8, source=name)))
                                     for name in GENERATED])
    found = captions(model, [(path.name, str(path)) for path in real])
    scored = [video for video in synthetic if video in grounded]
    return {"about": model.trust.about, "threshold": model.trust.threshold,
            "synthetic_test_in_domain": sum(c.in_domain for c in synthetic.values()) / len(synthetic),
            "real_flagged": sum(c.flagged for c in found.values()) / len(found),
            "generated_flagged": sum(c.flagged for c in generated.values()) / len(generated),
            "test_calibration": reliability([synthetic[v].confidence for v in scored],
                                            [grounded[v]["grounded"] for v in scored]),
            "real": {name: [str(c), round(c.confidence, 4), c.in_domain] for name, c in found.items()},
            "generated": {name: [str(c), round(c.confidence, 4), c.in_domain] for name, c in generated.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="comma-separated captioner runs")
    parser.add_argument("--json", default="runs/bench/trust.json")
    parser.add_argument("--real", default="runs/real-media", help="where the real media are kept (fetched once)")
    args = parser.parse_args()
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    real = real_media(Path(args.real))
    for run in args.runs.split(","):
        if run not in results:
            results[run] = measure(run, real)
            atomic_write_json(path, results)
        entry = results[run]
        print(f"{run}: synthetic test in domain {100 * entry['synthetic_test_in_domain']:.1f}%, real files flagged "
              f"{100 * entry['real_flagged']:.0f}% of {len(entry['real'])}, generated clips flagged "
              f"{100 * entry['generated_flagged']:.0f}% of {len(entry['generated'])}; test calibration error "
              f"{100 * entry['test_calibration']['ece']:.1f} points")


if __name__ == "__main__":
    main()
