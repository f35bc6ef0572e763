"""The captioner's frozen front end on an inference backend (`saliency.backends`): its saliency model and encoder
exported to ONNX and run by onnxruntime, in float32 or int8. The encoder is calibrated for int8 on frames of the
captioner's own training videos, the saliency model on its own run's training images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from saliency import EXPORT_FOLDER, exported_session, on_backend, resolve_backend, run_calibration_images
from saliency.infra.errors import UserError
from saliency.infra.stats import spread
from vidcap.model.captioner import VisualFrontEnd, frames_to_tensor
from vidcap.data.datasets import open_caption_dataset
from vidcap.data.video import read_frames
from vidcap.run import VidcapRunConfig

CALIBRATION_VIDEOS = 4  # training videos whose sampled frames calibrate the int8 encoder (64 frames at 16 each)


def training_frames(config: VidcapRunConfig, count: int = CALIBRATION_VIDEOS) -> list[np.ndarray]:
    """The sampled, normalised frames `[T,3,H,W]` of up to `count` training videos spread over the split; a
    one-line UserError naming the folder when none can be read."""
    where = f"{config.data.root} (split {config.data.train_split})"
    try:
        items = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.train_split).items
    except UserError as error:
        raise UserError(f"int8 calibration needs the captioner's training videos, looked in {where}: {error}") from None
    batches = []
    for index in spread(len(items), count):
        try:
            batches.append(frames_to_tensor(read_frames(items[index].path, config.captioner.sampler)).numpy())
        except UserError:
            continue  # an unreadable video calibrates nothing; the others do
    if not batches:
        raise UserError(f"int8 calibration needs the captioner's training videos: none readable in {where}")
    return batches


def resolve_backends(config: VidcapRunConfig, backend: str | None = None, saliency_backend: str | None = None,
                     device: torch.device | str = "cpu") -> tuple[str, str]:
    """The backends of the front end's encoder and saliency model, checked (`auto`: the fastest installed): `backend`
    (None: the config's), and `saliency_backend` (None: the config's `saliency_backend`; None there too: the
    encoder's). An int8 encoder beside a float32 saliency model keeps the maps' peaks where float32 puts them."""
    encoder = resolve_backend(backend or config.backend, device)
    chosen = saliency_backend or config.saliency_backend
    return encoder, encoder if chosen is None else resolve_backend(chosen, device)


def backends_name(encoder: str, saliency: str) -> str:
    """One name for a front end's backends: the encoder's, with `+saliency-<backend>` when the saliency model's
    differs (cached features and reports say what computed them)."""
    return encoder if saliency == encoder else f"{encoder}+saliency-{saliency}"


def split_backends_name(name: str) -> tuple[str, str]:
    """(encoder, saliency) backends of a `backends_name` ("onnxruntime-int8+saliency-onnxruntime")."""
    encoder, _, saliency = name.partition("+saliency-")
    return encoder, saliency or encoder


def use_backend(front: VisualFrontEnd, config: VidcapRunConfig, backend: str | None, export_dir: str | Path,
                saliency_backend: str | None = None) -> tuple[str, str]:
    """Run `front`'s encoder and saliency model on their backends (`resolve_backends`) and return them. The
    encoder's exports are cached in `export_dir`, the saliency model's in its own run directory. Call it once per
    front end."""
    encoder, saliency = resolve_backends(config, backend, saliency_backend, next(front.parameters()).device)
    frame_size = config.captioner.sampler.size
    # no busy-waiting threads: the frames of the next videos are decoded at the same time (`vidcap.inference.pipeline`)
    if encoder != "torch":
        front.encoder.session = exported_session(front.encoder, encoder, frame_size, export_dir, "encoder",
                                                 lambda: training_frames(config), output="features", spinning=False)
    if front.saliency_model is not None and saliency != "torch":
        size, run = config.captioner.saliency.size or frame_size, config.captioner.saliency.run
        folder, calibration = (None, None) if run is None else (Path(run) / EXPORT_FOLDER,
                                                                 lambda: run_calibration_images(run, size))
        front.saliency_model = on_backend(front.saliency_model, saliency, size, folder, calibration=calibration,
                                          spinning=False)
    return encoder, saliency
