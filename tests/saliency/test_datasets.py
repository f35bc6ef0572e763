"""Specification of the saliency dataset readers, transforms and torch dataset, on tiny generated data."""

from __future__ import annotations

import json
from dataclasses import replace
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from saliency.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Cat2000Reader,
    Dhf1kReader,
    FolderReader,
    Mit1003Reader,
    SaliconReader,
    SaliencySample,
    SaliencyTorchDataset,
    SaliencyTransform,
    crop_sample,
    detect_layout,
    frames_before,
    hflip_sample,
    READERS,
    open_dataset,
    resize_sample,
    sample_to_tensors,
)
from saliency.infra.errors import DatasetError, UserError
from saliency.world import write_dhf1k
from saliency.infra.rundir import RunDir
from saliency.models import build
from saliency.run import SaliencyRunConfig

H, W = 12, 16


# --- writers of tiny datasets in the official layouts ---------------------------------------------


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)
    return path


def rgb(height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def density_map(height: int = H, width: int = W) -> np.ndarray:
    """A smooth uint8 map peaking at 255 in the middle."""
    rows, cols = np.mgrid[:height, :width]
    blob = np.exp(-((rows - height / 2) ** 2 + (cols - width / 2) ** 2) / 20.0)
    return np.round(255 * blob / blob.max()).astype(np.uint8)


def points_image(points: list[tuple[int, int]], height: int = H, width: int = W) -> np.ndarray:
    image = np.zeros((height, width), dtype=np.uint8)
    for row, col in points:
        image[row, col] = 255
    return image


def salicon_gaze(*observers: list[tuple[float, float]]) -> np.ndarray:
    """A 1×n SALICON `gaze` struct array; each observer a list of 1-based (x, y)."""
    fields = [("location", object), ("timestamp", object), ("fixations", object)]
    gaze = np.zeros((1, len(observers)), dtype=fields)
    for i, points in enumerate(observers):
        fixations = np.array(points, dtype=np.float64).reshape(-1, 2)
        gaze[0, i]["fixations"] = fixations
        gaze[0, i]["location"] = fixations
        gaze[0, i]["timestamp"] = np.arange(len(fixations), dtype=np.float64).reshape(-1, 1)
    return gaze


def write_salicon_mat(path: Path, gaze: object, resolution: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"image": path.stem, "resolution": np.array([resolution]), "gaze": gaze})
    return path


def make_salicon(root: Path) -> Path:
    """train: `a` (2 observers, one duplicate point), `b` (one observer, one empty); val: `c`; test: `d`."""
    for split, names in (("train", "ab"), ("val", "c"), ("test", "d")):
        for name in names:
            write_image(root / "images" / split / f"{name}.jpg", rgb())
            if split != "test":
                write_image(root / "maps" / split / f"{name}.png", density_map())
    write_salicon_mat(root / "fixations/train/a.mat", salicon_gaze([(5, 3), (16, 12)], [(5, 3)]))
    write_salicon_mat(root / "fixations/train/b.mat", salicon_gaze([(1, 1)]))
    write_salicon_mat(root / "fixations/val/c.mat", salicon_gaze([(2, 2)], []))
    return root


