"""Saliency metrics with the MIT saliency benchmark's conventions (Bylinskii et al., `code_forMetrics`).

Every metric takes a prediction `pred` and a target: a ground-truth density map `gt` (CC, KLD, SIM),
a binary fixation map `fix` (NSS and the AUCs), and for sAUC also `other_fix`, the union of other
images' fixations. Maps are 2-D numpy arrays or CPU/GPU torch tensors of any dtype; each metric
returns a Python float. `pred` is resized to the target's size first (bilinear, pixel-centre aligned,
antialiased when shrinking: `torch.nn.functional.interpolate(..., align_corners=False,
antialias=True)`), which is MATLAB `imresize`'s geometry.

Departures from the MATLAB code, all for inputs it mishandles:
- a constant prediction scores CC = NSS = 0 (MATLAB: NaN), is uniform for SIM (MATLAB: NaN unless
  all zero) and ties everywhere for the AUCs (AUC-Judd = AUC-Borji = sAUC = 0.5);
- AUC-Judd is not jittered; tied values are handled exactly instead (all pixels at or above a
  threshold count), which equals MATLAB on maps without ties;
- an empty fixation map raises `ValueError` (MATLAB: NaN), so callers skip the image knowingly.

AUC-Borji and sAUC draw their negatives from `numpy.random.default_rng(seed)`, so a seed fixes the
score. The draws are part of the contract (tests re-implement them): AUC-Borji takes
`rng.integers(0, n_pixels, size=(n_fix, n_splits))`, column s being split s (MATLAB `randi`);
sAUC takes, for each split in turn, `rng.choice(other_indices, min(n_fix, n_other), replace=False)`
(MATLAB: the first entries of a `randperm`), `other_indices` the row-major fixated pixels.

`METRICS` puts all seven behind one call, `METRICS[name](pred, *targets)` with the targets named by
`.needs`, so evaluation code is a loop: see `score_all`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# MATLAB's `eps`, which the benchmark's KLD uses.
EPS = 2.220446049250313e-16

MapLike = np.ndarray | torch.Tensor


def _as_map(x: MapLike, name: str) -> np.ndarray:
    """A 2-D float64 numpy copy or view of `x`; rejects other ranks and non-finite values."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map, got shape {tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _resized(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`a` resized bilinearly to `shape` (H, W); returned as is when it already has that shape."""
    if a.shape == tuple(shape):
        return a
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]  # (1, 1, h, w)
    t = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)
    return t[0, 0].numpy()


def _prediction(pred: MapLike, shape: tuple[int, int]) -> np.ndarray:
    return _resized(_as_map(pred, "pred"), shape)


def _fixated(fix: MapLike, name: str = "fix") -> np.ndarray:
    """Boolean mask of fixated pixels (value > 0); raises `ValueError` when there are none."""
    mask = _as_map(fix, name) > 0
    if not mask.any():
        raise ValueError(f"{name} has no fixations; the image cannot be scored on this metric")
    return mask


def _standardised(a: np.ndarray) -> np.ndarray | None:
    """(a - mean) / std with ddof=1, as MATLAB's `std`; None for a constant map."""
    if a.max() == a.min():
        return None
    centred = a - a.mean()
    return centred / centred.std(ddof=1)


def _min_max(a: np.ndarray) -> np.ndarray:
    """`a` rescaled to [0, 1]; a constant map becomes all zeros (every pixel tied)."""
    low, high = a.min(), a.max()
    if high == low:
        return np.zeros_like(a)
    return (a - low) / (high - low)


def _counts_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For values (..., n) and ascending thresholds (T,): how many values are >= each threshold, (..., T).

    Bins every value among the thresholds (cheap when T is small, as for the AUC-Borji grid)."""
    n_thr = thresholds.size
    rank = np.searchsorted(thresholds, values, side="right")  # thresholds <= value, in 0..T
    rows = rank.reshape(-1, rank.shape[-1]) if rank.ndim > 1 else rank[None]
    offsets = np.arange(rows.shape[0])[:, None] * (n_thr + 1)
    hist = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * (n_thr + 1))
    hist = hist.reshape(rows.shape[0], n_thr + 1)
    # value >= thresholds[k]  <=>  rank > k: sum the histogram from k + 1 on.
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return above.reshape(*values.shape[:-1], n_thr)


def _roc_area(fp: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Trapezoid area under ROC curves given by points (..., n) from (0, 0) to (1, 1); MATLAB `trapz`."""
    return np.sum(np.diff(fp, axis=-1) * (tp[..., 1:] + tp[..., :-1]), axis=-1) / 2


