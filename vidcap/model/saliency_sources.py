"""Where a captioner's saliency maps come from: a saliency model (`teacher`, `student`) or a control that needs none.

The controls tell apart what saliency weighting brings: `uniform` (S ≡ 1: the gain without a location), `centre`
(a fixed centre-prior Gaussian, the synthetic observers' own centre bias), `ground-truth` (the synthetic world's
expected gaze density of each sampled frame: the upper bound) and `shuffled` (the world's maps of another video:
maps of the right kind in the wrong place). The last two must know which video and frames they look at: the clip's
`ClipOrigin`, which `read_clip` returns with the frames and the front end passes along, and the world from the
`synthetic_meta.json` of the video's dataset folder. A video's partner is the next video of its split (cyclically,
in the order of the ids), so it is the same at training and at test time. Each control turns one clip's normalised
frames `[T,3,H,W]` and its origin (None when unknown) into log-densities `[T,1,H,W]`, as the saliency models do.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from saliency.world import centre_prior
from saliency.infra.errors import UserError
from saliency.world import META_NAME, GazeModel, read_meta
from saliency.world import video_scene
from vidcap.data.video import ClipOrigin, resize_maps

Source = Literal["none", "teacher", "student", "uniform", "shuffled", "centre", "ground-truth"]
SOURCES: tuple[str, ...] = get_args(Source)
CONTROLS = ("uniform", "shuffled", "centre", "ground-truth")  # sources that need no saliency run
WORLD_SOURCES = ("shuffled", "ground-truth")  # controls that read the synthetic world's own maps

Maps = Callable[[Tensor, ClipOrigin | None], Tensor]  # a clip's frames [T,3,H,W] and origin → log-densities [T,1,H,W]


def control_maps(source: str) -> Maps | None:
    """The maps of control `source` as a function of a clip's frames; None for a source that is not a control."""
    if source == "uniform":
        return uniform_maps
    if source == "centre":
        return centre_maps
    if source in WORLD_SOURCES:
        return WorldMaps(shuffled=source == "shuffled")
    return None


def log_density(maps: Tensor) -> Tensor:
    """Non-negative maps `[T,1,H,W]` → log-densities (each map divided by its sum, then the log)."""
    density = maps / maps.sum(dim=(-2, -1), keepdim=True)
    return density.clamp_min(torch.finfo(density.dtype).tiny).log()


def uniform_maps(frames: Tensor, origin: ClipOrigin | None = None) -> Tensor:
    """S ≡ 1: the same weight everywhere, so any effect is a gain, not a place."""
    steps, _, height, width = frames.shape
    return torch.full((steps, 1, height, width), -math.log(height * width), device=frames.device)


def centre_maps(frames: Tensor, origin: ClipOrigin | None = None) -> Tensor:
    """The centre prior (a Gaussian of 0.2·W by 0.2·H on the frame's centre) on every frame."""
    steps, _, height, width = frames.shape
    prior = torch.from_numpy(centre_prior((height, width))).to(frames.device)
    return log_density(prior.expand(steps, 1, height, width))


def require_world(source: str, root: str | Path) -> None:
    """A one-line UserError naming `root` when `source` needs the world's maps and the dataset there has none."""
    if source in WORLD_SOURCES and not (Path(root) / META_NAME).is_file():
        raise UserError(f"{root}: saliency source {source} needs the world's own maps, from the {META_NAME} that "
                        f"`vidcap synth` writes; this folder has none")


def partner(meta: dict, video_id: str) -> str:
    """The video whose maps `shuffled` gives `video_id`: the next one of its split in id order (cyclically), or of
    the whole dataset when the split has no other."""
    videos = meta["videos"]
    if video_id not in videos:
        raise UserError(f"video {video_id!r} is not one of the synthetic world's videos in its {META_NAME}")
    ordered = sorted(videos, key=lambda name: (len(name), name))  # video2 before video10
    split = [name for name in ordered if videos[name]["split"] == videos[video_id]["split"]]
    pool = split if len(split) > 1 else ordered
    if len(pool) < 2:
        raise UserError(f"saliency source shuffled needs another video to take maps from; the world has only {video_id!r}")
    return pool[(pool.index(video_id) + 1) % len(pool)]


class WorldMaps:
    """`ground-truth` (or `shuffled`): the world's expected gaze density of each sampled frame of the clip's video (or
    of its partner's frames at the same indices), through the sampler's geometry."""

    def __init__(self, shuffled: bool):
        self.shuffled = shuffled
        self.metas: dict[Path, dict] = {}  # dataset folder → its synthetic_meta.json, read once

    @property
    def name(self) -> str:
        return "shuffled" if self.shuffled else "ground-truth"

    def __call__(self, frames: Tensor, origin: ClipOrigin | None = None) -> Tensor:
        if origin is None:
            raise UserError(f"saliency source {self.name} needs to know which video and frames it looks at (vidcap "
                            "passes it along with the frames it samples from a video file); these frames came without")
        meta = self.meta(origin.path)
        video_id = partner(meta, origin.path.stem) if self.shuffled else origin.path.stem
        scene = video_scene(meta, video_id)
        density = np.stack([GazeModel.of_scene(scene, int(t)).expected_density() for t in origin.indices])
        maps = resize_maps(torch.from_numpy(density)[:, None], origin.sampler.size, origin.sampler.resize)
        return log_density(maps).to(frames.device)  # [T,1,H,W]

    def meta(self, video: Path) -> dict:
        """The `synthetic_meta.json` of the dataset `video` belongs to (beside it or one folder up)."""
        folder = next((f for f in (video.parent, video.parent.parent) if (f / META_NAME).is_file()), None)
        if folder is None:
            raise UserError(f"{video}: saliency source {self.name} needs the world's own maps, from the {META_NAME} "
                            f"that `vidcap synth` writes; none in {video.parent} or {video.parent.parent}")
        if folder not in self.metas:
            meta = read_meta(folder / META_NAME)
            if not isinstance(meta.get("videos"), dict):
                raise UserError(f"{folder / META_NAME}: not the meta of synthetic videos (no 'videos')")
            self.metas[folder] = meta
        return self.metas[folder]