def make_mit1003(root: Path) -> Path:
    for name, points in (("i1", [(2, 3), (7, 10)]), ("i2", [(0, 0)])):
        write_image(root / "ALLSTIMULI" / f"{name}.jpeg", rgb())
        write_image(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg", density_map())
        write_image(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", points_image(points))
    return root


def make_cat2000(root: Path, maps_beside_stimuli: bool = True) -> Path:
    base = root / "trainSet"
    truth = base if maps_beside_stimuli else root
    for category in ("Action", "Art"):
        for name in ("001", "002"):
            write_image(base / "Stimuli" / category / f"{name}.jpg", rgb())
            write_image(truth / "FIXATIONMAPS" / category / f"{name}.jpg", density_map())
            locs = np.zeros((H, W), dtype=np.float64)
            locs[4, 5] = 1
            (truth / "FIXATIONLOCS" / category).mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(truth / "FIXATIONLOCS" / category / f"{name}.mat", {"fixLocs": locs})
    return root


def make_folder(root: Path) -> Path:
    write_image(root / "images/x.png", rgb())
    write_image(root / "maps/x.png", density_map())
    write_image(root / "fixations/x.png", points_image([(1, 2), (3, 4)]))
    write_image(root / "images/y.jpg", rgb())
    write_image(root / "maps/y.jpg", density_map())
    return root


def assert_sample_types(sample: SaliencySample, shape: tuple[int, int] = (H, W)) -> None:
    assert sample.image.dtype == np.uint8 and sample.image.shape == (*shape, 3)
    assert sample.density is not None and sample.density.dtype == np.float32 and sample.density.shape == shape
    assert 0.0 <= sample.density.min() and sample.density.max() <= 1.0
    assert sample.fixations is not None and sample.fixations.dtype == np.int64
    assert sample.fixations.ndim == 2 and sample.fixations.shape[1] == 2


# --- readers ----------------------------------------------------------------------------------------


def test_salicon_reader_yields_rgb_images_densities_as_stored_and_fixations(tmp_path: Path) -> None:
    reader = SaliconReader(make_salicon(tmp_path), split="train")
    assert len(reader) == 2 and reader.names == ["a", "b"]
    sample = reader[0]
    assert sample.name == "a"
    assert_sample_types(sample)
    np.testing.assert_allclose(sample.density, density_map() / 255.0, atol=1e-6)
    assert [s.name for s in reader] == ["a", "b"]


def test_salicon_fixations_become_zero_based_row_col_and_keep_duplicates(tmp_path: Path) -> None:
    sample = SaliconReader(make_salicon(tmp_path))[0]
    # observer 1: [x=5, y=3] and [x=16, y=12] (the bottom-right pixel); observer 2: [x=5, y=3] again
    assert sample.fixations.tolist() == [[2, 4], [11, 15], [2, 4]]


def test_salicon_reads_a_single_observer_and_an_observer_without_fixations(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    assert SaliconReader(root, split="train")[1].fixations.tolist() == [[0, 0]]
    assert SaliconReader(root, split="val")[0].fixations.tolist() == [[1, 1]]


def test_salicon_reads_gaze_saved_as_a_cell_array_of_structs(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    cells = [{"fixations": np.array([[3.0, 4.0]])}, {"fixations": np.zeros((0, 2))}]
    write_salicon_mat(root / "fixations/val/c.mat", cells)
    assert SaliconReader(root, split="val")[0].fixations.tolist() == [[3, 2]]


def test_salicon_rescales_points_from_the_recorded_resolution_and_drops_those_outside(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    # Recorded at twice the image size: [x=9, y=5] (0-based col 8, row 4) lands on image pixel (2, 4).
    gaze = salicon_gaze([(9, 5), (0, 3), (33, 5)])
    write_salicon_mat(root / "fixations/val/c.mat", gaze, resolution=(2 * H, 2 * W))
    assert SaliconReader(root, split="val")[0].fixations.tolist() == [[2, 4]]


def test_salicon_test_split_has_images_only(tmp_path: Path) -> None:
    sample = SaliconReader(make_salicon(tmp_path), split="test")[0]
    assert sample.name == "d" and sample.image.shape == (H, W, 3)
    assert sample.density is None and sample.fixations is None


def test_grayscale_and_rgba_images_come_out_rgb(tmp_path: Path) -> None:
    gray = np.full((H, W), 77, dtype=np.uint8)
    rgba = np.dstack([rgb(), np.full((H, W), 10, dtype=np.uint8)])
    for name, image in (("gray", gray), ("rgba", rgba)):
        write_image(tmp_path / "images" / f"{name}.png", image)
        write_image(tmp_path / "maps" / f"{name}.png", density_map())
    reader = FolderReader(tmp_path)
    assert np.array_equal(reader[0].image, np.dstack([gray] * 3))
    assert np.array_equal(reader[1].image, rgba[..., :3])


def test_mit1003_reader_takes_fixations_from_the_set_pixels_of_the_points_jpeg(tmp_path: Path) -> None:
    reader = Mit1003Reader(make_mit1003(tmp_path))
    assert reader.names == ["i1", "i2"]
    sample = reader[0]
    assert_sample_types(sample)
    assert sample.fixations.tolist() == [[2, 3], [7, 10]]
    assert reader[1].fixations.tolist() == [[0, 0]]


@pytest.mark.parametrize(
    "maps_beside_stimuli", [True, False], ids=["trainSet/FIXATIONMAPS", "root/FIXATIONMAPS"]
)
def test_cat2000_reader_names_samples_by_category_and_reads_fixlocs(
    tmp_path: Path, maps_beside_stimuli: bool
) -> None:
    reader = Cat2000Reader(make_cat2000(tmp_path, maps_beside_stimuli))
    assert reader.names == ["Action/001", "Action/002", "Art/001", "Art/002"]
    assert_sample_types(reader[2])
    assert reader[2].fixations.tolist() == [[4, 5]]
    assert Cat2000Reader(tmp_path, categories=["Art"]).names == ["Art/001", "Art/002"]
    if maps_beside_stimuli:
        assert Cat2000Reader(tmp_path / "trainSet").names == reader.names


def test_cat2000_unknown_category_is_an_error_listing_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Stimuli.*Sports.*Action"):
        Cat2000Reader(make_cat2000(tmp_path), categories=["Sports"])


def test_folder_reader_fixations_are_optional(tmp_path: Path) -> None:
    reader = FolderReader(make_folder(tmp_path))
    assert reader.names == ["x", "y"]
    assert reader[0].fixations.tolist() == [[1, 2], [3, 4]]
    assert reader[1].fixations is None and reader[1].density is not None
    with pytest.raises(DatasetError, match=r"fixations/y\.png"):
        FolderReader(tmp_path, require=("map", "fixations"))


@pytest.mark.parametrize(
    ("make", "kind", "count"),
    [
        (make_salicon, "salicon", 2),
        (make_mit1003, "mit1003", 2),
        (make_cat2000, "cat2000", 4),
        (make_folder, "folder", 2),
    ],
)
def test_open_dataset_detects_each_layout(tmp_path: Path, make, kind: str, count: int) -> None:
    root = make(tmp_path)
    assert detect_layout(root) == kind
    reader = open_dataset(root)
    assert type(reader).__name__.lower().startswith(kind) and len(reader) == count


def test_open_dataset_passes_the_split_to_salicon(tmp_path: Path) -> None:
    assert open_dataset(make_salicon(tmp_path), split="val").names == ["c"]


# --- splits: SALICON's folders; a fixed, seeded hold-out elsewhere ----------------------------------


def make_many(root: Path, layout: str, count: int) -> Path:
    """`count` tiny images (in each of two categories for CAT2000) named `000`, `001`, ...; no partner files:
    a split depends on the images alone, so these are read with `require=()`."""
    folder = {"mit1003": ["ALLSTIMULI"], "cat2000": ["trainSet/Stimuli/Action", "trainSet/Stimuli/Art"]}
    for directory in folder.get(layout, ["images"]):
        for i in range(count):
            write_image(root / directory / f"{i:03d}.jpg", np.zeros((2, 2, 3), np.uint8))
    return root


def names(root: Path, kind: str, split: str) -> list[str]:
    return READERS[kind](root, split=split, require=()).names


@pytest.mark.parametrize(
    ("kind", "count", "sizes"),
    [
        ("mit1003", 1003, (900, 103)),  # the usual MIT1003 split, exactly
        ("mit1003", 20, (18, 2)),  # a partial copy: the same share, 103/1003
        ("cat2000", 100, (180, 20)),  # a tenth of each category: 1800 / 200 on the full trainSet
        ("folder", 30, (27, 3)),
        ("folder", 2, (1, 1)),  # at least one image on each side
    ],
)
def test_held_out_split_sizes_are_fixed_and_train_val_partition_all(
    tmp_path: Path, kind: str, count: int, sizes: tuple[int, int]
) -> None:
    root = make_many(tmp_path, kind, count)
    train, val, every = (names(root, kind, split) for split in ("train", "val", "all"))
    assert (len(train), len(val)) == sizes
    assert not set(train) & set(val) and sorted(train + val) == every
    assert train == sorted(train) and val == sorted(val)


def test_cat2000_val_holds_the_same_share_of_every_category(tmp_path: Path) -> None:
    val = names(make_many(tmp_path, "cat2000", 10), "cat2000", "val")
    assert [name.split("/")[0] for name in val] == ["Action", "Art"]
    # a category's split does not depend on which other categories are read
    assert Cat2000Reader(tmp_path, split="val", categories=["Art"], require=()).names == val[1:]


def test_held_out_split_is_a_fixed_choice_by_name(tmp_path: Path) -> None:
    """Seeded by the names alone (sha256 of "0/<name>"), so the same on every machine and run; pinned here
    so that a change of the rule shows up as a failing test rather than as silently different scores."""
    root = make_many(tmp_path, "folder", 30)
    assert names(root, "folder", "val") == ["014", "017", "021"]
    (root / "images/003.jpg").unlink()  # another image gone: the held-out ones stay
    assert names(root, "folder", "val") == ["014", "017", "021"]


def test_open_dataset_default_split_is_salicon_train_and_the_whole_set_elsewhere(tmp_path: Path) -> None:
    assert open_dataset(make_salicon(tmp_path / "s")).names == ["a", "b"]
    assert open_dataset(make_mit1003(tmp_path / "m")).names == ["i1", "i2"]
    assert open_dataset(make_folder(tmp_path / "f")).names == ["x", "y"]
    assert len(open_dataset(make_cat2000(tmp_path / "c"))) == 4
    assert len(open_dataset(tmp_path / "c", split="val")) == 2  # one of each category's two


@pytest.mark.parametrize(
    ("make", "split", "message"),
    [
        (make_salicon, "all", "SALICON dataset has no split 'all'; its splits: train, val, test"),
        (make_mit1003, "test", "MIT1003 dataset has no split 'test'; its splits: train, val, all"),
        (make_cat2000, "dev", "CAT2000 dataset has no split 'dev'; its splits: train, val, all, test"),
        (make_folder, "test", "plain folder dataset has no split 'test'; its splits: train, val, all"),
    ],
)
def test_a_split_the_layout_does_not_have_is_an_error_listing_those_it_has(
    tmp_path: Path, make, split: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=f"^{re.escape(str(tmp_path))}: a {message}$"):
        open_dataset(make(tmp_path), split=split)


def test_cat2000_test_split_is_the_test_set_without_ground_truth(tmp_path: Path) -> None:
    root = make_cat2000(tmp_path)
    write_image(root / "testSet/Stimuli/Art/003.jpg", rgb())
    sample = open_dataset(root, split="test")[0]
    assert sample.name == "Art/003" and sample.density is None and sample.fixations is None


def test_a_held_out_split_of_a_single_image_is_empty_and_says_so(tmp_path: Path) -> None:
    root = make_many(tmp_path, "folder", 1)
    assert names(root, "folder", "train") == ["000"]
    with pytest.raises(DatasetError, match=r"images: split 'val' is empty \(1 image\(s\) in all; use split 'all'\)"):
        open_dataset(root, split="val")


# --- saliency eval scores what the ground truth allows ----------------------------------------------


@pytest.fixture
def student_run(tmp_path: Path, one_thread) -> Path:
    """An untrained student's run directory: the scores do not matter here, only which metrics get one."""
    run = RunDir(tmp_path / "run")
    run.save_config(SaliencyRunConfig())
    run.save_weights(build("student").state_dict())
    return tmp_path / "run"


def maps_only_folder(root: Path) -> Path:
    """A plain folder of four images with their maps and no fixations."""
    for i in range(4):
        write_image(root / "images" / f"{i}.png", rgb(seed=i))
        write_image(root / "maps" / f"{i}.png", density_map())
    return root


def test_eval_on_maps_without_fixations_scores_the_map_metrics_and_names_the_others(
    tmp_path: Path, student_run: Path, cli
) -> None:
    run, data, out = cli("saliency"), maps_only_folder(tmp_path / "data"), tmp_path / "eval.json"
    code, stdout, err = run("eval", "--model", student_run, "--data", data, "--split", "all", "--size", "32x32",
                            "--json", out, "--quiet")
    assert code == 0 and stdout.startswith(f"4 images, {data} (all)")
    assert err == "saliency eval: left out NSS, AUC_Judd, AUC_Borji, sAUC (no fixations)\n"
    result = json.loads(out.read_text())
    assert list(result["metrics"]) == ["CC", "KLD", "SIM"] and all(np.isfinite(list(result["metrics"].values())))
    assert result["left_out"] == dict.fromkeys(["NSS", "AUC_Judd", "AUC_Borji", "sAUC"], "no fixations")


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (maps_only_folder, ["--split", "all", "--metrics", "CC,NSS"], "no ground truth for NSS (no fixations)"),
        (maps_only_folder, ["--split", "test"], "a plain folder dataset has no split 'test'; its splits: train, val, all"),
        (make_salicon, ["--split", "test"],  # nothing to score: SALICON's test split has images only
         "no ground truth for CC, KLD, SIM (no density maps); NSS, AUC_Judd, AUC_Borji, sAUC (no fixations)"),
    ],
    ids=["metrics-named", "no-such-split", "no-ground-truth"],
)
def test_eval_stops_with_one_line_when_the_data_lacks_the_split_or_the_metrics_asked_for(
    tmp_path: Path, student_run: Path, cli, make, args: list[str], message: str
) -> None:
    run = cli("saliency")
    code, stdout, err = run("eval", "--model", student_run, "--data", make(tmp_path / "data"), "--size", "32x32",
                            *args, "--quiet")
    assert code == 2 and stdout == ""
    run.assert_one_line_error(err, message)


# --- errors: always a DatasetError naming the file --------------------------------------------------


def test_empty_directory_is_an_error_naming_it_and_the_accepted_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=f"{tmp_path}.*SALICON.*MIT1003.*CAT2000.*folder"):
        open_dataset(tmp_path)


def test_missing_map_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    (root / "maps/train/b.png").unlink()
    with pytest.raises(DatasetError, match=r"maps/train/b\.png.*images/train/b\.jpg"):
        SaliconReader(root)
    assert SaliconReader(root, require=("fixations",))[1].density is None


def test_missing_mit1003_points_file_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_mit1003(tmp_path)
    (root / "ALLFIXATIONMAPS/i2_fixPts.jpg").unlink()
    with pytest.raises(DatasetError, match=r"i2_fixPts\.jpg"):
        Mit1003Reader(root)


def test_corrupt_mat_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    (root / "fixations/train/a.mat").write_bytes(np.random.default_rng(0).bytes(300))
    reader = SaliconReader(root)
    with pytest.raises(DatasetError, match=r"fixations/train/a\.mat"):
        reader[0]


def test_mat_without_gaze_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    scipy.io.savemat(root / "fixations/train/a.mat", {"resolution": np.array([[H, W]])})
    with pytest.raises(DatasetError, match=r"a\.mat: not a SALICON fixation file"):
        SaliconReader(root)[0]


def test_corrupt_jpeg_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    path = root / "images/train/a.jpg"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"images/train/a\.jpg"):
        SaliconReader(root)[0]


def test_map_of_another_size_is_an_error_naming_both_files_and_sizes(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    write_image(root / "maps/train/a.png", density_map(H + 1, W))
    expected = rf"maps/train/a\.png is {H + 1}x{W}.*images/train/a\.jpg is {H}x{W}"
    with pytest.raises(DatasetError, match=expected):
        SaliconReader(root)[0]


def test_unknown_split_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="split 'dev'"):
        SaliconReader(make_salicon(tmp_path), split="dev")


def test_missing_split_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    root = make_salicon(tmp_path)
    for path in (root / "images/val").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match=r"images/val: no images"):
        SaliconReader(root, split="val")


