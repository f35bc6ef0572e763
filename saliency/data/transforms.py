"""Geometric transforms applied identically to a sample's image, previous frame, density map and fixation points."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from saliency.data.readers import SaliencySample


def resize_sample(sample: SaliencySample, size: tuple[int, int]) -> SaliencySample:
    """Resize to `size` (H, W): image bilinear with antialiasing, density bilinear with its peak kept,
    fixation (row, col) moved to the pixel containing their centre: `row' = floor((row + 0.5) * H' / H)`.
    """
    height, width = sample.image.shape[:2]
    new_h, new_w = size
    if (height, width) == (new_h, new_w):
        return sample
    image = _resize_rgb(sample.image, new_h, new_w)
    previous = None if sample.previous is None else _resize_rgb(sample.previous, new_h, new_w)
    density = sample.density
    if density is not None:
        source = np.ascontiguousarray(density, dtype=np.float32)
        density = np.array(Image.fromarray(source).resize((new_w, new_h), Image.Resampling.BILINEAR))
        # Downscaling spreads a peak over its neighbours; rescale so the map stays "as stored" in [0, 1].
        peak = density.max()
        density = density * (source.max() / peak) if peak > 0 else density
    fixations = sample.fixations
    if fixations is not None:
        rows = np.floor((fixations[:, 0] + 0.5) * new_h / height).clip(0, new_h - 1)
        cols = np.floor((fixations[:, 1] + 0.5) * new_w / width).clip(0, new_w - 1)
        fixations = np.stack([rows, cols], axis=1).astype(np.int64)
    return replace(sample, image=image, density=density, fixations=fixations, previous=previous)


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 → (height, width, 3), bilinear with antialiasing."""
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def crop_sample(sample: SaliencySample, top: int, left: int, height: int, width: int) -> SaliencySample:
    """Crop the box `[top, top + height) × [left, left + width)`; fixations outside it are dropped."""
    rows, cols = slice(top, top + height), slice(left, left + width)
    density = None if sample.density is None else sample.density[rows, cols]
    fixations = sample.fixations
    if fixations is not None:
        inside = (
            (fixations[:, 0] >= top) & (fixations[:, 0] < top + height)
            & (fixations[:, 1] >= left) & (fixations[:, 1] < left + width)
        )
        fixations = fixations[inside] - np.array([top, left], dtype=np.int64)
    previous = None if sample.previous is None else sample.previous[rows, cols]
    return replace(sample, image=sample.image[rows, cols], density=density, fixations=fixations, previous=previous)


def hflip_sample(sample: SaliencySample) -> SaliencySample:
    """Mirror left-right: image and density columns reversed, fixation `col' = W - 1 - col`."""
    width = sample.image.shape[1]
    density = None if sample.density is None else np.ascontiguousarray(sample.density[:, ::-1])
    fixations = sample.fixations
    if fixations is not None:
        fixations = np.stack([fixations[:, 0], width - 1 - fixations[:, 1]], axis=1)
    image = np.ascontiguousarray(sample.image[:, ::-1])
    previous = None if sample.previous is None else np.ascontiguousarray(sample.previous[:, ::-1])
    return replace(sample, image=image, density=density, fixations=fixations, previous=previous)


@dataclass(frozen=True)
class SaliencyTransform:
    """Random resized crop, resize to `size` and random horizontal flip, keeping maps and points aligned.

    `scale_jitter` s crops a box whose sides are a fraction drawn from [1 - s, 1] of the image's (same
    aspect ratio, random position) before resizing; `hflip` is the flip probability. All randomness
    comes from the `rng` passed per call, so a seeded generator reproduces the augmentation.
    """

    size: tuple[int, int] | None = None  # (H, W); None keeps each image's size
    hflip: float = 0.0
    scale_jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be (H, W) with positive sides, got {self.size}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {self.hflip}")
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")

    def __call__(self, sample: SaliencySample, rng: np.random.Generator | None = None) -> SaliencySample:
        rng = np.random.default_rng() if rng is None else rng
        if self.scale_jitter > 0:
            height, width = sample.image.shape[:2]
            fraction = rng.uniform(1.0 - self.scale_jitter, 1.0)
            crop_h, crop_w = max(1, round(fraction * height)), max(1, round(fraction * width))
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            sample = crop_sample(sample, top, left, crop_h, crop_w)
        if self.size is not None:
            sample = resize_sample(sample, tuple(self.size))
        if self.hflip > 0 and rng.random() < self.hflip:
            sample = hflip_sample(sample)
        return sample
