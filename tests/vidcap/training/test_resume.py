"""Nothing lost: a `vidcap train` killed after a checkpoint resumes to exactly the weights of an uninterrupted
run (dropout and caption shuffling included), and a NaN loss leaves the last good checkpoint as it was."""

import pytest
import torch

from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.model.decoder import CaptionDecoder

pytestmark = pytest.mark.slow

EPOCHS = 4
TINY = ["--config", "configs/vidcap/synthetic.yaml", "--saliency", "none", "--quiet",
        "--set", "captioner.sampler={n_frames: 4, mode: segment, size: [32, 64], resize: stretch}",
        "--set", "captioner.encoder.grid=2", "--set", "threads=1",
        "--set", "captioner.decoder={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64, dropout: 0.1, "
                 "visual_positions: 64}",
        "--set", f"optim.epochs={EPOCHS}", "--set", "data.batch_size=8", "--set", "optim.captions_per_video=3"]


def outputs(run) -> dict[str, bytes]:
    """The run directory's files and their bytes (not `.lock`, which names the process holding it)."""
    return {path.name: path.read_bytes() for path in run.iterdir() if path.is_file() and path.name != ".lock"}


def train(*args: str) -> int:
    """`vidcap train` in this process."""
    return main(["train", *args])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic videos, their feature cache and an uninterrupted run."""
    root = tmp_path_factory.mktemp("vidcap-resume")
    assert main(["synth", str(root / "data"), "--n", "10", "--size", "32x64", "--frames", "4", "--quiet"]) == 0
    args = [*TINY, "--set", f"data.root={root / 'data'}", "--set", f"data.cache_dir={root / 'cache'}"]
    assert train(*args, "--out", str(root / "uninterrupted")) == 0
    return root, args


def test_a_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(world, tmp_path, kill_after_first_checkpoint):
    root, args = world
    out = tmp_path / "killed"
    kill_after_first_checkpoint("vidcap.cli", args, out, EPOCHS)

    assert train("--out", str(out), "--resume", "--quiet") == 0  # the run's own config.yaml
    expected, resumed = RunDir(root / "uninterrupted"), RunDir(out)
    a, b = expected.load_train_state(), resumed.load_train_state()
    assert a["progress"]["epoch"] == b["progress"]["epoch"] == EPOCHS
    assert all(torch.equal(tensor, b["model"][name]) for name, tensor in a["model"].items())
    assert expected.load_metrics()["epochs"] == resumed.load_metrics()["epochs"]


def test_a_nan_loss_stops_training_and_leaves_the_last_checkpoint_intact(world, tmp_path, monkeypatch, capsys,
                                                                       kill_after_first_checkpoint):
    _, args = world
    out = tmp_path / "nan"
    kill_after_first_checkpoint("vidcap.cli", args, out, EPOCHS)
    before = outputs(out)
    monkeypatch.setattr(CaptionDecoder, "forward", lambda self, *args: (torch.tensor(float("inf")), None))
    assert train("--out", str(out), "--resume", "--quiet") == 2
    assert "loss became inf at epoch 2; the last good checkpoint is kept" in capsys.readouterr().err
    assert outputs(out) == before
