"""Score a saliency model on a dataset with the MIT-benchmark metrics, at the ground truth's own resolution."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from saliency.data import SaliencyReader, SaliencySample, imagenet_normalise
from saliency.infra.errors import DatasetError, UserError
from saliency.metrics import METRICS, fixation_map, score_all
from saliency.models.components import motion_input, sees_motion

ALL_METRICS = list(METRICS)
OTHER_IMAGES_FOR_SAUC = 10
# Why a metric cannot be scored when no image has the input it needs (`Metric.needs`).
LACKING = {"gt": "no density maps", "fix": "no fixations", "other_fix": "fixations on fewer than two images"}


def image_to_tensor(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 `[H,W,3]` RGB → ImageNet-normalised float `[3,h,w]` at `size` (bilinear, antialiased)."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div(255)  # (3, H, W), a writable copy
    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return imagenet_normalise(x)


def model_input(images: Sequence[np.ndarray], size: tuple[int, int],
                previous: Sequence[np.ndarray | None] | None = None, motion: bool = False) -> torch.Tensor:
    """A model's batch for uint8 `images` at `size`: normalised RGB `[B,3,h,w]`, or for a `motion` model
    `motion_input` of each image and its `previous` frame `[B,6,h,w]` (None, or a None entry: a still image)."""
    frames = torch.stack([image_to_tensor(image, size) for image in images])  # (B, 3, h, w)
    if not motion:
        return frames
    before = previous or [None] * len(images)
    return motion_input(frames, torch.stack([image_to_tensor(image if prior is None else prior, size)
                                             for image, prior in zip(images, before)]))  # (B, 6, h, w)


@torch.no_grad()
def predict_maps(model: torch.nn.Module, images: Sequence[np.ndarray], size: tuple[int, int],
                 previous: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Probability maps (sum 1) at each image's own resolution, predicted at model input `size` (a motion model
    also sees each image's `previous` frame)."""
    batch = model_input(images, size, previous, sees_motion(model))  # (B, C, h, w)
    device = next(model.parameters()).device
    probability = model(batch.to(device)).exp().cpu()  # (B, 1, h, w)
    maps = []
    for image, p in zip(images, probability):
        full = F.interpolate(p[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
        maps.append((full / full.sum()).numpy())
    return maps


FixationIndex = list[tuple[np.ndarray, tuple[int, int]] | None]


def read_sample(reader: Sequence[SaliencySample], index: int,
                skipped: list[tuple[int, str]] | None) -> SaliencySample | None:
    """Sample `index`; None if its files are unreadable and `skipped` collects (index, why), else the error propagates."""
    try:
        return reader[index]
    except DatasetError as error:
        if skipped is None:
            raise
        skipped.append((index, str(error)))
        return None


def fixation_index(reader: Sequence[SaliencySample], skipped: list[tuple[int, str]] | None = None) -> FixationIndex:
    """Every image's fixation points and size (None where unreadable): the pre-pass sAUC needs for its negatives."""
    index: FixationIndex = []
    for i in range(len(reader)):
        sample = read_sample(reader, i, skipped)
        points = sample.fixations if sample is not None and sample.fixations is not None else np.zeros((0, 2), np.int64)
        index.append(None if sample is None else (points, sample.image.shape[:2]))
    return index


def other_fixations(index: FixationIndex, current: int, rng: np.random.Generator) -> np.ndarray | None:
    """Binary map of fixations from up to 10 other images, rescaled to image `current`'s size (sAUC negatives)."""
    candidates = [j for j, entry in enumerate(index) if j != current and entry is not None and len(entry[0])]
    if not candidates:
        return None
    chosen = rng.choice(candidates, size=min(OTHER_IMAGES_FOR_SAUC, len(candidates)), replace=False)
    height, width = index[current][1]
    scaled = []
    for j in chosen:
        points, (other_h, other_w) = index[j]
        scaled.append(np.floor((points.astype(np.float64) + 0.5) * [height / other_h, width / other_w]).astype(np.int64))
    return fixation_map(np.concatenate(scaled), (height, width))


def evaluate_model(model: torch.nn.Module, reader: Sequence[SaliencySample], size: tuple[int, int],
                   metrics: Sequence[str] = ALL_METRICS, batch_size: int = 8, seed: int = 0,
                   progress: bool = True, skipped: list[tuple[int, str]] | None = None,
                   left_out: dict[str, str] | None = None,
                   per_image: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Mean of each metric over the images that have the ground truth it needs.

    A metric that no image has that ground truth for (NSS on maps without fixations) is an error; with a
    `left_out` dict it is dropped from the result instead and recorded there (name → what the data
    lacks), for callers that score whatever the data allows. Scoring no metric at all is always an error.
    With a `skipped` list, an image whose files cannot be read is left out and (its index, its one-line
    error) appended there; without one, the first such error propagates. A `per_image` dict receives each
    metric's score per scored image, in reading order (for paired comparisons of two models on the same images).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    model.eval()
    others = fixation_index(reader, skipped) if "sAUC" in metrics else None
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {name: [] for name in metrics}
    present: set[str] = set()  # the inputs of `LACKING` that some scored image had
    bar = tqdm(range(0, len(reader), batch_size), desc="evaluating", disable=not progress, leave=False)
    for start in bar:
        indices = range(start, min(start + batch_size, len(reader)))
        if others is not None:  # the pre-pass has read every image and noted the unreadable ones
            indices = [i for i in indices if others[i] is not None]
        chunk = [(i, sample) for i in indices if (sample := read_sample(reader, i, skipped)) is not None]
        if not chunk:
            continue
        predictions = predict_maps(model, [s.image for _, s in chunk], size, [s.previous for _, s in chunk])
        for (index, sample), pred in zip(chunk, predictions):
            fix = None
            if sample.fixations is not None and len(sample.fixations):
                fix = fixation_map(sample.fixations, sample.image.shape[:2])
            other = other_fixations(others, index, rng) if fix is not None and others is not None else None
            present.update(key for key, value in (("gt", sample.density), ("fix", fix), ("other_fix", other))
                           if value is not None)
            usable = [m for m in metrics
                      if ("gt" not in METRICS[m].needs or sample.density is not None)
                      and ("fix" not in METRICS[m].needs or fix is not None)
                      and ("other_fix" not in METRICS[m].needs or other is not None)]
            for name, value in score_all(pred, sample.density, fix, other, names=usable).items():
                scores[name].append(value)
    missing = [name for name, values in scores.items() if not values]
    if skipped and missing == list(metrics):
        raise UserError(f"no readable image among {len(reader)} (first: {skipped[0][1]})")
    # A metric is missing only if one of its inputs was on no image (sAUC's other_fix comes with fix).
    lacking = {name: next(LACKING[key] for key in METRICS[name].needs if key not in present) for name in missing}
    if missing and (left_out is None or len(missing) == len(scores)):
        raise UserError(f"the data has no ground truth for {describe_left_out(lacking)}")
    if left_out is not None:
        left_out.update(lacking)
    if per_image is not None:
        per_image.update({name: [float(v) for v in values] for name, values in scores.items() if values})
    return {name: float(np.mean(values)) for name, values in scores.items() if values}


def scorable(reader: SaliencyReader, metrics: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split `metrics` into those the reader's ground truth can score and the rest (name → what is lacking)."""
    have = reader.ground_truth
    lacking = {m: next(LACKING[k] for k in METRICS[m].needs if k not in have)
               for m in metrics if not set(METRICS[m].needs) <= have}
    return [m for m in metrics if m not in lacking], lacking


def describe_left_out(left_out: dict[str, str]) -> str:
    """One line of metrics grouped by what the data lacks: `NSS, AUC_Judd (no fixations)`."""
    groups: dict[str, list[str]] = {}
    for name, why in left_out.items():
        groups.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in groups.items())
