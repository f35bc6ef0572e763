"""`saliency predict` on a video: an overlay video with every frame at the video's frame rate, the per-frame maps
only with `--maps`, and temporal smoothing (`--smooth`) with the flicker printed with and without it."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch

from saliency import predict
from saliency.cli import main
from saliency.infra.errors import UserError
from saliency.infra.media import ffmpeg_path, probe
from saliency.infra.rundir import RunDir
from saliency.models import build
from saliency.predict import Flicker, TemporalSmoother
from saliency.run import ModelSpec, SaliencyRunConfig

pytestmark = pytest.mark.usefixtures("one_thread")

STUDENT = {"width": 8, "depth": 1, "decoder_width": 8}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An untrained tiny student run (its maps still change with the picture) and a 20-frame clip of seeded noise
    at 8 fps, 33×64 (an odd height, which H.264 cannot hold)."""
    root = tmp_path_factory.mktemp("predict-video")
    student = RunDir(root / "student")
    student.save_config(SaliencyRunConfig(model=ModelSpec("student", dict(STUDENT))))
    torch.manual_seed(0)
    student.save_weights(build("student", **STUDENT).state_dict())
    frames = np.random.default_rng(0).integers(0, 256, (20, 33, 64, 3), np.uint8)
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x33",
                    "-r", "8", "-i", "pipe:", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p",
                    str(root / "clip.mp4")], input=frames.tobytes(), check=True, timeout=120)
    return root


@pytest.fixture
def run(cli):
    return cli("saliency")


def test_a_video_gets_an_overlay_video_of_every_frame_at_its_frame_rate_and_no_images(world, run, tmp_path):
    code, out, err = run("predict", "--model", world / "student", world / "clip.mp4", "--out", tmp_path, "--quiet")
    assert code == 0 and err == ""
    overlay = probe(tmp_path / "clip_saliency.mp4")
    assert (overlay.n_frames, overlay.fps, overlay.codec, overlay.height, overlay.width) == (20, 8.0, "h264", 32, 64)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip_saliency.mp4"]
    assert re.fullmatch(rf"{re.escape(str(world / 'clip.mp4'))}: {re.escape(str(tmp_path / 'clip_saliency.mp4'))} "
                        r"\(20 frames\); flicker 0\.\d{4}\n", out)


def test_maps_adds_each_frames_map_and_overlay_image(world, run, tmp_path):
    code, _, _ = run("predict", "--model", world / "student", world / "clip.mp4", "--out", tmp_path, "--maps",
                     "--every", "4", "--quiet")
    assert code == 0
    assert sorted(path.name for path in (tmp_path / "clip").iterdir()) == [
        f"frame_{i:06d}{suffix}" for i in (0, 4, 8, 12, 16) for suffix in (".png", "_overlay.jpg")]
    overlay = probe(tmp_path / "clip_saliency.mp4")
    assert (overlay.n_frames, overlay.fps) == (5, 2.0)  # every 4th frame: the same duration


def test_smoothing_lowers_the_flicker_and_both_figures_are_printed(world, run, tmp_path):
    code, out, _ = run("predict", "--model", world / "student", world / "clip.mp4", "--out", tmp_path,
                       "--smooth", "0.8", "--quiet")
    found = re.search(r"flicker (0\.\d{4}), (0\.\d{4}) smoothed \(--smooth 0\.8\)$", out.strip())
    assert code == 0 and found, out
    assert float(found.group(2)) < float(found.group(1))


def test_flicker_is_the_mean_absolute_change_and_the_moving_average_damps_it():
    flicker, smoothed, smoother = Flicker(), Flicker(), TemporalSmoother(0.5)
    for step in range(4):
        unit = np.full((2, 2), float(step % 2))  # 0, 1, 0, 1: a change of 1 per frame
        flicker.add(unit)
        smoothed.add(smoother(unit))  # 0, 0.5, 0.25, 0.625
    assert flicker.value == 1.0 and smoothed.value == pytest.approx((0.5 + 0.25 + 0.375) / 3)


@pytest.mark.parametrize("value", ["1", "-0.1", "often"])
def test_smoothing_outside_zero_to_one_is_refused(world, capsys, tmp_path, value):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--model", str(world / "student"), str(world / "clip.mp4"), "--out", str(tmp_path),
              "--smooth", value])
    assert exited.value.code == 2 and f"'{value}':" in capsys.readouterr().err


