"""The rules of the synthetic world: what a scene holds and how one is drawn at random, in two versions.

- `v1`: one saturated actor among muted, nearly still distractors. Saliency is pop-out there: a colour rule
  finds the actor as well as any network.
- `v2` (the default): 3–6 objects, all equally saturated, any of them any shape, colour, size or motion.
  Gaze follows object knowledge, as faces and text draw gaze in real photos: each object draws fixations in
  proportion to its `attention_weight` (a per-shape priority, times a gain for moving objects in video and a
  small one for big objects). The most-weighted object, by a clear margin, is the actor the captions name.

Coordinates are 0-based pixel centres `(x, y)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency.infra.errors import UserError

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
EXTENT = {
    "circle": (1.0, 1.0, 1.0),
    "square": (0.85, 0.85, 0.85),
    "diamond": (1.15, 1.15, 1.15),
    "triangle": (1.35 * np.sin(np.pi / 3), 1.35, 0.675),
    "star": (1.35 * np.sin(2 * np.pi / 5), 1.35, 1.35 * np.cos(np.pi / 5)),
}


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
    half_w, above, below = (e * max(radius0, radius1) + 1 for e in EXTENT[shape])
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


def check_world(world: str) -> str:
    """`world` if it names a version of the synthetic world, else a one-line error."""
    if world not in WORLDS:
        raise UserError(f"unknown synthetic world {world!r}; expected one of {', '.join(WORLDS)}")
    return world


def image_scene(seed: int, index: int, size: tuple[int, int], world: str = "v2") -> tuple[Scene, np.random.Generator]:
    """Scene `index` of `write_salicon(seed=seed)` and the generator its observers are drawn from."""
    scene_rng, gaze_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(2))
    return sample_scene(scene_rng, *size, world=world), gaze_rng


def dhf1k_scene(seed: int, number: int, size: tuple[int, int], n_frames: int,
                world: str = "v2") -> tuple[Scene, np.random.Generator]:
    """Video `number` of `write_dhf1k(seed=seed)` (size, length and world as its `synthetic_meta.json` records) and
    the generator its observers are drawn from."""
    scene_rng, gaze_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, number]).spawn(2))
    return sample_scene(scene_rng, *size, n_frames, world=world), gaze_rng


def video_rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """The scene, caption and gaze generators of video `index` of a world seeded `seed`: each its own, so one video
    can be drawn again without the others."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(3))
