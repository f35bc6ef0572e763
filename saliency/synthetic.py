"""A seeded synthetic world where the salient thing is known, in two versions.

- `v1`: one saturated actor among muted, nearly still distractors. Saliency is pop-out there: a colour rule
  finds the actor as well as any network.
- `v2` (the default): 3–6 objects, all equally saturated, any of them any shape, colour, size or motion.
  Gaze follows object knowledge, as faces and text draw gaze in real photos: each object draws fixations in
  proportion to its `attention_weight` (a per-shape priority, times a gain for moving objects in video and a
  small one for big objects). The most-weighted object, by a clear margin, is the actor the captions name.

Scenes are rendered with numpy; the density map is the fixation map blurred by a Gaussian, as SALICON
makes its maps. `write_salicon` stores the result in
the official SALICON layout, so the same loaders read it and the real data. Coordinates inside this
module are 0-based pixel centres `(x, y)`; fixations written to disk are 1-based, as in SALICON.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from saliency.data.readers import Dhf1kReader
from saliency.infra.errors import DatasetError, UserError
from saliency.infra.media import Mp4Writer

SHAPES = ("circle", "square", "triangle", "diamond", "star")
COLOURS = {  # saturated RGB in [0, 1]; the names are the exact words captions use
    "red": (0.86, 0.10, 0.10),
    "green": (0.10, 0.72, 0.16),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.95, 0.86, 0.08),
    "purple": (0.58, 0.14, 0.80),
    "orange": (0.98, 0.55, 0.04),
}
SIZES = {"small": 0.065, "big": 0.17}  # actor radius as a fraction of min(H, W), at mid-clip
MOTIONS = ("left", "right", "up", "down", "grows", "shrinks", "still")
SALICON_SPLITS = ("train", "val", "test")
META_NAME = "synthetic_meta.json"
WORLDS = ("v1", "v2")

# World v2: how strongly each kind of object draws gaze. Shape carries most of it (as faces and text do in
# photos); in video a moving object draws more than a still one; big objects a little more than small ones.
SHAPE_PRIORITY = {"star": 8.0, "triangle": 4.0, "diamond": 2.0, "circle": 1.4, "square": 1.0}
MOTION_GAIN = 6.0  # a moving object (any motion but "still") in a video of more than one frame
SIZE_GAIN = {"small": 1.0, "big": 1.3}
ACTOR_MARGIN = 1.5  # the actor draws at least this many times the gaze of any other object
SIZES_V2 = {"small": 0.05, "big": 0.10}  # radius fraction of min(H, W): room for six objects
_TRAVEL_V2 = (0.15, 0.25)
OBSERVERS = {"v1": 15, "v2": 30}  # observers per image or frame, 5 fixations each

_GROWTH = 1.25  # grows/shrinks: radius r/1.25 → 1.25·r; the largest small stays 1.5× under the smallest big
_TRAVEL = (0.30, 0.42)  # translation over the clip, as a fraction of the width or height
_DISTRACTOR_DRIFT = 0.02  # distractors "barely move": at most this fraction of min(H, W)
# Bounding box of each shape around its centre, in radii: (half width, above, below).
_EXTENT = {
    "circle": (1.0, 1.0, 1.0),
    "square": (0.85, 0.85, 0.85),
    "diamond": (1.15, 1.15, 1.15),
    "triangle": (1.35 * np.sin(np.pi / 3), 1.35, 0.675),
    "star": (1.35 * np.sin(2 * np.pi / 5), 1.35, 1.35 * np.cos(np.pi / 5)),
}
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by saliency.synthetic".ljust(116, b" ")


@dataclass(frozen=True)
class Sprite:
    """A shape moving linearly from `centre0` to `centre1` while its radius goes `radius0`→`radius1`."""

    kind: str
    rgb: tuple[float, float, float]
    centre0: tuple[float, float]
    centre1: tuple[float, float]
    radius0: float
    radius1: float

    def centre(self, s: float) -> tuple[float, float]:
        """Centre `(x, y)` at clip fraction `s` ∈ [0, 1]."""
        return (self.centre0[0] + s * (self.centre1[0] - self.centre0[0]),
                self.centre0[1] + s * (self.centre1[1] - self.centre0[1]))

    def radius(self, s: float) -> float:
        """Radius at clip fraction `s`; geometric so growing looks steady."""
        return self.radius0 * (self.radius1 / self.radius0) ** s


@dataclass(frozen=True)
class SceneObject:
    """A world-v2 object: what it is (the words a caption would use) and how it is drawn."""

    shape: str
    colour: str
    size: str
    motion: str
    sprite: Sprite

    def attention_weight(self, video: bool) -> float:
        """How much gaze it draws relative to the others: shape priority × size gain (× motion gain in video)."""
        moving = video and self.motion != "still"
        return SHAPE_PRIORITY[self.shape] * SIZE_GAIN[self.size] * (MOTION_GAIN if moving else 1.0)


@dataclass(frozen=True, eq=False)
class Scene:
    """One clip: a static background, the other objects (v1: barely moving muted distractors) and the actor
    with its attributes. World v2 also lists every object, the actor first (`objects[0]`)."""

    height: int
    width: int
    n_frames: int
    shape: str
    colour: str
    size: str
    motion: str
    actor: Sprite
    distractors: tuple[Sprite, ...]
    background: np.ndarray  # (H, W, 3) float32 in [0, 1]
    world: str = "v1"
    objects: tuple[SceneObject, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.n_frames > 1

    def attention_weights(self) -> np.ndarray:
        """World v2: each object's share of the object fixations (sums to 1), actor first."""
        weights = np.array([o.attention_weight(self.is_video) for o in self.objects])
        return weights / weights.sum()

    def fraction(self, t: int) -> float:
        """Clip fraction of frame `t`."""
        return t / (self.n_frames - 1) if self.n_frames > 1 else 0.0


