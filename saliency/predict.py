"""Saliency maps for images, folders and videos: a grayscale PNG map and a colour overlay per image or frame."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from saliency.infra.errors import OutputError, UserError
from saliency.evaluate import predict_maps
from saliency.infra.media import DECORD_ERRORS, check_file, decord_reason, open_reader
from saliency.infra.rundir import atomic_write_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to the images and videos inside them (sorted); a folder
    without any stays as it is, to be reported and skipped like a bad file."""
    paths: list[Path] = []
    for text in inputs:
        path = Path(text)
        found = []
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        paths.extend(found or [path])
    return paths


def colour_overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0,1] saliency map, coloured with 'jet', over a uint8 RGB image."""
    coloured = colormaps["jet"](saliency)[..., :3] * 255  # (H, W, 3)
    return (image * (1 - alpha) + coloured * alpha).clip(0, 255).astype(np.uint8)


def to_unit_range(probability: np.ndarray) -> np.ndarray:
    """Min-max a probability map to [0,1] for display."""
    low, high = probability.min(), probability.max()
    return (probability - low) / (high - low) if high > low else np.zeros_like(probability)


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB `[H,W,3]`; grayscale, palette and RGBA images are converted."""
    check_file(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise UserError(f"{path}: damaged or oversized image ({error})") from None


def video_frames(path: Path, every: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, uint8 RGB frame) for every `every`-th frame, decoded with decord; a video damaged
    part-way yields the frames before the damage, then a UserError saying where it stopped."""
    reader = open_reader(path)
    indices = list(range(0, len(reader), every))[:max_frames]
    if not indices:
        raise UserError(f"{path}: video has no frames")
    for start in range(0, len(indices), 16):
        chunk = indices[start:start + 16]
        try:
            frames = reader.get_batch(chunk).asnumpy()
        except DECORD_ERRORS as error:
            raise UserError(f"{path}: cannot decode frame {chunk[0]} or later ({decord_reason(error)}); "
                            f"the maps of the {start} frames before it are written") from None
        yield from zip(chunk, frames)


def encoded(pixels: np.ndarray, **options) -> bytes:
    """An image file's bytes (`options` as `PIL.Image.save` takes them: format, quality)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, **options)
    return buffer.getvalue()


def write_outputs(image: np.ndarray, probability: np.ndarray, stem: Path) -> None:
    """`<stem>.png` (8-bit map) and `<stem>_overlay.jpg`, each written atomically (not fsynced one by one: a
    video gives two files per frame, and a rerun remakes any a power cut loses)."""
    unit = to_unit_range(probability)
    atomic_write_bytes(stem.with_suffix(".png"), encoded((unit * 255).round().astype(np.uint8), format="PNG"),
                       durable=False)
    atomic_write_bytes(stem.parent / f"{stem.name}_overlay.jpg",
                       encoded(colour_overlay(image, unit), format="JPEG", quality=90), durable=False)


def predict_paths(model: torch.nn.Module, inputs: list[str], out: str | Path, size: tuple[int, int],
                  every: int = 1, max_frames: int | None = None, progress: bool = True) -> list[tuple[str, str]]:
    """Write maps for every input; returns (input, one-line reason) for each input skipped."""
    out = Path(out)
    skipped: list[tuple[str, str]] = []
    model.eval()
    for path in tqdm(expand_inputs(inputs), desc="predicting", disable=not progress):
        try:
            if path.is_dir():
                raise UserError(f"{path}: folder holds no images or videos")
            if path.suffix.lower() in VIDEO_SUFFIXES:
                for index, frame in video_frames(path, every, max_frames):
                    write_outputs(frame, predict_maps(model, [frame], size)[0], out / path.stem / f"frame_{index:06d}")
            else:
                image = read_image(path)
                write_outputs(image, predict_maps(model, [image], size)[0], out / path.stem)
        except OutputError:
            raise  # the output folder failed (disk full, read-only): every later map would fail too
        except UserError as error:
            skipped.append((str(path), str(error)))
    return skipped
