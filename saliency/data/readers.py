"""Readers for the saliency datasets in their official layouts: SALICON, MIT1003, CAT2000, DHF1K (video), a plain
folder.

Every reader is a lazy sequence of `SaliencySample`s (files are decoded on access, partner files are
checked on construction); `open_dataset` picks the reader from the layout it finds.

Splits. SALICON's train/val/test are its folders. The other layouts ship no validation split, so one
is held out by a fixed rule: "val" takes a fixed share of the images (of each category, for CAT2000),
"train" the rest and "all" every annotated image. The held-out images are those whose
sha256(f"{SPLIT_SEED}/{name}") sorts first: the same on every platform and library version, and adding
or removing images moves few others across. MIT1003's share is 103/1003 (900 train / 103 val, the usual
fine-tuning split), CAT2000's a tenth of each category of trainSet (1800 / 200; its testSet, images
only, is "test"), a plain folder's a tenth. A set (or category) of a single image keeps it in train.
DHF1K's splits are its own, by video number: train 1–600, val 601–700, test 701–1000 (annotations withheld).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from saliency.data.matfile import load_mat
from saliency.infra.errors import DatasetError, UserError
from saliency.infra.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

SALICON_SPLITS = ("train", "val", "test")
HELD_OUT_SPLITS = ("train", "val", "all")  # MIT1003, plain folders; CAT2000 adds "test"
CAT2000_SPLITS = {"train": "trainSet", "val": "trainSet", "all": "trainSet", "test": "testSet"}
SPLIT_SEED = 0
LAYOUTS = (
    "SALICON (images/{train,val,test}/, maps/{train,val}/, fixations/{train,val}/), "
    "MIT1003 (ALLSTIMULI/, ALLFIXATIONMAPS/), "
    "CAT2000 (trainSet/Stimuli/<category>/, FIXATIONMAPS/, FIXATIONLOCS/), "
    "DHF1K (video/NNN.AVI, annotation/NNNN/maps/, annotation/NNNN/fixation/), "
    "or a plain folder (images/, maps/, optional fixations/)"
)
_PARTNERS = ("map", "fixations")


@dataclass
class SaliencySample:
    """One stimulus with its ground truth, all in the image's pixel grid."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    density: np.ndarray | None  # (H, W) float32 in [0, 1], as stored; None where the split has none
    fixations: np.ndarray | None  # (N, 2) int64 (row, col), 0-based; duplicates kept (several observers)
    previous: np.ndarray | None = None  # (H, W, 3) uint8 RGB: a video frame's frame before (motion models); None for images


@dataclass(frozen=True)
class _Entry:
    name: str
    image: Path  # an image file; for DHF1K the video
    density: Path | None
    fixations: Path | None
    frame: int | None = None  # the 0-based frame of the video, for DHF1K


# Reads a fixation file into (N, 2) int64 (row, col) points for an image of shape (H, W).
_FixationLoader = Callable[[Path, tuple[int, int], Path], np.ndarray]


def frames_before(indices: np.ndarray | Sequence[int] | int, gap: int) -> np.ndarray:
    """The frame `gap` frames before each of `indices` (a motion model's second frame); the first frames of a
    video have none so far back and take frame 0 (frame 0 itself: no motion)."""
    return np.maximum(np.asarray(indices, dtype=np.int64) - gap, 0)


