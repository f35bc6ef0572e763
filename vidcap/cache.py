"""Feature cache: weighted visual tokens per video in sharded safetensors, keyed by an extractor fingerprint.

Training epochs then read tokens instead of decoding videos. The fingerprint hashes everything that
shapes the tokens (sampler, encoder, weighting, saliency source and its weights), so changing any of
them misses the cache instead of silently reusing stale features.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from saliency.config import to_dict
from saliency.errors import UserError
from saliency.rundir import atomic_write_json, save_safetensors
from vidcap.captioner import CaptionerConfig, VisualFrontEnd, frames_to_tensor
from vidcap.video import read_frames

SHARD_SIZE = 64  # videos per shard file


def file_digest(path: str | Path) -> str:
    """sha1 of a file's bytes (weights that shape the features)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extractor_fingerprint(config: CaptionerConfig, encoder_state: dict[str, torch.Tensor]) -> str:
    """Hash of the front end: its configs, the saliency weights and the (frozen) encoder weights."""
    digest = hashlib.sha1(json.dumps({"sampler": to_dict(config.sampler), "encoder": to_dict(config.encoder),
                                      "saliency": to_dict(config.saliency)}, sort_keys=True).encode())
    if config.saliency.source != "none" and config.saliency.run:
        digest.update(file_digest(Path(config.saliency.run) / "model.safetensors").encode())
    for name in sorted(encoder_state):
        digest.update(name.encode())
        digest.update(encoder_state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """`<root>/<fingerprint>/`: `extractor.json`, `index.json` (video id → shard) and `shard_*.safetensors`."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.folder = Path(root) / fingerprint
        self.index_path = self.folder / "index.json"
        self.index: dict[str, str] = json.loads(self.index_path.read_text()) if self.index_path.is_file() else {}
        self._open: dict[str, dict[str, torch.Tensor]] = {}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        return [v for v in video_ids if v not in self.index]

    def get(self, video_id: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens `[M,C]` (float32) and the prior bias `[M]` or None."""
        shard = self.index.get(video_id)
        if shard is None:
            raise KeyError(video_id)
        if shard not in self._open:
            with safe_open(str(self.folder / shard), framework="pt") as handle:
                self._open[shard] = {k: handle.get_tensor(k) for k in handle.keys()}
        tensors = self._open[shard]
        bias = tensors.get(f"{video_id}/bias")
        return tensors[f"{video_id}/tokens"].float(), None if bias is None else bias.float()

    def write_shard(self, entries: dict[str, tuple[torch.Tensor, torch.Tensor | None]], extractor: dict) -> None:
        """Write one shard (float16) and then the index that points at it: a crash leaves the old index valid."""
        name = f"shard_{len(set(self.index.values())):05d}.safetensors"
        tensors = {}
        for video_id, (tokens, bias) in entries.items():
            tensors[f"{video_id}/tokens"] = tokens.to(torch.float16)
            if bias is not None:
                tensors[f"{video_id}/bias"] = bias.to(torch.float16)
        save_safetensors(tensors, self.folder / name)
        self.index.update({video_id: name for video_id in entries})
        atomic_write_json(self.folder / "extractor.json", extractor)
        atomic_write_json(self.index_path, self.index)


@torch.no_grad()
def extract_features(front: VisualFrontEnd, videos: dict[str, Path], cache: FeatureCache, extractor: dict,
                     progress: bool = True) -> list[tuple[str, str]]:
    """Fill `cache` with tokens for every video not yet in it; returns (video id, reason) for skipped videos."""
    front.eval()
    todo = cache.missing(videos)
    skipped: list[tuple[str, str]] = []
    pending: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for video_id in tqdm(todo, desc="extracting features", unit="video", disable=not progress):
        try:
            frames = frames_to_tensor(read_frames(videos[video_id], front.config.sampler))[None]  # (1, T, 3, H, W)
        except UserError as error:
            print(f"vidcap extract: skipped {error}", file=sys.stderr)
            skipped.append((video_id, str(error)))
            continue
        tokens, bias = front(frames)
        pending[video_id] = (tokens[0], None if bias is None else bias[0])
        if len(pending) == SHARD_SIZE:
            cache.write_shard(pending, extractor)
            pending = {}
    if pending:
        cache.write_shard(pending, extractor)
    return skipped