def _check_splits(n_splits: int, step: float) -> None:
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")


def _split_auc(positives: np.ndarray, negatives: np.ndarray, step: float) -> float:
    """Mean AUC over splits: `positives` (n_pos,), `negatives` (n_splits, n_neg), values in [0, 1].

    MATLAB sweeps thresholds `0:step:max` per split; thresholds above a split's maximum only repeat
    the curve's (0, 0) start, so one grid up to 1 serves every split with the same areas.
    """
    thresholds = np.arange(math.floor(1 / step + 1e-9) + 1) * step  # ascending
    tp = _counts_at_or_above(positives, thresholds)[::-1] / positives.size  # (T,), descending thr
    fp = _counts_at_or_above(negatives, thresholds)[:, ::-1] / negatives.shape[1]  # (S, T)
    n_splits = negatives.shape[0]
    zeros, ones = np.zeros((n_splits, 1)), np.ones((n_splits, 1))
    fp = np.concatenate([zeros, fp, ones], axis=1)
    tp = np.concatenate([zeros, np.broadcast_to(tp, (n_splits, tp.size)), ones], axis=1)
    return float(_roc_area(fp, tp).mean())


def cc(pred: MapLike, gt: MapLike) -> float:
    """Pearson correlation of `pred` and the density map `gt` (2-D); 0.0 if either is constant."""
    g = _as_map(gt, "gt")
    p = _standardised(_prediction(pred, g.shape))
    g = _standardised(g)
    if p is None or g is None:
        return 0.0
    return float(np.sum(p * g) / (p.size - 1))


def kld(pred: MapLike, gt: MapLike) -> float:
    """KL divergence of `pred` from `gt`, both sum-normalised: Σ Q·log(ε + Q/(P+ε)), Q = gt; lower is better.

    Maps must be non-negative; an all-zero map stays zero, as in MATLAB.
    """
    q = _as_map(gt, "gt")
    p = _prediction(pred, q.shape)
    if (p < 0).any() or (q < 0).any():
        raise ValueError("KLD needs non-negative maps (pass densities, not log-densities)")
    p = p / p.sum() if p.any() else p
    q = q / q.sum() if q.any() else q
    return float(np.sum(q * np.log(EPS + q / (p + EPS))))


def _distribution(a: np.ndarray) -> np.ndarray:
    """Min-max then sum normalised; a constant map carries no information and becomes uniform."""
    a = _min_max(a)
    return a / a.sum() if a.any() else np.full_like(a, 1.0 / a.size)


def sim(pred: MapLike, gt: MapLike) -> float:
    """Similarity (histogram intersection) Σ min(P, Q) of the min-max, sum-normalised maps; 1 = identical."""
    q = _as_map(gt, "gt")
    p = _prediction(pred, q.shape)
    return float(np.sum(np.minimum(_distribution(p), _distribution(q))))


def nss(pred: MapLike, fix: MapLike) -> float:
    """Normalised scanpath saliency: mean of the standardised `pred` at fixated pixels; 0.0 if constant."""
    mask = _fixated(fix)
    p = _standardised(_prediction(pred, mask.shape))
    return 0.0 if p is None else float(p[mask].mean())


def auc_judd(pred: MapLike, fix: MapLike) -> float:
    """AUC-Judd: thresholds at the saliency of fixated pixels, negatives all other pixels, trapezoid area."""
    mask = _fixated(fix)
    if mask.all():
        raise ValueError("fix marks every pixel; AUC-Judd needs non-fixated pixels as negatives")
    s = _min_max(_prediction(pred, mask.shape)).ravel()
    thresholds = np.sort(s[mask.ravel()])  # ascending, one per fixation
    n_fix, n_pix = thresholds.size, s.size
    # Pixels (fixations) >= t = all minus those < t; sorting the map once makes this a lookup.
    above_all = n_pix - np.searchsorted(np.sort(s), thresholds, side="left")
    above_fix = n_fix - np.searchsorted(thresholds, thresholds, side="left")
    tp = np.concatenate([[0.0], above_fix[::-1] / n_fix, [1.0]])  # thresholds descending
    fp = np.concatenate([[0.0], (above_all - above_fix)[::-1] / (n_pix - n_fix), [1.0]])
    return float(_roc_area(fp, tp))


