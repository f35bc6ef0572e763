"""Bad input to `saliency predict` and `saliency eval`: one line on stderr naming the file and the
problem, a non-zero exit status, never a traceback. Batch commands skip the bad item, finish the rest
and list what they skipped (exit status 1); a mistake that stops the command exits with 2."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from PIL import Image

from saliency.cli import main
from saliency.infra import media as infra_media
from saliency.infra.errors import UserError
from saliency.models import build
from saliency.infra.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """A tiny synthetic dataset and a student trained on it for one epoch."""
    root = tmp_path_factory.mktemp("saliency-bad-input")
    assert main(["synth", str(root / "data"), "--n", "24", "--size", "32x64", "--quiet"]) == 0
    assert main(["train", "--config", "configs/saliency/student.yaml", "--set", f"data.root={root / 'data'}",
                 "--set", "data.size=[32, 64]", "--set", "optim.epochs=1", "--set", "val_metrics=[CC]",
                 "--out", str(root / "student"), "--quiet"]) == 0
    return root


@pytest.fixture
def run(cli):
    """`run(*args)`: exit status, stdout and stderr of `saliency ARGS` (never a traceback);
    `run.assert_one_line_error(err, *parts)`: stderr is a single `saliency: error: ...` line holding every part."""
    return cli("saliency")


# --------------------------------------------------------------------------------------------------
# saliency predict: files


BAD_FILES = {  # what follows "skipped PATH: " (a regular expression); videos decord cannot read are transcoded first
    "missing.mp4": r"file not found",
    "no-videos": r"folder holds no images or videos",
    "random.mp4": r"not a readable video \(Error opening input: Invalid data found when processing input\)",
    "truncated.mp4": r"not a readable video \(.+\)",
    "zero.mp4": r"empty file \(0 bytes\)",
    "zero.jpg": r"empty file \(0 bytes\)",
    "random.jpg": r"not an image file Pillow can read",
    "audio.mp4": r"not a readable video \(no video stream\)",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_predict_skips_a_bad_file_names_it_and_still_writes_the_good_ones(world, media, tmp_path, run, name):
    bad, good = media[name], media["gray.png"]
    code, _, err = run("predict", "--model", world / "student", bad, good, "--out", tmp_path, "--quiet")
    assert code == 1
    skipped, summary = err.strip().splitlines()
    assert re.fullmatch(f"saliency predict: skipped {re.escape(str(bad))}: {BAD_FILES[name]}", skipped)
    assert summary == f"saliency predict: 1 input(s) skipped: {bad}"
    assert (tmp_path / "gray.png").is_file() and (tmp_path / "gray_overlay.jpg").is_file()


def test_one_frame_video_4k_grayscale_rgba_and_palette_inputs_all_get_maps(world, media, tmp_path, run):
    inputs = [media[name] for name in ("one.mp4", "gray.mp4", "4k.jpg", "gray.png", "rgba.png", "palette.png")]
    code, _, err = run("predict", "--model", world / "student", *inputs, "--out", tmp_path, "--maps", "--quiet")
    assert code == 0 and err == ""
    shapes = {path.relative_to(tmp_path).as_posix(): np.asarray(Image.open(path)).shape
              for path in tmp_path.rglob("*.png")}
    assert shapes == {"one/frame_000000.png": (32, 64), "gray/frame_000000.png": (32, 64),
                      "gray/frame_000001.png": (32, 64), "gray/frame_000002.png": (32, 64),
                      "gray/frame_000003.png": (32, 64), "4k.png": (2160, 3840), "gray.png": (40, 60),
                      "rgba.png": (40, 60), "palette.png": (40, 60)}


def decord_fails_from_frame_16(monkeypatch) -> None:
    """decord's batches from frame 16 on raise what decord raises on damaged data."""
    decord_batch = infra_media.FrameReader._decord_batch

    def batch(reader, indices):
        if indices[0] >= 16:
            raise decord.DECORDError("[12:00:00] video_reader.cc:486: Error: av_read_frame failed with 1094995529")
        return decord_batch(reader, indices)

    monkeypatch.setattr(infra_media.FrameReader, "_decord_batch", batch)


def test_frames_decord_fails_on_part_way_are_decoded_by_ffmpeg(world, media, tmp_path, run, monkeypatch):
    decord_fails_from_frame_16(monkeypatch)
    code, _, err = run("predict", "--model", world / "student", media["clip.mp4"], "--out", tmp_path, "--maps",
                       "--quiet")
    assert code == 0 and err == ""
    assert len(list((tmp_path / "clip").glob("frame_*.png"))) == 20