@dataclass(frozen=True)
class ObserverGaze:
    """One observer's viewing of one image, as SALICON stores it (all 1-based pixels)."""

    fixations: np.ndarray  # (N, 2) float64 [x, y]
    location: np.ndarray  # (M, 2) float64 raw gaze samples [x, y]
    timestamp: np.ndarray  # (M,) float64 milliseconds since onset


def sample_scene(rng: np.random.Generator, height: int, width: int, n_frames: int = 1, *,
                 shape: str | None = None, colour: str | None = None, size: str | None = None,
                 motion: str | None = None, world: str = "v2") -> Scene:
    """Draw a scene of `world`; actor attributes left as None are drawn uniformly (v2: among those that can
    be the actor), the actor always stays in frame."""
    if check_world(world) == "v2":
        return _sample_scene_v2(rng, height, width, n_frames, shape, colour, size, motion)
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    size = size or list(SIZES)[rng.integers(len(SIZES))]
    motion = motion or MOTIONS[rng.integers(len(MOTIONS))]
    background = _sample_background(rng, height, width)
    actor = _sample_actor(rng, height, width, shape, colour, size, motion)
    distractors = tuple(_sample_distractor(rng, height, width, background, actor)
                        for _ in range(rng.integers(2, 7)))
    return Scene(height, width, n_frames, shape, colour, size, motion, actor, distractors, background)


def _draw(rng: np.random.Generator, options, fixed: str | None = None) -> str:
    options = list(options)
    return fixed or options[rng.integers(len(options))]


def _sample_scene_v2(rng: np.random.Generator, height: int, width: int, n_frames: int, shape: str | None,
                     colour: str | None, size: str | None, motion: str | None) -> Scene:
    """3–6 equally saturated objects; the actor draws ≥ `ACTOR_MARGIN` times the gaze of any other."""
    video = n_frames > 1
    lightest = min(SHAPE_PRIORITY.values()) * min(SIZE_GAIN.values())
    for _ in range(1000):  # an actor that some object can stand beside (a still square cannot)
        attributes = (_draw(rng, SHAPES, shape), _draw(rng, COLOURS, colour), _draw(rng, SIZES, size),
                      _draw(rng, MOTIONS, motion))
        actor_weight = SceneObject(*attributes, sprite=None).attention_weight(video)
        if actor_weight >= ACTOR_MARGIN * lightest:
            break
    else:
        raise UserError(f"no world-v2 scene has a {' '.join(a for a in (size, colour, shape) if a)} actor "
                        f"{motion or ''}: it would draw no more gaze than the plainest object")
    background = _sample_background(rng, height, width)
    for _ in range(100):  # place the actor, then the others off its path and off each other's
        objects = [SceneObject(*attributes, sprite=_sample_sprite(rng, height, width, *attributes, SIZES_V2,
                                                                    _TRAVEL_V2))]
        for _ in range(rng.integers(2, 6)):
            other = _sample_other_v2(rng, height, width, actor_weight / ACTOR_MARGIN, video, objects)
            if other is not None:
                objects.append(other)
        if len(objects) >= 3:
            break
    actor = objects[0]
    return Scene(height, width, n_frames, actor.shape, actor.colour, actor.size, actor.motion, actor.sprite,
                 tuple(o.sprite for o in objects[1:]), background, "v2", tuple(objects))


