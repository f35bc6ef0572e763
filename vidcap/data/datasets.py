"""Caption dataset readers for the official layouts: MSR-VTT, MSVD, and a plain folder of videos.

Readers only parse annotations and look up file names (no video is decoded), so they are cheap.
Every reader is a sequence of `VideoCaptionItem`s for one split, with the videos it could not use
in `missing` (reported, never fatal) and a one-line `report()`; `open_caption_dataset` picks the
reader from the layout it finds.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saliency.infra.errors import DatasetError
from saliency.infra.media import VIDEO_SUFFIXES

SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
CAPTION_LAYOUTS = (
    "MSR-VTT (train_val_videodatainfo.json + test_videodatainfo.json, or videodatainfo.json; "
    "videos in TrainValVideo/, TestVideo/, videos/ or videos/all/), "
    "MSVD (video_corpus.csv or AllVideoDescriptions.txt, plus youtube_mapping.txt; videos in YouTubeClips/), "
    "or a plain folder of videos with captions.json"
)

MSRVTT_FILES = {"train": "train_val_videodatainfo.json", "val": "train_val_videodatainfo.json",
                "test": "test_videodatainfo.json"}
MSRVTT_ALL_SPLITS_FILE = "videodatainfo.json"  # the 2016 release: one file for every split
MSVD_CSV, MSVD_TXT, MSVD_MAPPING = "video_corpus.csv", "AllVideoDescriptions.txt", "youtube_mapping.txt"
MSVD_CSV_COLUMNS = ("VideoID", "Start", "End", "WorkerID", "Source", "AnnotationTime", "Language", "Description")
MSVD_SPLIT_ENDS = ((1200, "train"), (1300, "val"))  # vid1–1200 train, 1201–1300 val, 1301– test


@dataclass
class VideoCaptionItem:
    """One video with its reference captions; `split` is train, val or test."""

    video_id: str
    path: Path
    captions: list[str]
    split: str


def normalize_split(split: str) -> str:
    """The canonical split name: train, val (also `validate`, `validation`) or test."""
    canonical = _SPLIT_NAMES.get(str(split).strip().lower())
    if canonical is None:
        raise DatasetError(f"unknown split {split!r}; expected train, val (or validate) or test")
    return canonical


@dataclass
class _Annotation:
    """A video as the annotation files list it, before its file is looked up."""

    video_id: str
    split: str
    captions: list[str]
    file_names: tuple[str, ...]  # stems or relative paths to try, in order


class CaptionDataset(Sequence[VideoCaptionItem]):
    """A split of a captioned video dataset: the usable `items` and the `missing` (video_id, reason)."""

    layout = "captions"

    def __init__(self, root: Path, split: str | None, annotations: Iterable[_Annotation],
                 find_video: Callable[[_Annotation], Path | None], searched: str) -> None:
        self.root = root
        self.split = split
        self.items: list[VideoCaptionItem] = []
        self.missing: list[tuple[str, str]] = []
        self.dropped_captions = 0  # empty or whitespace-only captions of this split
        self._searched = searched
        for annotation in annotations:
            if split is not None and annotation.split != split:
                continue
            captions = [caption.strip() for caption in annotation.captions]
            kept = [caption for caption in captions if caption]
            self.dropped_captions += len(captions) - len(kept)
            if not kept:
                self.missing.append((annotation.video_id, "no captions" if not captions else "only empty captions"))
                continue
            path = find_video(annotation)
            if path is None:
                self.missing.append((annotation.video_id, "no video file"))
                continue
            self.items.append(VideoCaptionItem(annotation.video_id, path, kept, annotation.split))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> VideoCaptionItem:  # type: ignore[override]
        return self.items[index]

    def references(self) -> dict[str, list[str]]:
        """{video_id: captions} of the usable videos, the `gts` that `vidcap.evaluation.caption_metrics.score` takes."""
        return {item.video_id: list(item.captions) for item in self.items}

    def report(self) -> str:
        """One line: how many videos are usable, which are missing and why, how many captions were dropped."""
        split = "all splits" if self.split is None else self.split
        line = f"{self.layout} {split} at {self.root}: {len(self.items)} videos, {len(self.missing)} missing"
        if self.missing:
            examples = ", ".join(f"{video_id}: {reason}" for video_id, reason in self.missing[:3])
            line += f" (e.g. {examples}{', ...' if len(self.missing) > 3 else ''})"
        if self.dropped_captions:
            line += f", {self.dropped_captions} empty captions dropped"
        if any(reason == "no video file" for _, reason in self.missing):
            line += f"; videos looked for in {self._searched}"
        if not self.items and not self.missing:
            line += " (the annotations list no video of this split)"
        return line


class _VideoFinder:
    """Finds `<name>.{mp4,avi,webm,mkv}` in a list of folders (earlier folders first), listing each once."""

    def __init__(self, root: Path, folders: Sequence[str]) -> None:
        self.root = root
        self.folders = list(folders)
        self._index: dict[str, Path] | None = None

    def describe(self) -> str:
        names = [f"{folder}/" for folder in self.folders if folder != "."]
        return ", ".join(names) + (" and the root" if "." in self.folders else "")

    def find(self, names: Iterable[str]) -> Path | None:
        if self._index is None:
            self._index = {}
            for folder in self.folders:
                directory = self.root / folder
                if not directory.is_dir():
                    continue
                videos = [path for path in directory.iterdir() if path.suffix.lower() in VIDEO_SUFFIXES]
                for path in sorted(videos, key=lambda p: (VIDEO_SUFFIXES.index(p.suffix.lower()), p.name)):
                    if path.is_file():
                        self._index.setdefault(path.stem, path)
        return next((self._index[name] for name in names if name in self._index), None)


class MsrVttDataset(CaptionDataset):
    """MSR-VTT: `train_val_videodatainfo.json` / `test_videodatainfo.json` (or the 2016 `videodatainfo.json`).

    Each file has `videos` (`video_id`, `split` in train/validate/test) and `sentences` (`video_id`,
    `caption`); videos are `<video_id>.mp4` (or .avi/.webm/.mkv) in TrainValVideo/, TestVideo/,
    videos/, videos/all/ or the root.
    """

    layout = "MSR-VTT"
    VIDEO_FOLDERS = ("TrainValVideo", "TestVideo", "videos", "videos/all", ".")

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = _require_dir(root)
        split = normalize_split(split)
        per_split = root / MSRVTT_FILES[split]
        other = [root / name for name in set(MSRVTT_FILES.values()) if name != MSRVTT_FILES[split]]
        if per_split.is_file():
            path = per_split
        elif (root / MSRVTT_ALL_SPLITS_FILE).is_file():
            path = root / MSRVTT_ALL_SPLITS_FILE
        elif any(path.is_file() for path in other):
            raise DatasetError(f"{per_split}: no such file (MSR-VTT lists its {split} split there)")
        else:
            raise DatasetError(f"{root}: no MSR-VTT annotations ({', '.join(sorted(set(MSRVTT_FILES.values())))} "
                               f"or {MSRVTT_ALL_SPLITS_FILE})")
        finder = _VideoFinder(root, self.VIDEO_FOLDERS)
        super().__init__(root, split, read_msrvtt_annotations(path), lambda a: finder.find(a.file_names),
                         finder.describe())


def read_msrvtt_annotations(path: Path) -> list[_Annotation]:
    """The videos of an MSR-VTT `*videodatainfo.json` in file order, each with its captions in file order."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list) \
            or not isinstance(data.get("sentences"), list):
        raise DatasetError(f"{path}: not an MSR-VTT annotation file (expected an object with "
                           "'videos' and 'sentences' lists)")
    annotations: dict[str, _Annotation] = {}
    for index, video in enumerate(data["videos"]):
        video_id = _field(video, "video_id", str, path, f"videos[{index}]")
        split = _field(video, "split", str, path, f"videos[{index}]")
        if split.strip().lower() not in _SPLIT_NAMES:
            raise DatasetError(f"{path}: videos[{index}] ({video_id}) has unknown split {split!r}; "
                               "expected train, validate or test")
        annotations.setdefault(video_id, _Annotation(video_id, normalize_split(split), [], (video_id,)))
    for index, sentence in enumerate(data["sentences"]):
        video_id = _field(sentence, "video_id", str, path, f"sentences[{index}]")
        caption = _field(sentence, "caption", str, path, f"sentences[{index}]")
        if video_id in annotations:  # sentences of unlisted videos have no split: ignored
            annotations[video_id].captions.append(caption)
    return list(annotations.values())