def test_a_video_damaged_part_way_keeps_the_maps_of_the_frames_before_the_damage(world, media, tmp_path, run,
                                                                                  monkeypatch):
    decord_fails_from_frame_16(monkeypatch)

    def ffmpeg_fails_too(source, name, indices, chunk, size):
        raise UserError(f"{name}: cannot decode frame {indices[0]} or later (Invalid data found when processing input)")
        yield  # a generator, as the real one

    monkeypatch.setattr(infra_media, "ffmpeg_batches", ffmpeg_fails_too)
    clip = media["clip.mp4"]
    code, _, err = run("predict", "--model", world / "student", clip, "--out", tmp_path, "--maps", "--quiet")
    assert code == 1
    assert err.splitlines()[0] == (f"saliency predict: skipped {clip}: cannot decode frame 16 or later "
                                   "(Invalid data found when processing input); the maps of the 16 frames before it "
                                   "are written")
    assert len(list((tmp_path / "clip").glob("frame_*.png"))) == 16


@pytest.mark.parametrize("flag", ["--every", "--max-frames"])
def test_frame_counts_below_one_are_refused_by_the_parser(world, media, tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--model", str(world / "student"), str(media["clip.mp4"]), "--out", str(tmp_path), flag, "0"])
    assert exited.value.code == 2 and "'0': must be at least 1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# saliency predict and eval: the model's run directory


def pickled(run):
    torch.save(build("student").state_dict(), run / "model.safetensors")  # what `torch.save` writes: a zipped pickle
    return run / "model.safetensors", "this is a pickled checkpoint; only safetensors weights are loaded"


def weights_of_a_wider_student(run):
    RunDir(run).save_weights(build("student", width=24).state_dict())
    return run / "model.safetensors", "weights do not fit student (shape mismatch at"


def a_captioner_run(run):
    (run / "config.yaml").write_text("captioner: {num_beams: 3}\nseed: 0\n")
    return run / "config.yaml", "no valid 'model' section, so not a saliency run"


def unknown_config_key(run):
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("data:\n", "data:\n  sizes: 3\n", 1))
    return run / "config.yaml", "data: unknown key 'sizes'"


def wrong_config_type(run):
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("  size:\n  - 32\n  - 64\n", "  size: big\n", 1))
    return run / "config.yaml", "data.size: expected a list, got 'big'"


def missing_run(run):
    shutil.rmtree(run)
    return run, "run directory not found"


RUN_PROBLEMS = [pickled, weights_of_a_wider_student, a_captioner_run, unknown_config_key, wrong_config_type, missing_run]


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("damage", RUN_PROBLEMS, ids=lambda damage: damage.__name__)
def test_a_bad_model_run_stops_with_one_line_naming_the_file(world, media, tmp_path, run, command, damage):
    model = tmp_path / "run"
    shutil.copytree(world / "student", model)
    path, problem = damage(model)
    target = [media["gray.png"], "--out", tmp_path / "out"] if command == "predict" else ["--data", world / "data"]
    code, _, err = run(command, "--model", model, *target, "--quiet")
    assert code == 2
    run.assert_one_line_error(err, str(path), problem)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# saliency eval: the dataset


def damaged_copy(world, tmp_path, folder: str, damage) -> tuple:
    """A copy of the dataset with the first file of `<folder>/val` damaged; (root, damaged file, image name)."""
    root = tmp_path / "data"
    shutil.copytree(world / "data", root)
    path = sorted((root / folder / "val").iterdir())[0]
    damage(path)
    return root, path, path.stem


def complex_flag_without_imaginary_part(path):
    """Mark the first double matrix of a .mat complex: scipy would read the next matrix as its imaginary
    part and crash the process (a segmentation fault) without the guard in saliency.data.matfile."""
    data = bytearray(path.read_bytes())
    flags = data.index(bytes([6, 0, 0, 0, 8, 0, 0, 0, 6]))  # miUINT32 tag, 8 bytes, class double
    data[flags + 9] |= 0x08
    path.write_bytes(bytes(data))


DATA_PROBLEMS = {
    "fixations-garbage": ("fixations", lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200)), "cannot read .mat file"),
    "fixations-crash": ("fixations", complex_flag_without_imaginary_part, "damaged .mat file (matrix at byte"),
    "fixations-empty": ("fixations", lambda p: p.write_bytes(b""), "cannot read .mat file"),
    "map-empty": ("maps", lambda p: p.write_bytes(b""), "cannot decode image"),
    "image-truncated": ("images", lambda p: p.write_bytes(p.read_bytes()[:200]), "cannot decode image"),
}


