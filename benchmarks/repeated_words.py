"""Generation that does not stutter: captions with `no_repeat_ngram_size` n (HF `generate()`: no n-gram of n words
twice) against none, on the captioners' own validation split (where n is chosen), their test split (CIDEr and
grounded share, paired intervals over videos), clips unlike the synthetic world (ffmpeg's `testsrc2`, `mandelbrot`,
`life`, `cellauto`) and real footage and photos (`benchmarks/real_media.py`), where captions repeated words.

    python -m benchmarks.repeated_words --runs runs/demo/captioner-none,runs/demo/captioner-teacher,runs/demo/captioner-student

The protocol, fixed before the run: sizes 2, 3 and 4 against 0; on each run's validation split the size with the
highest CIDEr among them is chosen (ties: the smaller n, which forbids more); the test split is read once, for the
table. Resumable: the JSON keeps every (run, split, size) measured.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
from pathlib import Path

from benchmarks.real_media import real_media
from saliency.infra.media import write_test_pattern
from saliency.infra.rundir import atomic_write_json
from saliency.infra.stats import paired_bootstrap
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.caption_metrics import score_and_per_item
from vidcap.evaluation.grounding import ground_captions, load_actors
from vidcap.inference.pipeline import caption_videos
from vidcap.run import load_run

SIZES = (0, 2, 3, 4)
UNFAMILIAR = ("testsrc2", "mandelbrot", "life", "cellauto")  # ffmpeg's generated clips: nothing like the world


def repeated_pair(caption: str) -> bool:
    """Whether a caption says a pair of words twice ("red red red" does): what n = 2 rules out."""
    words = re.findall(r"[a-z]+", caption.lower())
    pairs = list(zip(words, words[1:]))
    return len(set(pairs)) < len(pairs)


def doubled_word(caption: str) -> bool:
    """Whether a caption says a word twice in a row ("star star"): what no n-gram rule above 1 rules out."""
    words = re.findall(r"[a-z]+", caption.lower())
    return any(a == b for a, b in zip(words, words[1:]))


def stutter(made: dict[str, str]) -> dict[str, float]:
    """Shares of the captions with a repeated pair of words, and with a doubled word."""
    return {"repeated_pair": statistics.mean(map(repeated_pair, made.values())),
            "doubled_word": statistics.mean(map(doubled_word, made.values()))}


def captions(model, videos: list[tuple[str, str]], size: int) -> dict[str, str]:
    extra = {"no_repeat_ngram_size": size} if size else {}
    return {key: caption for key, caption, error in caption_videos(model, videos, **extra) if error is None}


def measure_split(model, config, split: str, size: int) -> dict:
    items = open_caption_dataset(config.data.root, split=split).items
    made = captions(model, [(item.video_id, item.path) for item in items], size)
    gts = {item.video_id: item.captions for item in items if item.video_id in made}
    corpus, per_video = score_and_per_item(gts, made)
    actors = load_actors(config.data.root) or {}
    grounded = ground_captions(made, actors)
    return {"CIDEr": corpus["CIDEr"], "per_video_CIDEr": {k: v["CIDEr"] for k, v in per_video.items()},
            "grounded": {k: int(v["grounded"]) for k, v in grounded.items()},
            "stutter": stutter(made), "videos": len(made)}


def unfamiliar_clips(folder: Path, size: tuple[int, int]) -> list[tuple[str, str]]:
    """Two seconds of each of ffmpeg's generated patterns, at the captioner's frame size."""
    clips = []
    for name in UNFAMILIAR:
        path = folder / f"{name}.mp4"
        if not path.exists():
            write_test_pattern(path, size=size, seconds=2.0, fps=8.0, source=name)
        clips.append((name, str(path)))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="comma-separated captioner runs")
    parser.add_argument("--json", default="runs/bench/repeated_words.json")
    parser.add_argument("--real", default="runs/real-media", help="where the real media are kept (fetched once)")
    args = parser.parse_args()
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {"protocol": {"sizes": SIZES}, "runs": {}}
    for run in args.runs.split(","):
        model, config = load_run(run)
        entry = results["runs"].setdefault(run, {})
        for split in ("val", "test"):
            for size in SIZES:
                key = f"{split}/{size}"
                if key not in entry:
                    entry[key] = measure_split(model, config, split, size)
                    atomic_write_json(path, results)
        real = [(file.name, str(file)) for file in real_media(Path(args.real))]
        with tempfile.TemporaryDirectory() as folder:
            unfamiliar = unfamiliar_clips(Path(folder), tuple(config.captioner.sampler.size))
            for size in SIZES:
                for kind, clips in (("unfamiliar", unfamiliar), ("real", real)):
                    key = f"{kind}/{size}"
                    if key not in entry:
                        made = captions(model, clips, size)
                        entry[key] = {"captions": made, "stutter": stutter(made)}
                        atomic_write_json(path, results)
        chosen = max(SIZES[1:], key=lambda n: (round(entry[f"val/{n}"]["CIDEr"], 6), -n))
        test, base = entry[f"test/{chosen}"], entry["test/0"]
        ids = sorted(test["per_video_CIDEr"])
        cider = paired_bootstrap([test["per_video_CIDEr"][i] for i in ids], [base["per_video_CIDEr"][i] for i in ids])
        grounded = paired_bootstrap([test["grounded"][i] for i in sorted(test["grounded"])],
                                    [base["grounded"][i] for i in sorted(test["grounded"])])
        entry["chosen"] = {"size": chosen, "test_CIDEr_diff": cider, "test_grounded_diff": grounded}
        atomic_write_json(path, results)
        print(f"{run}: val CIDEr " + ", ".join(f"n={n} {100 * entry[f'val/{n}']['CIDEr']:.1f}" for n in SIZES)
              + f"; chosen n={chosen}; test CIDEr {100 * base['CIDEr']:.1f} -> {100 * test['CIDEr']:.1f} "
              f"(diff {100 * cider['diff']:+.1f} [{100 * cider['ci95'][0]:+.1f}, {100 * cider['ci95'][1]:+.1f}]); "
              f"grounded diff {100 * grounded['diff']:+.1f} [{100 * grounded['ci95'][0]:+.1f}, "
              f"{100 * grounded['ci95'][1]:+.1f}]; repeated pair / doubled word, n=0 -> n={chosen}: " + ", ".join(
                  f"{kind} {entry[f'{kind}/0']['stutter']['repeated_pair']:.0%}/"
                  f"{entry[f'{kind}/0']['stutter']['doubled_word']:.0%} -> "
                  f"{entry[f'{kind}/{chosen}']['stutter']['repeated_pair']:.0%}/"
                  f"{entry[f'{kind}/{chosen}']['stutter']['doubled_word']:.0%}" for kind in ("test", "unfamiliar", "real")))


if __name__ == "__main__":
    main()
