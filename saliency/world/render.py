"""Drawing the synthetic world: anti-aliased shapes over the background, object masks and the actor's place."""
from __future__ import annotations

import numpy as np

from saliency.world.rules import EXTENT, Scene, Sprite


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
    half_w, above, below = EXTENT[scene.shape]
    return cx - half_w * r, cy - above * r, cx + half_w * r, cy + below * r

