"""A tiny train → distill → eval → predict → export → bench run on generated data, through the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from saliency import load
from saliency.cli import main
from saliency.infra.rundir import RunDir

pytestmark = pytest.mark.slow

TINY = ["--set", "data.size=[64, 96]", "--set", "data.batch_size=8", "--set", "optim.epochs=2",
        "--set", "val_metrics=[CC, KLD]", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    assert main(["synth", str(root / "data"), "--n", "30", "--size", "64x96", "--quiet"]) == 0
    data = ["--set", f"data.root={root / 'data'}"]
    assert main(["train", "--config", "configs/saliency/teacher.yaml", "--set", "model.name=teacher-mobilenetv2",
                 "--set", "model.options.pretrained=false", *data, *TINY, "--out", str(root / "teacher")]) == 0
    assert main(["distill", "--teacher", str(root / "teacher"), "--config", "configs/saliency/distill.yaml",
                 *data, *TINY, "--out", str(root / "student")]) == 0
    return root


def test_runs_are_self_describing(world):
    for name in ("teacher", "student"):
        run = RunDir(world / name)
        assert run.require().has_train_state()
        metrics = run.load_metrics()
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert set(metrics["final"]) == {"CC", "KLD"}
    student_config = RunDir(world / "student").config_dict()
    assert student_config["teacher"] == str(world / "teacher") and student_config["model"]["name"] == "student"
    losses = RunDir(world / "student").load_metrics()["epochs"][0]["train"]
    assert {"kd_attention", "kd_gram", "kd_output"} <= set(losses)


def test_eval_writes_all_seven_metrics(world, capsys):
    out = world / "eval.json"
    assert main(["eval", "--model", str(world / "student"), "--data", str(world / "data"), "--split", "test",
                 "--json", str(out), "--quiet"]) == 0
    scores = json.loads(out.read_text())["metrics"]
    assert set(scores) == {"CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC"}
    assert all(np.isfinite(v) for v in scores.values()) and -1 <= scores["CC"] <= 1
    assert "AUC_Borji" in capsys.readouterr().out


def test_predict_writes_maps_and_skips_bad_files(world, capsys):
    bad = world / "not_an_image.jpg"
    bad.write_bytes(b"random bytes")
    images = world / "data" / "images" / "test"
    code = main(["predict", "--model", str(world / "student"), str(images), str(bad), "--out", str(world / "pred"), "--quiet"])
    assert code == 1
    captured = capsys.readouterr()
    assert "not_an_image.jpg" in captured.err
    first = sorted(images.glob("*.jpg"))[0].stem
    saliency_map = np.asarray(Image.open(world / "pred" / f"{first}.png"))
    assert saliency_map.shape == (64, 96) and saliency_map.max() == 255
    assert (world / "pred" / f"{first}_overlay.jpg").is_file()


def test_resume_to_more_epochs_is_refused_the_run_says_what_was_trained(world, capsys):
    run = world / "student"
    epochs = [e["epoch"] for e in RunDir(run).load_metrics()["epochs"]]
    assert main(["distill", "--teacher", str(world / "teacher"), "--out", str(run), "--resume",
                 "--set", f"optim.epochs={len(epochs) + 1}", "--quiet"]) == 2
    assert f"optim.epochs: {len(epochs)} → {len(epochs) + 1}; train the changed settings into another --out" \
        in capsys.readouterr().err
    assert [e["epoch"] for e in RunDir(run).load_metrics()["epochs"]] == epochs


def test_onnx_export_matches_pytorch(world, capsys):
    onnx_path = world / "student.onnx"
    assert main(["export", "--model", str(world / "student"), "--onnx", str(onnx_path)]) == 0
    import onnxruntime

    model = load(world / "student")
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        expected = model(x).numpy()
    got = onnxruntime.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_bench_reports_every_model_side_by_side(world, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", f"{world / 'teacher'},student", "--size", "64x96", "--rounds", "1",
                 "--json", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == [str(world / "teacher"), "student"]
    assert rows[0]["speed_ratio_vs_first"] == 1.0 and rows[1]["params"] < rows[0]["params"]
    assert all(r["gflops"] > 0 and r["ms_per_image"] > 0 for r in rows)


# --- video saliency: a teacher and a student that see motion, trained on the DHF1K layout ------------------------

MOTION = ["--set", "model.options.motion=true"]


@pytest.fixture(scope="module")
def video_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-video")
    assert main(["synth", str(root / "data"), "--layout", "dhf1k", "--n", "10", "--size", "64x96", "--frames", "12",
                 "--quiet"]) == 0
    data = ["--set", f"data.root={root / 'data'}"]
    assert main(["train", "--config", "configs/saliency/teacher.yaml", "--set", "model.name=teacher-mobilenetv2",
                 "--set", "model.options.pretrained=false", *MOTION, *data, *TINY, "--out", str(root / "teacher")]) == 0
    assert main(["distill", "--teacher", str(root / "teacher"), "--config", "configs/saliency/distill.yaml",
                 *MOTION, *data, *TINY, "--out", str(root / "student")]) == 0
    return root


def test_motion_runs_train_distill_eval_predict_and_export_int8(video_world, capsys):
    student = load(video_world / "student")
    assert student.motion and load(video_world / "teacher").motion
    out = video_world / "eval.json"
    assert main(["eval", "--model", str(video_world / "student"), "--data", str(video_world / "data"), "--split", "test",
                 "--json", str(out), "--quiet", "--backend", "onnxruntime-int8"]) == 0
    assert -1 <= json.loads(out.read_text())["metrics"]["CC"] <= 1
    video = video_world / "data" / "video" / "001.mp4"
    assert main(["predict", "--model", str(video_world / "student"), str(video), "--every", "3",
                 "--out", str(video_world / "pred"), "--quiet"]) == 0
    assert (video_world / "pred" / "001_saliency.mp4").is_file() and "4 frames" in capsys.readouterr().out
    onnx_path = video_world / "student.onnx"
    assert main(["export", "--model", str(video_world / "student"), "--onnx", str(onnx_path), "--int8"]) == 0
    import onnxruntime

    x = torch.randn(2, 6, 64, 96)
    got = onnxruntime.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()})[0]
    assert got.shape == (2, 1, 64, 96)


def test_a_student_must_see_what_its_teacher_sees(video_world, capsys):
    data = ["--set", f"data.root={video_world / 'data'}"]
    code = main(["distill", "--teacher", str(video_world / "teacher"), "--config", "configs/saliency/distill.yaml",
                 *data, *TINY, "--out", str(video_world / "blind")])
    assert code == 2
    assert "sees motion but the student sees single frames: set model.options.motion=true" in capsys.readouterr().err
    assert not (video_world / "blind").exists()  # refused before the run directory is made
    code = main(["distill", "--teacher", str(video_world / "teacher"), "--config", "configs/saliency/distill.yaml",
                 "--set", "model.options.motion=4", *data, *TINY, "--out", str(video_world / "far")])
    assert code == 2
    assert "sees motion but the student sees motion over 4 frames: set model.options.motion=true" in capsys.readouterr().err


def test_progress_goes_to_stderr_and_stdout_holds_only_the_result(world, tmp_path, capsys):
    progress = [arg for arg in TINY if arg != "--quiet"]
    assert main(["train", "--config", "configs/saliency/student.yaml", "--set", f"data.root={world / 'data'}",
                 *progress, "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["run"] == str(tmp_path / "run")  # nothing but the result
    assert "epoch 1/" in err and "  loss " in err and "  val CC " in err
