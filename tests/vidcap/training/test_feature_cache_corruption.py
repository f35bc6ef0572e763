"""A corrupted feature cache is repaired, not trusted: a damaged shard (bytes flipped, cut short, replaced by
another format) or index.json makes the videos it held count as missing, so they are extracted again, with a
warning; training then reads exactly the features an undamaged cache gives, and never a traceback."""
import dataclasses
import json
import logging
import shutil

import pytest
import torch

from tests.support import corruption
from tests.support import captioner_runs
from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.training.feature_cache import FeatureCache, extract_splits
from vidcap.run import VidcapRunConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(tiny_captioner, tmp_path):
    """(run config on a copy of the cache, the copy's fingerprint folder, every video's undamaged features)."""
    shutil.copytree(tiny_captioner / "cache", tmp_path / "cache")
    config = RunDir(tiny_captioner / "captioner").load_config(VidcapRunConfig)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=str(tmp_path / "cache")))
    folder = next((tmp_path / "cache").iterdir())
    return config, folder, features(folder)


def features(folder) -> dict:
    """Every cached video's tokens, copied out of the memory-mapped shards."""
    cache = FeatureCache(folder.parent, folder.name)
    return {video: cache.get(video)[0].clone() for video in sorted(cache.index)}


def largest_shard(folder):
    return max(folder.glob("shard_*.safetensors"), key=lambda path: path.stat().st_size)


@pytest.mark.parametrize("name", ["index.json", "shard 1 of 2", "shard 2 of 2"])
def test_a_damaged_cache_file_is_extracted_again_and_said_so(tiny_captioner, name):
    targets = captioner_runs.cache_targets(tiny_captioner / "captioner", tiny_captioner / "cache")
    target = next(t for t in targets if t.name.endswith(name))
    results = corruption.run_battery([target], seed=3, flips=4, cuts=2)
    assert len(results) == 4 + 2 + 7
    assert [r for r in results if r["outcome"] not in corruption.GOOD] == []
    assert {r["outcome"] for r in results} == {corruption.REBUILT}


def test_a_flipped_byte_in_a_shard_drops_its_videos_which_are_extracted_again(cache, caplog):
    config, folder, undamaged = cache
    shard = largest_shard(folder)
    held = sorted(video for video, name in json.loads((folder / "index.json").read_text()).items() if name == shard.name)
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01  # one bit of one float of the last video: silently another feature without the checksum
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="vidcap"):
        extraction = extract_splits(config, ["train", "val", "test"], progress=False)
    assert f"{folder}: {len(held)} cached video(s) damaged ({', '.join(held)}): extracted again" in caplog.text
    assert extraction.new == len(held) and extraction.skipped == []
    assert shard.name not in json.loads((folder / "index.json").read_text()).values()
    repaired = features(folder)
    assert repaired.keys() == undamaged.keys()
    assert all(torch.equal(repaired[v], undamaged[v]) for v in undamaged)


def test_a_corrupt_index_is_read_as_empty_with_a_warning_and_rebuilt(cache, caplog):
    config, folder, undamaged = cache
    (folder / "index.json").write_bytes(b'{"video0": "shard_')
    with caplog.at_level(logging.WARNING, logger="vidcap"):
        extraction = extract_splits(config, ["train", "val", "test"], progress=False)
    assert f"{folder / 'index.json'}: damaged (not a JSON index of video ids to shards)" in caplog.text
    assert extraction.new == len(undamaged)
    repaired = features(folder)
    assert all(torch.equal(repaired[v], undamaged[v]) for v in undamaged)


def test_vidcap_extract_repairs_a_cut_short_shard_and_says_so(tiny_captioner, cache, cli):
    config, folder, undamaged = cache
    shard = largest_shard(folder)
    shard.write_bytes(shard.read_bytes()[:1000])
    settings = [*captioner_runs.VIDCAP_TINY, "--set", f"data.root={tiny_captioner / 'vidcap-data'}",
                "--set", f"data.cache_dir={folder.parent}"]
    code, out, err = cli("vidcap")("extract", *settings)
    assert code == 0
    assert err.startswith(f"{folder}: 5 cached video(s) damaged (")
    assert f"{len(undamaged)} videos (5 newly extracted)" in out
    assert main(["extract", *settings]) == 0 and features(folder).keys() == undamaged.keys()
