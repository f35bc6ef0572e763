"""Writing outputs when it goes wrong: a save that fails midway (a full disk, an I/O error) stops the command with
one line naming the file and leaves the last checkpoint usable, so `--resume` ends with the weights of a run that
never failed; an output folder that cannot be written is refused before any work; a second process training
into a run directory is refused while the first holds it, a killed one leaves no lock behind, and two extractions
into one feature cache both finish with every video indexed."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vidcap.training.feature_cache as cache_module
from saliency.cli import main as saliency
from tests.support.faults import SALIENCY_TINY  # the kill campaign's tiny saliency run: three epochs
from saliency.infra.rundir import LOCK, RunDir
from vidcap.evaluation import splits as split_evaluation
from vidcap.cli import main as vidcap
from vidcap.training.feature_cache import FeatureCache
from vidcap.evaluation.caption_metrics import METRIC_KEYS

pytestmark = pytest.mark.usefixtures("one_thread")

VIDCAP_TINY = ["--config", "configs/vidcap/synthetic.yaml", "--saliency", "none", "--quiet", "--set", "threads=1",
               "--set", "captioner.sampler={n_frames: 4, mode: segment, size: [32, 64], resize: stretch}",
               "--set", "captioner.encoder.grid=2",
               "--set", "captioner.decoder={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64, dropout: 0.1, "
                        "visual_positions: 64}",
               "--set", "optim.epochs=3", "--set", "data.batch_size=8", "--set", "optim.captions_per_video=3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """Synthetic images and videos, and the uninterrupted runs a run that failed and resumed must match."""
    root = tmp_path_factory.mktemp("writers")
    assert saliency(["synth", str(root / "salicon"), "--n", "24", "--size", "32x64", "--quiet"]) == 0
    assert vidcap(["synth", str(root / "videos"), "--n", "10", "--size", "32x64", "--frames", "4", "--quiet"]) == 0
    assert saliency(["train", *saliency_args(root), "--out", str(root / "train")]) == 0
    assert saliency(["distill", *saliency_args(root, "distill"), "--out", str(root / "distill")]) == 0
    assert vidcap(["train", *vidcap_args(root, root / "cache"), "--out", str(root / "captioner")]) == 0
    return root


def saliency_args(root: Path, command: str = "train") -> list[str]:
    """`saliency train` or `distill` (from the uninterrupted `train` run) on the tiny images, `--out` to come."""
    teacher = ["--teacher", str(root / "train")] if command == "distill" else []
    return [*teacher, "--set", f"data.root={root / 'salicon'}", *SALIENCY_TINY]


def vidcap_args(root: Path, cache: Path) -> list[str]:
    return [*VIDCAP_TINY, "--set", f"data.root={root / 'videos'}", "--set", f"data.cache_dir={cache}"]


def files(folder: Path, but: Path | None = None) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and path != but}


def fail_a_write(monkeypatch, code: int, chosen) -> dict:
    """Make the save of the first file `chosen(name, saved)` picks fail with OSError `code`, as a full or failing
    disk fails it: the bytes reach the temp file, but `os.fsync` cannot make them durable (`name`: the file being
    saved, `saved`: the names saved before it). Once it has failed, the dict returned holds the file ("file") and
    the other files of its folder as they were at that moment ("before")."""
    real_fsync, saved, failed = os.fsync, [], {}

    def fsync(fd: int) -> None:
        temp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        name = temp.name.rsplit(".", 2)[0][1:]  # `.NAME.<random>.tmp`, as atomic_write_bytes names its temp files
        if not failed and chosen(name, saved):
            failed.update(file=temp.parent / name, before=files(temp.parent, but=temp))
            raise OSError(code, os.strerror(code))
        saved.append(name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def epoch_2s_first_file(name: str, saved: list[str]) -> bool:
    return saved.count("train_state.json") == 1  # epoch 1's checkpoint is the last write of epoch 1


def epoch_2s_checkpoint(name: str, saved: list[str]) -> bool:
    return name == "train_state.safetensors" and name in saved


def assert_same_run(a: Path, b: Path) -> None:
    """Bit for bit the same last and best weights, and the same per-epoch metrics."""
    first, second = RunDir(a), RunDir(b)
    state_a, state_b = first.load_train_state(), second.load_train_state()
    assert state_a["progress"]["epoch"] == state_b["progress"]["epoch"] == 3
    assert all(torch.equal(tensor, state_b["model"][name]) for name, tensor in state_a["model"].items())
    best_a, best_b = first.load_weights(), second.load_weights()
    assert best_a.keys() == best_b.keys() and all(torch.equal(best_a[name], best_b[name]) for name in best_a)
    assert first.load_metrics()["epochs"] == second.load_metrics()["epochs"]


# --------------------------------------------------------------------------------------------------
# a save that fails midway


@pytest.mark.slow
@pytest.mark.parametrize("program, command", [("saliency", "train"), ("saliency", "distill"), ("vidcap", "train")])
@pytest.mark.parametrize("code, chosen", [(errno.ENOSPC, epoch_2s_first_file), (errno.EIO, epoch_2s_checkpoint)],
                         ids=["full-disk-at-epoch-2s-first-file", "io-error-at-epoch-2s-checkpoint"])
def test_a_failed_save_stops_with_one_line_and_resume_completes_the_run(world, tmp_path, monkeypatch, cli, program,
                                                                         command, code, chosen):
    run, out = cli(program), tmp_path / "run"
    args = saliency_args(world, command) if program == "saliency" else vidcap_args(world, world / "cache")
    failed = fail_a_write(monkeypatch, code, chosen)
    status, _, err = run(command, *args, "--out", out)
    monkeypatch.undo()
    assert status == 2
    run.assert_one_line_error(err, f"{failed['file']}: could not be written ({os.strerror(code)})")
    assert files(out) == failed["before"]  # the failed save changed nothing and left no temp file
    previous = RunDir(out)
    assert previous.load_train_state()["progress"]["epoch"] == 1
    assert previous.load_weights() and previous.completed_epochs() == 1 and previous.load_metrics()["epochs"]

    teacher = ["--teacher", str(world / "train")] if command == "distill" else []
    assert run(command, *teacher, "--out", out, "--resume", "--quiet")[0] == 0
    assert_same_run(world / (command if program == "saliency" else "captioner"), out)


@pytest.mark.slow
def test_a_full_disk_while_extracting_stops_with_one_line_and_keeps_the_shards_written(world, tmp_path, monkeypatch,
                                                                                       cli):
    run, cache = cli("vidcap"), tmp_path / "cache"
    monkeypatch.setattr(cache_module, "SHARD_SIZE", 3)
    failed = fail_a_write(monkeypatch, errno.ENOSPC, lambda name, saved: name.startswith("shard_") and
                          any(other.startswith("shard_") for other in saved))  # the second shard
    status, _, err = run("extract", *vidcap_args(world, cache), "--splits", "train,val,test")
    monkeypatch.undo()
    assert status == 2
    run.assert_one_line_error(err, f"{failed['file']}: could not be written (No space left on device)")
    (folder,) = [path for path in cache.iterdir() if path.is_dir()]
    assert len(FeatureCache(cache, folder.name).index) == 3  # the first shard, indexed
    assert not list(folder.glob(".*.tmp"))

    assert run("extract", *vidcap_args(world, cache), "--splits", "train,val,test")[0] == 0
    done, reference = FeatureCache(cache, folder.name), FeatureCache(world / "cache", folder.name)
    assert len(done.index) == 10 and set(reference.index) < set(done.index)  # the reference: train and val only
    assert all(torch.equal(done.get(video)[0], reference.get(video)[0]) for video in reference.index)


@pytest.mark.slow
def test_a_full_disk_while_evaluating_stops_with_one_line(world, tmp_path, monkeypatch, cli):
    run, captioner = cli("vidcap"), tmp_path / "captioner"
    shutil.copytree(world / "captioner", captioner)
    monkeypatch.setattr(split_evaluation, "score", lambda gts, res: {key: 0.5 for key in METRIC_KEYS})  # no Java
    fail_a_write(monkeypatch, errno.ENOSPC, lambda name, saved: name == "predictions.json")  # an export write only warns
    status, _, err = run("eval", "--model", captioner, "--quiet")
    assert status == 2
    run.assert_one_line_error(err, f"{captioner / 'eval' / 'test' / 'predictions.json'}: could not be written "
                                   "(No space left on device)")


@pytest.mark.slow
def test_a_full_disk_while_comparing_stops_with_one_line(world, tmp_path, monkeypatch, cli):
    run, captioner = cli("vidcap"), tmp_path / "captioner"
    shutil.copytree(world / "captioner", captioner)
    monkeypatch.setattr(split_evaluation, "score", lambda gts, res: {key: 0.5 for key in METRIC_KEYS})  # no Java
    assert run("eval", "--model", captioner, "--quiet")[0] == 0
    out = tmp_path / "compare"
    fail_a_write(monkeypatch, errno.ENOSPC, lambda name, saved: name == "report.html")
    status, _, err = run("compare", captioner, "--out", out, "--quiet")
    assert status == 2
    run.assert_one_line_error(err, f"{out / 'report.html'}: could not be written (No space left on device)")
    assert not any(path.name.endswith(".tmp") for path in out.iterdir())  # the half-written temp file is gone


@pytest.mark.slow
def test_a_full_disk_while_predicting_stops_instead_of_skipping(world, tmp_path, monkeypatch, cli):
    run, out = cli("saliency"), tmp_path / "maps"
    images = sorted((world / "salicon" / "images").rglob("*.jpg"))[:3]
    real_replace = os.replace

    def replace(source, target):  # maps are not fsynced one by one: the disk fills up as the file is renamed in
        if Path(target).name == f"{images[1].stem}.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    status, _, err = run("predict", *images, "--model", world / "train", "--out", out, "--quiet")
    assert status == 2
    run.assert_one_line_error(err, f"{out / images[1].stem}.png: could not be written (No space left on device)")


# --------------------------------------------------------------------------------------------------
# output folders that cannot be written


@pytest.fixture
def read_only(monkeypatch):
    """`read_only(folder)`: create `folder` with mode 0o555. Where that does not stop this process (root ignores
    permission bits), creating a file or folder inside it is refused with EACCES, as it is for anyone else."""
    made = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True)
        folder.chmod(0o555)
        made.append(folder)
        if os.access(folder, os.W_OK):
            real_open, real_mkdir = os.open, os.mkdir
            inside = lambda path: folder in Path(os.path.abspath(path)).parents  # noqa: E731

            def open_(path, flags, *args, **kwargs):
                if flags & os.O_CREAT and inside(path):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
                return real_open(path, flags, *args, **kwargs)

            def mkdir(path, *args, **kwargs):
                if inside(path):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
                return real_mkdir(path, *args, **kwargs)

            monkeypatch.setattr(os, "open", open_)
            monkeypatch.setattr(os, "mkdir", mkdir)
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


def captioner_without_weights(folder: Path) -> Path:
    """The files that make `folder` a captioner run directory, none of them usable: anything read is too late."""
    folder.mkdir()
    for name in ("config.yaml", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("")
    return folder


VIDCAP_CONFIG = ["--config", "configs/vidcap/synthetic.yaml", "--saliency", "none", "--set", "data.root=missing"]


@pytest.mark.parametrize("program, args, refused", [
    ("saliency", ["train", "--set", "data.root=missing", "--out", "{ro}"], "{ro}"),
    ("saliency", ["train", "--set", "data.root=missing", "--out", "{ro}/run"], "{ro}/run"),
    ("saliency", ["distill", "--teacher", "missing", "--out", "{ro}/run"], "{ro}/run"),
    ("saliency", ["predict", "missing.jpg", "--model", "missing", "--out", "{ro}/maps"], "{ro}/maps"),
    ("vidcap", ["train", *VIDCAP_CONFIG, "--set", "data.cache_dir={tmp}/cache", "--out", "{ro}/run"], "{ro}/run"),
    ("vidcap", ["train", *VIDCAP_CONFIG, "--set", "data.cache_dir={ro}/cache", "--out", "{tmp}/run"], "{ro}/cache"),
    ("vidcap", ["extract", *VIDCAP_CONFIG, "--set", "data.cache_dir={ro}"], "{ro}"),
    ("vidcap", ["eval", "--model", "{captioner}", "--data", "missing"], "{ro}/test"),
    ("vidcap", ["compare", "missing", "--out", "{ro}/compare"], "{ro}/compare"),
], ids=["saliency train into it", "saliency train below it", "saliency distill", "saliency predict",
        "vidcap train run", "vidcap train cache", "vidcap extract", "vidcap eval", "vidcap compare"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, read_only, cli, program, args,
                                                                             refused):
    """Every other argument is wrong too (missing data, models, runs): the folder is checked before they are read."""
    captioner = captioner_without_weights(tmp_path / "captioner")
    folder = read_only(captioner / "eval" if "eval" in args else tmp_path / "read-only")
    names = {"ro": folder, "tmp": tmp_path, "captioner": captioner}
    run = cli(program)
    status, _, err = run(*(arg.format(**names) for arg in args))
    assert status == 2
    run.assert_one_line_error(err, f"{refused.format(**names)}: not writable (Permission denied)")


# --------------------------------------------------------------------------------------------------
# two writers


HOLD_THE_LOCK = """
import os, signal, sys
from saliency.infra.distributed import World
from saliency.infra.rundir import RunDir

