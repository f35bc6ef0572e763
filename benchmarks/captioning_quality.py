"""The demo's three captioners (saliency none / teacher / student) over several seeds: mean ± std.

    python benchmarks/captioning_quality.py [--demo runs/demo] [--seeds 0,1,2] [--json benchmarks/results/captioning_quality.json]

Runs after `vidcap demo`: the world and the saliency models are the demo's; each seed trains the three
captioners afresh (the seed sets the frozen random encoder, the decoder's initialisation and the
caption order) and scores them on the held-out split. The demo's own captioners are its config's
seed; other seeds go to `DEMO/seeds/seed<N>/`. Also prints the demo's saliency metrics of the
teacher, the distilled student and the undistilled student.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from saliency.infra.config import load_config
from saliency.infra.rundir import atomic_write_json
from vidcap.demo import SALIENCY_SOURCES, Demo, DemoConfig

KEYS = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "sec_per_video")


class SeedRun(Demo):
    """The demo with its captioners trained from another seed, in their own folders."""

    def __init__(self, config: DemoConfig, seed: int):
        self.demo_seed = config.captioning.seed
        config.captioning.seed = seed
        super().__init__(config, progress=False)

    def run_dir(self, name: str) -> Path:
        if name.startswith("captioner-") and self.config.captioning.seed != self.demo_seed:
            return self.out / "seeds" / f"seed{self.config.captioning.seed}" / name
        return super().run_dir(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--demo", default="runs/demo", help="a finished demo (world and saliency models)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", default="runs/bench/captioning_quality.json",
                        help="where the results go (default %(default)s; the committed reference is benchmarks/results/captioning_quality.json)")
    args = parser.parse_args()
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        config = load_config(DemoConfig, args.config, [f"out={args.demo}"])
        run = SeedRun(config, seed)
        if not (run.run_dir("teacher") / "model.safetensors").is_file():
            raise SystemExit(f"{args.demo}: run `vidcap demo --set out={args.demo}` first")
        print(f"seed {seed}: training and evaluating the three captioners")
        run.captioners()
        run.evaluate()
        per_seed[seed] = run.caption_scores()
    summary = {source: {key: {"mean": statistics.mean(per_seed[s][source][key] for s in per_seed),
                              "std": statistics.stdev(per_seed[s][source][key] for s in per_seed) if len(per_seed) > 1 else 0.0}
                        for key in KEYS} for source in SALIENCY_SOURCES}
    print(f"\n## held-out split, {len(per_seed)} seeds: mean ± std (×100; seconds per video)")
    print(f"{'saliency':<10}" + "".join(f"{k:>16}" for k in KEYS))
    for source, row in summary.items():
        cells = [f"{100 * row[k]['mean']:.1f} ± {100 * row[k]['std']:.1f}" for k in KEYS[:-1]]
        cells.append(f"{row['sec_per_video']['mean']:.3f} ± {row['sec_per_video']['std']:.3f}")
        print(f"{source:<10}" + "".join(f"{c:>16}" for c in cells))
    saliency = SeedRun(load_config(DemoConfig, args.config, [f"out={args.demo}"]), 0).saliency_scores()
    print("\n## saliency models on the held-out frames")
    for name, scores in saliency.items():
        print(f"{name:<14}" + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    atomic_write_json(args.json, {"seeds": per_seed, "summary": summary, "saliency": saliency})


if __name__ == "__main__":
    main()