def _sample_other_v2(rng: np.random.Generator, height: int, width: int, max_weight: float, video: bool,
                     placed: list[SceneObject]) -> SceneObject | None:
    """An object drawing at most `max_weight` gaze, placed clear of `placed`; None if it finds no room."""
    while True:
        attributes = (_draw(rng, SHAPES), _draw(rng, COLOURS), _draw(rng, SIZES), _draw(rng, MOTIONS))
        if SceneObject(*attributes, sprite=None).attention_weight(video) <= max_weight:
            break
    for _ in range(30):
        sprite = _sample_sprite(rng, height, width, *attributes, SIZES_V2, _TRAVEL_V2)
        if all(_apart(sprite, other.sprite) for other in placed):
            return SceneObject(*attributes, sprite=sprite)
    return None


def _apart(a: Sprite, b: Sprite) -> bool:
    """True when two sprites never overlap along their paths (checked at start, middle and end)."""
    reach = 1.4 * (max(a.radius0, a.radius1) + max(b.radius0, b.radius1)) + 2
    return all(np.hypot(a.centre(s)[0] - b.centre(s)[0], a.centre(s)[1] - b.centre(s)[1]) > reach
               for s in (0.0, 0.25, 0.5, 0.75, 1.0))


def _sample_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Muted grey-ish colour plus a few low-frequency sinusoids: smooth, low-contrast texture."""
    grey = rng.uniform(0.35, 0.6)
    tint = rng.normal(size=3)
    base = grey + 0.04 * tint / np.linalg.norm(tint)
    y, x = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(4):
        cycles, angle, phase = rng.uniform(0.5, 2.5), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        along_x = 2 * np.pi * cycles * np.cos(angle) / width * x
        along_y = 2 * np.pi * cycles * np.sin(angle) / height * y + phase
        # sin(a + b) as outer products: a plane wave without H·W calls to sin
        wave = np.outer(np.sin(along_y), np.cos(along_x)) + np.outer(np.cos(along_y), np.sin(along_x))
        texture += wave * rng.uniform(0.01, 0.025)
    channel_gain = 1 + rng.uniform(-0.3, 0.3, size=3)  # texture slightly coloured, still muted
    out = base[None, None, :] + texture[..., None] * channel_gain[None, None, :]
    return np.clip(out, 0, 1).astype(np.float32)


def _sample_actor(rng: np.random.Generator, height: int, width: int, shape: str, colour: str,
                  size: str, motion: str) -> Sprite:
    """Place the world-v1 actor so its whole path, at its largest, lies inside the frame."""
    return _sample_sprite(rng, height, width, shape, colour, size, motion, SIZES, _TRAVEL)


def _sample_sprite(rng: np.random.Generator, height: int, width: int, shape: str, colour: str, size: str,
                   motion: str, sizes: dict[str, float], travel_range: tuple[float, float]) -> Sprite:
    """A sprite whose whole path, at its largest, lies inside the frame."""
    radius = sizes[size] * min(height, width) * rng.uniform(0.95, 1.05)
    radius0, radius1 = {"grows": (radius / _GROWTH, radius * _GROWTH),
                        "shrinks": (radius * _GROWTH, radius / _GROWTH)}.get(motion, (radius, radius))
    half_w, above, below = (e * max(radius0, radius1) + 1 for e in _EXTENT[shape])
    direction = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.get(motion, (0, 0))
    room_x, room_y = width - 1 - 2 * half_w, height - 1 - above - below  # free span of the centre
    travel = rng.uniform(*travel_range) * (width if direction[0] else height)
    travel = min(travel, room_x if direction[0] else room_y)
    dx, dy = direction[0] * travel, direction[1] * travel
    x0 = half_w + max(0, -dx) + rng.uniform(0, room_x - abs(dx))
    y0 = above + max(0, -dy) + rng.uniform(0, room_y - abs(dy))
    rgb = tuple(np.clip(np.array(COLOURS[colour]) + rng.uniform(-0.04, 0.04, 3), 0, 1).tolist())
    return Sprite(shape, rgb, (x0, y0), (x0 + dx, y0 + dy), radius0, radius1)


def _sample_distractor(rng: np.random.Generator, height: int, width: int, background: np.ndarray,
                       actor: Sprite) -> Sprite:
    """A desaturated shape a little lighter or darker than the background, kept off the actor's path."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    radius = rng.uniform(0.05, 0.12) * min(height, width)
    margin = 1.35 * radius + 1
    for _ in range(20):
        centre = (rng.uniform(margin, width - 1 - margin), rng.uniform(margin, height - 1 - margin))
        clearance = radius + 1.35 * max(actor.radius0, actor.radius1)
        if min(np.hypot(centre[0] - cx, centre[1] - cy)
               for cx, cy in (actor.centre(0), actor.centre(0.5), actor.centre(1))) > clearance:
            break
    grey = float(background.mean()) + rng.choice([-1, 1]) * rng.uniform(0.06, 0.13)
    tint = rng.normal(size=3)
    rgb = tuple(np.clip(grey + 0.03 * tint / np.linalg.norm(tint), 0, 1).tolist())
    drift = rng.normal(size=2)
    drift *= rng.uniform(0, _DISTRACTOR_DRIFT) * min(height, width) / np.linalg.norm(drift)
    end = (centre[0] + drift[0], centre[1] + drift[1])
    return Sprite(kind, rgb, centre, end, radius, radius)


