"""Reference points for saliency models on the synthetic world: what no learning, the centre alone, the world
itself and a second set of observers reach on the same images.

- `heuristic`: threshold colour saturation, take the largest blob, put a Gaussian of its size on it. In world
  v1 the actor is the only saturated object and this rule is as good as any network; in v2 it is not.
- `centre`: the centre bias alone (a Gaussian of 0.2·W by 0.2·H, the generator's own).
- `oracle`: the generator's expected density (`GazeModel.expected_density`): the best any model can do.
- `inter_observer`: the map of a second, independent set of observers of the same size as the ground truth's:
  how well people predict people (the usual ceiling on real data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from saliency.data import open_dataset
from saliency.infra.errors import DatasetError
from saliency.metrics import METRICS
from saliency.world.gaze import GazeModel, all_fixations, density_map
from saliency.world.writers import META_NAME, read_meta

BASELINES = ("heuristic", "centre", "oracle", "inter_observer")
SATURATION_THRESHOLD = 0.35


def gaussian_blob(shape: tuple[int, int], cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """An axis-aligned Gaussian bump, (H, W) float32 with peak 1."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2)).astype(np.float32)


def saturation_blob(image: np.ndarray) -> np.ndarray:
    """The no-learning rule: the largest blob of saturated colour, as a Gaussian as wide as the blob; the
    centre prior when nothing is saturated."""
    rgb = image.astype(np.float32) / 255
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    labels, count = ndimage.label(saturation > SATURATION_THRESHOLD)
    if count == 0:
        return centre_prior(image.shape[:2])
    areas = ndimage.sum_labels(np.ones_like(saturation), labels, range(1, count + 1))
    largest = int(np.argmax(areas)) + 1
    cy, cx = ndimage.center_of_mass(labels == largest)
    radius = max(np.sqrt(areas[largest - 1] / np.pi), 2.0)
    return gaussian_blob(image.shape[:2], cx, cy, radius, radius)


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """The centre bias alone."""
    h, w = shape
    return gaussian_blob(shape, (w - 1) / 2, (h - 1) / 2, 0.2 * w, 0.2 * h)


def synthetic_meta(root: str | Path) -> dict:
    """`synthetic_meta.json` of a folder the synthetic generator wrote (SALICON layout), or a one-line error."""
    path = Path(root) / META_NAME
    if not path.is_file():
        raise DatasetError(f"{root}: no {META_NAME}; the baselines need a synthetic dataset")
    return read_meta(path)


def baseline_scores(root: str | Path, split: str = "test", seed: int = 0) -> dict[str, list[float]]:
    """Per-image CC against the ground-truth density of every baseline, on `split` of a synthetic dataset,
    in the reader's image order (so it pairs with a model's per-image scores)."""
    meta = synthetic_meta(root)
    world, size = meta.get("world", "v1"), meta["size"]
    reader = open_dataset(root, kind="salicon", split=split)
    cc = METRICS["CC"]
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {name: [] for name in BASELINES}
    for name, sample in zip(reader.names, reader):
        model = GazeModel.of_record(meta["images"][name], size, world)
        others = density_map(all_fixations(model.sample(rng)), sample.density.shape)
        maps = {"heuristic": saturation_blob(sample.image), "centre": centre_prior(sample.density.shape),
                "oracle": model.expected_density(), "inter_observer": others}
        for key, prediction in maps.items():
            scores[key].append(float(cc(prediction, sample.density)))
    return scores
