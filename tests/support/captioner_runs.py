"""The captioner's side of the corruption battery (`tests.support.corruption`): a tiny captioner run and its
feature cache made by the real commands, and the loaders that read each of their files; and of the kill-anywhere
campaign (`tests.support.faults`): vidcap extract and vidcap train as scenarios."""
from __future__ import annotations

import json
from pathlib import Path

from saliency.infra.config import to_dict
from tests.support.corruption import Target, require_success, run_targets
from tests.support.faults import Scenario, continue_run, prepare_once
from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.training.feature_cache import FeatureCache, extract_splits
from vidcap.run import VidcapRunConfig, load_run

# A tiny captioner made by the real commands (no saliency, a small CNN, one epoch)
VIDCAP_TINY = ["--saliency", "none", "--quiet", "--set", "threads=1",
               "--set", "captioner.sampler={n_frames: 2, mode: segment, size: [32, 64], resize: stretch}",
               "--set", "captioner.encoder={backbone: small-cnn, pretrained: false, grid: 2}",
               "--set", "captioner.decoder={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}",
               "--set", "captioner.tokenizer.min_count=1", "--set", "captioner.max_length=16",
               "--set", "captioner.num_beams=1", "--set", "optim.epochs=1", "--set", "data.batch_size=8"]


def make_captioner_run(root: Path) -> tuple[Path, Path]:
    """`vidcap synth` 6 clips, `vidcap train` a tiny captioner on them for one epoch (which caches the train and
    val features in one shard), then `vidcap extract` the test split (a second shard); (run, cache root)."""
    data, cache, run = root / "vidcap-data", root / "cache", root / "captioner"
    require_success(main(["synth", str(data), "--n", "6", "--size", "32x64", "--frames", "4", "--quiet"]), "vidcap synth")
    settings = [*VIDCAP_TINY, "--set", f"data.root={data}", "--set", f"data.cache_dir={cache}"]
    require_success(main(["train", *settings, "--out", str(run)]), "vidcap train")
    require_success(main(["extract", *settings, "--splits", "test"]), "vidcap extract")
    return run, cache


def captioner_targets(run: Path) -> list[Target]:
    """The files of a captioner run, each with the loader that reads it."""
    def model() -> dict:
        captioner, config = load_run(run)
        return {"weights": captioner.state_dict(), "tokenizer": captioner.tokenizer.backend.to_str(),
                "max_length": captioner.tokenizer.max_length, "config": to_dict(config)}

    return run_targets("captioner", run, model, ["config.yaml", "tokenizer.json", "model.safetensors"])


def cache_targets(run: Path, cache_root: Path) -> list[Target]:
    """The shards and index.json of the captioner's feature cache, loaded as `vidcap extract` and `vidcap train` use
    it: `extract_splits` over every split (which checks the cache and extracts what is missing or damaged), then
    every video's features read back by a fresh `FeatureCache`, as the next epoch or run reads them."""
    config = RunDir(run).load_config(VidcapRunConfig)
    folder = next(path for path in Path(cache_root).iterdir() if path.is_dir())
    videos = sorted(json.loads((folder / "index.json").read_text()))

    def load() -> tuple[dict, int]:
        before = set(folder.glob("shard_*"))
        extract_splits(config, ["train", "val", "test"], progress=False)
        cache = FeatureCache(cache_root, folder.name)
        return {video: cache.get(video) for video in videos}, len(set(folder.glob("shard_*")) - before)

    shards = sorted(folder.glob("shard_*.safetensors"), key=lambda path: -path.stat().st_size)
    return [Target("cache/index.json", folder / "index.json", "json", load, folder, repairs=True),
            *(Target(f"cache/shard {i + 1} of {len(shards)}", shard, "safetensors", load, folder, repairs=True)
              for i, shard in enumerate(shards))]


# The kill-anywhere campaign's tiny captioner: three epochs, so that kills fall between checkpoints too
CAMPAIGN_TINY = [*VIDCAP_TINY, "--set", "optim.epochs=3", "--set", "captioner.num_beams=3",
                 "--set", "captioner.sampler.n_frames=4", "--set", "captioner.decoder.visual_positions=64",
                 "--set", "optim.captions_per_video=3"]


def captioner_scenarios(work: Path) -> list[Scenario]:
    """Tiny MSR-VTT-layout videos in `work` (kept and reused); the scenarios vidcap extract and vidcap train of the
    kill-anywhere campaign (`tests.support.faults.campaign`)."""
    videos = work / "videos"
    prepare_once(videos, "vidcap.cli", ["synth", videos, "--n", "10", "--size", "32x64", "--frames", "4", "--quiet"])
    extract = lambda out: ["extract", *CAMPAIGN_TINY, "--set", f"data.root={videos}", "--set",  # noqa: E731
                           f"data.cache_dir={out}", "--splits", "train,val"]
    caption = lambda out: ["train", *CAMPAIGN_TINY, "--set", f"data.root={videos}", "--set",  # noqa: E731
                           f"data.cache_dir={out / 'cache'}", "--out", str(out / "run")]
    return [Scenario("vidcap extract", "vidcap.cli", extract, extract),
            Scenario("vidcap train", "vidcap.cli", caption, continue_run(caption, ["train"], lambda out: out / "run"))]