def _signed_distance(kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance in pixels (negative inside) to a shape of radius `r` centred at the origin."""
    ax, ay = np.abs(dx), np.abs(dy)
    if kind == "circle":
        return np.hypot(dx, dy) - r
    if kind == "square":
        return np.maximum(ax, ay) - 0.85 * r
    if kind == "diamond":
        return (ax + ay - 1.15 * r) / np.sqrt(2)
    if kind == "triangle":  # equilateral, pointing up, circumradius 1.35·r about its centroid
        edges = np.maximum(dy, 0.5 * (np.sqrt(3) * ax - dy))
        return edges - 0.675 * r
    if kind == "star":  # five points, outer radius 1.35·r, inner 0.5 of it; folded into one half-arm
        outer, inner, arm = 1.35 * r, 0.675 * r, 2 * np.pi / 5
        phi = np.mod(np.arctan2(dx, -dy), arm)
        phi = np.minimum(phi, arm - phi)
        rho = np.hypot(dx, dy)
        edge = np.array([inner * np.cos(arm / 2) - outer, inner * np.sin(arm / 2)])
        normal = np.array([edge[1], -edge[0]]) / np.linalg.norm(edge)
        return normal[0] * (rho * np.cos(phi) - outer) + normal[1] * rho * np.sin(phi)
    raise ValueError(f"unknown shape {kind!r}")


def _coverage(sprite: Sprite, s: float, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Anti-aliased coverage in [0, 1] of `sprite` at clip fraction `s`, on its bounding window."""
    cx, cy = sprite.centre(s)
    r = sprite.radius(s)
    reach = 1.4 * r + 2
    ys = slice(max(0, int(cy - reach)), min(height, int(np.ceil(cy + reach)) + 1))
    xs = slice(max(0, int(cx - reach)), min(width, int(np.ceil(cx + reach)) + 1))
    dy, dx = np.mgrid[ys, xs].astype(np.float32)
    sdf = _signed_distance(sprite.kind, dx - cx, dy - cy, r)
    return (ys, xs), np.clip(0.5 - sdf, 0, 1).astype(np.float32)  # one-pixel edge ramp


def _full_mask(sprite: Sprite, s: float, height: int, width: int) -> np.ndarray:
    window, alpha = _coverage(sprite, s, height, width)
    mask = np.zeros((height, width), np.float32)
    mask[window] = alpha
    return mask


def actor_mask(scene: Scene, t: int) -> np.ndarray:
    """Actor coverage at frame `t`: (H, W) float32 in [0, 1]."""
    return _full_mask(scene.actor, scene.fraction(t), scene.height, scene.width)


def distractor_masks(scene: Scene, t: int) -> list[np.ndarray]:
    """Coverage of each distractor at frame `t`: list of (H, W) float32 in [0, 1]."""
    return [_full_mask(d, scene.fraction(t), scene.height, scene.width) for d in scene.distractors]


def render_frame(scene: Scene, t: int) -> np.ndarray:
    """Frame `t` as (H, W, 3) uint8 RGB: background, then distractors, then the actor on top."""
    image = scene.background.copy()
    s = scene.fraction(t)
    for sprite in (*scene.distractors, scene.actor):
        window, alpha = _coverage(sprite, s, scene.height, scene.width)
        alpha = alpha[..., None]
        image[window] = image[window] * (1 - alpha) + np.asarray(sprite.rgb, np.float32) * alpha
    return np.round(image * 255).astype(np.uint8)


def actor_centre(scene: Scene, t: int) -> tuple[float, float]:
    """Actor centre `(x, y)` at frame `t`, 0-based pixels."""
    return scene.actor.centre(scene.fraction(t))


def actor_radius(scene: Scene, t: int) -> float:
    """Actor radius at frame `t` in pixels (shapes are scaled so their areas are alike)."""
    return scene.actor.radius(scene.fraction(t))


def actor_box(scene: Scene, t: int) -> tuple[float, float, float, float]:
    """Actor bounding box `(x0, y0, x1, y1)` at frame `t`, 0-based pixels."""
    cx, cy = actor_centre(scene, t)
    r = actor_radius(scene, t)
    half_w, above, below = _EXTENT[scene.shape]
    return cx - half_w * r, cy - above * r, cx + half_w * r, cy + below * r


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


def _mat_bytes(stem: str, height: int, width: int, gaze: Sequence[ObserverGaze]) -> bytes:
    """A SALICON fixation file: `image`, `resolution` [H W], `gaze` 1×observers struct array."""
    records = np.empty((1, len(gaze)), dtype=[("location", object), ("timestamp", object),
                                              ("fixations", object)])
    for k, g in enumerate(gaze):
        records[0, k] = (g.location, g.timestamp[:, None], g.fixations)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"image": stem, "resolution": np.array([height, width], np.int32),
                              "gaze": records}, do_compression=False, oned_as="row")
    # savemat stamps the creation time into the 116-byte text header; fix it so files are reproducible.
    return _MAT_HEADER + buffer.getvalue()[len(_MAT_HEADER):]