with RunDir(sys.argv[1]).lock(World()):  # what the training commands hold
    print("locked", flush=True)
    if sys.argv[2:] == ["die"]:
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, holding the lock
    sys.stdin.read()  # until the test closes the pipe
"""


@pytest.mark.parametrize("program, args", [
    ("saliency", ["train", "--set", "data.root=missing"]),
    ("saliency", ["distill", "--teacher", "missing"]),
    ("vidcap", ["train", *VIDCAP_CONFIG]),
], ids=["saliency train", "saliency distill", "vidcap train"])
def test_a_second_process_training_into_a_run_directory_is_refused(tmp_path, cli, program, args):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        run = cli(program)
        status, _, err = run(*args, "--out", out)
        assert [path.name for path in out.iterdir()] == [LOCK]  # the holder's; nothing written by the second
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert status == 2
    run.assert_one_line_error(err, f"{out}: another process (pid {holder.pid}) is training into this run directory")
    assert not out.exists()  # the holder wrote nothing: it leaves no folder behind


@pytest.mark.slow
def test_the_lock_of_a_killed_process_does_not_block(world, tmp_path):
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", HOLD_THE_LOCK, str(out), "die"], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL and (out / LOCK).is_file()
    assert saliency(["train", *saliency_args(world), "--set", "optim.epochs=1", "--out", str(out)]) == 0


EXTRACT_ALONGSIDE = """
import os, sys, time
from pathlib import Path
import vidcap.training.feature_cache as cache

