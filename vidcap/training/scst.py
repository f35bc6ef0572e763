"""Self-critical sequence training (Rennie et al., 2017), the stage after cross-entropy: the decoder samples captions
for each video and raises the log-probability of those whose CIDEr-D beats the CIDEr-D of its own greedy caption
(the baseline), so it learns what the metric rewards rather than the next word of one reference.

The reward is CIDEr-D as pycocoevalcap's `CiderScorer` computes it per caption (tf-idf n-grams 1..4, clipped,
Gaussian length penalty σ = 6, ×10), with document frequencies taken once from the training references, as SCST
implementations do, instead of from each scored batch. Words are the captioner tokenizer's (lower case, no
punctuation), which is what the decoder can write.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import Tensor

from saliency.infra.config import apply_overrides, from_dict, load_config, to_dict
from saliency.infra.errors import UserError
from saliency.infra.rundir import WEIGHTS, RunDir
from vidcap.run import VidcapRunConfig, captioner_run

NGRAMS = 4
SIGMA = 6.0  # of CIDEr-D's Gaussian length penalty
EPOCHS, LR = 5, 2e-5  # the stage's optim.epochs and optim.lr, unless --set says otherwise
STAGE_FOLDER = "scst"  # the stage's run directory, inside its cross-entropy run


def scst_stage(config, start: str):
    """The run config of the self-critical stage of cross-entropy run `start` (whose config is `config`): the same
    captioner and data, starting from it, at the stage's epochs and learning rate without warm-up."""
    return replace(config, scst=replace(config.scst, start=str(start)),
                   optim=replace(config.optim, epochs=EPOCHS, lr=LR, warmup_steps=0))


def stage_config(start: str | Path, overrides: Sequence[str] = (), resume: bool = False):
    """The run config of the self-critical stage (`START/scst`) of the finished cross-entropy run `start`: its config
    at the stage's epochs and learning rate, then `overrides`; resuming a stage that has begun, the stage's own
    config.yaml, then `overrides` (as every run resumes). A run that is a stage already, or whose cross-entropy
    epochs are not all done, is a one-line error."""
    own = Path(start) / STAGE_FOLDER / "config.yaml"
    if resume and own.is_file():
        return load_config(VidcapRunConfig, own, overrides)
    run = captioner_run(start)
    config = run.load_config(VidcapRunConfig)
    if config.scst.start:
        raise UserError(f"{start}: already a self-critical stage (of {config.scst.start}); give its cross-entropy run")
    done = RunDir(start).completed_epochs()
    if done < config.optim.epochs or not run.file(WEIGHTS).is_file():
        raise UserError(f"{start}: --scst needs a finished cross-entropy run, this one has {done} of its "
                        f"{config.optim.epochs} epochs; finish it first (vidcap train --out {start} --resume)")
    return from_dict(VidcapRunConfig, apply_overrides(to_dict(scst_stage(config, str(start))), list(overrides)))


def ngram_counts(words: Sequence[str]) -> Counter:
    """Every n-gram of 1..4 words with its count."""
    return Counter(tuple(words[i:i + n]) for n in range(1, NGRAMS + 1) for i in range(len(words) - n + 1))


class CiderD:
    """Per-caption CIDEr-D against the references of a corpus whose document frequencies are fixed here."""

    def __init__(self, corpus: Sequence[Sequence[str]]):
        """`corpus`: per video, its reference captions (already normalised: words separated by spaces)."""
        self.document_frequency: Counter = Counter()
        for references in corpus:
            self.document_frequency.update(set().union(*(ngram_counts(r.split()) for r in references)))
        self.log_documents = math.log(max(1, len(corpus)))
        self._references: dict[tuple[str, ...], list] = {}

    def _vector(self, counts: Counter) -> tuple[list[dict], np.ndarray, int]:
        """tf-idf per n-gram order, the norms, and the length as pycocoevalcap counts it (its number of bigrams)."""
        vector = [{} for _ in range(NGRAMS)]
        norm = np.zeros(NGRAMS)
        for ngram, count in counts.items():
            n = len(ngram) - 1
            vector[n][ngram] = count * (self.log_documents - math.log(max(1.0, self.document_frequency[ngram])))
            norm[n] += vector[n][ngram] ** 2
        return vector, np.sqrt(norm), sum(c for g, c in counts.items() if len(g) == 2)

    def score(self, caption: str, references: Sequence[str]) -> float:
        """CIDEr-D of `caption` against `references` (normalised strings)."""
        key = tuple(references)
        if key not in self._references:
            self._references[key] = [self._vector(ngram_counts(r.split())) for r in references]
        vector, norm, length = self._vector(ngram_counts(caption.split()))
        total = np.zeros(NGRAMS)
        for ref_vector, ref_norm, ref_length in self._references[key]:
            similarity = np.array([sum(min(value, ref_vector[n].get(g, 0.0)) * ref_vector[n].get(g, 0.0)
                                       for g, value in vector[n].items()) for n in range(NGRAMS)],
                                  dtype=np.float64)  # an empty caption's sums are int 0
            valid = (norm != 0) & (ref_norm != 0)
            similarity[valid] /= norm[valid] * ref_norm[valid]
            total += similarity * math.exp(-((length - ref_length) ** 2) / (2 * SIGMA ** 2))
        return float(total.mean() / len(references) * 10.0)


def self_critical_loss(log_probs: Tensor, mask: Tensor, sample_rewards: Tensor, greedy_rewards: Tensor) -> Tensor:
    """REINFORCE with the greedy caption as baseline: −mean over the sampled tokens of (r(sample) − r(greedy))·log p,
    for `log_probs`, `mask` `[B·K,L]` (K samples per video, video-major) and rewards `[B·K]`, `[B]`."""
    samples = sample_rewards.shape[0] // greedy_rewards.shape[0]
    advantage = (sample_rewards - greedy_rewards.repeat_interleave(samples)).to(log_probs)  # [B·K]
    mask = mask.to(log_probs)
    return -(advantage[:, None] * log_probs * mask).sum() / mask.sum().clamp_min(1)