def write_salicon_sample(root: str | Path, split: str, stem: str, image: np.ndarray,
                         gaze: Sequence[ObserverGaze] | None = None,
                         density: np.ndarray | None = None) -> None:
    """Write one SALICON entry: `images/{split}/{stem}.jpg`, plus the map PNG and the fixation .mat
    when `density` / `gaze` are given (the real test split has neither)."""
    root = Path(root)
    height, width = image.shape[:2]
    paths = {"images": root / "images" / split / f"{stem}.jpg"}
    if density is not None:
        paths["maps"] = root / "maps" / split / f"{stem}.png"
    if gaze is not None:
        paths["fixations"] = root / "fixations" / split / f"{stem}.mat"
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(paths["images"], format="JPEG", quality=95)
    if density is not None:
        Image.fromarray(np.round(np.clip(density, 0, 1) * 255).astype(np.uint8), mode="L").save(
            paths["maps"], format="PNG")
    if gaze is not None:
        paths["fixations"].write_bytes(_mat_bytes(stem, height, width, gaze))


def _sprite_record(sprite: Sprite, shape: str, s: float) -> dict:
    """Where a sprite is at clip fraction `s`: centre, radius and bounding box, 0-based pixels."""
    cx, cy = sprite.centre(s)
    r = sprite.radius(s)
    half_w, above, below = _EXTENT[shape]
    box = (cx - half_w * r, cy - above * r, cx + half_w * r, cy + below * r)
    return {"centre": [round(cx, 3), round(cy, 3)], "radius": round(r, 3), "box": [round(v, 3) for v in box]}