class SaliencyReader(Sequence[SaliencySample]):
    """A lazy sequence of samples over (image, map, fixation file) triples found on construction."""

    VIDEO = False  # a video layout: its samples carry a frame before each (`frame_gap` frames back)

    def __init__(self, entries: list[_Entry], read_fixations: _FixationLoader) -> None:
        self._entries = entries
        self._read_fixations = read_fixations

    @property
    def names(self) -> list[str]:
        """Sample names in reading order (file stems; `<category>/<stem>` for CAT2000)."""
        return [entry.name for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ground_truth(self) -> set[str]:
        """Which inputs of the metrics (`Metric.needs`) some sample has: "gt", "fix", "other_fix"."""
        have = {"gt"} if any(e.density is not None for e in self._entries) else set()
        with_fixations = sum(e.fixations is not None for e in self._entries)
        have |= {"fix"} if with_fixations else set()
        return have | ({"other_fix"} if with_fixations >= 2 else set())

    def __getitem__(self, index: int) -> SaliencySample:  # type: ignore[override]
        entry = self._entries[index]
        image, previous = self._read_stimulus(entry)
        shape = image.shape[:2]
        density = None
        if entry.density is not None:
            density = read_gray(entry.density).astype(np.float32) / 255.0
            _check_same_size(density.shape, shape, entry.density, entry.image)
        fixations = None
        if entry.fixations is not None:
            fixations = self._read_fixations(entry.fixations, shape, entry.image)
        return SaliencySample(entry.name, image, density, fixations, previous)

    def _read_stimulus(self, entry: _Entry) -> tuple[np.ndarray, np.ndarray | None]:
        """The entry's image and the frame before it (None: a still image)."""
        return read_rgb(entry.image), None


class SaliconReader(SaliencyReader):
    """SALICON: `images/{split}/*.jpg`, `maps/{split}/<stem>.png`, `fixations/{split}/<stem>.mat`.

    The official test split has images only, so there its maps and fixations are optional: they are
    read when present (the synthetic world writes them for every split) and None otherwise.
    """

    def __init__(
        self, root: str | Path, split: str = "train", require: Collection[str] = _PARTNERS
    ) -> None:
        root = Path(root)
        _check_split(root, "SALICON", split, SALICON_SPLITS)
        images = _require_images(_list_images(root / "images" / split), root / "images" / split)
        entries = _pair(
            images,
            lambda name: [root / "maps" / split / f"{name}.png"],
            lambda name: [root / "fixations" / split / f"{name}.mat"],
            require if split != "test" else (),
        )
        super().__init__(entries, read_salicon_fixations)


class Mit1003Reader(SaliencyReader):
    """MIT1003: `ALLSTIMULI/*.jpeg`, `ALLFIXATIONMAPS/<stem>_fixMap.jpg` and `<stem>_fixPts.jpg`.

    Splits train / val / all: 900 / 103 / 1003 images (see the module's docstring). There is no test
    split: MIT1003's benchmark counterpart, MIT300, keeps its ground truth hidden.
    """

    VAL_SHARE = 103 / 1003

    def __init__(
        self, root: str | Path, split: str = "all", require: Collection[str] = _PARTNERS
    ) -> None:
        root = Path(root)
        _check_split(root, "MIT1003", split, HELD_OUT_SPLITS)
        images = _require_images(_list_images(root / "ALLSTIMULI"), root / "ALLSTIMULI")
        images = _held_out_split(images, split, self.VAL_SHARE, root / "ALLSTIMULI")
        maps = root / "ALLFIXATIONMAPS"
        entries = _pair(
            images,
            lambda name: [maps / f"{name}_fixMap.jpg"],
            lambda name: [maps / f"{name}_fixPts.jpg"],
            require,
        )
        super().__init__(entries, read_fixation_image)


class Cat2000Reader(SaliencyReader):
    """CAT2000: `trainSet/Stimuli/<cat>/NNN.jpg`, `FIXATIONMAPS/<cat>/NNN.jpg`, `FIXATIONLOCS/<cat>/NNN.mat`.

    The map and location folders are looked for beside `Stimuli/` (as the dataset ships) and then
    in `root`; `root` may also be the `trainSet/` folder itself. Sample names are `<cat>/NNN`.
    Splits train / val / all divide `trainSet/` (a tenth of each category held out as val, see the
    module's docstring); test is `testSet/`, which has images only.
    """

    VAL_SHARE = 0.1

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        categories: Collection[str] | None = None,
        require: Collection[str] = _PARTNERS,
    ) -> None:
        root = Path(root)
        _check_split(root, "CAT2000", split, tuple(CAT2000_SPLITS))
        base = root / CAT2000_SPLITS[split]
        if not (base / "Stimuli").is_dir() and (root / "Stimuli").is_dir():
            base = root
        stimuli = base / "Stimuli"
        if not stimuli.is_dir():
            layout = f"{CAT2000_SPLITS[split]}/Stimuli/<category>/"
            raise DatasetError(f"{stimuli}: no such directory (CAT2000 layout: {layout})")
        available = sorted(path.name for path in stimuli.iterdir() if path.is_dir())
        unknown = sorted(set(categories or ()) - set(available))
        if unknown:
            raise DatasetError(f"{stimuli}: no categories {unknown}; available: {available}")
        images = [
            (f"{category}/{name}", path)
            for category in (available if categories is None else sorted(categories))
            for name, path in _list_images(stimuli / category)
        ]
        images = _require_images(images, stimuli)
        truth = split != "test"
        if truth:
            images = _held_out_split(images, split, self.VAL_SHARE, stimuli)
        map_dirs = [base / "FIXATIONMAPS", root / "FIXATIONMAPS"]
        loc_dirs = [base / "FIXATIONLOCS", root / "FIXATIONLOCS"]
        entries = _pair(
            images,
            (lambda name: [d / f"{name}.jpg" for d in map_dirs]) if truth else None,
            (lambda name: [d / f"{name}.mat" for d in loc_dirs]) if truth else None,
            require,
        )
        super().__init__(entries, read_cat2000_fixations)


