"""The composed captioner: frames → (saliency) → CNN features → weighting → visual tokens → transformer decoder."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.infra.rundir import WEIGHTS
from saliency import imagenet_normalise, motion_gap, motion_input
from saliency import load as load_saliency_model
from vidcap.model.decoder import CaptionDecoder, DecoderConfig
from vidcap.model.encoder import EncoderConfig, FrameEncoder
from vidcap.model.weighting import TRACK_CHANNELS, WEIGHTINGS, SaliencyWeighting, build_weighting
from vidcap.model.saliency_sources import CONTROLS, SOURCES, Source, control_maps
from vidcap.model.tokenizer import CaptionTokenizer
from vidcap.model.trust import Caption, Trust
from vidcap.data.video import ClipOrigin, FrameSamplerConfig, read_clip

PARTS = ("encoder", "decoder")  # the randomly initialised parts of a captioner, each built from a seed of its own
Part = TypeVar("Part")


@dataclass
class SaliencySourceConfig:
    """Where the saliency maps come from (`vidcap.model.saliency_sources`); `run` is a saliency run directory, for
    teacher or student (the controls uniform, shuffled, centre and ground-truth need none)."""
    source: Source = "none"
    run: Optional[str] = None
    size: Optional[tuple[int, int]] = None  # saliency model input H×W; None: the sampled frames' size

    def __post_init__(self) -> None:
        require(self.source in SOURCES, "source", f"{self.source!r} is not one of {', '.join(SOURCES)}")
        require(self.size is None or min(self.size) >= 1, "size", f"expected two positive integers (H, W), got {self.size!r}")


@dataclass
class TokenizerConfig:
    min_count: int = 2  # words seen fewer times in the training captions become [UNK]

    def __post_init__(self) -> None:
        require_positive(self, "min_count")


@dataclass
class CaptionerConfig:
    sampler: FrameSamplerConfig = field(default_factory=FrameSamplerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    saliency: SaliencySourceConfig = field(default_factory=SaliencySourceConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    num_beams: int = 3
    max_length: int = 20  # longest caption in words: training captions are cut there, generation stops there
    length_penalty: float = 1.0
    # generation never says an n-gram of this many words twice (0: no such rule); 2 chosen on validation
    # (benchmarks/repeated_words.py): no caption of the synthetic world changes, a loop like "red red red" cannot start
    no_repeat_ngram_size: int = 2

    def __post_init__(self) -> None:
        require_positive(self, "num_beams", "max_length")
        require(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size",
                f"must be >= 0 (0: off), got {self.no_repeat_ngram_size}")

    @property
    def max_positions(self) -> int:
        """Decoder positions a caption needs: BOS, `max_length` words, EOS."""
        return self.max_length + 2


def with_saliency(config: CaptionerConfig, source: str, run: str | None = None,
                  weighting: str | None = None) -> CaptionerConfig:
    """`config` taking its maps from `source` (a saliency `run` directory for teacher/student; the controls take
    none), weighted by `weighting` (default: the config's). The one rule: source `none` means weighting `none`;
    any other source needs a weighting that uses the maps."""
    if source == "none":
        return replace(config, saliency=replace(config.saliency, source="none", run=None),
                       encoder=replace(config.encoder, weighting="none"))
    if source in CONTROLS and run:
        raise UserError(f"saliency source {source} needs no saliency model; drop --saliency-model {run}")
    weighting = weighting or config.encoder.weighting
    if not build_weighting(weighting).needs_maps:
        raise UserError(f"saliency {source} with encoder.weighting={weighting} would ignore the maps; pick one of "
                        f"{', '.join(mode for mode in WEIGHTINGS if build_weighting(mode).needs_maps)}")
    run = None if source in CONTROLS else run or config.saliency.run
    return replace(config, saliency=replace(config.saliency, source=source, run=run),
                   encoder=replace(config.encoder, weighting=weighting))


def build_part(seed: int | None, part: str, build: Callable[[], Part]) -> Part:
    """`build()` on torch's generator seeded from (`seed`, `part`), the global stream left as it was: a part starts
    from the same weights whatever was built before it, so the arms of one seed (saliency none, teacher, student or a
    control) are paired. `seed` None: on the global stream, as any module is built."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([seed, PARTS.index(part)]).generate_state(1)[0]))
        return build()


def frames_to_tensor(frames) -> Tensor:
    """uint8 `[T,H,W,3]` (numpy) → ImageNet-normalised float `[T,3,H,W]`."""
    return imagenet_normalise(torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255))  # (T, 3, H, W)


