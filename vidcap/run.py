"""A captioner run: its config (the dataclasses `vidcap train` writes to config.yaml), `vidcap.load`, the one way a
trained captioner is opened, and `vidcap.save`, which writes a captioner as a run directory `load` opens (mirroring
`saliency.load` and `saliency.save`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

import torch

from saliency.infra.config import require, require_positive, to_dict
from saliency.infra.errors import UserError
from saliency.infra.training import OptimConfig, validate_run_basics
from saliency.infra.rundir import WEIGHTS, RunDir, file_digest, safetensors_header
from saliency.infra.weights import load_state_strictly
from vidcap.model.captioner import Captioner, CaptionerConfig, load_saliency_source, saliency_weights
from vidcap.model.tokenizer import TOKENIZER_FILE, CaptionTokenizer
from vidcap.model.trust import TRUST_FILE, Trust

SALIENCY_PREFIX = "front.saliency_model."  # the saliency model's weights live in its own run directory
SALIENCY_DIGEST = "saliency_sha1"  # model.safetensors metadata: the saliency weights the captioner was trained with


@dataclass
class CaptionDataConfig:
    root: str = "data/generated/msrvtt"  # MSR-VTT, MSVD or a folder + captions.json
    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: str = "runs/feature-cache"  # shared by runs: the fingerprint keeps extractors apart
    limit: Optional[int] = None  # use only the first N training videos
    batch_size: int = 32  # (video, caption) pairs per optimiser step, over all processes

    def __post_init__(self) -> None:
        require_positive(self, "limit", "batch_size")


@dataclass
class CaptionOptimConfig(OptimConfig):
    """The trainers' optimiser at the captioner's defaults, and what a captioner's epoch and validation take."""
    epochs: int = 10
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    val_beams: Optional[int] = None  # beams of the validation captions that pick the best epoch; None: as at test
    captions_per_video: Optional[int] = None  # (video, caption) pairs per video per epoch; None: all captions

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "val_beams", "captions_per_video")


@dataclass
class SCSTConfig:
    """`start`: the cross-entropy run this stage starts from (set by `vidcap train --scst`; None: a cross-entropy
    run); `samples`: captions sampled per video and step."""
    start: str | None = None
    samples: int = 5

    def __post_init__(self) -> None:
        require_positive(self, "samples")


@dataclass
class VidcapRunConfig:
    """Everything that defines one captioner training run (written to the run's config.yaml)."""
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    optim: CaptionOptimConfig = field(default_factory=CaptionOptimConfig)
    scst: SCSTConfig = field(default_factory=SCSTConfig)  # with `start`: a self-critical stage after that XE run
    seed: int = 0
    threads: int = 0  # torch CPU threads, set by the CLI; 0 = all cores
    # where the frozen saliency model and encoder run (`vidcap.inference.front_end_backend`); auto: the fastest installed, onnxruntime
    backend: Literal["auto", "torch", "onnxruntime", "onnxruntime-int8"] = "auto"
    # the saliency model's own backend; None: as `backend` (onnxruntime beside an int8 encoder keeps the maps exact)
    saliency_backend: Optional[Literal["auto", "torch", "onnxruntime", "onnxruntime-int8"]] = None

    def __post_init__(self) -> None:
        validate_run_basics(self)
        require(not self.captioner.encoder.trainable, "captioner.encoder.trainable",
                "must be false: the trainer learns the decoder on cached features of a frozen encoder")


class CaptionerWeights:
    """The captioner's own weights (everything but the saliency model's) as one state dict, loaded strictly."""

    def __init__(self, model: Captioner):
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(SALIENCY_PREFIX)}

    def load_state_dict(self, state: dict[str, torch.Tensor], where: str | Path = "train state") -> None:
        load_state_strictly(self.model, state, where, "this captioner", skip_prefix=SALIENCY_PREFIX)


def saliency_provenance(config: CaptionerConfig) -> dict[str, str]:
    """What a captioner's model.safetensors records of the saliency weights it is trained with, so that loading it
    beside other ones is refused."""
    path = saliency_weights(config.saliency)
    return {SALIENCY_DIGEST: file_digest(path)} if path else {}


def check_saliency_provenance(run: RunDir, config: CaptionerConfig) -> None:
    """A one-line UserError when the saliency run the captioner names now holds other weights than it was trained
    with (retrained or replaced since). Runs written before this record have nothing to compare."""
    recorded = ((safetensors_header(run.file(WEIGHTS)) or {}).get("__metadata__") or {}).get(SALIENCY_DIGEST)
    path = saliency_weights(config.saliency)
    if recorded and path and path.is_file() and file_digest(path) != recorded:
        raise UserError(f"{path}: not the saliency weights {run.file(WEIGHTS)} was trained with (retrained or "
                        "replaced since); restore them, or train the captioner again")


def captioner_run(run_dir: str | Path) -> RunDir:
    """The run directory of a trained captioner, or a one-line UserError saying why it is not one."""
    run = RunDir(run_dir).require()
    if not run.file(TOKENIZER_FILE).is_file():
        raise UserError(f"{run.path}: not a captioner run directory (no {TOKENIZER_FILE}; a saliency run?)")
    return run


def load_run(run_dir: str | Path) -> tuple[Captioner, VidcapRunConfig]:
    """The trained captioner of a run directory (config, tokenizer, weights) in eval mode, and its config."""
    run = captioner_run(run_dir)
    config = run.load_config(VidcapRunConfig)
    tokenizer = CaptionTokenizer.load(run.file(TOKENIZER_FILE))
    weights = run.load_weights()
    run.check_unchanged_since(WEIGHTS)  # config.yaml and tokenizer.json, once each has been checked on its own
    check_saliency_provenance(run, config.captioner)
    # the frozen encoder's weights are in the run: its `pretrained` source is not needed to rebuild it
    built = replace(config.captioner, encoder=replace(config.captioner.encoder, pretrained=False))
    model = Captioner(built, tokenizer, load_saliency_source(config.captioner.saliency))
    CaptionerWeights(model).load_state_dict(weights, run.file(WEIGHTS))
    model.trust = Trust.load(run.file(TRUST_FILE))
    return model.eval(), config


def load(run_dir: str | Path) -> Captioner:
    """Rebuild a trained captioner from its run directory; strict keys and shapes, safetensors only."""
    return load_run(run_dir)[0]


def save(model: Captioner, out: str | Path, config: VidcapRunConfig | None = None) -> Path:
    """Write `model` as a new run directory that `load` opens: `config.yaml` (`config`, or a run config holding the
    captioner's own), `tokenizer.json`, `model.safetensors` (the captioner's weights; its saliency model's stay in
    their run, recorded by digest) and its trust record when it has one; returns its path."""
    run = RunDir(out)
    if run.exists():
        raise UserError(f"{run.path}: run directory already exists; save into another folder")
    config = config or VidcapRunConfig(captioner=model.config)
    # where the frozen encoder's weights first came from (`encoder.pretrained`) may differ: they are in the run
    stated = replace(config.captioner, encoder=replace(config.captioner.encoder, pretrained=model.config.encoder.pretrained))
    if to_dict(stated) != to_dict(model.config):
        raise UserError("config.captioner is not the captioner's own config; save it with its own (or none)")
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    model.tokenizer.save(run.file(TOKENIZER_FILE))
    run.save_weights(CaptionerWeights(model).state_dict(), saliency_provenance(config.captioner))
    if model.trust != Trust():
        model.trust.save(run.file(TRUST_FILE))
    return run.path
