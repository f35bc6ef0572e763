"""The `saliency` command line: help, one-line errors, synth → readers round trip."""
import json
import subprocess
import sys

import numpy as np
import pytest

from saliency.cli import main
from saliency.data import SaliconReader, open_dataset


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saliency.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("synth", "train", "distill", "eval", "predict", "bench", "export"):
        assert command in result.stdout


def test_synth_writes_salicon_layout_that_the_reader_loads(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--n", "12", "--size", "64x96", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 12
    train = SaliconReader(tmp_path / "s", split="train")
    sample = train[0]
    assert sample.image.shape == (64, 96, 3) and sample.density.shape == (64, 96)
    assert sample.fixations.ndim == 2 and len(sample.fixations) > 0
    # the density is the blurred fixations: it is high where people looked
    at_fixations = sample.density[sample.fixations[:, 0], sample.fixations[:, 1]].mean()
    assert at_fixations > 3 * sample.density.mean()
    assert len(open_dataset(tmp_path / "s", split="val")) > 0


def test_same_seed_gives_identical_annotations(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", str(tmp_path / name), "--n", "6", "--size", "64x64", "--quiet"]) == 0
    a, b = SaliconReader(tmp_path / "a", split="train"), SaliconReader(tmp_path / "b", split="train")
    assert np.array_equal(a[0].fixations, b[0].fixations) and np.array_equal(a[0].density, b[0].density)


@pytest.mark.parametrize("args, message", [
    (["synth", "OUT", "--size", "big"], "expected HEIGHTxWIDTH"),
    (["eval", "--model", "/nonexistent/run", "--data", "/nonexistent"], "run directory not found"),
])
def test_user_mistakes_give_one_line_errors(args, message, tmp_path):
    result = run_cli(*[str(tmp_path / "o") if a == "OUT" else a for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
