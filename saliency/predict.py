"""Saliency maps for images, folders and videos: a grayscale PNG map and a colour overlay per image; per video an
overlay video (and, when asked, the maps of its frames), optionally smoothed over time."""
from __future__ import annotations

import io
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from tqdm import tqdm

from saliency.infra.errors import OutputError, UserError
from saliency.data.readers import video_frames
from saliency.evaluate import predict_maps
from saliency.models.components import motion_gap
from saliency.infra.media import IMAGE_SUFFIXES, OUTPUT_MARK, VIDEO_SUFFIXES, Mp4Writer, check_file, probe
from saliency.infra.outputs import check_outputs, named_inputs
from saliency.infra.rundir import atomic_write_bytes



def planned_outputs(path: Path, stem: Path) -> list[Path]:
    """The files `predict_paths` writes for input `path` under `stem` (the input's relative name in --out)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return [stem.parent / f"{stem.name}_saliency.mp4"]
    return [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}_overlay.jpg"]


JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.float32)  # (256, 3) RGB lookup
SHOWN_FROM, SHOWN_FULL = 0.25, 0.75  # a map value below SHOWN_FROM is not drawn; from SHOWN_FULL on, at full `alpha`


def colour_overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """A [0,1] saliency map, coloured with 'jet', blended over a uint8 RGB image only where it is high: transparent
    below SHOWN_FROM, rising to `alpha` at SHOWN_FULL, so the footage stays visible around what draws the eye."""
    level = np.clip(saliency, 0, 1)
    coloured = JET[np.round(level * 255).astype(np.uint8)]  # (H, W, 3)
    weight = alpha * np.clip((level - SHOWN_FROM) / (SHOWN_FULL - SHOWN_FROM), 0, 1)[..., None]  # (H, W, 1)
    return (image * (1 - weight) + coloured * weight).round().clip(0, 255).astype(np.uint8)


def to_unit_range(probability: np.ndarray) -> np.ndarray:
    """Min-max a probability map to [0,1] for display."""
    low, high = probability.min(), probability.max()
    return (probability - low) / (high - low) if high > low else np.zeros_like(probability)


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB `[H,W,3]` upright, as viewers show it (the EXIF orientation of a phone photo applied); grayscale,
    palette and RGBA images are converted."""
    check_file(path)
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise UserError(f"{path}: damaged or oversized image ({error})") from None


def encoded(pixels: np.ndarray, **options) -> bytes:
    """An image file's bytes (`options` as `PIL.Image.save` takes them: format, quality)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, **options)
    return buffer.getvalue()


def write_outputs(image: np.ndarray, probability: np.ndarray, stem: Path) -> None:
    """`<stem>.png` (8-bit map) and `<stem>_overlay.jpg`, marked as the tools' own, each written atomically (not
    fsynced one by one: a video gives two files per frame, and a rerun remakes any a power cut loses)."""
    unit = to_unit_range(probability)
    marked = PngImagePlugin.PngInfo()
    marked.add_text("Comment", OUTPUT_MARK)
    atomic_write_bytes(stem.parent / f"{stem.name}.png",
                       encoded((unit * 255).round().astype(np.uint8), format="PNG", pnginfo=marked), durable=False)
    atomic_write_bytes(stem.parent / f"{stem.name}_overlay.jpg",
                       encoded(colour_overlay(image, unit), format="JPEG", quality=90, comment=OUTPUT_MARK),
                       durable=False)


@dataclass
class VideoSaliency:
    """What `saliency predict` wrote for one video: the overlay video, its frame count, and the flicker of the maps
    (mean absolute frame-to-frame change of the [0,1] map) as predicted and, when smoothed, as written."""

    path: Path
    overlay: Path
    frames: int
    flicker: float
    flicker_smoothed: float | None = None


class TemporalSmoother:
    """Exponential moving average over a video's maps: `s_t = a·s_(t-1) + (1-a)·p_t` (a = 0: the maps as they are)."""

    def __init__(self, a: float):
        self.a, self.state = a, None

    def __call__(self, probability: np.ndarray) -> np.ndarray:
        self.state = probability if self.state is None else self.a * self.state + (1 - self.a) * probability
        return self.state


