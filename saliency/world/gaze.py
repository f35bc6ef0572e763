"""Where the synthetic world's observers look: a gaze model per frame (objects by their attention weight, a centre
bias, the rest anywhere), sampled fixations as SALICON stores them, and density maps blurred from fixations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from saliency.world.rules import OBSERVERS, Scene


@dataclass(frozen=True)
class ObserverGaze:
    """One observer's viewing of one image, as SALICON stores it (all 1-based pixels)."""

    fixations: np.ndarray  # (N, 2) float64 [x, y]
    location: np.ndarray  # (M, 2) float64 raw gaze samples [x, y]
    timestamp: np.ndarray  # (M,) float64 milliseconds since onset


GAZE_SHARES = {"v1": (0.75, 0.17), "v2": (0.80, 0.13)}  # (on objects, centre bias); the rest lands anywhere
_CENTRE_SPREAD = 0.2  # centre-bias fixations: Gaussian of 0.2·W by 0.2·H around the image centre


@dataclass(frozen=True)
class GazeModel:
    """Where observers look in one image: a mixture of a Gaussian per object (weighted by its share of the
    object fixations), a centre bias and a uniform part. Built from a scene or from its `synthetic_meta.json`
    record, so the world's own expected density can be computed from the files alone."""

    height: int
    width: int
    centres: np.ndarray  # (K, 2) object centres (x, y), 0-based
    spreads: np.ndarray  # (K,) standard deviation of fixations on each object, pixels
    shares: np.ndarray  # (K,) each object's share of the object fixations
    p_object: float
    p_centre: float
    observers: int

    @classmethod
    def of_scene(cls, scene: Scene, t: int) -> "GazeModel":
        s = scene.fraction(t)
        sprites = [o.sprite for o in scene.objects] if scene.world == "v2" else [scene.actor]
        shares = scene.attention_weights() if scene.world == "v2" else np.ones(1)
        return cls(scene.height, scene.width, np.array([sp.centre(s) for sp in sprites]),
                   np.array([0.5 * sp.radius(s) for sp in sprites]), shares, *GAZE_SHARES[scene.world],
                   OBSERVERS[scene.world])

    @classmethod
    def of_record(cls, record: dict, size: Sequence[int], world: str) -> "GazeModel":
        """From an image's entry in `synthetic_meta.json` (`scene_record`) and the meta's `size` and `world`."""
        objects = record.get("objects") or [{**record, "attention": 1.0}]
        return cls(int(size[0]), int(size[1]), np.array([o["centre"] for o in objects], np.float64),
                   np.array([0.5 * o["radius"] for o in objects]), np.array([o["attention"] for o in objects]),
                   *GAZE_SHARES[world], OBSERVERS[world])

    def sample(self, rng: np.random.Generator, n_observers: int | None = None,
               fixations_per_observer: int = 5) -> list[ObserverGaze]:
        """Draw observers' fixations; each comes with a few jittered raw gaze samples 40 ms apart, like
        SALICON's `location`/`timestamp`."""
        h, w = self.height, self.width
        shares = self.shares / self.shares.sum()
        gaze = []
        for _ in range(n_observers or self.observers):
            n = fixations_per_observer
            kind = rng.choice(3, size=n, p=[self.p_object, self.p_centre, 1 - self.p_object - self.p_centre])
            which = rng.choice(len(shares), size=n, p=shares) if len(shares) > 1 else np.zeros(n, np.int64)
            on_object = self.centres[which] + rng.normal(size=(n, 2)) * self.spreads[which, None]
            centre_bias = rng.normal([(w - 1) / 2, (h - 1) / 2], [_CENTRE_SPREAD * w, _CENTRE_SPREAD * h], size=(n, 2))
            anywhere = rng.uniform([0, 0], [w - 1, h - 1], size=(n, 2))
            points = np.choose(kind[:, None], [on_object, centre_bias, anywhere])
            fixations = _to_pixels(points, h, w)
            samples_per_fixation = rng.integers(4, 11, size=n)  # 160–400 ms dwell at 25 Hz
            location = _to_pixels(np.repeat(points, samples_per_fixation, axis=0)
                                  + rng.normal(0, 1.5, size=(samples_per_fixation.sum(), 2)), h, w)
            timestamp = 40.0 * np.arange(len(location), dtype=np.float64)
            gaze.append(ObserverGaze(fixations, location, timestamp))
        return gaze

    def expected_density(self, sigma: float | None = None) -> np.ndarray:
        """The density map infinitely many observers would give: the mixture's probability per pixel, blurred as
        `density_map` blurs fixations, max-normalised. (H, W) float32 — the world's own answer (an oracle)."""
        h, w = self.height, self.width
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)

        def gaussian(cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
            g = np.exp(-0.5 * (((x - cx) / max(sx, 0.5)) ** 2 + ((y - cy) / max(sy, 0.5)) ** 2))
            return g / g.sum()

        shares = self.shares / self.shares.sum()
        mix = sum(share * gaussian(cx, cy, spread, spread)
                  for (cx, cy), spread, share in zip(self.centres, self.spreads, shares)) * self.p_object
        mix = mix + self.p_centre * gaussian((w - 1) / 2, (h - 1) / 2, _CENTRE_SPREAD * w, _CENTRE_SPREAD * h)
        mix = mix + (1 - self.p_object - self.p_centre) / (h * w)
        blurred = gaussian_filter(mix, sigma or density_sigma(h, w), mode="constant")
        return (blurred / blurred.max()).astype(np.float32)


def sample_gaze(scene: Scene, t: int, rng: np.random.Generator, n_observers: int | None = None,
                fixations_per_observer: int = 5) -> list[ObserverGaze]:
    """Observers viewing frame `t`: most fixations on objects, the rest centre bias and anywhere.

    v1: 75% on the actor, 17% centre bias, 8% anywhere. v2: 80% on objects, each object chosen in proportion
    to its attention weight, 13% centre bias, 7% anywhere. Object fixations spread with a Gaussian of half the
    object's radius. Observers: `OBSERVERS[world]` unless given (v2 spreads gaze over several objects, so it
    takes more observers for the map to settle, as SALICON takes ~60 per image).
    """
    return GazeModel.of_scene(scene, t).sample(rng, n_observers, fixations_per_observer)


def _to_pixels(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """0-based float `(x, y)` → 1-based integer-valued pixels inside the image, as float64."""
    pixels = np.round(points) + 1
    return np.clip(pixels, 1, [width, height]).astype(np.float64)


def density_sigma(height: int, width: int) -> float:
    """Blur of the density map: 3.5% of the larger side (≈22 px at SALICON's 480×640)."""
    return 0.035 * max(height, width)


def density_map(fixations: np.ndarray, shape: tuple[int, int], sigma: float | None = None) -> np.ndarray:
    """Fixation counts blurred by a Gaussian, max-normalised: (H, W) float32 in [0, 1].

    `fixations`: (N, 2) 1-based `[x, y]`; `sigma` in pixels, default `density_sigma(H, W)`.
    """
    height, width = shape
    counts = np.zeros(shape, np.float64)
    xy = np.asarray(fixations, np.int64) - 1
    np.add.at(counts, (xy[:, 1], xy[:, 0]), 1.0)
    blurred = gaussian_filter(counts, sigma or density_sigma(height, width), mode="constant")
    peak = blurred.max()
    return (blurred / peak if peak > 0 else blurred).astype(np.float32)


def all_fixations(gaze: Sequence[ObserverGaze]) -> np.ndarray:
    """Every observer's fixations stacked: (N, 2) 1-based `[x, y]`."""
    return np.concatenate([g.fixations for g in gaze], axis=0)