def scene_record(scene: Scene, t: int) -> dict:
    """The actor's attributes and where it is at frame `t` (0-based pixels), for `synthetic_meta.json`;
    world v2 adds every object (attributes, place, share of the object fixations) and the actor's index."""
    s = scene.fraction(t)
    record = {"shape": scene.shape, "colour": scene.colour, "size": scene.size, "motion": scene.motion,
              **_sprite_record(scene.actor, scene.shape, s)}
    if scene.world == "v2":
        shares = scene.attention_weights()
        record["objects"] = [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion,
                              "attention": round(float(share), 4), **_sprite_record(o.sprite, o.shape, s)}
                             for o, share in zip(scene.objects, shares)]
        record["actor"] = 0
    return record


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split `n` items by `fractions` (largest remainder), counts summing to exactly `n`."""
    fractions = np.asarray(fractions, np.float64)
    if n < 1 or len(fractions) == 0 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1):
        raise UserError(f"need n >= 1 and split fractions summing to 1, got n={n}, splits={[float(f) for f in fractions]}")
    exact = n * fractions
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def prepare_output_dir(out: Path, owned: Sequence[str]) -> None:
    """Create `out`, or clear the entries `owned` from an earlier synthetic run there.

    Refuses a non-empty folder without `synthetic_meta.json`, so real data is never overwritten.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / META_NAME).is_file():
            raise UserError(f"{out} is not empty and holds no {META_NAME}; choose a new or empty folder")
        for name in (*owned, META_NAME):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def read_meta(path: str | Path) -> dict:
    """A `synthetic_meta.json` the generators wrote, as a dict; a missing, unreadable or damaged one is one line."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file (the synthetic generators write it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the synthetic world's record ({error})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not a synthetic world's record (a JSON object)")
    return meta


def write_json(path: Path, data: dict) -> None:
    """JSON in insertion order, two-space indent, trailing newline (deterministic for equal data)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def check_world(world: str) -> str:
    """`world` if it names a version of the synthetic world, else a one-line error."""
    if world not in WORLDS:
        raise UserError(f"unknown synthetic world {world!r}; expected one of {', '.join(WORLDS)}")
    return world


def check_size(size: Sequence[int], minimum: int = 32) -> tuple[int, int]:
    """Validate an `(H, W)` pair for synthetic rendering."""
    height, width = (int(v) for v in size)
    if height < minimum or width < minimum:
        raise UserError(f"synthetic images need at least {minimum}x{minimum} pixels, got {height}x{width}")
    return height, width


def image_scene(seed: int, index: int, size: tuple[int, int], world: str = "v2") -> tuple[Scene, np.random.Generator]:
    """Scene `index` of `write_salicon(seed=seed)` and the generator its observers are drawn from."""
    scene_rng, gaze_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(2))
    return sample_scene(scene_rng, *size, world=world), gaze_rng


def write_salicon(out: str | Path, n: int = 200, seed: int = 0, size: tuple[int, int] = (240, 320),
                  splits: tuple[float, float, float] = (0.7, 0.15, 0.15), progress: bool = True,
                  world: str = "v2") -> dict:
    """Write `n` static synthetic scenes in the SALICON layout under `out`; returns a summary.

    Image `i` is named `SYN_{split}_{i:06d}` and drawn from its own RNG seeded by `(seed, i)`, so it
    does not depend on `n`. Unlike SALICON's, the synthetic test split has maps and fixations too: the
    answer is known, so it serves as the held-out split. `synthetic_meta.json` records every image's actor.
    """
    out = Path(out)
    height, width = check_size(size)
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    check_world(world)
    counts = split_counts(n, splits)
    prepare_output_dir(out, ("images", "maps", "fixations"))
    split_of = np.repeat(np.arange(len(SALICON_SPLITS)), counts)
    records = {}
    for index in tqdm(range(n), desc="saliency synth", unit="image", disable=not progress):
        scene, gaze_rng = image_scene(seed, index, (height, width), world)
        split = SALICON_SPLITS[split_of[index]]
        stem = f"SYN_{split}_{index:06d}"
        gaze = sample_gaze(scene, 0, gaze_rng)
        density = density_map(all_fixations(gaze), (height, width))
        write_salicon_sample(out, split, stem, render_frame(scene, 0), gaze, density)
        records[stem] = {"split": split, **scene_record(scene, 0)}
    write_json(out / META_NAME, {"generator": "saliency.synthetic", "world": world, "seed": seed,
                                 "size": [height, width], "coordinates": "0-based pixel centres (x, y)", "images": records})
    return {"out": str(out), "n": n, "seed": seed, "world": world, "size": [height, width],
            "splits": dict(zip(SALICON_SPLITS, counts))}


