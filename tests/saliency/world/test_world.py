"""The synthetic saliency world: v1's actor stands out by colour, v2's by what it is and does; fixations find
it; files are SALICON's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from saliency import world
from saliency.infra.errors import DatasetError, UserError

H, W = 72, 96


TRAVEL = {"v1": 0.25, "v2": 0.14}  # least travel of a moving actor over the clip, fraction of the frame


def scenes(n: int, n_frames: int = 1, world_version: str = "v1", **attributes) -> list[world.Scene]:
    return [world.sample_scene(np.random.default_rng(seed), H, W, n_frames, world=world_version, **attributes)
            for seed in range(n)]


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


@pytest.mark.parametrize("version", world.WORLDS)
@pytest.mark.parametrize("motion, axis, sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)])
def test_actor_moves_in_the_stated_direction(motion, axis, sign, version):
    for scene in scenes(6, n_frames=16, world_version=version, motion=motion):
        start = world.actor_centre(scene, 0)
        end = world.actor_centre(scene, 15)
        extent = (W, H)[axis]
        assert sign * (end[axis] - start[axis]) > TRAVEL[version] * extent
        assert abs(end[1 - axis] - start[1 - axis]) < 1e-9
        # the rendered mask moves too, not only the bookkeeping
        ys, xs = np.nonzero(world.actor_mask(scene, 15) > 0.5)
        centroid = (xs.mean(), ys.mean())
        ys0, xs0 = np.nonzero(world.actor_mask(scene, 0) > 0.5)
        assert sign * (centroid[axis] - (xs0.mean(), ys0.mean())[axis]) > TRAVEL[version] * extent


@pytest.mark.parametrize("version", world.WORLDS)
def test_growing_actor_grows_and_shrinking_actor_shrinks(version):
    for scene in scenes(5, n_frames=16, world_version=version, motion="grows"):
        assert world.actor_mask(scene, 15).sum() > 2 * world.actor_mask(scene, 0).sum()
    for scene in scenes(5, n_frames=16, world_version=version, motion="shrinks"):
        assert world.actor_mask(scene, 15).sum() < 0.5 * world.actor_mask(scene, 0).sum()
    for scene in scenes(5, n_frames=16, world_version=version, shape="star", motion="still"):
        assert np.array_equal(world.actor_mask(scene, 15), world.actor_mask(scene, 0))


@pytest.mark.parametrize("version", world.WORLDS)
def test_big_actors_are_clearly_bigger_than_small_ones_whatever_the_motion(version):
    for shape in world.SHAPES:
        small = [world.actor_mask(s, t).sum() for s in scenes(8, 16, version, shape=shape, size="small", motion="left")
                 for t in (0, 15)]
        big = [world.actor_mask(s, t).sum() for s in scenes(8, 16, version, shape=shape, size="big") for t in (0, 15)]
        assert min(big) > 1.5 * max(small)


@pytest.mark.parametrize("version", world.WORLDS)
def test_actor_stays_in_frame_for_the_whole_clip(version):
    for scene in scenes(60, n_frames=8, world_version=version):
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
    assert gaze.shape == (1, world.OBSERVERS["v2"])
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


# --- world v2: every object as saturated as the actor; gaze drawn by what objects are and do ------------


def objects_of(scene: world.Scene, t: int = 0) -> list[np.ndarray]:
    """Coverage masks of every object of a v2 scene, the actor first."""
    return [world.actor_mask(scene, t), *world.distractor_masks(scene, t)]


def fixation_counts(scene: world.Scene, gaze, t: int = 0) -> np.ndarray:
    """How many fixations land within two radii of each object, the actor first."""
    points = world.all_fixations(gaze) - 1
    s = scene.fraction(t)
    return np.array([(np.hypot(*(points - o.sprite.centre(s)).T) < 2 * o.sprite.radius(s)).sum()
                     for o in scene.objects])


def test_v2_scenes_hold_three_to_six_equally_saturated_objects_apart_and_in_frame():
    for scene in scenes(30, n_frames=8, world_version="v2"):
        assert 3 <= len(scene.objects) <= 6 and scene.objects[0].sprite is scene.actor
        image = world.render_frame(scene, 0)
        sat = saturation(image)
        masks = objects_of(scene)
        for mask in masks:
            assert sat[mask > 0.99].mean() > 0.75  # no object pops out by saturation
        assert max(np.maximum.reduce([m > 0.5 for m in masks]).sum() - sum((m > 0.5).sum() for m in masks), 0) == 0
        for t in (0, 7):
            for mask in objects_of(scene, t):
                assert max(mask[0].max(), mask[-1].max(), mask[:, 0].max(), mask[:, -1].max()) < 0.5


def test_v2_attributes_are_not_tied_to_being_the_actor():
    """Colours and sizes of the actor and of the others are drawn alike, so neither tells which is the actor."""
    many = scenes(300, world_version="v2")
    for attribute in ("colour", "size"):
        actors = {getattr(s.objects[0], attribute) for s in many}
        others = {getattr(o, attribute) for s in many for o in s.objects[1:]}
        assert actors == others
    others_shapes = {o.shape for s in many for o in s.objects[1:]}
    assert others_shapes == set(world.SHAPES) - {"star"}  # nothing outranks a star in a still image


def test_v2_actor_draws_the_most_gaze_by_a_margin_and_gets_the_most_fixations():
    hits = 0
    for seed, scene in enumerate(scenes(40, n_frames=1, world_version="v2")):
        weights = [o.attention_weight(video=False) for o in scene.objects]
        assert weights[0] >= world.ACTOR_MARGIN * max(weights[1:])
        counts = fixation_counts(scene, world.sample_gaze(scene, 0, np.random.default_rng(seed)))
        hits += counts[0] == counts.max()
    assert hits >= 36


def test_v2_priority_shapes_draw_more_fixations_than_squares_on_average():
    per_shape: dict[str, list[int]] = {shape: [] for shape in world.SHAPES}
    for seed, scene in enumerate(scenes(150, world_version="v2")):
        counts = fixation_counts(scene, world.sample_gaze(scene, 0, np.random.default_rng(seed)))
        for obj, count in zip(scene.objects, counts):
            per_shape[obj.shape].append(count)
    mean = {shape: np.mean(counts) for shape, counts in per_shape.items()}
    assert mean["star"] > mean["triangle"] > mean["diamond"] > mean["square"]
    assert mean["star"] > 3 * mean["square"]


def test_v2_in_video_a_moving_object_outdraws_a_still_one_of_the_same_kind():
    obj = scenes(1, n_frames=8, world_version="v2")[0].objects[0]
    still, moving = (world.SceneObject(obj.shape, obj.colour, obj.size, m, obj.sprite) for m in ("still", "left"))
    assert moving.attention_weight(video=True) == world.MOTION_GAIN * still.attention_weight(video=True)
    assert moving.attention_weight(video=False) == still.attention_weight(video=False)  # a photo shows no motion
    videos = scenes(100, n_frames=8, world_version="v2")
    actors_moving = np.mean([s.objects[0].motion != "still" for s in videos])
    others_moving = np.mean([o.motion != "still" for s in videos for o in s.objects[1:]])
    assert actors_moving > 0.85 and others_moving < 0.6


def test_v2_meta_records_every_object_and_the_actor(tmp_path):
    world.write_salicon(tmp_path, n=6, seed=1, size=(H, W), progress=False)
    meta = json.loads((tmp_path / world.META_NAME).read_text())
    assert meta["world"] == "v2"
    for record in meta["images"].values():
        objects = record["objects"]
        assert 3 <= len(objects) <= 6 and record["actor"] == 0
        assert objects[0]["shape"] == record["shape"] and objects[0]["centre"] == record["centre"]
        assert sum(o["attention"] for o in objects) == pytest.approx(1, abs=1e-3)
        assert objects[0]["attention"] == max(o["attention"] for o in objects)


def test_expected_density_from_the_meta_matches_many_observers():
    scene = scenes(1, world_version="v2")[0]
    record = world.scene_record(scene, 0)
    model = world.GazeModel.of_record(record, (H, W), "v2")
    many = world.density_map(world.all_fixations(model.sample(np.random.default_rng(0), n_observers=2000)), (H, W))
    expected = model.expected_density()
    assert np.corrcoef(expected.ravel(), many.ravel())[0, 1] > 0.99


def test_an_actor_no_object_can_stand_beside_is_refused_in_one_line():
    with pytest.raises(UserError, match="no world-v2 scene has a small square actor still"):
        world.sample_scene(np.random.default_rng(0), H, W, 8, shape="square", size="small", motion="still")
    with pytest.raises(UserError, match="unknown synthetic world 'v3'"):
        world.sample_scene(np.random.default_rng(0), H, W, world="v3")


def test_dhf1k_videos_are_numbered_by_split_and_every_nth_frame_annotated(tmp_path):
    summary = world.write_dhf1k(tmp_path, n=10, seed=3, size=(48, 64), n_frames=8, annotate_every=2, progress=False)
    assert summary["splits"] == {"train": 7, "val": 1, "test": 2}
    assert sorted(p.name for p in (tmp_path / "video").iterdir()) == [
        *(f"{i:03d}.mp4" for i in range(1, 8)), "601.mp4", "701.mp4", "702.mp4"]
    annotation = tmp_path / "annotation" / "0601"
    assert sorted(p.name for p in (annotation / "maps").iterdir()) == ["0002.png", "0004.png", "0006.png", "0008.png"]
    fixations = np.asarray(Image.open(annotation / "fixation" / "0004.png"))
    assert set(np.unique(fixations)) == {0, 255} and fixations.shape == (48, 64)
    meta = json.loads((tmp_path / world.META_NAME).read_text())
    assert meta["n_frames"] == 8 and meta["videos"]["601"]["split"] == "val"
    assert all(r["objects"][0]["attention"] == max(o["attention"] for o in r["objects"]) for r in meta["videos"].values())
    again = tmp_path / "again"
    world.write_dhf1k(again, n=10, seed=3, size=(48, 64), n_frames=8, annotate_every=2, progress=False)
    assert (again / "annotation/0601/maps/0004.png").read_bytes() == (annotation / "maps/0004.png").read_bytes()


def test_dhf1k_refuses_more_videos_than_its_numbering_holds(tmp_path):
    with pytest.raises(UserError, match="DHF1K numbers at most 100 val videos"):
        world.write_dhf1k(tmp_path, n=101, splits=(0, 1, 0), progress=False)
    with pytest.raises(UserError, match="motion needs two frames"):
        world.write_dhf1k(tmp_path, n=2, n_frames=1, progress=False)


@pytest.mark.parametrize("content, problem", [(b"{not json", "cannot read the synthetic world's record"),
                                              (b"\xff\xfe\x00", "cannot read the synthetic world's record"),
                                              (b"[1, 2]", "not a synthetic world's record")])
def test_a_damaged_world_record_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / world.META_NAME
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=problem) as raised:
        world.read_meta(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(DatasetError, match="no such file"):
        world.read_meta(tmp_path / "missing.json")
