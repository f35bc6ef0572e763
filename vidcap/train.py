"""Captioner training on cached visual tokens: label-smoothed cross-entropy, AdamW + warm-up/cosine,
validation CIDEr every epoch, the best epoch kept as model.safetensors, and exact `--resume`. Under
`torchrun` each process extracts its share of the videos and trains on its share of every batch."""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from saliency import distributed
from saliency.errors import UserError
from saliency.figures import training_curves_png
from saliency.models.components import state_dict_mismatch
from saliency.rundir import CURVES, WEIGHTS, RunDir, atomic_write_bytes, atomic_write_text
from saliency.train import restore_rng_state, rng_state, seed_everything, warmup_cosine
from vidcap.cache import FeatureCache, extract_features, extractor_fingerprint
from vidcap.captioner import Captioner, CaptionerConfig, load_saliency_source
from vidcap.datasets import open_caption_dataset
from vidcap.evaluate import cider
from vidcap.tokenizer import CaptionTokenizer

TOKENIZER = "tokenizer.json"
LOG = "log.csv"


@dataclass
class CaptionDataConfig:
    root: str = "data/generated/msrvtt"  # MSR-VTT, MSVD or a folder + captions.json
    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: str = "runs/feature-cache"  # shared by runs: the fingerprint keeps extractors apart
    limit: Optional[int] = None  # use only the first N training videos


@dataclass
class CaptionOptimConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    val_beams: int = 1  # greedy validation decoding is fast and ranks epochs like beam search
    captions_per_video: Optional[int] = None  # (video, caption) pairs per video per epoch; None: all captions


@dataclass
class VidcapRunConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    optim: CaptionOptimConfig = field(default_factory=CaptionOptimConfig)
    seed: int = 0
    threads: int = 0


