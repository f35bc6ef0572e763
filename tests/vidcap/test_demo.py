"""A miniature `vidcap demo` end to end: every stage runs, the summary and report hold real results,
and a second run skips the finished work."""
import json

import pytest

from vidcap.cli import main

pytestmark = pytest.mark.slow

TINY = ["--set", "world.videos=20", "--set", "world.size=[48, 64]", "--set", "world.frames=8",
        "--set", "teacher.optim.epochs=1", "--set", "student.optim.epochs=1",
        "--set", "captioning.optim.epochs=2", "--set", "captioning.captioner.sampler.n_frames=4",
        "--set", "captioning.captioner.sampler.size=[48, 64]", "--set", "captioning.captioner.num_beams=1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--config", "configs/demo.yaml", "--set", f"out={out}", *TINY, "--quiet"]) == 0
    return out


def test_demo_leaves_the_run_directories_and_a_complete_summary(demo):
    for name in ("teacher", "student", "student-no-kd", "captioner-none", "captioner-teacher", "captioner-student"):
        assert (demo / name / "model.safetensors").is_file(), name
    summary = json.loads((demo / "summary.json").read_text())
    assert set(summary["captioners"]) == {"none", "teacher", "student"}
    for row in summary["captioners"].values():
        assert set(row) == {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "sec_per_video"} and row["sec_per_video"] > 0
    assert set(summary["saliency"]) == {"teacher", "student", "student_no_kd"}
    assert all(set(s) == {"CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC"} for s in summary["saliency"].values())
    assert summary["example"]["caption"].strip()


def test_the_captioners_differ_only_in_their_saliency(demo):
    import yaml

    configs = {s: yaml.safe_load((demo / f"captioner-{s}" / "config.yaml").read_text()) for s in ("none", "teacher", "student")}
    assert [c["captioner"]["saliency"]["source"] for c in configs.values()] == ["none", "teacher", "student"]
    for config in configs.values():
        config["captioner"]["saliency"] = config["captioner"]["encoder"]["weighting"] = None
    assert configs["none"] == configs["teacher"] == configs["student"]


def test_report_compares_the_three_captioners(demo):
    text = (demo / "report.md").read_text()
    assert "| none | none |" in text and "| teacher | teacher |" in text and "| student | student |" in text


def test_running_again_skips_finished_stages(demo, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "--set", f"out={demo}", *TINY, "--skip", "evaluate,report",
                 "--quiet"]) == 0
    out, err = capsys.readouterr()  # progress messages go to stderr, through logging
    assert err.count("already trained, skipped") == 6 and "already generated, skipped" in err
    assert "evaluate: skipped (--skip)" in err and "report: skipped (--skip)" in err
    assert out.strip().splitlines()[-1].endswith(f"wrote {demo / 'summary.json'}")  # no report was written


def test_unknown_stage_is_one_line_error(tmp_path, capsys):
    assert main(["demo", "--set", f"out={tmp_path}", "--skip", "nonsense"]) == 2
    assert "not a demo stage" in capsys.readouterr().err
