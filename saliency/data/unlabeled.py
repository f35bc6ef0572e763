"""Images and video frames without ground truth: what a student sees only through its teacher.

`saliency distill --unlabeled DIR` adds such a pool to the labelled training images, so a student can be adapted
to one's own footage with no eye tracker: the teacher's output and feature statistics are its only targets there,
and the ground-truth loss skips these samples (`has_density` is False).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from saliency.data.readers import SaliencySample, read_rgb, video_frames
from saliency.infra.errors import DatasetError, UserError
from saliency.infra.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

logger = logging.getLogger(__name__)



class UnlabeledReader(Sequence[SaliencySample]):
    """Every image under `root` (recursively, sorted), and up to `frames_per_video` frames of every video,
    every `every`-th, decoded once and kept resized to `size` (H, W), with the frame `previous` frames before each
    when `previous` > 0 (for motion models). Files that cannot be read are left out and listed in `skipped` as
    (path, one-line reason); a pool left empty is an error."""

    def __init__(self, root: str | Path, size: tuple[int, int], every: int = 8, frames_per_video: int = 16,
                 previous: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: unlabeled pool folder not found")
        self.skipped: list[tuple[str, str]] = []
        self._images: list[Path] = []
        self._frames: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
        for path in files:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                self._add_image(path)
            else:
                self._add_video(path, size, every, frames_per_video, previous)
        if not len(self):
            reason = f" (all {len(self.skipped)} unreadable, first: {self.skipped[0][1]})" if self.skipped else ""
            raise UserError(f"{root}: the unlabeled pool holds no readable images or videos{reason}")

    def _add_image(self, path: Path) -> None:
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            self.skipped.append((str(path), f"{path}: not a readable image ({error})"))
            return
        self._images.append(path)

    def _add_video(self, path: Path, size: tuple[int, int], every: int, frames_per_video: int, previous: int) -> None:
        def small(frame: np.ndarray) -> np.ndarray:
            return np.asarray(Image.fromarray(frame).resize(size[::-1], Image.BILINEAR))

        try:
            for index, frame, before in video_frames(path, every, frames_per_video, previous):
                self._frames.append((f"{path.stem}_f{index:06d}", small(frame), None if before is None else small(before)))
        except UserError as error:
            self.skipped.append((str(path), str(error)))

    def __len__(self) -> int:
        return len(self._images) + len(self._frames)

    def __getitem__(self, index: int) -> SaliencySample:  # type: ignore[override]
        if index < len(self._images):
            path = self._images[index]
            try:
                return SaliencySample(path.stem, read_rgb(path), None, None)
            except DatasetError as error:
                raise UserError(f"{path}: became unreadable during training ({error})") from None
        name, frame, before = self._frames[index - len(self._images)]
        return SaliencySample(name, frame, None, None, before)


class PooledReader(Sequence[SaliencySample]):
    """The first `limit` samples of a labelled reader followed by an unlabelled pool, as one sequence."""

    def __init__(self, labelled: Sequence[SaliencySample], limit: int | None, pool: Sequence[SaliencySample]):
        self.labelled, self.pool = labelled, pool
        self.n_labelled = min(limit or len(labelled), len(labelled))

    def __len__(self) -> int:
        return self.n_labelled + len(self.pool)

    def __getitem__(self, index: int) -> SaliencySample:  # type: ignore[override]
        index = range(len(self))[index]
        return self.labelled[index] if index < self.n_labelled else self.pool[index - self.n_labelled]
