"""How far a caption can be trusted: every caption the captioner writes is a `Caption`, a string that also carries

- `confidence`: the mean log-probability of its words under the decoder, turned by the run's calibration (fitted on
  its validation split, `vidcap.training.trust`) into the probability that the caption names the video's actor
  right (`grounded`) where the run's data records the actor; without a calibration, the geometric mean of its
  words' probabilities;
- `in_domain`: whether its video's features (the front end's tokens, averaged) lie among those of the videos the
  run was trained on (a Mahalanobis distance under the threshold the run's held-out videos set); None when the run
  has no such record.

Both travel in `trust.safetensors` beside the run's weights.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from saliency.infra.errors import UserError
from saliency.infra.rundir import load_safetensors, safetensors_header, save_safetensors

TRUST_FILE = "trust.safetensors"


class Caption(str):
    """A caption's text (it is the string) with its `confidence` (a probability) and `in_domain` (True, False, or
    None when unknown)."""

    confidence: float
    in_domain: bool | None

    def __new__(cls, text: str, confidence: float, in_domain: bool | None = None) -> Caption:
        caption = super().__new__(cls, text)
        caption.confidence, caption.in_domain = float(confidence), in_domain
        return caption

    def __reduce__(self):  # what copies and pickles of it keep
        return Caption, (str(self), self.confidence, self.in_domain)

    @property
    def flagged(self) -> bool:
        """Whether it comes from a video unlike the model's training videos: a caption not to be trusted."""
        return self.in_domain is False


@dataclass
class Trust:
    """A run's calibration of confidence (`p = sigmoid(slope · mean log-probability + intercept)`; None: none) and its
    record of the training videos' features (`mean` `[C]`, `precision` `[C,C]`, `threshold` of the distance; None:
    none), with how they were made (`about`: what data, how many videos, which false-alarm rate)."""

    slope: float | None = None
    intercept: float | None = None
    mean: Tensor | None = None
    precision: Tensor | None = None
    threshold: float | None = None
    about: dict | None = None

    def confidence(self, mean_log_prob: float) -> float:
        """The probability the caption is grounded (calibrated), else the geometric mean of its words' probabilities."""
        if self.slope is None:
            return math.exp(mean_log_prob)
        return 1.0 / (1.0 + math.exp(-(self.slope * mean_log_prob + self.intercept)))

    def distances(self, features: Tensor) -> Tensor:
        """`[B]`: the Mahalanobis distance of each video's features `[B,C]` from the training videos'."""
        centred = features.to(self.mean) - self.mean  # [B,C]
        return ((centred @ self.precision) * centred).sum(dim=1).clamp_min(0).sqrt()

    def in_domain(self, features: Tensor) -> list[bool | None]:
        """For each video's features `[B,C]`: within the threshold (True), beyond it (False), or None when unknown."""
        if self.mean is None or features.shape[1] != self.mean.shape[0]:
            return [None] * features.shape[0]
        return [bool(distance <= self.threshold) for distance in self.distances(features)]

    def captions(self, texts: list[str], mean_log_probs: Tensor, features: Tensor) -> list[Caption]:
        """`Caption`s of `texts` from their mean log-probabilities `[B]` and their videos' features `[B,C]`."""
        return [Caption(text, self.confidence(float(lp)), inside)
                for text, lp, inside in zip(texts, mean_log_probs, self.in_domain(features))]

    def save(self, path: str | Path) -> None:
        """`trust.safetensors`: the features' mean and precision as tensors, the numbers and `about` as JSON."""
        tensors = {name: value.float() for name, value in (("mean", self.mean), ("precision", self.precision))
                   if value is not None}
        numbers = {"slope": self.slope, "intercept": self.intercept, "threshold": self.threshold}
        save_safetensors(tensors, path, {"numbers": json.dumps(numbers, sort_keys=True),
                                         "about": json.dumps(self.about or {}, sort_keys=True)})

    @classmethod
    def load(cls, path: str | Path) -> Trust:
        """A run's trust record, or an empty one (nothing calibrated, nothing known of its domain) without the file."""
        path = Path(path)
        if not path.is_file():
            return cls()
        tensors = load_safetensors(path)
        metadata = (safetensors_header(path) or {}).get("__metadata__") or {}
        try:
            numbers, about = json.loads(metadata["numbers"]), json.loads(metadata["about"])
        except (KeyError, ValueError):
            raise UserError(f"{path}: not a captioner's trust record (its numbers are missing or damaged)") from None
        return cls(numbers.get("slope"), numbers.get("intercept"), tensors.get("mean"), tensors.get("precision"),
                   numbers.get("threshold"), about)


def trust_fields(caption: str | None) -> dict:
    """`{"confidence", "in_domain"}` of a `Caption`, as JSON records give them (nothing for a plain string)."""
    if not isinstance(caption, Caption):
        return {}
    return {"confidence": round(caption.confidence, 4), "in_domain": caption.in_domain}
