"""Captioner training on cached visual tokens: label-smoothed cross-entropy, AdamW + warm-up/cosine,
validation CIDEr every epoch, the best epoch kept as model.safetensors, and exact `--resume`. Under
`torchrun` each process extracts its share of the videos and trains on its share of every batch. With
`scst.start` the run is the self-critical stage (`vidcap.training.scst`) that continues that cross-entropy run's best
weights (and its tokenizer) with the CIDEr-D reward instead of cross-entropy."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from saliency.infra import distributed
from saliency.infra.errors import UserError
from saliency.infra.rundir import WEIGHTS, RunDir, require_writable
from saliency.infra.training import (Checkpoint, EpochLog, Trainer, adamw_with_schedule, optimiser_step,
                                     require_finite, seed_everything)
from vidcap.training.feature_cache import FeatureCache, extract_features, open_feature_cache
from vidcap.model.captioner import Captioner, load_saliency_source
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.caption_metrics import cider
from vidcap.run import CaptionerWeights, VidcapRunConfig, captioner_run, saliency_provenance
from vidcap.model.saliency_sources import require_world
from vidcap.model.decoder import sequence_log_probs
from vidcap.training.scst import CiderD, self_critical_loss
from vidcap.model.tokenizer import TOKENIZER_FILE, CaptionTokenizer

log = logging.getLogger(__name__)


class CaptionTrainer(Trainer):
    """Builds the front end, fills the feature cache, then trains the decoder on cached tokens. The captioner's
    weights and the training stream depend on the seed alone, not on the saliency source: arms are paired."""

    def __init__(self, config: VidcapRunConfig, out: str, resume: bool = False, progress: bool = True):
        self.config, self.run, self.world = config, RunDir(out), distributed.current()
        self.progress = progress and self.world.is_main
        resume = self.run.prepare(resume, config)
        require_writable(config.data.cache_dir)  # before any work: the features are written there
        require_world(config.captioner.saliency.source, config.data.root)
        seed_everything(config.seed)
        self.train_set = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.train_split)
        self.val_set = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.val_split)
        for dataset in (self.train_set, self.val_set):
            if self.progress:
                log.info(dataset.report())
        train_items = self.train_set.items[: config.data.limit] if config.data.limit else self.train_set.items
        if not train_items:
            raise UserError(f"no usable training videos: {self.train_set.report()}")
        start = captioner_run(config.scst.start) if config.scst.start else None
        if resume or start:
            tokenizer = CaptionTokenizer.load((self.run if resume else start).file(TOKENIZER_FILE))
        else:
            tokenizer = CaptionTokenizer.build((c for item in train_items for c in item.captions),
                                               min_count=config.captioner.tokenizer.min_count,
                                               max_length=config.captioner.max_length)
        saliency_model = load_saliency_source(config.captioner.saliency)
        self.model = Captioner(config.captioner, tokenizer, saliency_model, seed=config.seed).to(self.world.device)
        if start and not resume:
            CaptionerWeights(self.model).load_state_dict(start.load_weights(), start.file(WEIGHTS))
        self.world.barrier()  # every process has checked the run directory before rank 0 writes to it
        self.cache = self._fill_cache(train_items + self.val_set.items)
        # Training's random stream (dropout) starts here, whatever building the saliency model drew before;
        # each process has its own.
        seed_everything(config.seed + self.world.rank)
        self.train_items = [item for item in train_items if item.video_id in self.cache]
        self.val_items = [item for item in self.val_set.items if item.video_id in self.cache]
        if not self.train_items or not self.val_items:
            raise UserError(f"{config.data.root}: no readable videos in the train or validation split")
        self.provenance = saliency_provenance(config.captioner)  # hashed once, saved with every best epoch
        self.reward = CiderD([[tokenizer.normalize(c) for c in item.captions] for item in self.train_items]) \
            if start else None
        self.decoder = distributed.data_parallel(self.model.decoder, self.world)  # what training passes go through
        steps_per_epoch = math.ceil(len(self._epoch_pairs(np.random.default_rng(0))) / config.data.batch_size)
        self.optimizer, self.scheduler = adamw_with_schedule(self.model.decoder.parameters(), config.optim,
                                                             config.optim.epochs * steps_per_epoch)
        self.rng = np.random.default_rng(config.seed)
        self.log = EpochLog(self.run, "CIDEr", train_columns=("loss", "reward") if config.scst.start else ("loss",))
        self.checkpoint = Checkpoint(self.run, self.world, model=CaptionerWeights(self.model), optimizer=self.optimizer,
                                     scheduler=self.scheduler)
        self.epoch = 0
        if resume:
            self.rng.bit_generator.state = self.resume()["numpy_rng"]

    def _fill_cache(self, items) -> FeatureCache:
        cache = open_feature_cache(self.model.front, self.config, self.world.device)
        # the videos that could not be read, (video id, reason): training goes on without them
        self.skipped = extract_features(self.model.front, {item.video_id: item.path for item in items}, cache,
                                        progress=self.progress)
        return cache

    def _epoch_pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Shuffled (video index, caption index) pairs: each video with `captions_per_video` of its captions (the
        self-critical stage: each video once, its captions all references of the reward)."""
        if self.reward is not None:
            return [(int(v), 0) for v in rng.permutation(len(self.train_items))]
        limit = self.config.optim.captions_per_video
        pairs = []
        for index, item in enumerate(self.train_items):
            count = len(item.captions) if limit is None else min(limit, len(item.captions))
            pairs.extend((index, int(c)) for c in rng.choice(len(item.captions), size=count, replace=False))
        return [pairs[i] for i in rng.permutation(len(pairs))]

    def _batch(self, items) -> tuple[torch.Tensor, torch.Tensor | None]:
        pairs = [self.cache.get(item.video_id) for item in items]
        tokens = torch.stack([t for t, _ in pairs]).to(self.world.device)  # (B, M, C)
        saliency = None if pairs[0][1] is None else torch.stack([s for _, s in pairs]).to(self.world.device)  # (B, M)
        return tokens, saliency

    def batches(self) -> list[list[tuple[int, int]]]:
        """This epoch's batches of (video, caption) pairs, from the trainer's own generator."""
        pairs, size = self._epoch_pairs(self.rng), self.config.data.batch_size
        return [pairs[start:start + size] for start in range(0, len(pairs), size)]

    def step(self, chosen: list[tuple[int, int]]) -> dict[str, float]:
        """One optimiser step on a batch of (video, caption) pairs, this process's share of it; returns the batch's
        loss (and in the self-critical stage the mean reward of this process's samples). Shares are weighted by their
        target tokens, so N processes take exactly the step one process would."""
        mine = chosen[self.world.rank::self.world.size]
        share = mine or chosen[:1]  # a process left without pairs still joins the step, with weight 0
        items = [self.train_items[v] for v, _ in share]
        tokens, token_saliency = self._batch(items)
        reward = {}
        if self.reward is not None:
            loss, targets, reward["reward"] = self._self_critical(items, tokens, token_saliency)
            targets = targets if mine else loss.new_zeros(())
        else:
            ids, mask = self.model.tokenizer.encode_batch([self.train_items[v].captions[c] for v, c in share])
            device = self.world.device
            # mean over the share's targets
            loss, _ = self.decoder(tokens, ids.to(device), mask.to(device), token_saliency)
            targets = mask[:, 1:].sum().to(loss) if mine else loss.new_zeros(())  # every token after BOS is a target
        total, count = self.world.sum(torch.stack([loss.detach() * targets, targets]))
        mean = (total / count).item()
        require_finite(mean, self.run, self.epoch + 1)
        # DDP averages over processes: Σ loss·targets / count
        optimiser_step(loss * (targets * self.world.size / count), self.optimizer, self.scheduler,
                       self.config.optim.grad_clip)
        return {"loss": mean, **reward}

    def _self_critical(self, items, tokens: torch.Tensor, token_saliency: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The self-critical loss of a batch, its sampled tokens and their mean reward: `scst.samples` captions sampled
        per video and its greedy caption, both without dropout (the policy whose log-probabilities are raised is the
        one sampled), rewarded by CIDEr-D against the video's captions."""
        model, tokenizer, samples = self.model, self.model.tokenizer, self.config.scst.samples
        model.eval()
        greedy = model.generate(tokens, token_saliency, num_beams=1)
        ids = model.decoder.generate(tokens, token_saliency, num_beams=1, max_length=self.config.captioner.max_length,
                                     do_sample=True, top_k=0, num_return_sequences=samples)  # [B·K,L], video-major
        references = [[tokenizer.normalize(c) for c in item.captions] for item in items]
        greedy_rewards = torch.tensor([self.reward.score(tokenizer.normalize(c), refs)
                                       for c, refs in zip(greedy, references)])
        sample_rewards = torch.tensor([self.reward.score(tokenizer.normalize(sample), references[i // samples])
                                       for i, sample in enumerate(tokenizer.decode_batch(ids))])
        start = torch.full((ids.shape[0], 1), tokenizer.bos_id, dtype=ids.dtype, device=ids.device)
        input_ids = torch.cat([start, ids], dim=1)  # [B·K,1+L]
        tokens = tokens.repeat_interleave(samples, dim=0)  # [B·K,M,C], each video's tokens for each of its samples
        token_saliency = None if token_saliency is None else token_saliency.repeat_interleave(samples, dim=0)  # [B·K,M]
        _, logits = self.decoder(tokens, input_ids, (input_ids != tokenizer.pad_id).long(), token_saliency)
        log_probs, mask = sequence_log_probs(logits, ids, tokenizer.pad_id)
        return (self_critical_loss(log_probs, mask, sample_rewards, greedy_rewards), mask.sum().to(log_probs),
                float(sample_rewards.mean()))

    def validate(self) -> dict[str, float]:
        """Captions for the validation split, decoded as at test (`optim.val_beams`, default the captioner's beams),
        and their CIDEr-D: what picks the best epoch."""
        self.model.eval()
        res, gts = {}, {}
        size = self.config.data.batch_size
        beams = self.config.optim.val_beams or self.config.captioner.num_beams
        for start in range(0, len(self.val_items), size):
            items = self.val_items[start:start + size]
            tokens, token_saliency = self._batch(items)
            for item, caption in zip(items, self.model.generate(tokens, token_saliency, num_beams=beams)):
                res[item.video_id], gts[item.video_id] = caption, item.captions
        return {"CIDEr": cider(gts, res)}

    def save_description(self) -> None:
        self.run.save_config(self.config)
        self.model.tokenizer.save(self.run.file(TOKENIZER_FILE))

    def best_weights(self) -> tuple[dict, dict]:
        return CaptionerWeights(self.model).state_dict(), self.provenance

    def progress_state(self) -> dict:
        return {"numpy_rng": self.rng.bit_generator.state}

    def metrics(self, seconds: float) -> dict:
        return self.log.metrics(seconds, train_videos=len(self.train_items), val_videos=len(self.val_items))
