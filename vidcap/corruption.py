"""The captioner's side of the corruption battery (`saliency.infra.corruption`): a tiny captioner run and its
feature cache made by the real commands, and the loaders that read each of their files."""
from __future__ import annotations

import json
from pathlib import Path

from saliency.infra.config import to_dict
from saliency.infra.corruption import VIDCAP_TINY, Target, require_success, run_targets
from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.data.cache import FeatureCache, extract_splits
from vidcap.run import VidcapRunConfig, load_run


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