def captioner_weights(model: Captioner) -> dict[str, torch.Tensor]:
    """Everything but the saliency model, whose weights live in its own run directory."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("front.saliency_model.")}


def captioner_run(run_dir: str | Path) -> RunDir:
    """The run directory of a trained captioner, or a one-line UserError saying why it is not one."""
    run = RunDir(run_dir).require()
    if not run.file(TOKENIZER).is_file():
        raise UserError(f"{run.path}: not a captioner run directory (no {TOKENIZER}; a saliency run?)")
    return run


def load_captioner(run_dir: str | Path) -> tuple[Captioner, VidcapRunConfig]:
    """Rebuild a trained captioner from its run directory (config, tokenizer, weights)."""
    run = captioner_run(run_dir)
    config = run.load_config(VidcapRunConfig)
    tokenizer = CaptionTokenizer.load(run.file(TOKENIZER))
    model = Captioner(config.captioner, tokenizer, load_saliency_source(config.captioner.saliency))
    state = run.load_weights()
    problem = state_dict_mismatch(captioner_weights(model), state)
    if problem:
        raise UserError(f"{run.file(WEIGHTS)}: weights do not fit this captioner ({problem})")
    model.load_state_dict(state, strict=False)
    return model.eval(), config


class CaptionTrainer:
    """Builds the front end, fills the feature cache, then trains the decoder on cached tokens."""

    def __init__(self, config: VidcapRunConfig, out: str, resume: bool = False, progress: bool = True):
        self.config, self.run, self.world = config, RunDir(out), distributed.current()
        self.progress = progress and self.world.is_main
        resume = self.run.prepare(resume)
        if config.captioner.encoder.trainable:
            raise UserError("captioner.encoder.trainable=true: this trainer learns the decoder on cached features "
                            "of a frozen encoder; set it to false")
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.train_set = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.train_split)
        self.val_set = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.val_split)
        for dataset in (self.train_set, self.val_set):
            if self.progress:
                tqdm.write(dataset.report())
        train_items = self.train_set.items[: config.data.limit] if config.data.limit else self.train_set.items
        if not train_items:
            raise UserError(f"no usable training videos: {self.train_set.report()}")
        if resume:
            tokenizer = CaptionTokenizer.load(self.run.file(TOKENIZER))
        else:
            tokenizer = CaptionTokenizer.build((c for item in train_items for c in item.captions),
                                               min_count=config.captioner.tokenizer.min_count,
                                               max_length=config.captioner.tokenizer.max_length)
        saliency_model = load_saliency_source(config.captioner.saliency)
        self.model = Captioner(config.captioner, tokenizer, saliency_model).to(self.world.device)
        if self.world.rank:  # rank 0 continues the single-process random stream (dropout); the others branch off it
            seed_everything(config.seed + self.world.rank)
        self.world.barrier()  # every process has checked the run directory before rank 0 writes to it
        self.cache = self._fill_cache(train_items + self.val_set.items)
        self.train_items = [item for item in train_items if item.video_id in self.cache]
        self.val_items = [item for item in self.val_set.items if item.video_id in self.cache]
        if not self.train_items or not self.val_items:
            raise UserError(f"{config.data.root}: no readable videos in the train or validation split")
        self.decoder = distributed.data_parallel(self.model.decoder, self.world)  # what training passes go through
        self.optimizer = torch.optim.AdamW(self.model.decoder.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        steps_per_epoch = math.ceil(len(self._epoch_pairs(np.random.default_rng(0))) / config.optim.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(config.optim.warmup_steps, config.optim.epochs * steps_per_epoch))
        self.rng = np.random.default_rng(config.seed)
        self.epoch, self.history, self.best = 0, [], -math.inf
        if resume:
            self._restore()

    def _fill_cache(self, items) -> FeatureCache:
        front = self.model.front
        fingerprint = extractor_fingerprint(self.config.captioner, front.encoder.state_dict())
        cache = FeatureCache(self.config.data.cache_dir, fingerprint)
        extractor = {"fingerprint": fingerprint, "captioner": self.config.captioner.__class__.__name__}
        # the videos that could not be read, (video id, reason): training goes on without them
        self.skipped = extract_features(front, {item.video_id: item.path for item in items}, cache, extractor,
                                        progress=self.progress)
        return cache

    def _epoch_pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Shuffled (video index, caption index) pairs: each video with `captions_per_video` of its captions."""
        limit = self.config.optim.captions_per_video
        pairs = []
        for index, item in enumerate(self.train_items):
            count = len(item.captions) if limit is None else min(limit, len(item.captions))
            pairs.extend((index, int(c)) for c in rng.choice(len(item.captions), size=count, replace=False))
        return [pairs[i] for i in rng.permutation(len(pairs))]

    def _batch(self, items) -> tuple[torch.Tensor, torch.Tensor | None]:
        pairs = [self.cache.get(item.video_id) for item in items]
        tokens = torch.stack([t for t, _ in pairs]).to(self.world.device)  # (B, M, C)
        bias = None if pairs[0][1] is None else torch.stack([b for _, b in pairs]).to(self.world.device)  # (B, M)
        return tokens, bias

    def _restore(self) -> None:
        if self.world.is_main:
            self.run.discard_partial_writes()
        state = self.run.load_train_state()
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state, self.world.rank)
        self.rng.bit_generator.state = state["numpy_rng"]
        self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]

    def _checkpoint(self) -> None:
        """Rank 0 writes everything needed to continue exactly, every process's generators included."""
        rng = self.world.gather(rng_state())
        if not self.world.is_main:
            return
        self.run.save_train_state({
            "model": captioner_weights(self.model), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng,
            "numpy_rng": self.rng.bit_generator.state, "epoch": self.epoch, "history": self.history, "best": self.best,
        }, {"epoch": self.epoch, "best_val_CIDEr": self.best})

    def _step(self, chosen: list[tuple[int, int]]) -> float:
        """One optimiser step on a batch of (video, caption) pairs, this process's share of it; returns the batch's
        loss. Shares are weighted by their target tokens, so N processes take exactly the step one process would."""
        mine = chosen[self.world.rank::self.world.size]
        share = mine or chosen[:1]  # a process left without pairs still joins the step, with weight 0
        tokens, bias = self._batch([self.train_items[v] for v, _ in share])
        ids, mask = self.model.tokenizer.encode_batch([self.train_items[v].captions[c] for v, c in share])
        device = self.world.device
        loss, _ = self.decoder(tokens, ids.to(device), mask.to(device), bias)  # mean over the share's targets
        targets = mask[:, 1:].sum().to(loss) if mine else loss.new_zeros(())  # every token after BOS is a target
        total, count = self.world.sum(torch.stack([loss.detach() * targets, targets]))
        if not torch.isfinite(total):
            raise UserError(f"{self.run.path}: loss became {(total / count).item()} at epoch {self.epoch + 1}; "
                            f"the last good checkpoint is kept (try a lower optim.lr)")
        self.optimizer.zero_grad(set_to_none=True)
        (loss * (targets * self.world.size / count)).backward()  # DDP averages over processes: Σ loss·targets / count
        torch.nn.utils.clip_grad_norm_(self.model.decoder.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return (total / count).item()

    def validate(self) -> dict[str, float]:
        """Greedy captions for the validation split and their CIDEr-D (what picks the best epoch)."""
        self.model.eval()
        res, gts = {}, {}
        size = self.config.optim.batch_size
        for start in range(0, len(self.val_items), size):
            items = self.val_items[start:start + size]
            tokens, bias = self._batch(items)
            for item, caption in zip(items, self.model.generate(tokens, bias, num_beams=self.config.optim.val_beams)):
                res[item.video_id], gts[item.video_id] = caption, item.captions
        return {"CIDEr": cider(gts, res)}

    def fit(self) -> dict:
        config = self.config
        main = self.world.is_main
        if self.epoch == 0 and main:
            self.run.save_config(config)
            self.model.tokenizer.save(self.run.file(TOKENIZER))
        started = time.perf_counter()
        size = config.optim.batch_size
        while self.epoch < config.optim.epochs:
            self.model.train()
            pairs = self._epoch_pairs(self.rng)
            losses = []
            bar = tqdm(range(0, len(pairs), size), desc=f"epoch {self.epoch + 1}/{config.optim.epochs}",
                       disable=not self.progress, leave=False)
            for start in bar:
                losses.append(self._step(pairs[start:start + size]))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            val = self.world.from_main(self.validate)
            self.epoch += 1
            record = {"epoch": self.epoch, "train_loss": float(np.mean(losses)), "val": val,
                      "lr": self.scheduler.get_last_lr()[0]}
            self.history.append(record)
            if val["CIDEr"] > self.best:
                self.best = val["CIDEr"]
                if main:
                    self.run.save_weights(captioner_weights(self.model))
            self._checkpoint()
            if main:
                self._write_logs(self._metrics(time.perf_counter() - started))
            if self.progress:
                tqdm.write(f"epoch {self.epoch}/{config.optim.epochs}  loss {record['train_loss']:.3f}  "
                           f"val CIDEr {val['CIDEr']:.3f}")
        return self._metrics(time.perf_counter() - started)

    def _metrics(self, seconds: float) -> dict:
        """What metrics.json holds: the best epoch's validation scores and every epoch's record."""
        best = max(self.history, key=lambda r: r["val"]["CIDEr"])
        return {"final": best["val"], "best_epoch": best["epoch"], "epochs": self.history,
                "train_videos": len(self.train_items), "val_videos": len(self.val_items),
                "train_seconds_this_session": seconds}

    def _write_logs(self, metrics: dict) -> None:
        self.run.save_metrics(metrics)
        rows = [["epoch", "train_loss", "val_CIDEr", "lr"]]
        rows += [[r["epoch"], f"{r['train_loss']:.5f}", f"{r['val']['CIDEr']:.5f}", f"{r['lr']:.3g}"] for r in self.history]
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        atomic_write_text(self.run.file(LOG), text.getvalue())
        atomic_write_bytes(self.run.file(CURVES), training_curves_png(
            [r["epoch"] for r in self.history], [r["train_loss"] for r in self.history], "CIDEr",
            [r["val"]["CIDEr"] for r in self.history], title=self.run.path.name))