# --- transforms keep image, density and fixations aligned -------------------------------------------


def bright_pixel_sample(row: int, col: int, height: int = 40, width: int = 60) -> SaliencySample:
    """A dark image and density with one bright pixel exactly at the single fixation."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[row, col] = 255
    density = np.zeros((height, width), dtype=np.float32)
    density[row, col] = 1.0
    return SaliencySample("p", image, density, np.array([[row, col]], dtype=np.int64))


def assert_aligned(sample: SaliencySample) -> None:
    """The fixation sits on a brightest pixel of both the image and the density (several on exact ties)."""
    (row, col), = sample.fixations.tolist()
    brightness = sample.image.astype(np.int64).sum(axis=2)
    assert brightness.shape == sample.density.shape
    assert brightness[row, col] == brightness.max() > 0
    assert sample.density[row, col] == sample.density.max() > 0


@pytest.mark.parametrize("size", [(20, 30), (64, 96), (30, 17), (40, 60)])
@pytest.mark.parametrize(("row", "col"), [(11, 36), (0, 0), (39, 59), (25, 8)])
def test_resize_keeps_the_fixation_on_the_bright_pixel(size: tuple[int, int], row: int, col: int) -> None:
    resized = resize_sample(bright_pixel_sample(row, col), size)
    assert resized.image.shape == (*size, 3) and resized.density.dtype == np.float32
    assert resized.density.max() == pytest.approx(1.0)
    assert_aligned(resized)


def test_hflip_mirrors_image_density_and_fixations_together() -> None:
    flipped = hflip_sample(bright_pixel_sample(11, 37))
    assert flipped.fixations.tolist() == [[11, 60 - 1 - 37]]
    assert_aligned(flipped)


def test_crop_shifts_fixations_and_drops_those_outside() -> None:
    sample = bright_pixel_sample(11, 37)
    sample.fixations = np.array([[11, 37], [0, 0], [11, 37]])
    cropped = crop_sample(sample, top=5, left=30, height=20, width=20)
    assert cropped.image.shape == (20, 20, 3) and cropped.fixations.tolist() == [[6, 7], [6, 7]]


@pytest.mark.parametrize("seed", range(12))
def test_random_crop_resize_and_flip_keep_alignment(seed: int) -> None:
    # Crops keep at least 80% of each side, so the fixation at the centre stays inside, off the crop's
    # border (where bilinear resizing clamps and may tie the neighbouring pixel).
    transform = SaliencyTransform(size=(24, 32), hflip=0.5, scale_jitter=0.2)
    out = transform(bright_pixel_sample(20, 30), np.random.default_rng(seed))
    assert out.image.shape == (24, 32, 3) and out.density.shape == (24, 32)
    assert_aligned(out)


def test_transform_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="scale_jitter"):
        SaliencyTransform(scale_jitter=1.0)
    with pytest.raises(ValueError, match="hflip"):
        SaliencyTransform(hflip=2.0)


# --- torch dataset ----------------------------------------------------------------------------------


def test_torch_dataset_gives_normalised_image_unit_mass_density_and_binary_fixations(tmp_path: Path) -> None:
    dataset = SaliencyTorchDataset(SaliconReader(make_salicon(tmp_path)), SaliencyTransform(size=(24, 32)))
    item = dataset[0]
    assert item["name"] == "a" and item["image"].shape == (3, 24, 32) and item["image"].dtype == torch.float32
    assert item["density"].shape == (1, 24, 32)
    assert item["density"].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert item["fixations"].shape == (1, 24, 32) and set(item["fixations"].unique().tolist()) == {0.0, 1.0}
    assert item["fixations"].sum().item() == 2  # the duplicate collapses in the map
    assert item["has_density"].item() and item["has_fixations"].item()
    raw = SaliencyTorchDataset(SaliconReader(tmp_path), dataset.transform, normalize=False)[0]["image"]
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(item["image"], (raw - mean) / std)


def test_torch_dataset_flags_missing_ground_truth_with_zero_maps(tmp_path: Path) -> None:
    item = SaliencyTorchDataset(SaliconReader(make_salicon(tmp_path), split="test"))[0]
    assert not item["has_density"].item() and not item["has_fixations"].item()
    assert item["density"].abs().sum() == 0 and item["fixations"].abs().sum() == 0


def test_dataloader_batches_fixed_size_items(tmp_path: Path) -> None:
    transform = SaliencyTransform(size=(32, 32), hflip=0.5)
    dataset = SaliencyTorchDataset(SaliconReader(make_salicon(tmp_path)), transform)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["density"].shape == (2, 1, 32, 32)
    assert batch["name"] == ["a", "b"] and batch["has_density"].tolist() == [True, True]


def test_same_seed_and_epoch_reproduce_the_augmentation(tmp_path: Path) -> None:
    reader = SaliconReader(make_salicon(tmp_path))
    transform = SaliencyTransform(size=(16, 16), hflip=0.5, scale_jitter=0.6)

    def epoch_images(seed: int, epoch: int) -> list[torch.Tensor]:
        dataset = SaliencyTorchDataset(reader, transform, seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i]["image"] for i in range(len(dataset))]

    first, again = epoch_images(0, 1), epoch_images(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_images(0, 2)))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_images(1, 1)))


# --- saliency train validates with what the validation split allows ---------------------------------


def many_maps_only_folder(root: Path, n: int = 20) -> Path:
    """A plain folder of `n` images with maps and no fixations: enough for a train and a val split."""
    for i in range(n):
        write_image(root / "images" / f"{i:03d}.png", rgb(seed=i))
        write_image(root / "maps" / f"{i:03d}.png", density_map())
    return root


TINY_TRAIN = ["--set", "data.size=[32, 32]", "--set", "data.batch_size=4", "--set", "optim.epochs=1",
              "--set", "model.options={width: 8, depth: 1, decoder_width: 8}", "--quiet"]


def test_train_on_maps_without_fixations_validates_on_the_map_metrics(tmp_path: Path, cli, one_thread, caplog) -> None:
    data, out = many_maps_only_folder(tmp_path / "data"), tmp_path / "run"
    code, _, err = cli("saliency")("train", "--set", f"data.root={data}", *TINY_TRAIN, "--out", out)
    assert code == 0, err
    val = json.loads((out / "metrics.json").read_text())["final"]
    assert sorted(val) == ["CC", "KLD", "SIM"]
    assert "validation leaves out NSS, AUC_Judd (no fixations)" in caplog.text + err


def test_train_selecting_by_a_metric_the_val_split_cannot_give_stops_before_training(tmp_path: Path, cli) -> None:
    data, out = many_maps_only_folder(tmp_path / "data"), tmp_path / "run"
    run = cli("saliency")
    code, stdout, err = run("train", "--set", f"data.root={data}", *TINY_TRAIN, "--set", "select_by=NSS", "--out", out)
    assert code == 2 and not out.exists()
    run.assert_one_line_error(err, "select_by: NSS cannot be scored on split 'val' (no fixations)")


# --- DHF1K: annotated video frames, each with the frame before it (models that see motion) -------------------


@pytest.fixture(scope="module")
def dhf1k(tmp_path_factory) -> Path:
    """Ten synthetic videos in the DHF1K layout: 7 train (001–007), 1 val (601), 2 test (701–702), 6 maps each."""
    root = tmp_path_factory.mktemp("dhf1k")
    write_dhf1k(root, n=10, size=(48, 64), n_frames=24, progress=False)
    return root


def test_dhf1k_reader_yields_each_annotated_frame_with_the_frame_before_it(dhf1k: Path) -> None:
    from saliency.infra.media import open_frames

    reader = open_dataset(dhf1k, split="train")
    assert detect_layout(dhf1k) == "dhf1k" and isinstance(reader, Dhf1kReader)
    assert len(reader) == 7 * 6 and reader.names[:2] == ["001/0004", "001/0008"]
    assert reader.ground_truth == {"gt", "fix", "other_fix"}
    sample = reader[1]  # frame 8 (1-based) of video 001
    assert_sample_types(sample, (48, 64))
    frames = open_frames(dhf1k / "video" / "001.mp4").get_batch([6, 7])
    assert np.array_equal(sample.previous, frames[0]) and np.array_equal(sample.image, frames[1])
    assert len(sample.fixations) and sample.density.max() == pytest.approx(1.0)


def test_dhf1k_samples_carry_the_frame_a_motion_model_looks_back_to(dhf1k: Path) -> None:
    from saliency.infra.media import open_frames

    reader = open_dataset(dhf1k, split="train", frame_gap=5)
    frames = open_frames(dhf1k / "video" / "001.mp4").get_batch([0, 2, 3, 7])
    first, second = reader[0], reader[1]  # frames 4 and 8 (1-based): indices 3 and 7, looking back to 0 and 2
    assert np.array_equal(first.previous, frames[0]) and np.array_equal(first.image, frames[2])
    assert np.array_equal(second.previous, frames[1]) and np.array_equal(second.image, frames[3])
    assert frames_before([0, 1, 4, 9], 3).tolist() == [0, 0, 1, 6]


def test_dhf1k_splits_follow_the_video_numbers(dhf1k: Path) -> None:
    assert {name[:3] for name in open_dataset(dhf1k, split="val").names} == {"601"}
    assert {name[:3] for name in open_dataset(dhf1k, split="test").names} == {"701", "702"}
    with pytest.raises(DatasetError, match="has no split 'all'"):
        open_dataset(dhf1k, split="all")


def test_dhf1k_without_annotations_or_fixations_says_what_is_missing(dhf1k: Path, tmp_path: Path) -> None:
    (tmp_path / "video").mkdir()
    (tmp_path / "annotation").mkdir()
    (tmp_path / "video" / "001.mp4").write_bytes((dhf1k / "video" / "001.mp4").read_bytes())
    with pytest.raises(DatasetError, match="no annotated DHF1K video in split 'train'"):
        open_dataset(tmp_path)
    maps = tmp_path / "annotation" / "0001" / "maps"
    maps.mkdir(parents=True)
    (maps / "0004.png").write_bytes((dhf1k / "annotation" / "0001" / "maps" / "0004.png").read_bytes())
    with pytest.raises(DatasetError, match="fixation/0004.png: missing fixations file"):
        open_dataset(tmp_path)
    (maps / "0099.png").write_bytes((maps / "0004.png").read_bytes())
    reader = Dhf1kReader(tmp_path, require=("map",))
    assert reader[0].fixations is None
    with pytest.raises(DatasetError, match="annotates frame 99 but .* has 24 frames"):
        reader[1]


def test_transforms_move_the_previous_frame_with_the_image() -> None:
    image, before = rgb(seed=1), rgb(seed=2)
    sample = SaliencySample("a", image, density_map(), None, before)
    flipped = hflip_sample(sample)
    assert np.array_equal(flipped.previous, before[:, ::-1])
    cropped = crop_sample(sample, 2, 3, 10, 12)
    assert np.array_equal(cropped.previous, before[2:12, 3:15])
    resized = resize_sample(sample, (8, 10))
    assert resized.previous.shape == (8, 10, 3)
    assert np.array_equal(resize_sample(replace(sample, image=before), (8, 10)).image, resized.previous)


def test_a_motion_sample_is_the_frame_and_its_difference_to_the_one_before() -> None:
    image, before = rgb(seed=1), rgb(seed=2)
    still = sample_to_tensors(SaliencySample("a", image, None, None))
    moving = sample_to_tensors(SaliencySample("a", image, None, None, before), motion=True)
    assert moving["image"].shape == (6, H, W) and torch.equal(moving["image"][:3], still["image"])
    earlier = sample_to_tensors(SaliencySample("b", before, None, None))["image"]
    assert torch.allclose(moving["image"][3:], still["image"] - earlier)
    image_only = sample_to_tensors(SaliencySample("a", image, None, None), motion=True)["image"]
    assert not image_only[3:].any()  # a still image has no motion
