"""Grounding accuracy: does a caption name the synthetic world's actor as it is?

For each attribute (shape, colour, size, motion) a caption is scored against the actor recorded in the
dataset's `synthetic_meta.json`: "right" when it names the true value and no other, "wrong" when it names
another value of that attribute (even beside the true one), "none" when it names none. A caption is
grounded when its shape and motion are right and no attribute is wrong.

The vocabulary is the caption generator's own (`vidcap.data.synthetic`: shape synonyms, size synonyms,
motion phrases; colour names from `saliency.synthetic`), plus each motion's name ("left", "grows",
"still", ...), which only ever appears inside that motion's phrases. Words match whole, after lower-casing
and dropping punctuation; shape nouns also match in the plural; motion phrases match as whole phrases
("grows in size", not "size"), so "gets larger" names a motion, not the size "large". Pure functions, so a
benchmark can score captions the same way `vidcap eval` does.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from saliency import synthetic as world
from saliency.infra.errors import UserError
from vidcap.data.synthetic import MOTION_PHRASES, SHAPE_WORDS, SIZE_WORDS

ATTRIBUTES = ("shape", "colour", "size", "motion")
OUTCOMES = ("right", "wrong", "none")


def _plural(noun: str) -> str:
    """English plural of a shape noun ("box" → "boxes", "ball" → "balls"): captions may count objects."""
    return noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")


def _phrases(words: Mapping[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """{phrase as a tuple of words: value} from {value: phrases}, so matching works on word sequences."""
    return {tuple(phrase.split()): value for value, phrases in words.items() for phrase in phrases}


def vocabulary() -> dict[str, dict[tuple[str, ...], str]]:
    """Per attribute, {phrase (tuple of words): the value it names}: the world's words and synonyms."""
    shapes = {shape: (*words, *map(_plural, words)) for shape, words in SHAPE_WORDS.items()}
    motions = {motion: (motion, *finite, *participle) for motion, (finite, participle) in MOTION_PHRASES.items()}
    return {"shape": _phrases(shapes), "colour": _phrases({colour: (colour,) for colour in world.COLOURS}),
            "size": _phrases(SIZE_WORDS), "motion": _phrases(motions)}


VOCABULARY = vocabulary()


def caption_words(caption: str) -> tuple[str, ...]:
    """The caption's words, lower-cased, punctuation and digits dropped: how the vocabulary is matched."""
    return tuple(re.findall(r"[a-z]+", caption.lower()))


def named_values(caption: str) -> dict[str, set[str]]:
    """Per attribute, the values the caption names anywhere (whole words or whole phrases)."""
    words = caption_words(caption)
    named = {attribute: set() for attribute in ATTRIBUTES}
    for attribute, phrases in VOCABULARY.items():
        for phrase, value in phrases.items():
            if any(words[i:i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1)):
                named[attribute].add(value)
    return named


def outcome(named: set[str], true: str) -> str:
    """One attribute's verdict: none named, only the true value named (right), or any other value named (wrong)."""
    if not named:
        return "none"
    return "right" if named == {true} else "wrong"


def ground_caption(caption: str, actor: Mapping[str, str]) -> dict:
    """{"shape"|"colour"|"size"|"motion": "right"|"wrong"|"none", "grounded": bool} for a caption of `actor`."""
    named = named_values(caption)
    result = {attribute: outcome(named[attribute], actor[attribute]) for attribute in ATTRIBUTES}
    result["grounded"] = (result["shape"] == result["motion"] == "right"
                          and all(result[attribute] != "wrong" for attribute in ATTRIBUTES))
    return result


def ground_captions(captions: Mapping[str, str], actors: Mapping[str, Mapping[str, str]]) -> dict[str, dict]:
    """`ground_caption` for every captioned video that has a known actor, by video id."""
    return {video_id: ground_caption(caption, actors[video_id])
            for video_id, caption in captions.items() if video_id in actors}


def grounding_summary(per_video: Mapping[str, Mapping]) -> dict:
    """{"videos", "grounded": share, per attribute {"right", "wrong", "none": share}} over a non-empty set."""
    if not per_video:
        raise ValueError("grounding_summary needs at least one video")
    results = list(per_video.values())
    summary: dict = {"videos": len(results), "grounded": sum(r["grounded"] for r in results) / len(results)}
    for attribute in ATTRIBUTES:
        summary[attribute] = {kind: sum(r[attribute] == kind for r in results) / len(results) for kind in OUTCOMES}
    return summary


def _actor(path: Path, video_id: str, entry) -> dict[str, str]:
    """The actor's four attributes from a video's meta entry: world v2's `objects[actor]`, else v1's own keys."""
    try:
        record = entry["objects"][entry["actor"]] if "objects" in entry else entry
        actor = {attribute: record[attribute] for attribute in ATTRIBUTES}
    except (TypeError, KeyError, IndexError):
        raise UserError(f"{path}: video {video_id!r} does not record its actor's "
                        f"{', '.join(ATTRIBUTES)}") from None
    for attribute, value in actor.items():
        if value not in VOCABULARY[attribute].values():
            raise UserError(f"{path}: video {video_id!r} has {attribute} {value!r}, which captions have no word for")
    return actor


def load_actors(root: str | Path) -> dict[str, dict[str, str]] | None:
    """{video id: actor's shape, colour, size, motion} from `root/synthetic_meta.json`; None when the dataset
    has no such file or it describes no videos (real data, or a saliency-only world)."""
    path = Path(root) / world.META_NAME
    if not path.is_file():
        return None
    meta = world.read_meta(path)
    videos = meta.get("videos")
    if not isinstance(videos, dict):
        return None
    return {video_id: _actor(path, video_id, entry) for video_id, entry in videos.items()}


def describe_actor(actor: Mapping[str, str]) -> str:
    """The actor in a few words, e.g. "big red circle, motion left", for reports."""
    return f"{actor['size']} {actor['colour']} {actor['shape']}, motion {actor['motion']}"