def test_a_video_that_fails_part_way_keeps_the_overlay_of_the_frames_before(world, run, tmp_path, monkeypatch):
    frames = predict.video_frames

    def five_then_damage(path, every, max_frames, previous=False):
        yield from list(frames(path, every, max_frames, previous))[:5]
        raise UserError(f"{path}: cannot decode frame 5 or later (damaged)")

    monkeypatch.setattr(predict, "video_frames", five_then_damage)
    code, _, err = run("predict", "--model", world / "student", world / "clip.mp4", "--out", tmp_path, "--quiet")
    assert code == 1 and "cannot decode frame 5 or later" in err
    assert probe(tmp_path / "clip_saliency.mp4").n_frames == 5
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip_saliency.mp4"]  # no partial file left


def test_video_frames_come_with_the_frame_before_them_only_when_asked(world):
    from saliency.infra.media import open_frames

    path = world / "clip.mp4"
    every = list(predict.video_frames(path, 3, None, previous=True))
    decoded = open_frames(path).get_batch(range(20))
    assert [index for index, _, _ in every] == [0, 3, 6, 9, 12, 15, 18]
    for index, frame, before in every:
        assert np.array_equal(frame, decoded[index]) and np.array_equal(before, decoded[max(index - 1, 0)])
    assert all(before is None for _, _, before in predict.video_frames(path, 3, 2))
    further = list(predict.video_frames(path, 3, None, previous=5))  # further back than `every`: kept across frames
    assert [index for index, _, _ in further] == [0, 3, 6, 9, 12, 15, 18]
    for index, frame, before in further:
        assert np.array_equal(frame, decoded[index]) and np.array_equal(before, decoded[max(index - 5, 0)])


def photos(folder, *names: str):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((24, 32, 3), 40 * index, np.uint8)).save(folder / name)
    return {name: (folder / name).read_bytes() for name in names}


def test_maps_over_an_input_are_refused_before_any_work_and_nothing_is_touched(world, run, tmp_path):
    before = photos(tmp_path / "photos", "astronaut.png", "chelsea.jpg")
    code, _, err = run("predict", "--model", world / "student", tmp_path / "photos", "--out", tmp_path / "photos")
    assert code == 2
    run.assert_one_line_error(err, "astronaut.png: an input; writing there would destroy it")
    assert {path.name: path.read_bytes() for path in (tmp_path / "photos").iterdir()} == before


@pytest.mark.parametrize("layout", [("a/photo.jpg", "b/photo.jpg"), ("photo.webp", "photo.tiff")])
def test_two_inputs_that_would_write_one_map_are_refused_before_any_work(world, run, tmp_path, layout):
    for name in layout:
        photos(tmp_path / "in" / name.rpartition("/")[0], name.rpartition("/")[2])
    inputs = [tmp_path / "in" / name for name in layout]
    code, _, err = run("predict", "--model", world / "student", *inputs, "--out", tmp_path / "maps")
    assert code == 2 and not (tmp_path / "maps").exists()
    run.assert_one_line_error(err, "would both write", "photo.png")


def test_a_folders_subfolders_keep_their_maps_apart(world, run, tmp_path):
    photos(tmp_path / "in" / "a", "photo.jpg")
    photos(tmp_path / "in" / "b", "photo.jpg")
    assert run("predict", "--model", world / "student", tmp_path / "in", "--out", tmp_path / "maps", "--quiet")[0] == 0
    assert sorted(str(path.relative_to(tmp_path / "maps")) for path in (tmp_path / "maps").rglob("*.*")) == [
        "a/photo.png", "a/photo_overlay.jpg", "b/photo.png", "b/photo_overlay.jpg"]


def test_a_second_run_over_a_folder_does_not_take_the_maps_the_first_wrote_there(world, run, tmp_path):
    before = photos(tmp_path / "photos", "chelsea.jpg")
    for _ in range(2):
        code, out, err = run("predict", "--model", world / "student", tmp_path / "photos", "--out",
                             tmp_path / "photos", "--quiet")
        assert code == 0 and err == ""
    assert sorted(path.name for path in (tmp_path / "photos").iterdir()) == [
        "chelsea.jpg", "chelsea.png", "chelsea_overlay.jpg"]
    assert (tmp_path / "photos" / "chelsea.jpg").read_bytes() == before["chelsea.jpg"]


def test_a_phone_photo_gets_its_map_upright_as_viewers_show_it(world, run, tmp_path):
    from PIL import Image

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 64, 3), np.uint8))  # stored 40×64
    exif = photo.getexif()
    exif[0x0112] = 6  # EXIF orientation: turn 90° clockwise to view, so shown 64 high, 40 wide
    photo.save(tmp_path / "phone.jpg", exif=exif)
    assert run("predict", "--model", world / "student", tmp_path / "phone.jpg", "--out", tmp_path / "maps",
               "--quiet")[0] == 0
    assert np.asarray(Image.open(tmp_path / "maps" / "phone.png")).shape == (64, 40)
    assert np.asarray(Image.open(tmp_path / "maps" / "phone_overlay.jpg")).shape == (64, 40, 3)
