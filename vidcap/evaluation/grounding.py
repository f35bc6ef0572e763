"""Grounding accuracy: does a caption name the synthetic world's actor as it is?

For each attribute (shape, colour, size, motion) a caption is scored against the actor recorded in the
dataset's `synthetic_meta.json`: "right" when it names the true value and no other, "wrong" when it names
another value of that attribute (even beside the true one), "none" when it names none. A caption is
grounded when its shape and motion are right and no attribute is wrong.

What names what is the world's own vocabulary (`saliency.world.vocabulary`: the caption generator's synonyms and
phrases, matched as whole words and phrases). Pure functions, so a benchmark can score captions the same way
`vidcap eval` does.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from saliency.infra.errors import UserError
from saliency.world import ATTRIBUTES, META_NAME, VOCABULARY, named_values, read_meta

OUTCOMES = ("right", "wrong", "none")


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
    path = Path(root) / META_NAME
    if not path.is_file():
        return None
    meta = read_meta(path)
    videos = meta.get("videos")
    if not isinstance(videos, dict):
        return None
    return {video_id: _actor(path, video_id, entry) for video_id, entry in videos.items()}


def describe_actor(actor: Mapping[str, str]) -> str:
    """The actor in a few words, e.g. "big red circle, motion left", for reports."""
    return f"{actor['size']} {actor['colour']} {actor['shape']}, motion {actor['motion']}"