class MsvdDataset(CaptionDataset):
    """MSVD: `video_corpus.csv` (English rows) or `AllVideoDescriptions.txt`, with `youtube_mapping.txt`.

    Clips are `VideoID_Start_End`; the mapping names them `vidN`, and the standard split is vid1–1200
    train, 1201–1300 val, 1301–1970 test. Videos are `<clip>.avi` (or `vidN.*`; .mp4/.webm/.mkv too)
    in YouTubeClips/, videos/ or the root. Annotated clips that the mapping does not list are ignored.
    """

    layout = "MSVD"
    VIDEO_FOLDERS = ("YouTubeClips", "videos", ".")

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = _require_dir(root)
        split = normalize_split(split)
        if (root / MSVD_CSV).is_file():
            captions = read_msvd_csv(root / MSVD_CSV)
        elif (root / MSVD_TXT).is_file():
            captions = read_msvd_txt(root / MSVD_TXT)
        else:
            raise DatasetError(f"{root}: no MSVD annotations ({MSVD_CSV} or {MSVD_TXT})")
        mapping = read_youtube_mapping(root / MSVD_MAPPING)
        annotations = [
            _Annotation(clip, msvd_split(number), captions.get(clip, []), (clip, f"vid{number}"))
            for clip, number in sorted(mapping.items(), key=lambda entry: entry[1])
        ]
        finder = _VideoFinder(root, self.VIDEO_FOLDERS)
        super().__init__(root, split, annotations, lambda a: finder.find(a.file_names), finder.describe())


