"""Paired comparisons with confidence intervals: how two systems differ on the same test items; and the evenly
spread sample of items that reports and calibration take."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def spread(length: int, count: int) -> list[int]:
    """`count` indices spread evenly over `range(length)`, first and last included (all of them if fewer): a sample
    that is the same on every run."""
    return [int(i) for i in np.linspace(0, length - 1, min(count, length)).round()] if length else []


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of `a − b` over paired items and its percentile bootstrap interval (items resampled with
    replacement, `resamples` times): `{"diff", "ci95": [lo, hi], "n"}`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired scores need two equal, non-empty 1-D sequences, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"diff": float(diff.mean()), "ci95": [float(low), float(high)], "n": int(len(diff))}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """McNemar's exact test of paired binary outcomes (say, grounded or not per video): do `a` and `b` succeed on
    as many items? Only the discordant items count: `{"a_only", "b_only", "p"}`, p two-sided (binomial, 1/2)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need two equal 1-D sequences, got {a.shape} and {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    n, k = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": min(1.0, 2 * tail)}


def reliability(confidences: Sequence[float], outcomes: Sequence[bool], bins: int = 5) -> dict:
    """How well probabilities `confidences` match how often `outcomes` happen: per equal-width bin of confidence, its
    items, mean confidence and observed share (empty bins left out), and the expected calibration error (the
    item-weighted mean gap between the two): `{"bins": [{"from", "to", "items", "confidence", "observed"}], "ece"}`."""
    confidences, outcomes = np.asarray(confidences, np.float64), np.asarray(outcomes, np.float64)
    if confidences.shape != outcomes.shape or not len(confidences):
        raise ValueError("reliability needs as many outcomes as confidences, at least one")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1]), 0, bins - 1)
    rows, gap = [], 0.0
    for index in range(bins):
        chosen = which == index
        if chosen.any():
            confidence, observed = float(confidences[chosen].mean()), float(outcomes[chosen].mean())
            rows.append({"from": float(edges[index]), "to": float(edges[index + 1]), "items": int(chosen.sum()),
                         "confidence": confidence, "observed": observed})
            gap += chosen.sum() * abs(confidence - observed)
    return {"bins": rows, "ece": gap / len(confidences)}
