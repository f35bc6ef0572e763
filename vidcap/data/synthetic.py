"""Synthetic captioned videos in the MSR-VTT layout, with per-frame saliency kept in the SALICON layout.

Each video is a `saliency.synthetic` scene rendered over its clip and encoded to H.264 by ffmpeg; its
captions name the actor's shape and motion (mostly colour and size too) through varied templates and
synonyms, so BLEU/CIDEr have something to measure.
"""

from __future__ import annotations

import re
from pathlib import Path

import ffmpeg
import numpy as np
from tqdm import tqdm

from saliency import synthetic
from saliency.infra.errors import UserError
from saliency.infra.media import ffmpeg_path
from saliency.infra.media import Mp4Writer

SHAPE_WORDS = {
    "circle": ("circle", "ball", "disc", "dot"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "star": ("star",),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
# Per motion: finite verb phrases ("... moves left") and participle phrases ("a ball moving left").
MOTION_PHRASES = {
    "left": (("moves to the left", "is moving left", "slides to the left", "goes left",
              "travels to the left", "moves leftwards"),
             ("moving to the left", "sliding left", "going to the left", "travelling left")),
    "right": (("moves to the right", "is moving right", "slides to the right", "goes right",
               "travels to the right", "moves rightwards"),
              ("moving to the right", "sliding right", "going to the right", "travelling right")),
    "up": (("moves up", "is moving upwards", "slides up", "rises", "goes up", "floats upwards"),
           ("moving up", "rising", "sliding upwards", "going up")),
    "down": (("moves down", "is moving downwards", "slides down", "falls", "goes down", "sinks"),
             ("moving down", "falling", "sliding downwards", "going down")),
    "grows": (("grows bigger", "is growing", "gets larger", "expands", "becomes bigger", "grows in size"),
              ("growing", "getting bigger", "expanding", "growing larger")),
    "shrinks": (("shrinks", "is shrinking", "gets smaller", "becomes smaller", "shrinks in size"),
                ("shrinking", "getting smaller", "becoming smaller")),
    "still": (("stays still", "does not move", "is not moving", "stays in place", "remains still",
               "sits still"),
              ("staying still", "standing still", "not moving", "resting in place")),
}
# {verb}: finite phrase, {ing}: participle phrase. Every template names the shape and the motion.
CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} {verb}",
    "the {size} {colour} {shape} {verb}",
    "a {colour} {shape} {verb}",
    "a {size} {shape} {verb}",
    "there is a {size} {colour} {shape} {ing}",
    "a video of a {size} {colour} {shape} {ing}",
    "an animation shows a {size} {colour} {shape} {ing}",
    "we see a {colour} {shape} {ing}",
    "a {size} {shape} in {colour} {verb}",
    "the {shape} is {colour} and {size} and it {verb}",
    "in this clip a {size} {colour} {shape} {verb}",
    "a {size} {colour} {shape} {verb} on the screen",
    "a {colour} {shape} that is {size} {verb}",
    "someone shows a {size} {colour} {shape} {ing}",
)
SPLITS = ("train", "validate", "test")
SALICON_SPLIT = {"train": "train", "validate": "val", "test": "test"}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


def caption_from_template(template: str, scene: synthetic.Scene, rng: np.random.Generator) -> str:
    """Fill `template` with synonyms for `scene`'s actor; casing and a final full stop vary."""
    finite, participle = MOTION_PHRASES[scene.motion]
    text = template.format(size=_pick(rng, SIZE_WORDS[scene.size]), colour=scene.colour,
                           shape=_pick(rng, SHAPE_WORDS[scene.shape]), verb=_pick(rng, finite),
                           ing=_pick(rng, participle))
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


def caption_variants(scene: synthetic.Scene, rng: np.random.Generator, n: int = 20) -> list[str]:
    """`n` captions, distinct after lower-casing and stripping punctuation, cycling through every
    template in a shuffled order (so 14 templates appear in any 14 consecutive captions)."""
    order = rng.permutation(len(CAPTION_TEMPLATES))
    captions, seen = [], set()
    for attempt in range(50 * n):
        if len(captions) == n:
            break
        caption = caption_from_template(CAPTION_TEMPLATES[order[attempt % len(order)]], scene, rng)
        key = re.sub(r"[^a-z ]", "", caption.lower())
        if key not in seen:
            seen.add(key)
            captions.append(caption)
    return captions