@pytest.mark.parametrize("case", sorted(DATA_PROBLEMS))
def test_eval_skips_an_image_with_a_damaged_file_and_scores_the_rest(world, tmp_path, run, case):
    folder, damage, problem = DATA_PROBLEMS[case]
    root, path, name = damaged_copy(world, tmp_path, folder, damage)
    out = tmp_path / "eval.json"
    code, stdout, err = run("eval", "--model", world / "student", "--data", root, "--metrics", "CC,NSS",
                       "--json", out, "--quiet")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"saliency eval: skipped {path}") and problem in lines[0], err
    assert lines[1] == f"saliency eval: 1 image(s) skipped: {name}"
    result = json.loads(out.read_text())
    images = len(list((root / "images" / "val").iterdir()))
    assert result["images"] == images - 1 and [s["image"] for s in result["skipped"]] == [name]
    assert np.isfinite(result["metrics"]["CC"]) and stdout.startswith(f"{images - 1} images")


def test_eval_skips_a_cat2000_image_whose_fixation_mat_is_damaged(world, tmp_path, run):
    """CAT2000's `FIXATIONLOCS/<category>/NNN.mat`, damaged, through the real command: that image skipped and named."""
    import scipy.io

    from saliency.data import open_dataset

    base, rng = tmp_path / "cat2000" / "trainSet", np.random.default_rng(0)
    for number in range(1, 21):
        name = f"{number:03d}"
        for folder, pixels in (("Stimuli", rng.integers(0, 256, (32, 48, 3), np.uint8)),
                               ("FIXATIONMAPS", rng.integers(0, 256, (32, 48), np.uint8))):
            (base / folder / "Action").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(base / folder / "Action" / f"{name}.jpg")
        locs = np.zeros((32, 48))
        locs[rng.integers(32, size=5), rng.integers(48, size=5)] = 1
        (base / "FIXATIONLOCS" / "Action").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(base / "FIXATIONLOCS" / "Action" / f"{name}.mat", {"fixLocs": locs})
    held_out = open_dataset(tmp_path / "cat2000", kind="cat2000", split="val").names  # ["Action/NNN", ...]
    damaged = base / "FIXATIONLOCS" / f"{held_out[0]}.mat"
    damaged.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    code, _, err = run("eval", "--model", world / "student", "--data", tmp_path / "cat2000", "--metrics", "CC,NSS", "--quiet")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2, err
    assert lines[0].startswith(f"saliency eval: skipped {damaged}") and "cannot read .mat file" in lines[0]
    assert lines[1] == f"saliency eval: 1 image(s) skipped: {held_out[0]}"


def test_eval_with_every_image_unreadable_stops(world, tmp_path, run):
    root = tmp_path / "data"
    shutil.copytree(world / "data", root)
    for path in (root / "maps" / "val").iterdir():
        path.write_bytes(b"")
    code, _, err = run("eval", "--model", world / "student", "--data", root, "--quiet")
    assert code == 2 and err.strip().splitlines()[-1].startswith("saliency: error: no readable image among")


@pytest.mark.parametrize("layout, problem", [("nothing", "no such directory"), ("empty", "not a saliency dataset"),
                                             ("no-images", "no images (.jpg, .jpeg, .png, .bmp")])
def test_eval_on_a_folder_without_a_dataset_stops(world, tmp_path, run, layout, problem):
    root = tmp_path / layout
    if layout != "nothing":
        root.mkdir()
    if layout == "no-images":
        (root / "images" / "val").mkdir(parents=True)
    code, _, err = run("eval", "--model", world / "student", "--data", root, "--quiet")
    assert code == 2
    run.assert_one_line_error(err, problem)


def test_predict_falls_back_to_a_transcoded_copy_when_decord_fails_on_the_original(world, media, tmp_path, run,
                                                                                   monkeypatch):
    monkeypatch.setenv("VIDCAP_TRANSCODE_CACHE", str(tmp_path / "transcoded"))
    original, real_reader = media["gray.mp4"], decord.VideoReader

    def reader_failing_on_original(path, *args, **kwargs):
        if Path(path).samefile(original):
            raise decord.DECORDError("cannot find video stream")
        return real_reader(path, *args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", reader_failing_on_original)
    code, _, err = run("predict", "--model", world / "student", original, "--out", tmp_path / "maps", "--maps",
                       "--quiet")
    assert code == 0 and err == ""
    assert list((tmp_path / "maps" / "gray").glob("frame_*.png"))
    assert len(list((tmp_path / "transcoded").glob("*.mp4"))) == 1