class FolderReader(SaliencyReader):
    """A plain folder: `images/*.{jpg,jpeg,png}`, `maps/<stem>.{png,jpg}`, optional `fixations/<stem>.png`.

    Fixation PNGs are binary images (non-zero pixels are fixations). Splits train / val / all, a tenth
    of the images held out as val (see the module's docstring).
    """

    VAL_SHARE = 0.1

    def __init__(
        self, root: str | Path, split: str = "all", require: Collection[str] = ("map",)
    ) -> None:
        root = Path(root)
        _check_split(root, "plain folder", split, HELD_OUT_SPLITS)
        images = _require_images(_list_images(root / "images"), root / "images")
        images = _held_out_split(images, split, self.VAL_SHARE, root / "images")
        entries = _pair(
            images,
            lambda name: [root / "maps" / f"{name}{suffix}" for suffix in (".png", ".jpg", ".jpeg")],
            lambda name: [root / "fixations" / f"{name}.png"],
            require,
        )
        super().__init__(entries, read_fixation_image)


class Dhf1kReader(SaliencyReader):
    """DHF1K (video saliency): `video/NNN.AVI` (any video suffix), `annotation/NNNN/maps/FFFF.png` and
    `annotation/NNNN/fixation/FFFF.png`, the map and the binary fixation image of frame FFFF (1-based) of video NNN.

    One sample per annotated frame, named `NNN/FFFF`, carrying the frame `frame_gap` frames before it
    (`frames_before`) for models that see motion. Splits are DHF1K's, by video number (see the module's docstring); a
    video without annotations is left out, so the official test split (annotations withheld) is empty.
    Frames are decoded with decord (ffmpeg where decord fails), a few videos kept open at a time.
    """

    SPLITS = {"train": range(1, 601), "val": range(601, 701), "test": range(701, 1001)}
    OPEN_VIDEOS = 4
    VIDEO = True

    def __init__(self, root: str | Path, split: str = "train", require: Collection[str] = _PARTNERS,
                 frame_gap: int = 1) -> None:
        root = Path(root)
        self.frame_gap = frame_gap
        _check_split(root, "DHF1K", split, tuple(self.SPLITS))
        folder = root / "video"
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such directory (DHF1K layout: video/NNN.AVI, annotation/NNNN/maps/)")
        videos = sorted((int(path.stem), path) for path in folder.iterdir()
                        if path.stem.isdigit() and path.suffix.lower() in VIDEO_SUFFIXES)
        entries = []
        for number, video in videos:
            if number not in self.SPLITS[split]:
                continue
            annotation = root / "annotation" / f"{number:04d}"
            maps = sorted(path for path in (annotation / "maps").glob("*.png") if path.stem.isdigit())
            for path in maps:
                fixation = annotation / "fixation" / path.name
                if "fixations" in require and not fixation.is_file():
                    raise DatasetError(f"{fixation}: missing fixations file for frame {path.stem} of {video}")
                entries.append(_Entry(f"{number:03d}/{path.stem}", video, path, fixation if fixation.is_file() else None,
                                      int(path.stem) - 1))
        if not entries:
            raise DatasetError(f"{root}: no annotated DHF1K video in split {split!r} (videos "
                               f"{self.SPLITS[split].start}–{self.SPLITS[split].stop - 1} with annotation/NNNN/maps/)")
        super().__init__(entries, read_fixation_image)
        self._open: dict[Path, object] = {}  # video → its FrameReader, the most recently used last

    def _read_stimulus(self, entry: _Entry) -> tuple[np.ndarray, np.ndarray]:
        """Frame `entry.frame` of the video and the frame `frame_gap` before it, decoded together."""
        reader = self._reader(entry.image)
        if entry.frame >= len(reader):
            raise DatasetError(f"{entry.density}: annotates frame {entry.frame + 1} but {entry.image} has "
                               f"{len(reader)} frames")
        try:
            previous, frame = reader.get_batch([int(frames_before(entry.frame, self.frame_gap)), entry.frame])
        except UserError as error:
            raise DatasetError(str(error)) from None
        return frame, previous

    def _reader(self, video: Path):
        """The video's open FrameReader (opening it, and closing the least recently used beyond `OPEN_VIDEOS`)."""
        from saliency.infra.media import open_frames

        reader = self._open.pop(video, None)
        if reader is None:
            try:
                reader = open_frames(video)
            except UserError as error:
                raise DatasetError(str(error)) from None
        self._open[video] = reader
        while len(self._open) > self.OPEN_VIDEOS:
            self._open.pop(next(iter(self._open)))
        return reader


