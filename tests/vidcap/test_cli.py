"""The `vidcap` command line: help and synth output read back by the saliency readers."""
import json
import subprocess
import sys

from saliency.data import SaliconReader
from vidcap.cli import main


def test_help_lists_synth():
    result = subprocess.run([sys.executable, "-m", "vidcap.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "synth" in result.stdout


def test_synth_writes_msrvtt_layout_with_per_frame_saliency(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["synth", str(out), "--n", "5", "--frames", "8", "--size", "64x96", "--quiet"]) == 0
    capsys.readouterr()
    info = json.loads((out / "train_val_videodatainfo.json").read_text())
    test = json.loads((out / "test_videodatainfo.json").read_text())
    videos = info["videos"] + test["videos"]
    assert len(videos) == 5 and {v["split"] for v in videos} <= {"train", "validate", "test"}
    for video in videos:
        folder = "TestVideo" if video["split"] == "test" else "TrainValVideo"
        assert (out / folder / f"{video['video_id']}.mp4").stat().st_size > 0
    frames = SaliconReader(out / "saliency", split="train")
    assert len(frames) > 0 and frames[0].fixations is not None


def test_bad_count_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vidcap.cli", "synth", str(tmp_path / "v"), "--n", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "need n >= 1" in result.stderr and "Traceback" not in result.stderr