meeting, argv = Path(sys.argv[1]), sys.argv[2:]
cache.SHARD_SIZE = 1  # one shard and one index update per video: many chances for the two jobs to interleave
extract = cache.extract_features

def extract_alongside(*args, **kwargs):
    (meeting / str(os.getpid())).touch()
    while len(list(meeting.iterdir())) < 2:  # both jobs have read the cache's index before either writes to it
        time.sleep(0.05)
    return extract(*args, **kwargs)

cache.extract_features = extract_alongside
from vidcap.cli import main
sys.exit(main(argv))
"""


@pytest.mark.slow
def test_two_extractions_into_one_cache_both_finish_with_every_video_indexed(world, tmp_path):
    cache, meeting = tmp_path / "cache", tmp_path / "meeting"
    meeting.mkdir()
    jobs = [subprocess.Popen([sys.executable, "-c", EXTRACT_ALONGSIDE, meeting, "extract", *vidcap_args(world, cache),
                              "--splits", splits], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
            for splits in ("train", "val,test")]
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-2000:]
    (folder,) = [path for path in cache.iterdir() if path.is_dir()]
    merged, reference = FeatureCache(cache, folder.name), FeatureCache(world / "cache", folder.name)
    assert len(merged.index) == 10 and set(reference.index) < set(merged.index)  # the reference: train and val only
    assert all(torch.equal(merged.get(video)[0], reference.get(video)[0]) for video in reference.index)
    assert not list(folder.glob("index-*.json"))


def test_a_filesystem_without_flock_warns_and_goes_on_unlocked(tmp_path, monkeypatch, caplog):
    from saliency.infra import rundir

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    with open(tmp_path / ".lock", "a") as handle:
        assert rundir.try_flock(handle)
    assert "cannot be locked (No locks available)" in caplog.text