def auc_borji(
    pred: MapLike, fix: MapLike, n_splits: int = 100, step: float = 0.1, seed: int = 0
) -> float:
    """AUC-Borji: per split, as many negatives as fixations drawn uniformly over all pixels; mean AUC."""
    _check_splits(n_splits, step)
    mask = _fixated(fix)
    s = _min_max(_prediction(pred, mask.shape)).ravel()
    positives = s[mask.ravel()]
    rng = np.random.default_rng(seed)
    negatives = rng.integers(0, s.size, size=(positives.size, n_splits))  # column = split
    return _split_auc(positives, s[negatives].T, step)


def sauc(
    pred: MapLike,
    fix: MapLike,
    other_fix: MapLike,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
) -> float:
    """Shuffled AUC: negatives drawn without replacement from the fixated pixels of `other_fix`.

    `other_fix` is a binary map of other images' fixations with `fix`'s shape; discounts centre bias.
    """
    _check_splits(n_splits, step)
    mask = _fixated(fix)
    other = _fixated(other_fix, "other_fix")
    if other.shape != mask.shape:
        raise ValueError(f"other_fix has shape {other.shape}, fix has {mask.shape}")
    s = _min_max(_prediction(pred, mask.shape)).ravel()
    positives = s[mask.ravel()]
    other_idx = np.flatnonzero(other)
    n_neg = min(positives.size, other_idx.size)
    rng = np.random.default_rng(seed)
    # A random n_neg-subset per split, as MATLAB's randperm(...)(1:n); choice() avoids the full shuffle.
    negatives = np.stack([rng.choice(other_idx, n_neg, replace=False) for _ in range(n_splits)])
    return _split_auc(positives, s[negatives], step)


@dataclass(frozen=True)
class Metric:
    """One metric behind the common call `metric(pred, *targets)`, targets in the order of `needs`."""

    name: str
    needs: tuple[str, ...]  # which of "gt", "fix", "other_fix" follow `pred`
    higher_is_better: bool
    fn: Callable[..., float]

    def __call__(self, pred: MapLike, *targets: MapLike) -> float:
        return self.fn(pred, *targets)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("CC", ("gt",), True, cc),
        Metric("KLD", ("gt",), False, kld),
        Metric("NSS", ("fix",), True, nss),
        Metric("SIM", ("gt",), True, sim),
        Metric("AUC_Judd", ("fix",), True, auc_judd),
        Metric("AUC_Borji", ("fix",), True, auc_borji),
        Metric("sAUC", ("fix", "other_fix"), True, sauc),
    )
}

higher_is_better: dict[str, bool] = {name: m.higher_is_better for name, m in METRICS.items()}


def score_all(
    pred: MapLike,
    gt: MapLike | None,
    fix: MapLike | None,
    other_fix: MapLike | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Scores of one prediction on every metric in `METRICS` (or those in `names`), by name.

    Without `names`, metrics whose inputs are None are skipped (sAUC when `other_fix` is None);
    a metric named explicitly whose input is missing raises `ValueError`.
    """
    chosen = list(METRICS) if names is None else list(names)
    unknown = [n for n in chosen if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    inputs = {
        key: None if value is None else _as_map(value, key)
        for key, value in (("gt", gt), ("fix", fix), ("other_fix", other_fix))
    }
    p = _as_map(pred, "pred")
    shapes = {a.shape for a in inputs.values() if a is not None}
    if len(shapes) == 1:  # resize once rather than once per metric
        p = _resized(p, shapes.pop())
    scores = {}
    for name in chosen:
        metric = METRICS[name]
        missing = [k for k in metric.needs if inputs[k] is None]
        if missing:
            if names is None:
                continue
            raise ValueError(f"{name} needs {', '.join(missing)}")
        scores[name] = metric(p, *(inputs[k] for k in metric.needs))
    return scores


def fixation_map(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) map from an (N, 2) array of 0-based (row, col) points; out-of-range points are
    clipped to the border, non-integer ones rounded. Repeated points mark one pixel."""
    h, w = shape
    pts = np.rint(np.asarray(points_rc, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
    out = np.zeros((h, w), dtype=bool)
    out[np.clip(pts[:, 0], 0, h - 1), np.clip(pts[:, 1], 0, w - 1)] = True
    return out