def previous_tensor(previous: np.ndarray | None) -> Tensor | None:
    """A clip's previous frames uint8 `[T,H,W,3]` (`read_clip(previous=True)`) → normalised `[1,T,3,H,W]`, or None."""
    return None if previous is None else frames_to_tensor(previous)[None]


def saliency_weights(config: SaliencySourceConfig) -> Path | None:
    """The weights file of the saliency model a source reads (None: `none` and the controls, which need no model)."""
    modelled = config.run and config.source != "none" and config.source not in CONTROLS
    return Path(config.run) / WEIGHTS if modelled else None


def load_saliency_source(config: SaliencySourceConfig) -> nn.Module | None:
    """The frozen saliency model named by `config`, or None for `none` and the controls (which need no model)."""
    if config.source == "none" or config.source in CONTROLS:
        return None
    if not config.run:
        raise UserError(f"saliency source {config.source!r} needs a saliency run directory (--saliency-model RUN)")
    return load_saliency_model(config.run).eval().requires_grad_(False)


class VisualFrontEnd(nn.Module):
    """Frames → weighted visual tokens: the frozen, cacheable half of the captioner. Its maps come from
    `saliency_model` or, for a control source, from `control` (`vidcap.model.saliency_sources`); its encoder is built
    from its own seed (`build_part`; None: torch's global stream)."""

    def __init__(self, config: CaptionerConfig, saliency_model: nn.Module | None = None, seed: int | None = None):
        super().__init__()
        self.config = config
        self.encoder = build_part(seed, "encoder", lambda: FrameEncoder(config.encoder))
        self.saliency_model = saliency_model
        self.control = control_maps(config.saliency.source)
        self.weighting = SaliencyWeighting(config.encoder)
        if self.weighting.strategy.needs_maps and saliency_model is None and self.control is None:
            raise UserError(f"encoder.weighting={config.encoder.weighting!r} needs saliency maps (--saliency "
                            f"teacher|student with --saliency-model, or a control: {', '.join(CONTROLS)})")

    @property
    def out_channels(self) -> int:
        """Channels of each visual token: the encoder's, plus the track's geometry when `encoder.track`."""
        return self.encoder.out_channels + (TRACK_CHANNELS if self.config.encoder.track else 0)

    @property
    def needs_previous(self) -> int:
        """How many frames before each frame the saliency model compares it with, 0 when it sees single frames
        (controls never look back): what `read_clip(previous=)` decodes."""
        return 0 if self.control is not None else motion_gap(self.saliency_model)

    def saliency(self, frames: Tensor, origin: ClipOrigin | None = None,
                 previous: Tensor | None = None) -> Tensor | None:
        """Log-density `[N,1,H,W]` of normalised frames `[N,3,H,W]`: the model's at the configured saliency size, a
        control's at the frames' size (the N frames then one sampled clip, from `origin`). A motion model also sees
        `previous` `[N,3,H,W]`, the earlier frame of each (normalised alike; `needs_previous`)."""
        if self.control is not None:
            return self.control(frames, origin)
        if self.saliency_model is None:
            return None
        if not self.needs_previous:
            return self.saliency_model(self._saliency_size(frames))
        if previous is None:
            raise ValueError("this saliency model sees motion: pass the frame before each frame (previous=)")
        return self.saliency_model(motion_input(self._saliency_size(frames), self._saliency_size(previous)))

    def _saliency_size(self, frames: Tensor) -> Tensor:
        """Frames `[N,3,H,W]` resized to the saliency model's input size (`saliency.size`; None: as they are)."""
        size = self.config.saliency.size
        return frames if size is None else F.interpolate(frames, size=size, mode="bilinear", align_corners=False,
                                                         antialias=True)

    def clip_saliency(self, frames: Tensor, origins: list[ClipOrigin | None] | None = None,
                      previous: Tensor | None = None) -> Tensor | None:
        """Log-density `[B,T,1,H,W]` of clips `[B,T,3,H,W]`: the model sees all their frames at once (a motion model
        with `previous` `[B,T,3,H,W]`), a control each clip on its own, with the clip's origin (`origins`, one per
        clip; the world's maps need it)."""
        if self.control is not None:
            return torch.stack([self.control(clip, origin) for clip, origin in zip(frames, origins or [None] * len(frames))])
        before = None if previous is None else previous.flatten(0, 1)  # (B·T, 3, H, W)
        log_saliency = self.saliency(frames.flatten(0, 1), previous=before)
        return None if log_saliency is None else log_saliency.unflatten(0, frames.shape[:2])

    def forward(self, frames: Tensor, timings: dict[str, float] | None = None,
                origins: list[ClipOrigin | None] | None = None,
                previous: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Frames `[B,T,3,H,W]` (from the clips `origins`, if known; with `previous` `[B,T,3,H,W]`, the frame before
        each, for a motion saliency model) → tokens `[B,T·k,C]` and their per-token saliency `[B,T·k]` (the weighting's
        signal to the decoder: `prior`'s log maps, `gate`'s maps) or None."""
        start = time.perf_counter()
        saliency = self.clip_saliency(frames, origins, previous)  # (B, T, 1, H, W)
        middle = time.perf_counter()
        features = self.encoder(frames.flatten(0, 1))  # (B·T, C, h, w)
        features = features.unflatten(0, frames.shape[:2])  # (B, T, C, h, w)
        tokens, token_saliency = self.weighting(features, saliency)
        if timings is not None:
            timings["saliency"] = timings.get("saliency", 0.0) + middle - start
            timings["encoder"] = timings.get("encoder", 0.0) + time.perf_counter() - middle
        return tokens, token_saliency


class Captioner(nn.Module):
    """Front end + decoder; `caption_files` is the whole pipeline from video paths to sentences. Its random parts
    (encoder; decoder with its projection and positions) start from `seed` alone (`build_part`; None: torch's global
    stream)."""

    def __init__(self, config: CaptionerConfig, tokenizer: CaptionTokenizer, saliency_model: nn.Module | None = None,
                 seed: int | None = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.trust = Trust()  # its run's calibration and record of its training videos (`vidcap.load` fills it)
        self.front = VisualFrontEnd(config, saliency_model, seed)
        self.decoder = build_part(seed, "decoder", lambda: CaptionDecoder(
            config.decoder, vocab_size=tokenizer.vocab_size, visual_dim=self.front.out_channels, pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, max_positions=config.max_positions,
            weighting=self.front.weighting.strategy))

    @torch.no_grad()
    def generate(self, tokens: Tensor, token_saliency: Tensor | None, num_beams: int | None = None,
                 **generate_kwargs) -> list[Caption]:
        """Captions for visual tokens `[B,M,C]` and their per-token saliency `[B,M]` (or None) by beam search
        (`num_beams=1`: greedy), each a `Caption` with its confidence and whether its video is like the training
        videos (`self.trust`); `generate_kwargs` go to HF `generate()` (benchmarks pass `min_new_tokens` so every
        caption costs the same)."""
        repeats = self.config.no_repeat_ngram_size
        settings = {"no_repeat_ngram_size": repeats} if repeats else {}
        ids = self.decoder.generate(tokens, token_saliency, num_beams=num_beams or self.config.num_beams,
                                    max_length=self.config.max_length, length_penalty=self.config.length_penalty,
                                    **(settings | generate_kwargs))
        mean_log_probs = self.decoder.mean_log_prob(tokens, ids, token_saliency)  # [B]
        return self.trust.captions(self.tokenizer.decode_batch(ids), mean_log_probs, tokens.mean(dim=1))

    @torch.no_grad()
    def caption_files(self, paths: list[str | Path], timings: dict[str, float] | None = None,
                      num_beams: int | None = None, **generate_kwargs) -> list[Caption]:
        """Decode, weight, encode and caption each video; `timings` accumulates seconds per stage."""
        timings = {} if timings is None else timings
        captions = []
        for path in paths:
            start = time.perf_counter()
            clip = read_clip(path, self.config.sampler, previous=self.front.needs_previous)
            frames = frames_to_tensor(clip.frames)[None]  # (1, T, 3, H, W)
            previous = previous_tensor(clip.previous)  # (1, T, 3, H, W) or None
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
            tokens, token_saliency = self.front(frames, timings, [clip.origin], previous)
            start = time.perf_counter()
            captions.extend(self.generate(tokens, token_saliency, num_beams, **generate_kwargs))
            timings["decoder"] = timings.get("decoder", 0.0) + time.perf_counter() - start
        return captions
