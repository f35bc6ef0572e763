"""The synthetic saliency world: the actor is what stands out, fixations find it, files are SALICON's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from saliency import synthetic as world
from saliency.infra.errors import UserError

H, W = 72, 96


def scenes(n: int, n_frames: int = 1, **attributes) -> list[world.Scene]:
    return [world.sample_scene(np.random.default_rng(seed), H, W, n_frames, **attributes) for seed in range(n)]


def saturation(image: np.ndarray) -> np.ndarray:
    """HSV saturation per pixel, (H, W) in [0, 1]."""
    rgb = image.astype(np.float64)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def annotation_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.suffix in {".mat", ".png", ".json"}}


@pytest.fixture(scope="module")
def salicon(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("salicon")
    world.write_salicon(out, n=10, seed=5, size=(H, W), progress=False)
    return out


def test_actor_is_saturated_and_distractors_are_not():
    for scene in scenes(12):
        image = world.render_frame(scene, 0)
        actor = world.actor_mask(scene, 0)
        sat = saturation(image)
        assert sat[actor > 0.99].mean() > 0.75
        for mask in world.distractor_masks(scene, 0):
            inside = (mask > 0.99) & (actor < 0.01)
            if inside.any():
                assert sat[inside].mean() < 0.3


def test_distractors_are_low_contrast_against_the_background():
    for scene in scenes(8):
        image = world.render_frame(scene, 0).astype(np.float64) / 255
        for mask in world.distractor_masks(scene, 0):
            inside = (mask > 0.99) & (world.actor_mask(scene, 0) < 0.01)
            if inside.any():
                step = np.abs(image[inside] - scene.background[inside]).mean()
                assert step < 0.2


@pytest.mark.parametrize("motion, axis, sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)])
def test_actor_moves_in_the_stated_direction(motion, axis, sign):
    for scene in scenes(6, n_frames=16, motion=motion):
        start = world.actor_centre(scene, 0)
        end = world.actor_centre(scene, 15)
        extent = (W, H)[axis]
        assert sign * (end[axis] - start[axis]) > 0.25 * extent
        assert abs(end[1 - axis] - start[1 - axis]) < 1e-9
        # the rendered mask moves too, not only the bookkeeping
        ys, xs = np.nonzero(world.actor_mask(scene, 15) > 0.5)
        centroid = (xs.mean(), ys.mean())
        ys0, xs0 = np.nonzero(world.actor_mask(scene, 0) > 0.5)
        assert sign * (centroid[axis] - (xs0.mean(), ys0.mean())[axis]) > 0.25 * extent


def test_growing_actor_grows_and_shrinking_actor_shrinks():
    for scene in scenes(5, n_frames=16, motion="grows"):
        assert world.actor_mask(scene, 15).sum() > 2 * world.actor_mask(scene, 0).sum()
    for scene in scenes(5, n_frames=16, motion="shrinks"):
        assert world.actor_mask(scene, 15).sum() < 0.5 * world.actor_mask(scene, 0).sum()
    for scene in scenes(5, n_frames=16, motion="still"):
        assert np.array_equal(world.actor_mask(scene, 15), world.actor_mask(scene, 0))


def test_big_actors_are_clearly_bigger_than_small_ones_whatever_the_motion():
    for shape in world.SHAPES:
        small = [world.actor_mask(s, t).sum() for s in scenes(8, 16, shape=shape, size="small") for t in (0, 15)]
        big = [world.actor_mask(s, t).sum() for s in scenes(8, 16, shape=shape, size="big") for t in (0, 15)]
        assert min(big) > 1.5 * max(small)


def test_actor_stays_in_frame_for_the_whole_clip():
    for scene in scenes(60, n_frames=8):
        for t in range(8):
            x0, y0, x1, y1 = world.actor_box(scene, t)
            assert 0 <= x0 and x1 <= W - 1 and 0 <= y0 and y1 <= H - 1
            mask = world.actor_mask(scene, t)
            assert max(mask[0].max(), mask[-1].max(), mask[:, 0].max(), mask[:, -1].max()) < 0.5


def test_most_fixations_land_near_the_actor():
    for seed, scene in enumerate(scenes(10)):
        gaze = world.sample_gaze(scene, 0, np.random.default_rng(seed))
        points = world.all_fixations(gaze) - 1  # to 0-based
        distance = np.hypot(*(points - world.actor_centre(scene, 0)).T)
        assert (distance < 2 * world.actor_radius(scene, 0)).mean() > 0.5


def test_fixations_are_one_based_integer_pixels_inside_the_image():
    scene = scenes(1)[0]
    gaze = world.sample_gaze(scene, 0, np.random.default_rng(0), n_observers=40, fixations_per_observer=8)
    assert len(gaze) == 40
    points = world.all_fixations(gaze)
    assert points.shape == (320, 2)
    assert np.array_equal(points, np.round(points))
    assert points[:, 0].min() >= 1 and points[:, 0].max() <= W
    assert points[:, 1].min() >= 1 and points[:, 1].max() <= H


def test_density_map_peaks_on_the_actor_and_is_max_normalised():
    for seed, scene in enumerate(scenes(10)):
        gaze = world.sample_gaze(scene, 0, np.random.default_rng(seed))
        density = world.density_map(world.all_fixations(gaze), (H, W))
        assert density.dtype == np.float32 and density.shape == (H, W)
        assert density.max() == pytest.approx(1.0) and density.min() >= 0
        y, x = np.unravel_index(density.argmax(), density.shape)
        cx, cy = world.actor_centre(scene, 0)
        assert np.hypot(x - cx, y - cy) < 2 * world.actor_radius(scene, 0)


def test_density_map_of_one_fixation_is_a_gaussian_centred_on_it():
    density = world.density_map(np.array([[10.0, 20.0]]), (40, 50), sigma=3)
    assert np.unravel_index(density.argmax(), density.shape) == (19, 9)  # row y-1, column x-1
    assert density[19, 12] == pytest.approx(np.exp(-9 / 18), rel=1e-3)


def test_salicon_layout_has_images_and_annotations_for_every_split(salicon):
    names = {split: sorted(p.stem for p in (salicon / "images" / split).glob("*.jpg"))
             for split in world.SALICON_SPLITS}
    assert [len(names[s]) for s in world.SALICON_SPLITS] == [7, 2, 1]
    assert names["train"][0] == "SYN_train_000000" and names["test"] == ["SYN_test_000009"]
    for split in world.SALICON_SPLITS:  # the synthetic test split is annotated: it is the held-out split
        assert sorted(p.stem for p in (salicon / "maps" / split).glob("*.png")) == names[split]
        assert sorted(p.stem for p in (salicon / "fixations" / split).glob("*.mat")) == names[split]
    with Image.open(salicon / "images" / "train" / "SYN_train_000000.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (W, H)


def test_mat_files_have_the_official_salicon_structure(salicon):
    path = salicon / "fixations" / "val" / "SYN_val_000007.mat"
    mat = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    assert mat["image"][0] == "SYN_val_000007"
    assert mat["resolution"].tolist() == [[H, W]]
    gaze = mat["gaze"]
    assert gaze.shape == (1, 15)
    assert set(gaze.dtype.names) == {"location", "timestamp", "fixations"}
    for k in range(gaze.shape[1]):
        fixations, location, timestamp = (gaze[0, k][name] for name in ("fixations", "location", "timestamp"))
        assert fixations.shape == (5, 2) and fixations.dtype == np.float64
        assert fixations[:, 0].min() >= 1 and fixations[:, 0].max() <= W  # x is the column
        assert fixations[:, 1].min() >= 1 and fixations[:, 1].max() <= H
        assert location.shape[1] == 2 and location.shape[0] >= fixations.shape[0]
        assert timestamp.shape == (location.shape[0], 1) and np.all(np.diff(timestamp[:, 0]) > 0)


def test_map_png_is_the_blurred_fixations_of_the_mat_file(salicon):
    mat = scipy.io.loadmat(salicon / "fixations" / "train" / "SYN_train_000003.mat")
    fixations = np.concatenate([mat["gaze"][0, k]["fixations"] for k in range(mat["gaze"].shape[1])])
    expected = np.round(world.density_map(fixations, (H, W)) * 255)
    saved = np.asarray(Image.open(salicon / "maps" / "train" / "SYN_train_000003.png"))
    assert saved.dtype == np.uint8 and saved.shape == (H, W)
    assert np.array_equal(saved, expected)


def test_meta_records_each_images_actor(salicon):
    meta = json.loads((salicon / world.META_NAME).read_text())
    assert meta["seed"] == 5 and meta["size"] == [H, W] and len(meta["images"]) == 10
    record = meta["images"]["SYN_train_000000"]
    assert record["split"] == "train"
    assert record["shape"] in world.SHAPES and record["colour"] in world.COLOURS
    assert record["size"] in world.SIZES and record["motion"] in world.MOTIONS


def test_same_seed_gives_byte_identical_annotations_and_another_seed_does_not(salicon, tmp_path):
    world.write_salicon(tmp_path / "again", n=10, seed=5, size=(H, W), progress=False)
    world.write_salicon(tmp_path / "other", n=10, seed=6, size=(H, W), progress=False)
    first, again, other = (annotation_bytes(p) for p in (salicon, tmp_path / "again", tmp_path / "other"))
    assert len(first) == 2 * 10 + 1 and first == again  # map + fixations for all 10 images, + meta
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_an_image_does_not_depend_on_how_many_are_generated(salicon, tmp_path):
    world.write_salicon(tmp_path / "more", n=30, seed=5, size=(H, W), progress=False)
    for name in ("images/train/SYN_train_000004.jpg", "fixations/train/SYN_train_000004.mat"):
        assert (salicon / name).read_bytes() == (tmp_path / "more" / name).read_bytes()


def test_rerun_replaces_an_earlier_synthetic_dataset(tmp_path):
    world.write_salicon(tmp_path, n=6, seed=0, size=(H, W), progress=False)
    summary = world.write_salicon(tmp_path, n=3, seed=0, size=(H, W), progress=False)
    assert summary["splits"] == {"train": 2, "val": 1, "test": 0}
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 3


def test_refuses_to_write_into_a_folder_of_other_data(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        world.write_salicon(tmp_path, n=2, size=(H, W), progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"size": (16, 16)}, {"splits": (0.5, 0.2, 0.2)}, {"seed": -1}])
def test_rejects_bad_parameters(tmp_path, kwargs):
    with pytest.raises(UserError):
        world.write_salicon(tmp_path / "out", **{"size": (H, W), "progress": False, **kwargs})


def test_split_counts_sum_to_n_and_follow_the_fractions():
    assert world.split_counts(200, (0.7, 0.15, 0.15)) == [140, 30, 30]
    assert world.split_counts(10, (0.7, 0.1, 0.2)) == [7, 1, 2]
    assert sum(world.split_counts(7, (0.7, 0.15, 0.15))) == 7
