"""Nothing lost: a `saliency train` killed at any point resumes to exactly the weights of an uninterrupted run;
a checkpoint is replaced atomically or not at all, and a NaN loss leaves the last good one as it was."""
import shutil
from pathlib import Path

import pytest
import torch

from saliency.infra import rundir
from saliency.cli import main
from saliency.losses import SaliencyLoss
from saliency.infra.rundir import RunDir

pytestmark = pytest.mark.slow

EPOCHS = 4
TINY = ["--set", "data.size=[32, 64]", "--set", "data.batch_size=8", "--set", f"optim.epochs={EPOCHS}",
        "--set", "model.options={width: 8, depth: 1, decoder_width: 8}", "--set", "val_metrics=[CC, KLD]",
        "--set", "threads=1", "--quiet"]


def outputs(run) -> dict[str, bytes]:
    """The run directory's files and their bytes (not `.lock`, which names the process holding it)."""
    return {path.name: path.read_bytes() for path in run.iterdir() if path.is_file() and path.name != ".lock"}


def train(*args: str) -> int:
    """`saliency train` in this process."""
    return main(["train", *args])


def assert_same_run(a, b) -> None:
    """Bit for bit the same final weights, best weights and per-epoch metrics."""
    first, second = RunDir(a), RunDir(b)
    state_a, state_b = first.load_train_state(), second.load_train_state()
    assert state_a["progress"]["epoch"] == state_b["progress"]["epoch"] == EPOCHS
    for name, tensor in state_a["model"].items():
        assert torch.equal(tensor, state_b["model"][name]), name
    best_a, best_b = first.load_weights(), second.load_weights()
    assert all(torch.equal(best_a[name], best_b[name]) for name in best_a)
    assert first.load_metrics()["epochs"] == second.load_metrics()["epochs"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "data"
    assert main(["synth", str(root), "--n", "24", "--size", "32x64", "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert train("--set", f"data.root={data}", *TINY, "--out", str(out)) == 0
    return out


def test_a_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(data, uninterrupted, tmp_path,
                                                                             kill_after_first_checkpoint):
    out = tmp_path / "killed"
    kill_after_first_checkpoint("saliency.cli", ["--set", f"data.root={data}", *TINY], out, EPOCHS)
    assert train("--out", str(out), "--resume", "--quiet") == 0  # the run's own config.yaml
    assert_same_run(uninterrupted, out)


def test_a_run_killed_before_its_first_checkpoint_starts_over(uninterrupted, tmp_path):
    out = tmp_path / "early"
    out.mkdir()
    shutil.copy(uninterrupted / "config.yaml", out / "config.yaml")  # written first, before any epoch
    assert train("--out", str(out), "--resume", "--quiet") == 0
    assert_same_run(uninterrupted, out)


def test_a_crash_while_saving_keeps_the_last_checkpoint_and_its_temp_file_is_never_read(data, uninterrupted, tmp_path,
                                                                                         monkeypatch):
    real_write, saves = rundir.atomic_write_bytes, []

    def crash_in_the_second_train_state(path, data: bytes) -> None:
        if Path(path).name == rundir.TRAIN_STATE:
            saves.append(path)
            if len(saves) == 2:  # half the bytes reach the temp file, then the process dies
                (path.parent / f".{path.name}.crash.tmp").write_bytes(data[: len(data) // 2])
                raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(rundir, "atomic_write_bytes", crash_in_the_second_train_state)
    out = tmp_path / "crashed"
    assert train("--set", f"data.root={data}", *TINY, "--out", str(out)) == 130  # interrupted
    monkeypatch.undo()
    assert RunDir(out).load_train_state()["progress"]["epoch"] == 1  # the last good checkpoint, whole
    assert (out / ".train_state.safetensors.crash.tmp").is_file()

    assert train("--out", str(out), "--resume", "--quiet") == 0
    assert not list(out.glob(".*.tmp"))  # discarded on resume, never loaded
    assert_same_run(uninterrupted, out)


def test_a_nan_loss_stops_training_and_leaves_the_last_checkpoint_intact(data, tmp_path, monkeypatch, capsys,
                                                                       kill_after_first_checkpoint):
    out = tmp_path / "nan"
    kill_after_first_checkpoint("saliency.cli", ["--set", f"data.root={data}", *TINY], out, EPOCHS)
    before = outputs(out)
    monkeypatch.setattr(SaliencyLoss, "forward", lambda self, *args: (torch.tensor(float("nan")), {}))
    assert train("--out", str(out), "--resume", "--quiet") == 2
    assert "loss became nan at epoch 2; the last good checkpoint is kept" in capsys.readouterr().err
    assert outputs(out) == before


def test_resume_with_changed_settings_is_refused_and_leaves_the_run_as_it_was(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = outputs(out)
    assert train("--out", str(out), "--resume", "--set", f"optim.epochs={EPOCHS + 2}", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"saliency: error: {out / 'config.yaml'}: --resume continues the run as it was configured, but "
                   f"optim.epochs: {EPOCHS} → {EPOCHS + 2}; train the changed settings into another --out")
    assert outputs(out) == before


def test_continue_training_reuses_a_finished_run_only_when_its_settings_are_the_same(uninterrupted, tmp_path):
    from saliency.infra.config import from_dict
    from saliency.infra.errors import UserError
    from saliency.infra.training import continue_training
    from saliency.train import SaliencyTrainer
    from saliency.run import SaliencyRunConfig

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = outputs(out)
    config = from_dict(SaliencyRunConfig, RunDir(out).config_dict())
    assert continue_training(SaliencyTrainer, config, out, progress=False) == RunDir(out).load_metrics()
    config.distill.output = 3.0  # a run without a teacher: its distillation weights change nothing
    assert continue_training(SaliencyTrainer, config, out, progress=False) == RunDir(out).load_metrics()
    config.loss.kld = 2.0
    with pytest.raises(UserError, match=r"config.yaml: a finished run of other settings \(loss.kld: 1.0 → 2.0\)"):
        continue_training(SaliencyTrainer, config, out, progress=False)
    assert outputs(out) == before


def test_a_run_written_before_a_config_key_existed_continues_with_that_keys_default(uninterrupted, tmp_path):
    import yaml

    from saliency.infra.config import from_dict
    from saliency.infra.rundir import settings_change
    from saliency.infra.training import continue_training
    from saliency.train import SaliencyTrainer
    from saliency.run import SaliencyRunConfig

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    config = from_dict(SaliencyRunConfig, RunDir(out).config_dict())
    written = yaml.safe_load((out / "config.yaml").read_text())
    del written["select_by"]  # as if config.yaml were written by code that had no such key yet
    assert settings_change(written, config) is None
    written["val_metrics"] = ["CC"]
    assert settings_change(written, config) == "val_metrics: ['CC'] → ['CC', 'KLD']"
    assert continue_training(SaliencyTrainer, config, out, progress=False) == RunDir(out).load_metrics()
