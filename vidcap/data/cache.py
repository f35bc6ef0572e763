"""Feature cache: weighted visual tokens per video in sharded safetensors, keyed by an extractor fingerprint.

Training epochs then read tokens instead of decoding videos. The fingerprint hashes everything that
shapes the tokens (sampler, encoder, weighting, saliency source and its weights), so changing any of
them misses the cache instead of silently reusing stale features. Tokens are stored in float32, the precision
the decoder trains and infers in, so training sees exactly the tokens `Captioner.caption_files` computes. Shards
are memory-mapped and read one tensor at a time, so a cache larger than RAM (MSR-VTT) can be trained on. Under
`torchrun` every process extracts its share of the videos into shards of its own, and rank 0 merges their
indexes at the end.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from saliency.infra import distributed
from saliency.infra.config import to_dict
from saliency.infra.errors import UserError
from saliency.infra.rundir import atomic_write_json, save_safetensors
from vidcap.captioner import CaptionerConfig, VisualFrontEnd, frames_to_tensor, load_saliency_source
from vidcap.data.datasets import open_caption_dataset
from vidcap.data.video import read_frames

log = logging.getLogger(__name__)

SHARD_SIZE = 64  # videos per shard file
DTYPE = torch.float32  # stored token precision: the decoder's, in training and at inference


def file_digest(path: str | Path) -> str:
    """sha1 of a file's bytes (weights that shape the features)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extractor_fingerprint(config: CaptionerConfig, encoder_state: dict[str, torch.Tensor]) -> str:
    """Hash of the front end: its configs, the saliency weights, the (frozen) encoder weights and the stored
    precision (a cache written in another precision, like the float16 ones of old, is a miss)."""
    digest = hashlib.sha1(json.dumps({"sampler": to_dict(config.sampler), "encoder": to_dict(config.encoder),
                                      "saliency": to_dict(config.saliency), "dtype": str(DTYPE)},
                                     sort_keys=True).encode())
    if config.saliency.source != "none" and config.saliency.run:
        digest.update(file_digest(Path(config.saliency.run) / "model.safetensors").encode())
    for name in sorted(encoder_state):
        digest.update(name.encode())
        digest.update(encoder_state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """`<root>/<fingerprint>/`: `extractor.json`, `index.json` (video id → shard) and `shard_*.safetensors`;
    while several processes extract, also one `index-rank<R>.json` each (their shards, not yet merged).
    Shards are opened on first use and kept open (memory-mapped); `get` copies out only the tensors it returns."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.folder = Path(root) / fingerprint
        self.index_path = self.folder / "index.json"
        self.index: dict[str, str] = {}
        self.reload()
        self._open: dict[str, safe_open] = {}  # shard name → its open, memory-mapped file
        self._written: dict[str, str] = {}  # this process's entries (video id → shard) since it opened the cache

    def reload(self) -> None:
        """Read index.json again (after another process has merged into it)."""
        self.index = json.loads(self.index_path.read_text()) if self.index_path.is_file() else {}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        return [v for v in video_ids if v not in self.index]

    def get(self, video_id: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens `[M,C]` and the prior bias `[M]` or None, as stored (float32); read from the shard on demand."""
        shard = self.index.get(video_id)
        if shard is None:
            raise KeyError(video_id)
        if shard not in self._open:  # shard files are never rewritten, so an open one stays valid
            self._open[shard] = safe_open(str(self.folder / shard), framework="pt")
        handle = self._open[shard]
        bias = f"{video_id}/bias"
        return handle.get_tensor(f"{video_id}/tokens"), handle.get_tensor(bias) if bias in handle.keys() else None

    def write_shard(self, entries: dict[str, tuple[torch.Tensor, torch.Tensor | None]], extractor: dict,
                    rank: int | None = None) -> None:
        """Write one shard (float32) and then the index that points at it: a crash leaves the old index valid.
        A process of several (`rank`) names its shards after its rank and writes its own partial index."""
        suffix = "" if rank is None else f"-rank{rank}"
        name = f"shard_{len(set(self.index.values())):05d}{suffix}.safetensors"  # numbers only grow: never reused
        tensors = {}
        for video_id, (tokens, bias) in entries.items():
            tensors[f"{video_id}/tokens"] = tokens.to(DTYPE)
            if bias is not None:
                tensors[f"{video_id}/bias"] = bias.to(DTYPE)
        save_safetensors(tensors, self.folder / name)
        self.index.update({video_id: name for video_id in entries})
        self._written.update({video_id: name for video_id in entries})
        atomic_write_json(self.folder / "extractor.json", extractor)
        if rank is None:
            atomic_write_json(self.index_path, self.index)
        else:
            atomic_write_json(self.folder / f"index-rank{rank}.json", self._written)

    def merge_partial_indexes(self) -> None:
        """Fold the partial indexes of processes that extracted in parallel into index.json, then delete them."""
        parts = sorted(self.folder.glob("index-rank*.json"))
        if not parts:
            return
        for part in parts:
            self.index.update(json.loads(part.read_text()))
        atomic_write_json(self.index_path, self.index)
        for part in parts:
            part.unlink()


@torch.no_grad()
def extract_features(front: VisualFrontEnd, videos: dict[str, Path], cache: FeatureCache, extractor: dict,
                     progress: bool = True) -> list[tuple[str, str]]:
    """Fill `cache` with tokens for every video not yet in it; returns (video id, reason) for skipped videos.
    Under `torchrun` each process takes every N-th missing video; all of them return the whole result."""
    world = distributed.current()
    _merge_on_main(cache, world)  # shards an interrupted parallel extraction left behind count too
    front.eval()
    device = next(front.parameters()).device
    rank = world.rank if world.distributed else None
    todo = cache.missing(videos)[world.rank::world.size]
    skipped: list[tuple[str, str]] = []
    pending: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for video_id in tqdm(todo, desc="extracting features", unit="video", disable=not (progress and world.is_main)):
        try:
            frames = frames_to_tensor(read_frames(videos[video_id], front.config.sampler))[None]  # (1, T, 3, H, W)
        except UserError as error:
            skipped.append((video_id, str(error)))
            continue
        tokens, bias = front(frames.to(device))
        pending[video_id] = (tokens[0], None if bias is None else bias[0])
        if len(pending) == SHARD_SIZE:
            cache.write_shard(pending, extractor, rank)
            pending = {}
    if pending:
        cache.write_shard(pending, extractor, rank)
    _merge_on_main(cache, world)
    return [entry for part in world.gather(skipped) for entry in part]


def _merge_on_main(cache: FeatureCache, world: distributed.World) -> None:
    """Rank 0 merges the partial indexes into index.json; every process then reads the merged index."""
    if not world.distributed:
        cache.merge_partial_indexes()
        return
    world.barrier()
    if world.is_main:
        cache.merge_partial_indexes()
    world.barrier()
    cache.reload()


@dataclass
class Extraction:
    """What `extract_splits` did: the cache folder, the videos it holds, how many were new, what was skipped."""
    folder: Path
    videos: int
    new: int
    skipped: list[tuple[str, str]]  # (video id, one-line reason)


def extract_splits(config, splits: list[str], progress: bool = True) -> Extraction:
    """Fill the feature cache of run config `config` (a `VidcapRunConfig`) with the videos of `splits`: the
    front end `vidcap train` builds from the same config and seed, so training then finds every video cached."""
    torch.manual_seed(config.seed)  # a randomly initialised encoder is then the one `vidcap train` builds
    device = distributed.current().device
    front = VisualFrontEnd(config.captioner, load_saliency_source(config.captioner.saliency)).to(device)
    fingerprint = extractor_fingerprint(config.captioner, front.encoder.state_dict())
    cache = FeatureCache(config.data.cache_dir, fingerprint)
    before, listed, skipped = len(cache.index), 0, []
    for split in splits:
        dataset = open_caption_dataset(config.data.root, kind=config.data.kind, split=split)
        listed += len(dataset.items)
        if progress:
            log.info(dataset.report())
        skipped += extract_features(front, {item.video_id: item.path for item in dataset.items}, cache,
                                    {"fingerprint": fingerprint}, progress=progress)
    if not listed:
        raise UserError(f"{config.data.root}: no usable videos in the {','.join(splits)} split(s)")
    return Extraction(cache.folder, len(cache.index), len(cache.index) - before, skipped)
