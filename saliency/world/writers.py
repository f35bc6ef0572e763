"""The synthetic world written in the official layouts, so the real loaders read it: SALICON (images), DHF1K
(saliency videos) and MSR-VTT (captioned videos, their frames also in the SALICON layout).

Every layout has a `synthetic_meta.json` recording each image's or video's objects and actor. Fixations written to
disk are 1-based, as in SALICON.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from saliency.data.readers import Dhf1kReader
from saliency.infra.errors import DatasetError, UserError
from saliency.infra.media import Mp4Writer
from saliency.world.captions import caption_variants
from saliency.world.gaze import ObserverGaze, all_fixations, density_map, sample_gaze
from saliency.world.render import render_frame
from saliency.world.rules import (EXTENT, MOTIONS, Scene, Sprite, check_world, dhf1k_scene, image_scene,
                                  sample_scene, video_rngs)

SALICON_SPLITS = ("train", "val", "test")
META_NAME = "synthetic_meta.json"
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by saliency.world".ljust(116, b" ")
MSRVTT_SPLITS = ("train", "validate", "test")
SALICON_SPLIT = {"train": "train", "validate": "val", "test": "test"}


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
    half_w, above, below = EXTENT[shape]
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


def check_size(size: Sequence[int], minimum: int = 32) -> tuple[int, int]:
    """Validate an `(H, W)` pair for synthetic rendering."""
    height, width = (int(v) for v in size)
    if height < minimum or width < minimum:
        raise UserError(f"synthetic images need at least {minimum}x{minimum} pixels, got {height}x{width}")
    return height, width


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
    write_json(out / META_NAME, {"generator": "saliency.world", "world": world, "seed": seed,
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
    write_json(out / META_NAME, {"generator": "saliency.world", "world": world, "seed": seed,
                                 "size": [height, width], "n_frames": n_frames, "fps": fps,
                                 "coordinates": "0-based pixel centres (x, y) at frame 0", "videos": records})
    return {"out": str(out), "n": n, "seed": seed, "world": world, "size": [height, width], "n_frames": n_frames,
            "fps": fps, "splits": counts}


def write_dhf1k_frame(annotation: Path, t: int, density: np.ndarray, fixations: np.ndarray) -> None:
    """Frame `t` (0-based) of a DHF1K video's annotation: `maps/FFFF.png` and the binary `fixation/FFFF.png`
    (fixations 1-based `[x, y]`), FFFF 1-based."""
    height, width = density.shape
    points = np.zeros((height, width), np.uint8)
    points[fixations[:, 1].astype(int) - 1, fixations[:, 0].astype(int) - 1] = 255
    for folder, pixels in (("maps", np.round(np.clip(density, 0, 1) * 255).astype(np.uint8)), ("fixation", points)):
        (annotation / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(annotation / folder / f"{t + 1:04d}.png", format="PNG")


def video_scene(meta: dict, video_id: str) -> Scene:
    """The scene `write_msrvtt` drew for `video_id`, drawn again from the seed in its `synthetic_meta.json` (`meta`);
    a UserError when the meta does not list the video or records another actor (written by another generator)."""
    record = meta["videos"].get(video_id)
    index = re.fullmatch(r"video(\d+)", video_id)
    if record is None or index is None:
        raise UserError(f"video {video_id!r} is not one of the synthetic world's videos in its {META_NAME}")
    height, width = meta["size"]
    scene = sample_scene(video_rngs(meta["seed"], int(index[1]))[0], height, width, meta["n_frames"],
                         world=meta.get("world", "v1"))
    if [scene.shape, scene.colour, scene.size, scene.motion] != [record[k] for k in ("shape", "colour", "size", "motion")]:
        raise UserError(f"video {video_id!r}: its {META_NAME} records another actor than this generator "
                        f"draws from the same seed; generate the data again with `vidcap synth`")
    return scene


def write_msrvtt(out: str | Path, n: int = 50, seed: int = 0, size: tuple[int, int] = (120, 160),
                 n_frames: int = 32, fps: float = 8, splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
                 n_captions: int = 20, saliency_every: int = 4, progress: bool = True, world: str = "v2") -> dict:
    """Write `n` captioned synthetic videos in the MSR-VTT layout under `out`; returns a summary.

    `TrainValVideo/video{i}.mp4` (train, validate) and `TestVideo/video{i}.mp4` (test) with
    `train_val_videodatainfo.json` / `test_videodatainfo.json`; ids run train → validate → test as in
    MSR-VTT, and video `i` comes from its own RNG seeded by `(seed, i)`. Every `saliency_every`-th
    frame goes to `out/saliency/` in the SALICON layout (stems `video{i}_f{t:04d}`, splits
    train/val/test); unlike real SALICON the test frames also get maps and fixations, so saliency
    can be evaluated on them. `synthetic_meta.json` records each video's actor and split.
    """
    out = Path(out)
    height, width = check_size(size)
    if height % 2 or width % 2:
        raise UserError(f"H.264 (yuv420p) needs even frame sizes, got {height}x{width}")
    if n_frames < 1 or fps <= 0 or saliency_every < 1 or n_captions < 1 or seed < 0:
        raise UserError("need n_frames >= 1, fps > 0, saliency_every >= 1, n_captions >= 1 and seed >= 0")
    check_world(world)
    counts = split_counts(n, splits)
    prepare_output_dir(out, ("TrainValVideo", "TestVideo", "train_val_videodatainfo.json",
                             "test_videodatainfo.json", "saliency"))
    (out / "TrainValVideo").mkdir()
    (out / "TestVideo").mkdir()
    split_of = np.repeat(np.arange(len(MSRVTT_SPLITS)), counts)
    videos, sentences, video_meta, frame_meta = [], [], {}, {}
    for index in tqdm(range(n), desc="vidcap synth", unit="video", disable=not progress):
        scene_rng, caption_rng, gaze_rng = video_rngs(seed, index)
        scene = sample_scene(scene_rng, height, width, n_frames, world=world)
        split = MSRVTT_SPLITS[split_of[index]]
        video_id = f"video{index}"
        frames = np.stack([render_frame(scene, t) for t in range(n_frames)])
        folder = "TestVideo" if split == "test" else "TrainValVideo"
        with Mp4Writer(out / folder / f"{video_id}.mp4", fps) as writer:
            writer.write(frames)
        videos.append({"category": MOTIONS.index(scene.motion), "url": "", "video_id": video_id,
                       "start time": 0.0, "end time": round(n_frames / fps, 3), "split": split,
                       "id": index})
        sentences += [{"caption": caption, "video_id": video_id, "sen_id": len(sentences) + k}
                      for k, caption in enumerate(caption_variants(scene, caption_rng, n_captions))]
        video_meta[video_id] = {"split": split, "shape": scene.shape, "colour": scene.colour,
                                "size": scene.size, "motion": scene.motion}
        if scene.world == "v2":
            video_meta[video_id] |= {"objects": [{"shape": o.shape, "colour": o.colour, "size": o.size,
                                                  "motion": o.motion, "attention": round(float(share), 4)}
                                                 for o, share in zip(scene.objects, scene.attention_weights())],
                                     "actor": 0}
        for t in range(0, n_frames, saliency_every):
            gaze = sample_gaze(scene, t, gaze_rng)
            density = density_map(all_fixations(gaze), (height, width))
            stem = f"{video_id}_f{t:04d}"
            write_salicon_sample(out / "saliency", SALICON_SPLIT[split], stem, frames[t], gaze, density)
            frame_meta[stem] = {"split": SALICON_SPLIT[split], **scene_record(scene, t)}

    info = {"contributor": "vidcap synthetic generator", "data_created": "", "version": "1.0",
            "year": "", "description": "Synthetic MSR-VTT-style videos; category is the actor's motion "
                                       f"index in {list(MOTIONS)}."}
    test_ids = {v["video_id"] for v in videos if v["split"] == "test"}
    for name, keep in (("train_val_videodatainfo.json", lambda vid: vid not in test_ids),
                       ("test_videodatainfo.json", lambda vid: vid in test_ids)):
        write_json(out / name, {"info": info, "videos": [v for v in videos if keep(v["video_id"])],
                                "sentences": [s for s in sentences if keep(s["video_id"])]})
    common = {"generator": "saliency.world", "world": world, "seed": seed, "size": [height, width]}
    write_json(out / META_NAME, {**common, "n_frames": n_frames, "fps": fps, "videos": video_meta})
    write_json(out / "saliency" / META_NAME, {
        **common, "coordinates": "0-based pixel centres (x, y)", "images": frame_meta})
    return {"out": str(out), "n": n, "seed": seed, "world": world, "size": [height, width], "n_frames": n_frames,
            "fps": fps, "splits": dict(zip(MSRVTT_SPLITS, counts)), "sentences": len(sentences),
            "saliency_frames": len(frame_meta)}