def video_rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """The scene, caption and gaze generators of video `index` of a world seeded `seed`: each its own, so one video
    can be drawn again without the others."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(3))


def video_scene(meta: dict, video_id: str) -> synthetic.Scene:
    """The scene `write_msrvtt` drew for `video_id`, drawn again from the seed in its `synthetic_meta.json` (`meta`);
    a UserError when the meta does not list the video or records another actor (written by another generator)."""
    record = meta["videos"].get(video_id)
    index = re.fullmatch(r"video(\d+)", video_id)
    if record is None or index is None:
        raise UserError(f"video {video_id!r} is not one of the synthetic world's videos in its {synthetic.META_NAME}")
    height, width = meta["size"]
    scene = synthetic.sample_scene(video_rngs(meta["seed"], int(index[1]))[0], height, width, meta["n_frames"],
                                   world=meta.get("world", "v1"))
    if [scene.shape, scene.colour, scene.size, scene.motion] != [record[k] for k in ("shape", "colour", "size", "motion")]:
        raise UserError(f"video {video_id!r}: its {synthetic.META_NAME} records another actor than this generator "
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
    height, width = synthetic.check_size(size)
    if height % 2 or width % 2:
        raise UserError(f"H.264 (yuv420p) needs even frame sizes, got {height}x{width}")
    if n_frames < 1 or fps <= 0 or saliency_every < 1 or n_captions < 1 or seed < 0:
        raise UserError("need n_frames >= 1, fps > 0, saliency_every >= 1, n_captions >= 1 and seed >= 0")
    synthetic.check_world(world)
    counts = synthetic.split_counts(n, splits)
    synthetic.prepare_output_dir(out, ("TrainValVideo", "TestVideo", "train_val_videodatainfo.json",
                                   "test_videodatainfo.json", "saliency"))
    (out / "TrainValVideo").mkdir()
    (out / "TestVideo").mkdir()
    split_of = np.repeat(np.arange(len(SPLITS)), counts)
    videos, sentences, video_meta, frame_meta = [], [], {}, {}
    for index in tqdm(range(n), desc="vidcap synth", unit="video", disable=not progress):
        scene_rng, caption_rng, gaze_rng = video_rngs(seed, index)
        scene = synthetic.sample_scene(scene_rng, height, width, n_frames, world=world)
        split = SPLITS[split_of[index]]
        video_id = f"video{index}"
        frames = np.stack([synthetic.render_frame(scene, t) for t in range(n_frames)])
        folder = "TestVideo" if split == "test" else "TrainValVideo"
        with Mp4Writer(out / folder / f"{video_id}.mp4", fps) as writer:
            writer.write(frames)
        videos.append({"category": synthetic.MOTIONS.index(scene.motion), "url": "", "video_id": video_id,
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
            gaze = synthetic.sample_gaze(scene, t, gaze_rng)
            density = synthetic.density_map(synthetic.all_fixations(gaze), (height, width))
            stem = f"{video_id}_f{t:04d}"
            synthetic.write_salicon_sample(out / "saliency", SALICON_SPLIT[split], stem, frames[t], gaze, density)
            frame_meta[stem] = {"split": SALICON_SPLIT[split], **synthetic.scene_record(scene, t)}

    info = {"contributor": "vidcap synthetic generator", "data_created": "", "version": "1.0",
            "year": "", "description": "Synthetic MSR-VTT-style videos; category is the actor's motion "
                                       f"index in {list(synthetic.MOTIONS)}."}
    test_ids = {v["video_id"] for v in videos if v["split"] == "test"}
    for name, keep in (("train_val_videodatainfo.json", lambda vid: vid not in test_ids),
                       ("test_videodatainfo.json", lambda vid: vid in test_ids)):
        synthetic.write_json(out / name, {"info": info,
                                      "videos": [v for v in videos if keep(v["video_id"])],
                                      "sentences": [s for s in sentences if keep(s["video_id"])]})
    common = {"generator": "vidcap.data.synthetic", "world": world, "seed": seed, "size": [height, width]}
    synthetic.write_json(out / synthetic.META_NAME, {**common, "n_frames": n_frames, "fps": fps,
                                             "videos": video_meta})
    synthetic.write_json(out / "saliency" / synthetic.META_NAME, {
        **common, "coordinates": "0-based pixel centres (x, y)", "images": frame_meta})
    return {"out": str(out), "n": n, "seed": seed, "world": world, "size": [height, width], "n_frames": n_frames,
            "fps": fps, "splits": dict(zip(SPLITS, counts)), "sentences": len(sentences),
            "saliency_frames": len(frame_meta)}


def write_test_pattern(out: str | Path, size: tuple[int, int] = (720, 1280), seconds: float = 10.0,
                       fps: float = 30.0) -> Path:
    """A long high-resolution H.264 clip of ffmpeg's moving `testsrc2` pattern (2 s keyframe interval, as
    cameras and streaming sites write them): the benchmarks' stand-in for a real-world video."""
    height, width = size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        (ffmpeg.input(f"testsrc2=size={width}x{height}:rate={fps}", f="lavfi", t=seconds)
         .output(str(out), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", g=int(2 * fps))
         .global_args("-loglevel", "error").overwrite_output().run(cmd=ffmpeg_path(), capture_stderr=True))
    except ffmpeg.Error as error:
        raise UserError(f"{out}: ffmpeg could not write the test pattern ({error.stderr.decode(errors='replace')[:200]})") from None
    return out