def write_dhf1k(out: str | Path, n: int = 100, seed: int = 0, size: tuple[int, int] = (96, 128), n_frames: int = 24,
                fps: float = 8, splits: tuple[float, float, float] = (0.7, 0.1, 0.2), annotate_every: int = 4,
                progress: bool = True, world: str = "v2") -> dict:
    """Write `n` synthetic videos in the DHF1K layout under `out` (video saliency: motion draws gaze); returns a summary.

    `video/NNN.mp4`, and for every `annotate_every`-th frame (frames annotate_every, 2·annotate_every, … 1-based)
    `annotation/NNNN/maps/FFFF.png` and the binary `annotation/NNNN/fixation/FFFF.png`. Videos are numbered as
    DHF1K numbers its splits (train from 1, val from 601, test from 701; at most 600/100/300), each drawn from its
    own RNG seeded by `(seed, number)`; unlike DHF1K's, the test videos are annotated too. Videos of the
    captioning world's size, length and frame rate move as fast per frame as its videos do, so motion learnt here
    carries over. `synthetic_meta.json` records every video's objects and actor.
    """
    out = Path(out)
    height, width = check_size(size)
    if height % 2 or width % 2:
        raise UserError(f"H.264 (yuv420p) needs even frame sizes, got {height}x{width}")
    if n_frames < 2 or fps <= 0 or annotate_every < 1 or seed < 0:
        raise UserError("need n_frames >= 2 (motion needs two frames), fps > 0, annotate_every >= 1 and seed >= 0")
    check_world(world)
    counts = dict(zip(SALICON_SPLITS, split_counts(n, splits)))
    for split, count in counts.items():
        if count > len(Dhf1kReader.SPLITS[split]):
            raise UserError(f"DHF1K numbers at most {len(Dhf1kReader.SPLITS[split])} {split} videos; {n} videos would "
                            f"put {count} there")
    prepare_output_dir(out, ("video", "annotation"))
    (out / "video").mkdir()
    numbers = [(split, number) for split, count in counts.items() for number in Dhf1kReader.SPLITS[split][:count]]
    records = {}
    for split, number in tqdm(numbers, desc="saliency synth", unit="video", disable=not progress):
        scene, gaze_rng = dhf1k_scene(seed, number, (height, width), n_frames, world)
        frames = np.stack([render_frame(scene, t) for t in range(n_frames)])
        with Mp4Writer(out / "video" / f"{number:03d}.mp4", fps) as writer:
            writer.write(frames)
        for t in range(annotate_every - 1, n_frames, annotate_every):
            fixations = all_fixations(sample_gaze(scene, t, gaze_rng))  # 1-based [x, y]
            write_dhf1k_frame(out / "annotation" / f"{number:04d}", t, density_map(fixations, (height, width)),
                              fixations)
        records[f"{number:03d}"] = {"split": split, **scene_record(scene, 0)}
    write_json(out / META_NAME, {"generator": "saliency.synthetic", "world": world, "seed": seed,
                                 "size": [height, width], "n_frames": n_frames, "fps": fps,
                                 "coordinates": "0-based pixel centres (x, y) at frame 0", "videos": records})
    return {"out": str(out), "n": n, "seed": seed, "world": world, "size": [height, width], "n_frames": n_frames,
            "fps": fps, "splits": counts}


def dhf1k_scene(seed: int, number: int, size: tuple[int, int], n_frames: int,
                world: str = "v2") -> tuple[Scene, np.random.Generator]:
    """Video `number` of `write_dhf1k(seed=seed)` (size, length and world as its `synthetic_meta.json` records) and
    the generator its observers are drawn from."""
    scene_rng, gaze_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, number]).spawn(2))
    return sample_scene(scene_rng, *size, n_frames, world=world), gaze_rng


def write_dhf1k_frame(annotation: Path, t: int, density: np.ndarray, fixations: np.ndarray) -> None:
    """Frame `t` (0-based) of a DHF1K video's annotation: `maps/FFFF.png` and the binary `fixation/FFFF.png`
    (fixations 1-based `[x, y]`), FFFF 1-based."""
    height, width = density.shape
    points = np.zeros((height, width), np.uint8)
    points[fixations[:, 1].astype(int) - 1, fixations[:, 0].astype(int) - 1] = 255
    for folder, pixels in (("maps", np.round(np.clip(density, 0, 1) * 255).astype(np.uint8)), ("fixation", points)):
        (annotation / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(annotation / folder / f"{t + 1:04d}.png", format="PNG")
