"""Bad input to `vidcap caption`, `extract`, `train` and `eval`: one line on stderr naming the file and
the problem, a non-zero exit status, never a traceback. Batch commands skip the bad item, finish the
rest and list what they skipped (exit status 1); a mistake that stops the command exits with 2."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from saliency.models import build
from saliency.infra.rundir import RunDir
from saliency.run import SaliencyRunConfig
from vidcap.evaluation import splits as split_evaluation
from vidcap.cli import main
from vidcap.evaluation.caption_metrics import METRIC_KEYS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--config", "configs/vidcap/synthetic.yaml", "--set", "captioner.sampler.size=[32, 64]",
        "--set", "captioner.sampler.n_frames=2", "--set", "captioner.decoder.hidden_size=32",
        "--set", "captioner.decoder.layers=1", "--set", "captioner.decoder.intermediate_size=64",
        "--set", "captioner.num_beams=1", "--set", "optim.epochs=1", "--saliency", "none", "--quiet"]


def on(data, cache) -> list[str]:
    """The TINY settings on dataset `data`, with the feature cache in `cache`."""
    return [*TINY, "--set", f"data.root={data}", "--set", f"data.cache_dir={cache}"]


@pytest.fixture(scope="module", autouse=True)
def private_transcode_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDCAP_TRANSCODE_CACHE", str(tmp_path_factory.mktemp("transcode")))
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """Ten synthetic clips (7 train, 1 val, 2 test), a captioner trained on them for one epoch, and a
    saliency run (an untrained student) to stand for a checkpoint of another kind."""
    root = tmp_path_factory.mktemp("vidcap-bad-input")
    assert main(["synth", str(root / "data"), "--n", "10", "--size", "32x64", "--frames", "4", "--quiet"]) == 0
    assert main(["train", *on(root / "data", root / "cache"), "--out", str(root / "captioner")]) == 0
    saliency = RunDir(root / "saliency")
    saliency.save_config(SaliencyRunConfig())
    saliency.save_weights(build("student").state_dict())
    return root


@pytest.fixture
def no_java(monkeypatch):
    """Caption scores without the Java tools: these tests are about what gets scored, not the numbers."""
    monkeypatch.setattr(split_evaluation, "score", lambda gts, res: {key: 0.5 for key in METRIC_KEYS})


@pytest.fixture
def run(cli):
    """`run(*args)`: exit status, stdout and stderr of `vidcap ARGS` (never a traceback);
    `run.assert_one_line_error(err, *parts)`: stderr ends in a single `vidcap: error: ...` line holding every
    part, with nothing else but feature-extraction skip lines."""
    return cli("vidcap", preceded_by=("vidcap extract: skipped ", "vidcap train: skipped "))


def copy_data(world, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(world / "data", root)
    return root


# --------------------------------------------------------------------------------------------------
# vidcap caption: files


BAD_VIDEOS = {
    "missing.mp4": "file not found",
    "no-videos": "a directory, not a file",
    "random.mp4": "not a readable video (",
    "truncated.mp4": "not a readable video (",
    "zero.mp4": "empty file (0 bytes)",
    "audio.mp4": "not a readable video (no video stream)",
}


@pytest.mark.parametrize("name", sorted(BAD_VIDEOS))
def test_caption_skips_a_bad_video_names_it_and_captions_the_rest(world, media, run, name):
    bad, good = media[name], media["clip.mp4"]
    code, out, err = run("caption", bad, good, "--model", world / "captioner", "--json")
    assert code == 1
    skipped, summary = err.strip().splitlines()
    assert skipped.startswith(f"vidcap caption: skipped {bad}: {BAD_VIDEOS[name]}") and "\n" not in skipped
    assert summary == f"vidcap caption: 1 video(s) skipped: {bad}"
    assert [result["video"] for result in json.loads(out)] == [str(good)]


def test_one_frame_4k_grayscale_rgba_and_palette_inputs_are_captioned(world, media, run):
    inputs = [str(media[name]) for name in ("one.mp4", "4k.mp4", "gray.mp4", "rgba.mov", "gray.png", "rgba.png",
                                            "palette.png")]
    code, out, err = run("caption", *inputs, "--model", world / "captioner", "--json")
    assert code == 0 and err == ""
    results = json.loads(out)
    assert [result["video"] for result in results] == inputs and all(isinstance(r["caption"], str) for r in results)


# --------------------------------------------------------------------------------------------------
# vidcap caption and eval: the model's run directory


def pickled(run):
    torch.save({"weight": torch.zeros(2)}, run / "model.safetensors")  # what `torch.save` writes: a zipped pickle
    return run / "model.safetensors", "this is a pickled checkpoint; only safetensors weights are loaded"


def weights_of_another_captioner(run):
    weights = RunDir(run).load_weights()
    name = next(name for name, tensor in weights.items() if tensor.ndim == 2)
    weights[name] = torch.zeros(weights[name].shape[0] + 1, weights[name].shape[1])  # another vocabulary size
    RunDir(run).save_weights(weights)
    return run / "model.safetensors", "weights do not fit this captioner (shape mismatch at"


def a_saliency_run(run):
    (run / "tokenizer.json").unlink()
    return run, "not a captioner run directory (no tokenizer.json; a saliency run?)"


def unknown_config_key(run):
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "epochs: 3\n")
    return run / "config.yaml", "config.yaml: unknown key 'epochs'"


def wrong_config_type(run):
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("seed: 0", "seed: zero"))
    return run / "config.yaml", "config.yaml.seed: expected int, got 'zero'"


def corrupt_tokenizer(run):
    (run / "tokenizer.json").write_text('{"model": ')
    return run / "tokenizer.json", "corrupt tokenizer file (invalid JSON at line 1"


def missing_run(run):
    shutil.rmtree(run)
    return run, "run directory not found"


RUN_PROBLEMS = [pickled, weights_of_another_captioner, a_saliency_run, unknown_config_key, wrong_config_type,
                corrupt_tokenizer, missing_run]


@pytest.mark.parametrize("command", ["caption", "eval"])
@pytest.mark.parametrize("damage", RUN_PROBLEMS, ids=lambda damage: damage.__name__)
def test_a_bad_model_run_stops_with_one_line_naming_the_file(world, media, tmp_path, run, command, damage):
    model = tmp_path / "run"
    shutil.copytree(world / "captioner", model)
    path, problem = damage(model)
    target = [media["clip.mp4"]] if command == "caption" else ["--quiet"]
    code, out, err = run(command, *target, "--model", model)
    assert code == 2 and out == ""
    run.assert_one_line_error(err, str(path), problem)


# --------------------------------------------------------------------------------------------------
# vidcap eval: the split and the predictions


def test_eval_skips_an_unreadable_video_and_scores_the_rest(world, tmp_path, run, no_java):
    data = copy_data(world, tmp_path)
    bad = sorted((data / "TestVideo").glob("*.mp4"))[0]
    bad.write_bytes(b"\x00" * 100)
    code, out, err = run("eval", "--model", world / "captioner", "--data", data, "--quiet")
    assert code == 1
    skipped, summary = err.strip().splitlines()
    assert skipped.startswith(f"vidcap eval: skipped {bad}: not a readable video (")
    assert summary == f"vidcap eval: 1 video(s) skipped: {bad.stem}"
    metrics = json.loads((world / "captioner" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["videos"] == 1 and [entry["video_id"] for entry in metrics["skipped"]] == [bad.stem]


def test_eval_scores_an_empty_predicted_caption(world, tmp_path, run, no_java):
    test_ids = [video["video_id"] for video in json.loads((world / "data" / "test_videodatainfo.json").read_text())["videos"]]
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps([{"video_id": video, "caption": ""} for video in test_ids]))
    code, _, err = run("eval", "--model", world / "captioner", "--predictions", predictions, "--quiet")
    assert code == 0 and err == ""
    written = json.loads((world / "captioner" / "eval" / "test-predictions" / "predictions.json").read_text())
    assert sorted(entry["video_id"] for entry in written) == sorted(test_ids) and {e["caption"] for e in written} == {""}


@pytest.mark.parametrize("content, problem", [
    ("[{", "predictions.json: not valid JSON (Expecting property name"),
    ('{"video5": "a caption"}', 'predictions.json: expected a list of {"video_id", "caption"} objects'),
    ('[{"video_id": "video5", "caption": null}]', 'predictions.json: entry 0 is not {"video_id": str, "caption": str}'),
])
def test_eval_refuses_a_malformed_predictions_file(world, tmp_path, run, content, problem):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(content)
    code, _, err = run("eval", "--model", world / "captioner", "--predictions", predictions, "--quiet")
    assert code == 2
    run.assert_one_line_error(err, str(predictions.parent), problem)


# --------------------------------------------------------------------------------------------------
# vidcap extract, train and eval: the dataset


def corrupt_msrvtt_json(data):
    (data / "train_val_videodatainfo.json").write_text('{"videos": [{"video_id": "video0", ')
    (data / "test_videodatainfo.json").write_text('{"videos": [{"video_id": "video0", ')
    return data, "videodatainfo.json: invalid JSON at line 1 column 36: Expecting property name"


def corrupt_msvd_csv(data):
    for path in data.glob("*videodatainfo.json"):
        path.unlink()
    (data / "video_corpus.csv").write_text("VideoID,Start\nabc,1\n")
    (data / "youtube_mapping.txt").write_text("abc_1_2 vid1\n")
    return data / "video_corpus.csv", "not an MSVD corpus file; header lacks ['End', 'Language', 'Description']"


def no_videos(data):
    shutil.rmtree(data / "TrainValVideo")
    shutil.rmtree(data / "TestVideo")
    return data, {"extract": "no usable videos in the train,val,test split(s)", "train": "no usable training videos",
                  "eval": "no readable videos in split 'test'"}


def not_a_dataset(data):
    for path in data.glob("*videodatainfo.json"):
        path.unlink()
    return data, "not a captioned video dataset"


def corrupt_msvd_txt(data):
    for path in data.glob("*videodatainfo.json"):
        path.unlink()
    (data / "AllVideoDescriptions.txt").write_bytes(b"abc_1_2 a man \xff plays\n")
    (data / "youtube_mapping.txt").write_text("abc_1_2 vid1\n")
    return data / "AllVideoDescriptions.txt", "not UTF-8 text (bad byte at offset 14)"


def corrupt_captions_json(data):
    for path in data.glob("*videodatainfo.json"):
        path.unlink()
    (data / "captions.json").write_text('{"video0.mp4": ["a red circle"],}')
    return data / "captions.json", "invalid JSON at line 1 column 33"


DATA_PROBLEMS = [corrupt_msrvtt_json, corrupt_msvd_csv, corrupt_msvd_txt, corrupt_captions_json, no_videos,
                 not_a_dataset]


@pytest.mark.parametrize("command", ["extract", "train", "eval"])
@pytest.mark.parametrize("damage", DATA_PROBLEMS, ids=lambda damage: damage.__name__)
def test_a_broken_dataset_stops_with_one_line_naming_the_file(world, tmp_path, run, command, damage):
    data = copy_data(world, tmp_path)
    path, problem = damage(data)
    problem = problem[command] if isinstance(problem, dict) else problem
    if command == "eval":
        args = ["eval", "--model", world / "captioner", "--data", data, "--quiet"]
    else:
        args = [command, *on(data, tmp_path / "cache"), *(["--out", tmp_path / "run"] if command == "train" else [])]
    code, _, err = run(*args)
    assert code == 2
    run.assert_one_line_error(err, str(path), problem)
    assert not (tmp_path / "run").exists()


def test_training_without_a_single_non_empty_caption_stops(world, tmp_path, run):
    data = copy_data(world, tmp_path)
    info = json.loads((data / "train_val_videodatainfo.json").read_text())
    for sentence in info["sentences"]:
        sentence["caption"] = " " if sentence["sen_id"] % 2 else ""
    (data / "train_val_videodatainfo.json").write_text(json.dumps(info))
    code, _, err = run("train", *on(data, tmp_path / "cache"), "--out", tmp_path / "run")
    assert code == 2
    run.assert_one_line_error(err, f"no usable training videos: MSR-VTT train at {data}: 0 videos, 7 missing",
                              "only empty captions")


def test_extract_and_train_skip_an_unreadable_video_and_list_it(world, tmp_path, run):
    data = copy_data(world, tmp_path)
    bad = data / "TrainValVideo" / "video0.mp4"
    bad.write_bytes(b"")
    code, out, err = run("extract", *on(data, tmp_path / "cache"))
    assert code == 1 and re.search(r"\d+ videos \(9 newly extracted\)", out)
    assert err.strip().splitlines() == [f"vidcap extract: skipped {bad}: empty file (0 bytes)",
                                        "vidcap extract: 1 video(s) skipped: video0"]
    code, out, err = run("train", *on(data, tmp_path / "cache"), "--out", tmp_path / "run")
    assert code == 1 and json.loads(out)["best_epoch"] == 1
    assert err.strip().splitlines() == [f"vidcap train: skipped {bad}: empty file (0 bytes)",
                                        "vidcap train: 1 video(s) skipped: video0"]
    assert RunDir(tmp_path / "run").require().load_metrics()["train_videos"] == 6


# --------------------------------------------------------------------------------------------------
# vidcap extract and train: the config


@pytest.mark.parametrize("command", ["extract", "train"])
@pytest.mark.parametrize("setting, problem", [
    ("optim:\n  epoks: 3\n", "bad.yaml.optim: unknown key 'epoks' (known: captions_per_video,"),
    ("optim:\n  epochs: three\n", "bad.yaml.optim.epochs: expected int, got 'three'"),
    ("captioner:\n  sampler: {n_frames: 0}\n", "captioner.sampler.n_frames: must be at least 1, got 0"),
    ("optim: [\n", "bad.yaml: not valid YAML"),
])
def test_a_bad_config_stops_with_one_line_naming_the_key(tmp_path, run, command, setting, problem):
    config = tmp_path / "bad.yaml"
    config.write_text(setting)
    code, _, err = run(command, "--config", config, *(["--out", tmp_path / "run"] if command == "train" else []))
    assert code == 2
    run.assert_one_line_error(err, problem)


def test_a_bad_override_is_named(world, tmp_path, run):
    code, _, err = run("train", *on(world / "data", tmp_path / "cache"), "--set", "optim.lr=fast",
                     "--out", tmp_path / "run")
    assert code == 2
    run.assert_one_line_error(err, "optim.lr: expected float, got 'fast'")


def test_a_pickled_saliency_checkpoint_is_refused(world, tmp_path, run):
    saliency = tmp_path / "saliency"
    shutil.copytree(world / "saliency", saliency)
    torch.save(build("student").state_dict(), saliency / "model.safetensors")
    code, _, err = run("train", *on(world / "data", tmp_path / "cache"), "--saliency", "student",
                     "--saliency-model", saliency, "--out", tmp_path / "run")
    assert code == 2
    run.assert_one_line_error(err, f"{saliency / 'model.safetensors'}: this is a pickled checkpoint")