def msvd_split(number: int) -> str:
    """The standard MSVD split of clip `vid<number>`."""
    return next((split for end, split in MSVD_SPLIT_ENDS if number <= end), "test")


def read_msvd_csv(path: Path) -> dict[str, list[str]]:
    """{clip id `VideoID_Start_End`: English descriptions} from `video_corpus.csv`, in file order."""
    captions: dict[str, list[str]] = {}
    text = _read_text(path, encoding="utf-8-sig")  # the file may start with a byte-order mark
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="_extra")
    try:
        header = reader.fieldnames or []
        absent = [column for column in ("VideoID", "Start", "End", "Language", "Description") if column not in header]
        if absent:
            raise DatasetError(f"{path}: not an MSVD corpus file; header lacks {absent} "
                               f"(expected {','.join(MSVD_CSV_COLUMNS)})")
        for row in reader:
            if not any(value for value in row.values() if isinstance(value, str)):
                continue
            if any(row.get(column) is None for column in ("VideoID", "Start", "End", "Language")):
                found = sum(value is not None for key, value in row.items() if key != "_extra")
                raise DatasetError(f"{path}, line {reader.line_num}: expected {len(header)} fields, got {found}")
            if row["Language"].strip().lower() != "english":
                continue
            # An unquoted comma in a description splits it into extra fields: join them back.
            description = ",".join([row["Description"] or "", *row.get("_extra", [])])
            clip = f"{row['VideoID'].strip()}_{row['Start'].strip()}_{row['End'].strip()}"
            captions.setdefault(clip, []).append(description)
    except csv.Error as err:
        raise DatasetError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from err
    return captions


def read_msvd_txt(path: Path) -> dict[str, list[str]]:
    """{clip id: captions} from `AllVideoDescriptions.txt` (`<clip> <caption>` lines; `#` lines skipped)."""
    captions: dict[str, list[str]] = {}
    for line in _read_text(path).split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        clip, *caption = line.split(None, 1)
        captions.setdefault(clip, []).append(caption[0] if caption else "")
    return captions


