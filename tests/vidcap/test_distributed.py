"""`torchrun` for `vidcap train`/`extract`: two gloo processes share the videos and train one process's weights."""
import os
import subprocess
import sys

import pytest
import torch

from saliency.infra.rundir import RunDir
from vidcap.training.feature_cache import FeatureCache
from vidcap.cli import main

pytestmark = pytest.mark.slow

TINY = ["--config", "configs/vidcap/synthetic.yaml", "--saliency", "none", "--quiet",
        "--set", "captioner.sampler={n_frames: 4, mode: segment, size: [32, 64], resize: stretch}",
        "--set", "captioner.encoder.grid=2", "--set", "threads=1",
        "--set", "captioner.decoder={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64, dropout: 0.0, "
                 "visual_positions: 64}",  # no dropout: each process draws its own masks
        "--set", "optim.epochs=2", "--set", "data.batch_size=8", "--set", "optim.captions_per_video=3"]
# AdamW with gradients clipped far below its eps steps along the gradient (see tests/saliency/test_distributed.py)
LINEAR_STEPS = ["--set", "optim.lr=1.0", "--set", "optim.grad_clip=1e-10", "--set", "optim.warmup_steps=1"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "vidcap.cli", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vidcap-ddp") / "data"
    assert main(["synth", str(root), "--n", "10", "--size", "32x64", "--frames", "4", "--quiet"]) == 0
    return root


def only_cache(root) -> FeatureCache:
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    return FeatureCache(root, folder.name)


def test_two_gloo_processes_extract_and_train_what_one_process_does(data, tmp_path):
    def common(cache):
        return ["train", *TINY, *LINEAR_STEPS, "--set", f"data.root={data}", "--set", f"data.cache_dir={cache}"]

    threads = torch.get_num_threads()
    try:
        assert main([*common(tmp_path / "cache1"), "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    result = torchrun(*common(tmp_path / "cache2"), "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]

    # 7 training videos × 3 captions: batches of 8, 8 and 5 pairs, the last split 3 + 2 and weighted by tokens
    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    a, b = one.load_train_state()["model"], two.load_train_state()["model"]
    assert set(a) == set(b) and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert [e["train"]["loss"] for e in one.load_metrics()["epochs"]] == pytest.approx(
        [e["train"]["loss"] for e in two.load_metrics()["epochs"]], rel=1e-5)

    # each process extracted every other video into shards of its own; rank 0 merged the indexes
    single, parallel = only_cache(tmp_path / "cache1"), only_cache(tmp_path / "cache2")
    assert single.folder.name == parallel.folder.name and set(single.index) == set(parallel.index)
    assert sorted(shard.rsplit("-", 1)[1] for shard in set(parallel.index.values())) == ["rank0.safetensors",
                                                                                         "rank1.safetensors"]
    assert not list(parallel.folder.glob("index-*.json"))
    for video in single.index:
        assert torch.equal(single.get(video)[0], parallel.get(video)[0])

    # `vidcap extract` under torchrun adds the test split to the same cache; rank 0 alone reports
    result = torchrun("extract", *TINY, "--set", f"data.root={data}", "--set", f"data.cache_dir={tmp_path / 'cache2'}",
                      "--splits", "test")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("newly extracted") == 1 and "10 videos (2 newly extracted)" in result.stdout
