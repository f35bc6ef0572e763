"""`torchrun` data parallelism: two gloo processes train the weights one process trains with the whole batch."""
import json
import os
import subprocess
import sys

import pytest
import torch

from saliency.cli import main
from saliency.infra.rundir import RunDir

pytestmark = pytest.mark.slow

TINY = ["--set", "data.size=[64, 64]", "--set", "data.batch_size=8", "--set", "optim.epochs=2",
        "--set", "model.options={width: 8, depth: 1, decoder_width: 8}", "--set", "val_metrics=[CC, KLD]",
        "--set", "threads=1", "--quiet"]
# AdamW with gradients clipped far below its eps (1e-8) steps along the gradient, like SGD. Plain Adam steps
# by about lr·sign(gradient) even where the gradient is zero but for float noise (a BatchNorm shift the next
# BatchNorm cancels), so two correct runs would differ there by ~lr for reasons unrelated to parallelism.
LINEAR_STEPS = ["--set", "optim.lr=1.0", "--set", "optim.grad_clip=1e-10", "--set", "optim.warmup_steps=1"]


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                           "-m", "saliency.cli", *args], capture_output=True, text=True, timeout=600, env=env)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "data"
    assert main(["synth", str(root), "--n", "24", "--size", "32x64", "--quiet"]) == 0
    return root


def test_two_gloo_processes_train_the_weights_one_process_trains_with_the_whole_batch(data, tmp_path):
    common = ["train", "--set", f"data.root={data}", *TINY, *LINEAR_STEPS]
    threads = torch.get_num_threads()
    try:
        assert main([*common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    result = torchrun(*common, "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["run"] == str(tmp_path / "two")  # rank 0 alone reports

    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    # 17 training images, batches of 8 (4 per process, BatchNorm statistics over all 8): 2 steps an epoch
    assert max_difference(one.load_train_state()["model"], two.load_train_state()["model"]) < 1e-5
    assert max_difference(one.load_weights(), two.load_weights()) < 1e-5
    for a, b in zip(one.load_metrics()["epochs"], two.load_metrics()["epochs"]):
        assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-5)  # averaged over the processes
        assert a["val"] == pytest.approx(b["val"], rel=1e-5)  # rank 0's validation, shared with the others
    assert len(two.load_train_state()["rng"]) == 2  # every process's generators, for an exact resume


def test_a_batch_that_does_not_split_evenly_is_refused(data, tmp_path):
    result = torchrun("train", "--set", f"data.root={data}", *TINY, "--set", "data.batch_size=7",
                      "--out", str(tmp_path / "odd"))
    assert result.returncode != 0
    assert "data.batch_size 7 is not divisible by the 2 processes" in result.stderr
    assert not (tmp_path / "odd" / "config.yaml").exists()


def test_a_run_directory_another_process_trains_into_stops_every_rank(data, tmp_path):
    import fcntl

    run = tmp_path / "busy"
    run.mkdir()
    with open(run / ".lock", "a+") as held:  # as a running trainer holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        result = torchrun("train", "--set", f"data.root={data}", *TINY, "--out", str(run))
    assert result.returncode != 0 and not (run / "config.yaml").exists()
    refusal = f"{run}: another process (pid {os.getpid()}) is training into this run directory"
    assert result.stderr.count(refusal) == 2, result.stderr[-3000:]  # rank 0 found it held; both ranks stop