def read_youtube_mapping(path: Path) -> dict[str, int]:
    """{clip id: N} from `youtube_mapping.txt` (`<clip> vidN` lines)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (MSVD needs it to split the clips into train/val/test)")
    mapping: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"(\S+)\s+vid(\d+)", line.strip())
        if match is None or int(match[2]) < 1:
            raise DatasetError(f"{path}, line {number}: expected '<clip_id> vidN' (N >= 1), got {line.strip()!r}")
        mapping[match[1]] = int(match[2])
    if not mapping:
        raise DatasetError(f"{path}: empty (expected '<clip_id> vidN' lines)")
    return mapping


class FolderCaptionDataset(CaptionDataset):
    """A plain folder of videos with a captions JSON, in one of two forms:

    `{"<video file or stem>": ["caption", ...], ...}` (every video in train), or
    `[{"video": "<file or stem>", "captions": [...], "split": "train|val|test"}, ...]` ("split"
    optional, train when absent). Names are relative to the root; a stem is looked up as
    `<stem>.{mp4,avi,webm,mkv}` in the root or videos/. `split=None` keeps every split.
    """

    layout = "folder"
    VIDEO_FOLDERS = (".", "videos")

    def __init__(self, root: str | Path, captions: str = "captions.json", split: str | None = None) -> None:
        root = _require_dir(root)
        split = None if split is None else normalize_split(split)
        path = root / captions
        if not path.is_file():
            raise DatasetError(f"{path}: no such file (a plain video folder needs its captions JSON)")
        finder = _VideoFinder(root, self.VIDEO_FOLDERS)

        def find_video(annotation: _Annotation) -> Path | None:
            name = annotation.file_names[0]
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                return next((root / folder / name for folder in self.VIDEO_FOLDERS
                             if (root / folder / name).is_file()), None)
            return finder.find([name])

        super().__init__(root, split, read_folder_captions(path), find_video, finder.describe())


def read_folder_captions(path: Path) -> list[_Annotation]:
    """The videos of a folder's captions JSON (either form `FolderCaptionDataset` accepts), in file order."""
    data = _load_json(path)
    if isinstance(data, dict):
        entries = [(f"[{json.dumps(name)}]", {"video": name, "captions": value}) for name, value in data.items()]
    elif isinstance(data, list):
        entries = [(f"[{index}]", entry) for index, entry in enumerate(data)]
    else:
        raise DatasetError(f"{path}: expected an object {{video: [captions]}} or a list of "
                           '{"video", "captions", "split"} objects')
    annotations: dict[str, _Annotation] = {}
    for where, entry in entries:
        name = _field(entry, "video", str, path, where)
        captions = _field(entry, "captions", (list, str), path, where)
        captions = [captions] if isinstance(captions, str) else captions
        if not all(isinstance(caption, str) for caption in captions):
            raise DatasetError(f"{path}: {where} 'captions' must be a list of strings")
        split = entry.get("split", "train")
        if not isinstance(split, str) or split.strip().lower() not in _SPLIT_NAMES:
            raise DatasetError(f"{path}: {where} has unknown split {split!r}; expected train, val or test")
        suffix = Path(name).suffix
        video_id = name[: -len(suffix)] if suffix.lower() in VIDEO_SUFFIXES else name
        if video_id in annotations:
            raise DatasetError(f"{path}: {where} video {name!r} is listed twice")
        annotations[video_id] = _Annotation(video_id, normalize_split(split), captions, (name,))
    return list(annotations.values())


CAPTION_READERS: dict[str, type[CaptionDataset]] = {
    "msrvtt": MsrVttDataset,
    "msvd": MsvdDataset,
    "folder": FolderCaptionDataset,
}


def detect_caption_layout(root: str | Path) -> str:
    """The layout of a captioned video dataset directory: one of the `CAPTION_READERS` keys."""
    root = _require_dir(root)
    if any(path.is_file() for path in root.glob("*videodatainfo.json")):
        return "msrvtt"
    if (root / MSVD_CSV).is_file() or (root / MSVD_TXT).is_file():
        return "msvd"
    if (root / "captions.json").is_file():
        return "folder"
    raise DatasetError(f"{root}: not a captioned video dataset; accepted layouts: {CAPTION_LAYOUTS}")


def open_caption_dataset(root: str | Path, kind: str = "auto", split: str = "train") -> CaptionDataset:
    """Open the `split` (train, val/validate or test) of the dataset at `root`, detecting its layout
    when `kind` is "auto"."""
    kind = detect_caption_layout(root) if kind == "auto" else kind
    if kind not in CAPTION_READERS:
        raise DatasetError(f"unknown caption dataset kind {kind!r}; expected auto or one of {sorted(CAPTION_READERS)}")
    if kind == "folder":
        return FolderCaptionDataset(root, split=split)
    return CAPTION_READERS[kind](root, split=split)


def _require_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory")
    return root


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text with universal newlines (so only "\\n" ends a line; `str.splitlines` would also
    split at U+2028 or U+0085 inside a caption)."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from err


def _load_json(path: Path) -> Any:
    text = _read_text(path, encoding="utf-8-sig")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err


def _field(entry: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """`entry[key]`, which must exist and be of `kind`; DatasetError naming the file and entry otherwise."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: {where} is not an object")
    if key not in entry:
        raise DatasetError(f"{path}: {where} has no {key!r}")
    value = entry[key]
    if not isinstance(value, kind):
        raise DatasetError(f"{path}: {where} {key!r} is {type(value).__name__}, not "
                           f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
    return value