READERS: dict[str, type[SaliencyReader]] = {
    "salicon": SaliconReader,
    "mit1003": Mit1003Reader,
    "cat2000": Cat2000Reader,
    "dhf1k": Dhf1kReader,
    "folder": FolderReader,
}


def detect_layout(root: str | Path) -> str:
    """The layout of a dataset directory: one of the `READERS` keys."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory")
    if (root / "ALLSTIMULI").is_dir():
        return "mit1003"
    if any((root / folder / "Stimuli").is_dir() for folder in ("trainSet", "testSet", ".")):
        return "cat2000"
    if any((root / "images" / split).is_dir() for split in SALICON_SPLITS):
        return "salicon"
    if (root / "video").is_dir() and (root / "annotation").is_dir():
        return "dhf1k"
    if (root / "images").is_dir():
        return "folder"
    raise DatasetError(f"{root}: not a saliency dataset; accepted layouts: {LAYOUTS}")


def open_dataset(root: str | Path, kind: str = "auto", split: str | None = None, frame_gap: int = 1) -> SaliencyReader:
    """Open split `split` of the dataset at `root`, detecting its layout when `kind` is "auto"; a video layout's
    samples carry the frame `frame_gap` frames before each (what a model that sees motion compares it with).

    SALICON and DHF1K have train/val/test; MIT1003 and plain folders train/val/all; CAT2000 train/val/all/test
    (see the module's docstring for how val is held out). A split the layout does not have is a
    DatasetError listing those it has. None: SALICON's and DHF1K's train, the whole annotated set ("all") of the others.
    """
    kind = detect_layout(root) if kind == "auto" else kind
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected auto or one of {sorted(READERS)}")
    options = {"frame_gap": frame_gap} if READERS[kind].VIDEO else {}
    return READERS[kind](root, **options) if split is None else READERS[kind](root, split=split, **options)


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file into (H, W, 3) uint8 RGB (grayscale expanded, alpha dropped)."""
    return _decode(path, "RGB")


def read_gray(path: Path) -> np.ndarray:
    """Decode an image file into (H, W) uint8 grayscale."""
    return _decode(path, "L")


def read_fixation_image(path: Path, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    """(N, 2) int64 (row, col) of the set pixels of a binary fixation image (MIT1003 `_fixPts`, PNGs)."""
    points = read_gray(path)
    _check_same_size(points.shape, shape, path, image_path)
    # JPEG-compressed binary maps are near 0/255 with noise: threshold at mid-grey. A 0/1 PNG has max 1.
    threshold = 127 if points.max() > 1 else 0
    return np.argwhere(points > threshold).astype(np.int64)


def read_cat2000_fixations(path: Path, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    """(N, 2) int64 (row, col) of the non-zero entries of a CAT2000 `fixLocs` H×W matrix."""
    mat = load_mat(path)
    if "fixLocs" not in mat:
        found = sorted(key for key in mat if not key.startswith("__"))
        raise DatasetError(f"{path}: no 'fixLocs' variable (found {found})")
    locs = np.asarray(mat["fixLocs"])
    if locs.dtype.kind not in "biuf" or locs.ndim != 2:
        raise DatasetError(f"{path}: 'fixLocs' is not a 2-D numeric matrix")
    _check_same_size(locs.shape, shape, path, image_path)
    return np.argwhere(locs > 0).astype(np.int64)


def read_salicon_fixations(path: Path, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    """(N, 2) int64 (row, col) of all observers' fixations in a SALICON .mat, in the image's pixel grid.

    Points are stored 1-based `[x, y]` in a `resolution` `[H W]` frame; they are rescaled to the
    image size and those falling outside it are dropped.
    """
    mat = load_mat(path)
    try:
        resolution = np.asarray(mat["resolution"], dtype=np.float64).ravel() if "resolution" in mat else shape
        res_h, res_w = resolution
        if res_h <= 0 or res_w <= 0:
            raise ValueError(f"'resolution' is {res_h}x{res_w}")
        points = [_xy_points(record["fixations"]) for record in _gaze_records(mat["gaze"])]
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise DatasetError(f"{path}: not a SALICON fixation file ({type(err).__name__}: {err})") from err
    xy = np.concatenate(points) if points else np.zeros((0, 2))
    # Pixel x (1-based) covers [x - 0.5, x + 0.5) of the resolution frame: map its centre.
    rows = np.floor((xy[:, 1] - 0.5) * shape[0] / res_h)
    cols = np.floor((xy[:, 0] - 0.5) * shape[1] / res_w)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return np.stack([rows[inside], cols[inside]], axis=1).astype(np.int64)


def _gaze_records(gaze: np.ndarray) -> list[np.void]:
    """The observer records of a `gaze` struct array (also when saved as a cell array of structs)."""
    if gaze.dtype.names:
        return list(gaze.ravel())
    return [record for cell in gaze.ravel() for record in np.asarray(cell).ravel()]


def _xy_points(value: np.ndarray) -> np.ndarray:
    """One observer's `fixations` field as (N, 2) float64 `[x, y]`; empty fields give (0, 2)."""
    points = np.asarray(value, dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2))
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"'fixations' has shape {points.shape}, expected N×2")
    return points


def _decode(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.array(img.convert(mode))  # a writable copy
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise DatasetError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err


def _check_same_size(found: tuple[int, ...], shape: tuple[int, int], path: Path, image_path: Path) -> None:
    if tuple(found[:2]) != tuple(shape):
        raise DatasetError(
            f"{path} is {found[0]}x{found[1]} (HxW) but its image {image_path} is {shape[0]}x{shape[1]}"
        )


def _list_images(directory: Path) -> list[tuple[str, Path]]:
    """(stem, path) of the image files directly in `directory`, sorted by stem."""
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such directory")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise DatasetError(f"{path}: same name as {found[path.stem]}; keep one image per name")
        found[path.stem] = path
    return sorted(found.items())


def _check_split(root: Path, layout: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise DatasetError(f"{root}: a {layout} dataset has no split {split!r}; its splits: {', '.join(splits)}")


def _held_out_split(
    images: list[tuple[str, Path]], split: str, val_share: float, where: Path
) -> list[tuple[str, Path]]:
    """The images of split train, val or all: val holds `round(val_share * n)` (at least one, never all)
    of each category's n images (the part of the name before its last "/"), those whose seeded hash
    sorts first; train holds the rest."""
    if split == "all":
        return images
    groups: dict[str, list[str]] = {}
    for name, _ in images:
        groups.setdefault(name.rpartition("/")[0], []).append(name)
    held_out: set[str] = set()
    for names in groups.values():
        count = min(len(names) - 1, max(1, round(val_share * len(names))))
        held_out.update(sorted(names, key=_split_rank)[:count])
    chosen = [(name, path) for name, path in images if (name in held_out) == (split == "val")]
    if not chosen:
        raise DatasetError(f"{where}: split {split!r} is empty ({len(images)} image(s) in all; use split 'all')")
    return chosen


def _split_rank(name: str) -> bytes:
    """A seeded pseudo-random rank of a sample name, the same on every platform and library version."""
    return hashlib.sha256(f"{SPLIT_SEED}/{name}".encode()).digest()


def _require_images(images: list[tuple[str, Path]], where: Path) -> list[tuple[str, Path]]:
    if not images:
        raise DatasetError(f"{where}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _pair(
    images: list[tuple[str, Path]],
    map_candidates: Callable[[str], list[Path]] | None,
    fixation_candidates: Callable[[str], list[Path]] | None,
    require: Collection[str],
) -> list[_Entry]:
    """Match each image with its map and fixation file (first existing candidate; None = split has none).

    A partner named in `require` must exist for every image, otherwise DatasetError names the first
    missing file; a partner not required is None where missing.
    """
    unknown = set(require) - set(_PARTNERS)
    if unknown:
        raise ValueError(f"require: unknown partners {sorted(unknown)}; expected a subset of {_PARTNERS}")
    found: dict[str, list[Path | None]] = {}
    for kind, candidates in zip(_PARTNERS, (map_candidates, fixation_candidates)):
        paths: list[Path | None] = []
        missing: list[tuple[Path, Path]] = []
        for name, image in images:
            options = candidates(name) if candidates is not None else []
            path = next((option for option in options if option.is_file()), None)
            if options and path is None:
                missing.append((options[0], image))
            paths.append(path)
        if kind in require and missing:
            more = f" (and {len(missing) - 1} more images miss theirs)" if len(missing) > 1 else ""
            raise DatasetError(f"{missing[0][0]}: missing {kind} file for image {missing[0][1]}{more}")
        found[kind] = paths
    return [
        _Entry(name, image, density, fixations)
        for (name, image), density, fixations in zip(images, found["map"], found["fixations"])
    ]


def video_frames(path: Path, every: int, max_frames: int | None,
                 previous: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(frame index, uint8 RGB frame, an earlier frame or None) for every `every`-th frame, read as `vidcap` reads
    videos (decord, or ffmpeg where decord fails or decodes wrongly); the earlier frame, `previous` frames back
    (`frames_before`: a motion model's input), is decoded only when `previous` > 0. A file that is no readable video
    is a UserError here, at the call; a video damaged part-way yields the frames before the damage, then a UserError
    saying where it stopped."""
    from saliency.infra.media import open_frames

    reader = open_frames(path)
    indices = list(range(0, len(reader), every))[:max_frames]
    before = dict(zip(indices, frames_before(indices, previous).tolist())) if previous else {}
    return _decoded_in_order(reader, indices, before)


def _decoded_in_order(reader, indices: list[int], before: dict[int, int]
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """`video_frames`' frames, decoded in chunks, each with its earlier frame (`before`) when there is one."""
    wanted = sorted(set(indices) | set(before.values()))
    decoded: dict[int, np.ndarray] = {}
    given = 0
    for chunk, frames in reader.batches(wanted, 16):
        decoded.update(zip(chunk, frames))
        while given < len(indices) and indices[given] in decoded:  # sorted: a frame's earlier one came first
            index = indices[given]
            yield index, decoded[index], decoded[before[index]] if before else None
            given += 1
            if given < len(indices):  # keep what the frames still to come need: the next one's earlier frame on
                oldest = before.get(indices[given], indices[given])
                decoded = {i: frame for i, frame in decoded.items() if i >= oldest}
