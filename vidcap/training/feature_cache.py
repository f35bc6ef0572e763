"""Feature cache: weighted visual tokens per video in sharded safetensors, keyed by an extractor fingerprint.

Training epochs then read tokens instead of decoding videos. The fingerprint hashes everything that
shapes the tokens (sampler, encoder, weighting, saliency source and its weights), so changing any of
them misses the cache instead of silently reusing stale features. Tokens are stored in float32, the precision
the decoder trains and infers in, so training sees exactly the tokens `Captioner.caption_files` computes. Shards
are memory-mapped and read one tensor at a time, so a cache larger than RAM (MSR-VTT) can be trained on. Under
`torchrun` every process extracts its share of the videos into shards of its own, and rank 0 merges their
indexes at the end. Damage is never read: each shard carries a checksum, checked (streamed, once per process)
before extraction, and the videos of a damaged shard or index entry are extracted again, with a warning.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from saliency import EXPORT_FOLDER
from saliency.infra import distributed
from saliency.infra.config import to_dict
from saliency.infra.errors import UserError
from saliency.infra.rundir import (atomic_write_json, file_digest, require_writable, safetensors_header, safetensors_problem,
                                   save_safetensors, try_flock)
from vidcap.inference.front_end_backend import backends_name, resolve_backends, use_backend
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, load_saliency_source, saliency_weights
from vidcap.data.datasets import open_caption_dataset
from vidcap.inference.pipeline import visual_tokens
from vidcap.model.saliency_sources import require_world

log = logging.getLogger(__name__)

SHARD_SIZE = 64  # videos per shard file
DTYPE = torch.float32  # stored token precision: the decoder's, in training and at inference


def extractor_description(config: CaptionerConfig, backend: str = "torch") -> dict:
    """What shapes the cached tokens, but weights: the sampler, the encoder's token settings, the saliency source, the
    stored precision (a cache written in another precision, like the float16 ones of old, is a miss) and the
    inference backend unless torch (onnxruntime's tokens differ from torch's in the last bits, int8's more).
    A cache folder's `extractor.json` holds it."""
    described = {"sampler": to_dict(config.sampler), "encoder": config.encoder.token_settings(),
                 "saliency": to_dict(config.saliency), "dtype": str(DTYPE)}
    return described | ({} if backend == "torch" else {"backend": backend})


def extractor_fingerprint(config: CaptionerConfig, encoder_state: dict[str, torch.Tensor],
                          backend: str = "torch") -> str:
    """Hash of the front end: its description (`extractor_description`), the saliency weights and the (frozen)
    encoder weights."""
    digest = hashlib.sha1(json.dumps(extractor_description(config, backend), sort_keys=True).encode())
    weights = saliency_weights(config.saliency)
    if weights:
        digest.update(file_digest(weights).encode())
    for name in sorted(encoder_state):
        digest.update(name.encode())
        digest.update(encoder_state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """`<root>/<fingerprint>/`: `extractor.json`, `index.json` (video id → shard) and `shard_*.safetensors`;
    while processes extract, also one `index-<writer>[-rank<R>].json` each (their shards, not yet merged), and
    `.lock`, held by every change to the index. Shards are opened on first use and kept open (memory-mapped); `get`
    copies out only the tensors it returns."""

    def __init__(self, root: str | Path, fingerprint: str, description: dict | None = None):
        self.folder = Path(root) / fingerprint
        self.description = {"fingerprint": fingerprint, **(description or {})}  # what extractor.json says
        self.index_path = self.folder / "index.json"
        self.index: dict[str, str] = {}
        self._shard_keys: dict[str, set[str]] = {}  # shards `drop_damaged` checked → their tensors (none: damaged)
        self.reload()
        self._open: dict[str, safe_open] = {}  # shard name → its open, memory-mapped file
        self._written: dict[str, str] = {}  # this process's entries (video id → shard) since it opened the cache
        self._writer = secrets.token_hex(4)  # names this process's shards: two jobs extracting at once never share one

    def reload(self) -> None:
        """Read index.json again (after another process has merged into it), less the entries found damaged."""
        self.index = {video_id: shard for video_id, shard in _read_index(self.index_path).items()
                      if not self._damaged(video_id, shard)}

    def _damaged(self, video_id: str, shard: str) -> bool:
        return shard in self._shard_keys and f"{video_id}/tokens" not in self._shard_keys[shard]

    def drop_damaged(self) -> list[str]:
        """Drop the entries whose shard is damaged (missing, cut short, failing its checksum) or lacks their tokens,
        so that they count as missing and are extracted again; returns their video ids, and those of the videos
        the shards hold but the index no longer lists (a damaged entry of the index). Each shard is checked once per
        process, streamed through its checksum rather than held in memory."""
        for shard in set(self.index.values()) - self._shard_keys.keys():
            path = self.folder / shard
            intact = path.is_file() and safetensors_problem(path) is None
            self._shard_keys[shard] = set(safetensors_header(path)) if intact else set()
        damaged = [video_id for video_id, shard in self.index.items() if self._damaged(video_id, shard)]
        for video_id in damaged:
            del self.index[video_id]
        held = {key.rsplit("/", 1)[0] for shard in set(self.index.values()) for key in self._shard_keys[shard]
                if key.endswith("/tokens")}
        return damaged + sorted(held - self.index.keys())

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        return [v for v in video_ids if v not in self.index]

    def get(self, video_id: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens `[M,C]` and their per-token saliency `[M]` (the weighting's signal to the decoder) or None, as stored
        (float32); read from the shard on demand."""
        shard = self.index.get(video_id)
        if shard is None:
            raise KeyError(video_id)
        if shard not in self._open:  # shard files are never rewritten, so an open one stays valid
            self._open[shard] = safe_open(str(self.folder / shard), framework="pt")
        handle = self._open[shard]
        signal = f"{video_id}/bias"  # the stored name, kept so that caches written before stay readable
        return handle.get_tensor(f"{video_id}/tokens"), handle.get_tensor(signal) if signal in handle.keys() else None

    def write_shard(self, entries: dict[str, tuple[torch.Tensor, torch.Tensor | None]], rank: int | None = None) -> None:
        """Write one shard (float32) and then the index that points at it: a crash leaves the old index valid.
        A process of several (`rank`) names its shards after its rank too and writes its own partial index."""
        suffix = "" if rank is None else f"-rank{rank}"
        name = f"shard_{self._writer}-{len(set(self._written.values())):05d}{suffix}.safetensors"
        tensors = {}
        for video_id, (tokens, token_saliency) in entries.items():
            tensors[f"{video_id}/tokens"] = tokens.to(DTYPE)
            if token_saliency is not None:
                tensors[f"{video_id}/bias"] = token_saliency.to(DTYPE)
        save_safetensors(tensors, self.folder / name)
        self.index.update({video_id: name for video_id in entries})
        self._written.update({video_id: name for video_id in entries})
        atomic_write_json(self.folder / "extractor.json", self.description)
        with self._locked():  # index.json as it is now, not as this process read it: another job may share the cache
            if rank is None:
                self.reload()
                self.index.update(self._written)
                atomic_write_json(self.index_path, self.index)
            else:
                atomic_write_json(self.folder / f"index-{self._writer}{suffix}.json", self._written)

    def merge_partial_indexes(self) -> None:
        """Fold the partial indexes of processes that extracted in parallel (of this job or of another one
        extracting into the same cache) into index.json, then delete them."""
        with self._locked():
            parts = sorted(self.folder.glob("index-*.json"))
            if not parts:
                return
            self.reload()
            for part in parts:
                self.index.update(_read_index(part))
            atomic_write_json(self.index_path, self.index)
            for part in parts:
                part.unlink()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cache's `.lock` (`fcntl.flock`, waiting for it), so that the read-modify-writes of the index by
        concurrent extractions take turns; the OS releases it if its holder dies."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            try_flock(handle, wait=True)
            yield


def _read_index(path: Path) -> dict[str, str]:
    """An index file (video id → shard name), or {} when there is none; a damaged one is logged and read as {},
    so that its videos are extracted again."""
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_bytes())
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        index = None
    if isinstance(index, dict) and all(isinstance(shard, str) for shard in index.values()):
        return index
    log.warning("%s: damaged (not a JSON index of video ids to shards), read as empty: its videos are extracted again",
                path)
    return {}


@torch.no_grad()
def extract_features(front: VisualFrontEnd, videos: dict[str, Path], cache: FeatureCache,
                     progress: bool = True) -> list[tuple[str, str]]:
    """Fill `cache` with tokens for every video not yet in it; returns (video id, reason) for skipped videos.
    Under `torchrun` each process takes every N-th missing video; all of them return the whole result."""
    world = distributed.current()
    _merge_on_main(cache, world)  # shards an interrupted parallel extraction left behind count too
    _drop_damaged(cache, world)
    front.eval()
    rank = world.rank if world.distributed else None
    todo = cache.missing(videos)[world.rank::world.size]
    skipped: list[tuple[str, str]] = []
    pending: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    # Decoding overlapped, but one video per forward pass: a cached token must not depend on which other videos
    # were missing (batch composition changes the last bits), so an interrupted extraction resumes to the same bits.
    extracted = visual_tokens(front, [(video_id, videos[video_id]) for video_id in todo], batch_videos=1)
    for video_id, tokens, token_saliency, error in tqdm(extracted, total=len(todo), desc="extracting features",
                                                        unit="video", disable=not (progress and world.is_main)):
        if error is not None:
            skipped.append((video_id, str(error)))
            continue
        pending[video_id] = (tokens, token_saliency)
        if len(pending) == SHARD_SIZE:
            cache.write_shard(pending, rank)
            pending = {}
    if pending:
        cache.write_shard(pending, rank)
    _merge_on_main(cache, world)
    return [entry for part in world.gather(skipped) for entry in part]


def _drop_damaged(cache: FeatureCache, world: distributed.World) -> None:
    """Drop the cache's damaged entries, so that they count as missing and are extracted again, and say so."""
    damaged = cache.drop_damaged()
    if damaged and world.is_main:
        log.warning("%s: %d cached video(s) damaged (%s%s): extracted again", cache.folder, len(damaged),
                    ", ".join(damaged[:5]), ", ..." if len(damaged) > 5 else "")


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


def open_feature_cache(front: VisualFrontEnd, config, device) -> FeatureCache:
    """The feature cache of run config `config` (a `VidcapRunConfig`) for `front`, which is switched to the config's
    inference backends: what `vidcap train` and `vidcap extract` both fill and read."""
    backends = backends_name(*resolve_backends(config, device=device))
    cache = FeatureCache(config.data.cache_dir, extractor_fingerprint(config.captioner, front.encoder.state_dict(), backends),
                         extractor_description(config.captioner, backends))
    use_backend(front, config, None, cache.folder / EXPORT_FOLDER)
    return cache


def extract_splits(config, splits: list[str], progress: bool = True) -> Extraction:
    """Fill the feature cache of run config `config` (a `VidcapRunConfig`) with the videos of `splits`: the
    front end `vidcap train` builds from the same config and seed, so training then finds every video cached."""
    require_writable(config.data.cache_dir)  # before any work
    require_world(config.captioner.saliency.source, config.data.root)
    device = distributed.current().device
    # built from the seed as `vidcap train` builds it: a randomly initialised encoder is then the same one
    front = VisualFrontEnd(config.captioner, load_saliency_source(config.captioner.saliency), config.seed).to(device)
    cache = open_feature_cache(front, config, device)
    _drop_damaged(cache, distributed.current())  # before counting: damaged entries extracted again are new
    before, listed, skipped = len(cache.index), 0, []
    for split in splits:
        dataset = open_caption_dataset(config.data.root, kind=config.data.kind, split=split)
        listed += len(dataset.items)
        if progress:
            log.info(dataset.report())
        skipped += extract_features(front, {item.video_id: item.path for item in dataset.items}, cache,
                                    progress=progress)
    if not listed:
        raise UserError(f"{config.data.root}: no usable videos in the {','.join(splits)} split(s)")
    return Extraction(cache.folder, len(cache.index), len(cache.index) - before, skipped)
