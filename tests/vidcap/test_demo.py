"""A miniature `vidcap demo` end to end: every stage runs, the summary and report hold real results,
and a second run skips the finished work."""
import json

import pytest

from vidcap.cli import main

pytestmark = pytest.mark.slow

TINY = ["--set", "world.videos=20", "--set", "world.size=[48, 64]", "--set", "world.frames=8",
        "--set", "pretrain.images_per_epoch=64", "--set", "pretrain.held_out=32", "--set", "labels=10",
        "--set", "teacher.optim.epochs=1", "--set", "student.optim.epochs=1",
        "--set", "captioning.optim.epochs=2", "--set", "captioning.captioner.sampler.n_frames=4",
        "--set", "captioning.captioner.sampler.size=[48, 64]", "--set", "captioning.captioner.num_beams=1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--config", "configs/demo.yaml", "--set", f"out={out}", *TINY, "--quiet"]) == 0
    return out


def test_demo_leaves_the_run_directories_and_a_complete_summary(demo):
    for name in ("pretrain", "teacher", "student", "student-no-kd", "captioner-none", "captioner-teacher",
                 "captioner-student"):
        assert (demo / name / "model.safetensors").is_file(), name
    summary = json.loads((demo / "summary.json").read_text())
    assert set(summary["captioners"]) == {"none", "teacher", "student"}
    for source, row in summary["captioners"].items():
        assert set(row) == {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "sec_per_video", "grounded"} | (
            set() if source == "none" else {"vs_none"}) and row["sec_per_video"] > 0 and 0 <= row["grounded"] <= 1
    captioners = summary["captioners"]
    for source in ("teacher", "student"):  # paired over the same held-out videos: the mean differences are exact
        versus = captioners[source]["vs_none"]
        assert set(versus) == {"CIDEr", "grounded"} and all(set(d) == {"diff", "ci95"} for d in versus.values())
        assert versus["grounded"]["diff"] == pytest.approx(captioners[source]["grounded"] - captioners["none"]["grounded"])
        assert versus["CIDEr"]["diff"] == pytest.approx(captioners[source]["CIDEr"] - captioners["none"]["CIDEr"], abs=1e-6)
        assert all(d["ci95"][0] <= d["diff"] <= d["ci95"][1] for d in versus.values())
    saliency = summary["saliency"]
    assert set(saliency) == {"teacher", "student", "student_no_kd", "kd_gain", "baselines"}
    assert all(set(saliency[k]) == {"CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC"}
               for k in ("teacher", "student", "student_no_kd"))
    gain = saliency["kd_gain"]
    assert gain["CC"] == pytest.approx(saliency["student"]["CC"] - saliency["student_no_kd"]["CC"], abs=1e-9)
    assert gain["ci95"][0] <= gain["CC"] <= gain["ci95"][1]
    assert set(saliency["baselines"]) == {"heuristic", "centre", "oracle"}
    assert saliency["baselines"]["oracle"] > 0.9 > saliency["baselines"]["centre"]
    assert summary["example"]["caption"].strip()


def test_the_students_differ_only_in_the_teacher_and_the_pool(demo):
    import yaml

    distilled, alone = (yaml.safe_load((demo / name / "config.yaml").read_text()) for name in ("student", "student-no-kd"))
    teacher = yaml.safe_load((demo / "teacher" / "config.yaml").read_text())
    assert teacher["model"]["options"]["pretrained"] == str(demo / "pretrain") and teacher["data"]["limit"] is None
    assert distilled["teacher"] == str(demo / "teacher") and distilled["data"]["unlabeled"].endswith("images/train")
    assert distilled["data"]["limit"] == alone["data"]["limit"] == 10 and alone["teacher"] is None
    frames = len(list((demo / "data/saliency/images/train").iterdir()))
    assert alone["optim"]["epochs"] == round(distilled["optim"]["epochs"] * (10 + frames) / 10)  # same steps
    for config in (distilled, alone):
        config["teacher"] = config["data"]["unlabeled"] = config["optim"]["epochs"] = None
    assert distilled == alone


