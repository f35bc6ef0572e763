"""A trained captioner's trust record (`vidcap.model.trust`), made from its own data once it is trained:

- what its training videos look like to its front end: the mean and the (Ledoit–Wolf shrunk) covariance of each
  video's tokens, averaged; the distance threshold is the quantile of held-out in-domain distances (its validation
  videos, and each training video when the others are fitted, five folds) that leaves FALSE_ALARM of them out;
- how its confidence maps onto being right: on the validation split, where the data records the actor, a logistic
  fit (Platt's, with his smoothed targets, so a split with no grounded caption gives a low, finite probability) of
  the captions' grounding on their mean log-probability.

`vidcap train` writes it at the end of a run, `vidcap calibrate RUN` for a run trained before.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from saliency.infra.errors import UserError
from saliency.world import META_NAME, read_meta
from vidcap.data.datasets import open_caption_dataset
from vidcap.evaluation.grounding import ground_captions, load_actors
from vidcap.model.trust import TRUST_FILE, Trust
from vidcap.run import load_run
from vidcap.training.feature_cache import extract_features, open_feature_cache

log = logging.getLogger(__name__)

FALSE_ALARM = 0.01  # the share of held-out in-domain videos the threshold may flag
FOLDS = 5


def ledoit_wolf(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean `[C]` and the inverse of the Ledoit–Wolf shrunk covariance `[C,C]` of `features` `[N,C]` (float64):
    well conditioned however few videos there are for as many channels."""
    mean = features.mean(axis=0)
    centred = features - mean
    n, channels = centred.shape
    covariance = centred.T @ centred / n
    mu = np.trace(covariance) / channels
    squared = centred ** 2
    beta = (np.sum(squared.T @ squared) / n - np.sum(covariance ** 2)) / (channels * n)
    delta = np.sum((covariance - mu * np.eye(channels)) ** 2) / channels
    shrinkage = 0.0 if delta == 0 else min(beta, delta) / delta
    shrunk = (1 - shrinkage) * covariance + shrinkage * mu * np.eye(channels)
    return mean, np.linalg.pinv(shrunk)


def mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = features - mean
    return np.sqrt(np.maximum(np.einsum("nc,cd,nd->n", centred, precision, centred), 0))


def held_out_distances(train: np.ndarray, val: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """Distances of in-domain videos none of which the fit saw: each fold of the training videos from a fit on the
    others, and the validation videos from a fit on all of them."""
    order = np.random.default_rng(0).permutation(len(train))
    distances = [mahalanobis(val, *ledoit_wolf(train))] if len(val) else []
    for fold in np.array_split(order, min(folds, len(train))):
        rest = np.setdiff1d(order, fold)
        if len(rest) >= 2 and len(fold):
            distances.append(mahalanobis(train[fold], *ledoit_wolf(train[rest])))
    return np.concatenate(distances)


def platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(slope, intercept) of `P(label) = sigmoid(slope · score + intercept)` by Newton's method on Platt's smoothed
    targets: (positives + 1) / (positives + 2) and 1 / (negatives + 2)."""
    positives = int(labels.sum())
    targets = np.where(labels > 0, (positives + 1) / (positives + 2), 1 / (len(labels) - positives + 2))
    weights = np.array([0.0, np.log(targets.mean() / (1 - targets.mean()))])
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(design @ weights)))
        gradient = design.T @ (p - targets) + np.array([1e-3 * weights[0], 0.0])  # a faint pull of the slope to 0
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + np.diag([1e-3, 1e-9])
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(weights[0]), float(weights[1])


@torch.no_grad()
def fit_trust(run_dir: str | Path, progress: bool = True) -> Trust:
    """The trust record of the captioner trained into `run_dir`, from its own training and validation videos (their
    tokens from the run's feature cache, extracted where missing), written to `RUN/trust.safetensors`."""
    model, config = load_run(run_dir)
    device = torch.device("cpu")
    train = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.train_split)
    val = open_caption_dataset(config.data.root, kind=config.data.kind, split=config.data.val_split)
    train_items = train.items[: config.data.limit] if config.data.limit else train.items
    cache = open_feature_cache(model.front, config, device)
    extract_features(model.front, {item.video_id: item.path for item in [*train_items, *val.items]}, cache,
                     progress=progress)
    train_items = [item for item in train_items if item.video_id in cache]
    val_items = [item for item in val.items if item.video_id in cache]
    if len(train_items) < 2:
        raise UserError(f"{run_dir}: fewer than two readable training videos, too few to know what they look like")

    def features(items) -> np.ndarray:
        return np.stack([cache.get(item.video_id)[0].double().mean(dim=0).numpy() for item in items]) \
            if items else np.zeros((0, model.front.out_channels))

    train_features, val_features = features(train_items), features(val_items)
    mean, precision = ledoit_wolf(train_features)
    threshold = float(np.quantile(held_out_distances(train_features, val_features), 1 - FALSE_ALARM))
    trust = Trust(mean=torch.from_numpy(mean).float(), precision=torch.from_numpy(precision).float(),
                  threshold=threshold, about=_about(config, len(train_items), len(val_items)))
    actors = load_actors(config.data.root)
    if actors and val_items:
        captions = {}
        for start in range(0, len(val_items), config.data.batch_size):
            items = val_items[start:start + config.data.batch_size]
            pairs = [cache.get(item.video_id) for item in items]
            signal = None if pairs[0][1] is None else torch.stack([s for _, s in pairs])
            captions.update(zip((item.video_id for item in items),
                                model.generate(torch.stack([t for t, _ in pairs]), signal)))
        grounded = ground_captions(captions, actors)
        ids = [video for video in captions if video in grounded]
        scores = np.log([captions[video].confidence for video in ids])  # uncalibrated: exp(mean log-probability)
        labels = np.array([float(grounded[video]["grounded"]) for video in ids])
        trust.slope, trust.intercept = platt(scores, labels)
        trust.about |= {"calibrated_on": f"{len(ids)} validation videos, {int(labels.sum())} grounded"}
    trust.save(Path(run_dir) / TRUST_FILE)
    return trust


def _about(config, train_videos: int, val_videos: int) -> dict:
    """What the run was trained on, for its card: the data, how many videos, and the synthetic world if it is one."""
    about = {"data": str(config.data.root), "train_videos": train_videos, "val_videos": val_videos,
             "false_alarm": FALSE_ALARM}
    meta = Path(config.data.root) / META_NAME
    if meta.is_file():
        record = read_meta(meta)
        about["synthetic_world"] = {"version": record.get("world"), "seed": record.get("seed")}
    return about