class Flicker:
    """Mean absolute change of a [0,1] map from one frame to the next, averaged over the frames seen."""

    def __init__(self):
        self.previous, self.total, self.count = None, 0.0, 0

    def add(self, unit: np.ndarray) -> None:
        if self.previous is not None:
            self.total += float(np.abs(unit - self.previous).mean())
            self.count += 1
        self.previous = unit

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0


def frame_rate(path: Path) -> float:
    """A readable video's average frame rate; 25 where its container does not tell (every frame is written still)."""
    try:
        return probe(path).fps or 25.0
    except UserError:
        return 25.0


def predict_video(model: torch.nn.Module, path: Path, stem: Path, size: tuple[int, int], every: int = 1,
                  max_frames: int | None = None, maps: bool = False, smooth: float = 0.0) -> VideoSaliency:
    """`<stem>_saliency.mp4`: every `every`-th frame with its map blended in, H.264 at the video's frame rate
    (divided by `every`), and with `maps` each frame's map and overlay as images in `<stem>/`; the maps
    smoothed over time when `smooth` > 0. A video damaged part-way keeps what came before the damage."""
    out = stem.parent
    target, partial = out / f"{stem.name}_saliency.mp4", out / f".{stem.name}_saliency.partial.mp4"
    smoother, raw, shown = TemporalSmoother(smooth), Flicker(), Flicker()
    written = 0
    frames = video_frames(path, every, max_frames, motion_gap(model))  # a file that is no video: its own one line
    try:
        with ExitStack() as stack:
            for index, frame, before in frames:
                if not written:  # the file is a readable video: its frame rate can be asked for
                    out.mkdir(parents=True, exist_ok=True)
                    writer = stack.enter_context(Mp4Writer(partial, frame_rate(path) / every, mark=True))
                probability = predict_maps(model, [frame], size, [before])[0]
                raw.add(to_unit_range(probability))
                smoothed = smoother(probability)
                unit = to_unit_range(smoothed)
                shown.add(unit)
                overlay = colour_overlay(frame, unit)[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]  # H.264: even sides
                writer.write(overlay[None])
                if maps:
                    write_outputs(frame, smoothed, stem / f"frame_{index:06d}")
                written += 1
    except OSError as error:
        raise OutputError(f"{target}: could not be written ({error.strerror or error})") from None
    except UserError as error:  # a video damaged part-way
        raise UserError(f"{error}; the maps of the {written} frames before it are written") from None
    finally:
        if written and partial.is_file():
            os.replace(partial, target)  # whole once ffmpeg has closed it: never half a video under the real name
    return VideoSaliency(path, target, written, raw.value, shown.value if smooth else None)


def predict_paths(model: torch.nn.Module, inputs: list[str], out: str | Path, size: tuple[int, int],
                  every: int = 1, max_frames: int | None = None, progress: bool = True, maps: bool = False,
                  smooth: float = 0.0, videos: list[VideoSaliency] | None = None) -> list[tuple[str, str]]:
    """Write maps for every input (videos: `predict_video`, each appended to `videos`) under its name in `out`
    (`named_inputs`: a folder's files by their path inside it); returns (input, one-line reason) for each input skipped. An output that would overwrite
    an input, or that two inputs would both write, is refused before any work."""
    stems = {path: Path(out) / name for path, name in named_inputs(inputs, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))}
    check_outputs({path: planned_outputs(path, stem) for path, stem in stems.items() if not path.is_dir()})
    skipped: list[tuple[str, str]] = []
    model.eval()
    for path, stem in tqdm(stems.items(), desc="predicting", disable=not progress):
        try:
            if path.is_dir():
                raise UserError(f"{path}: folder holds no images or videos")
            if path.suffix.lower() in VIDEO_SUFFIXES:
                result = predict_video(model, path, stem, size, every, max_frames, maps, smooth)
                if videos is not None:
                    videos.append(result)
            else:
                image = read_image(path)
                write_outputs(image, predict_maps(model, [image], size)[0], stem)
        except OutputError:
            raise  # the output folder failed (disk full, read-only): every later map would fail too
        except UserError as error:
            skipped.append((str(path), str(error)))
    return skipped