def test_the_captioners_differ_only_in_their_saliency(demo):
    import yaml

    configs = {s: yaml.safe_load((demo / f"captioner-{s}" / "config.yaml").read_text()) for s in ("none", "teacher", "student")}
    assert [c["captioner"]["saliency"]["source"] for c in configs.values()] == ["none", "teacher", "student"]
    encoder = configs["none"]["captioner"]["encoder"]  # grounded: the teacher's pretrained backbone, at stride 16
    assert encoder["pretrained"] == str(demo / "pretrain") and encoder["stride"] == 16 and encoder["normalise"]
    for config in configs.values():
        config["captioner"]["saliency"] = config["captioner"]["encoder"]["weighting"] = None
    assert configs["none"] == configs["teacher"] == configs["student"]


def test_report_compares_the_three_captioners(demo):
    text = (demo / "report.md").read_text()
    assert "| none | none |" in text and "| teacher | teacher |" in text and "| student | student |" in text
    assert "Saliency models on the held-out frames" in text and "Distillation gain" in text
    assert (demo / "saliency_maps.png").stat().st_size > 1000 and "saliency_maps.png" in text


def test_running_again_skips_finished_stages(demo, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "--set", f"out={demo}", *TINY, "--skip", "evaluate,report",
                 "--quiet"]) == 0
    out, err = capsys.readouterr()  # progress messages go to stderr, through logging
    assert err.count("already trained, skipped") == 7 and "already generated, skipped" in err
    assert "evaluate: skipped (--skip)" in err and "report: skipped (--skip)" in err
    assert out.strip().splitlines()[-1].endswith(f"wrote {demo / 'summary.json'}")  # no report was written


def test_the_help_names_every_stage_in_order():
    from vidcap.cli import build_parser
    from vidcap.demo import STAGES

    demo = next(a for a in build_parser()._actions if a.dest == "command").choices["demo"]
    skip = next(a for a in demo._actions if a.dest == "skip")
    assert skip.help.endswith(", ".join(STAGES))


def test_unknown_stage_is_one_line_error(tmp_path, capsys):
    assert main(["demo", "--set", f"out={tmp_path}", "--skip", "nonsense"]) == 2
    assert "not a demo stage" in capsys.readouterr().err


@pytest.mark.parametrize("setting, problem", [("world.seed=1", "world.seed=0, not 1"),
                                              ("world.videos=30", "world.videos=20, not 30")])
def test_another_world_in_the_same_out_is_refused_before_any_stage_reuses_it(demo, cli, setting, problem):
    run = cli("vidcap", preceded_by=("[1/8] world",))
    code, _, err = run("demo", "--config", "configs/demo.yaml", "--set", f"out={demo}", *TINY, "--set", setting)
    assert code == 2
    run.assert_one_line_error(err, problem, "another `out`")


def test_trained_stages_without_their_world_are_refused(tmp_path, cli):
    (tmp_path / "teacher").mkdir()
    run = cli("vidcap", preceded_by=("[1/8] world",))
    code, _, err = run("demo", "--set", f"out={tmp_path}", *TINY)
    assert code == 2 and not (tmp_path / "data").exists()
    run.assert_one_line_error(err, f"{tmp_path}/teacher was trained on a world", "no longer holds")


@pytest.mark.parametrize("setting, problem", [("labels=0", "labels: must be at least 1"),
                                              ("captioning.captioner.encoder.weighting=bogus", "'bogus' is not one of"),
                                              ("eval_split=nosuch", "'nosuch' is not one of train, val, test"),
                                              ("world.videos=-5", "world.videos: at least 10")])
def test_a_bad_demo_setting_is_one_line_before_any_folder_is_made(tmp_path, cli, setting, problem):
    run = cli("vidcap")
    code, _, err = run("demo", "--set", f"out={tmp_path / 'demo'}", "--set", setting)
    assert code == 2 and not (tmp_path / "demo").exists()
    run.assert_one_line_error(err, problem)
