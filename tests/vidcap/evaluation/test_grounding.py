"""Grounding accuracy: captions scored against the synthetic world's actor, by hand and through `vidcap eval`."""
from __future__ import annotations

import itertools
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from saliency import world
from saliency.infra.errors import UserError
from vidcap.evaluation import grounding
from vidcap.cli import main
from vidcap.data.datasets import open_caption_dataset
from saliency.world import CAPTION_TEMPLATES, caption_from_template, write_msrvtt
from vidcap.evaluation.grounding import ground_caption, grounding_summary, load_actors

STAR = {"shape": "star", "colour": "purple", "size": "big", "motion": "shrinks"}
BALL = {"shape": "circle", "colour": "red", "size": "small", "motion": "left"}


def outcomes(caption: str, actor: dict) -> tuple[str, str, str, str, bool]:
    """(shape, colour, size, motion, grounded) as `ground_caption` judges them."""
    result = ground_caption(caption, actor)
    return (*(result[attribute] for attribute in grounding.ATTRIBUTES), result["grounded"])


@pytest.mark.parametrize("caption, actor, expected", [
    ("a big purple star shrinks", STAR, ("right", "right", "right", "right", True)),
    # issue 15's example: video128, a big purple star shrinking
    ("a large purple wedge grows in size on the screen", STAR, ("wrong", "right", "right", "wrong", False)),
    ("A huge purple star is shrinking.", STAR, ("right", "right", "right", "right", True)),  # case, punctuation
    ("the star shrinks in size", STAR, ("right", "none", "none", "right", True)),  # omissions are not wrong
    ("a star", STAR, ("right", "none", "none", "none", False)),  # no motion: not grounded
    ("a purple thing gets smaller", STAR, ("none", "right", "none", "right", False)),  # no shape: not grounded
    ("a small star shrinks", STAR, ("right", "none", "wrong", "right", False)),  # a wrong size spoils it
    ("a green star shrinks", STAR, ("right", "wrong", "none", "right", False)),
    ("a star beside a box shrinks in size", STAR, ("wrong", "none", "none", "right", False)),  # two shapes, one wrong
    ("stars getting smaller", STAR, ("right", "none", "none", "right", True)),  # plural of a shape word
    ("a little red ball moving to the left", BALL, ("right", "right", "right", "right", True)),  # synonyms
    ("a tiny red dot travels to the left", BALL, ("right", "right", "right", "right", True)),
    ("some discs slide to the left", BALL, ("right", "none", "none", "right", True)),
    ("a red ball moves left", BALL, ("right", "right", "none", "right", True)),  # the motion's own name
    ("a red ball moves to the right", BALL, ("right", "right", "none", "wrong", False)),
    ("a small red ball gets larger", BALL, ("right", "right", "right", "wrong", False)),  # "larger": a motion, not a size
    ("a small ball grows bigger", BALL, ("right", "none", "right", "wrong", False)),
    ("a small ball in size", BALL, ("right", "none", "right", "none", False)),  # "in size" alone is no motion
    ("a small ball does not move", BALL, ("right", "none", "right", "wrong", False)),  # multi-word "still"
    ("a red balloon leftover", BALL, ("none", "right", "none", "none", False)),  # whole words only
    ("", BALL, ("none", "none", "none", "none", False)),
])
def test_hand_written_captions_against_known_actors(caption, actor, expected):
    assert outcomes(caption, actor) == expected


def test_no_phrase_hides_inside_a_phrase_of_another_value():
    """Every phrase names one value: none of another attribute or value occurs inside it (e.g. "large" in
    "gets larger" is not a whole word), so each phrase can be looked for on its own."""
    phrases = [(attribute, phrase, value) for attribute, table in grounding.VOCABULARY.items()
               for phrase, value in table.items()]
    for (attribute, phrase, value), (other, inner, other_value) in itertools.product(phrases, repeat=2):
        if (attribute, value) != (other, other_value):
            windows = {phrase[i:i + len(inner)] for i in range(len(phrase) - len(inner) + 1)}
            assert inner not in windows, (phrase, inner)


def test_every_generated_reference_caption_is_grounded_and_says_nothing_else():
    rng = np.random.default_rng(0)
    for shape, colour, size, motion in itertools.product(world.SHAPES, world.COLOURS, world.SIZES, world.MOTIONS):
        actor = {"shape": shape, "colour": colour, "size": size, "motion": motion}
        for template in CAPTION_TEMPLATES:
            caption = caption_from_template(template, SimpleNamespace(**actor), rng)
            result = ground_caption(caption, actor)
            assert result["grounded"] and "wrong" not in result.values(), (caption, result)


def test_summary_gives_shares_per_attribute_and_the_grounded_share():
    per_video = {"a": ground_caption("a big purple star shrinks", STAR),
                 "b": ground_caption("a large purple wedge grows in size", STAR),
                 "c": ground_caption("a star shrinks", STAR),
                 "d": ground_caption("a purple box", STAR)}
    summary = grounding_summary(per_video)
    assert summary["videos"] == 4 and summary["grounded"] == 0.5
    assert summary["shape"] == {"right": 0.5, "wrong": 0.5, "none": 0.0}
    assert summary["colour"] == {"right": 0.75, "wrong": 0.0, "none": 0.25}
    assert summary["size"] == {"right": 0.5, "wrong": 0.0, "none": 0.5}
    assert summary["motion"] == {"right": 0.5, "wrong": 0.25, "none": 0.25}
    with pytest.raises(ValueError):
        grounding_summary({})


@pytest.mark.parametrize("version", world.WORLDS)
def test_actors_come_from_the_meta_of_either_world(version, tmp_path):
    write_msrvtt(tmp_path, n=4, size=(32, 32), n_frames=2, progress=False, world=version)
    meta = json.loads((tmp_path / world.META_NAME).read_text())["videos"]
    actors = load_actors(tmp_path)
    assert set(actors) == set(meta)
    for video_id, entry in meta.items():
        assert actors[video_id] == {attribute: entry[attribute] for attribute in grounding.ATTRIBUTES}
        if version == "v2":
            assert actors[video_id] == {key: entry["objects"][entry["actor"]][key] for key in grounding.ATTRIBUTES}


def test_v2_actor_is_the_object_the_meta_names(tmp_path):
    objects = [{**BALL, "attention": 0.2}, {**STAR, "attention": 0.8}]
    (tmp_path / world.META_NAME).write_text(json.dumps({"world": "v2", "videos": {"video0": {
        "split": "test", "objects": objects, "actor": 1}}}))
    assert load_actors(tmp_path) == {"video0": STAR}


def test_data_without_a_world_has_no_actors_and_a_damaged_record_is_one_line(tmp_path):
    assert load_actors(tmp_path) is None
    (tmp_path / world.META_NAME).write_text(json.dumps({"world": "v2", "images": {}}))  # a saliency-only world
    assert load_actors(tmp_path) is None
    (tmp_path / world.META_NAME).write_text("{not json")
    with pytest.raises(UserError, match="synthetic_meta.json: cannot read"):
        load_actors(tmp_path)
    (tmp_path / world.META_NAME).write_text(json.dumps({"videos": {"video3": {"shape": "star"}}}))
    with pytest.raises(UserError, match="video3"):
        load_actors(tmp_path)
    (tmp_path / world.META_NAME).write_text(json.dumps({"videos": {"video3": {**STAR, "shape": "hexagon"}}}))
    with pytest.raises(UserError, match="'hexagon'"):
        load_actors(tmp_path)


# ---------------------------------------------------------------- through `vidcap eval`

def wrong_shape(actor: dict) -> str:
    """A caption that gets everything right but the shape."""
    other = next(shape for shape in world.SHAPES if shape != actor["shape"])
    return f"a {actor['size']} {actor['colour']} {other} {actor['motion']}"


def test_eval_on_a_synthetic_dataset_scores_grounding(tiny_captioner, tmp_path, parse_report, capsys):
    data = tiny_captioner / "vidcap-data"
    train = open_caption_dataset(data, split="train")
    actors = load_actors(data)
    captions = {item.video_id: item.captions[0] for item in train.items}  # each is one of its own references
    wrong = train.items[0].video_id
    captions[wrong] = wrong_shape(actors[wrong])
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps([{"video_id": v, "caption": c} for v, c in captions.items()]))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_captioner / "captioner"), "--split", "train", "--predictions",
                 str(predictions), "--per-video", "--out", str(out), "--quiet"]) == 0
    assert "grounded 75.0% of 4 videos" in capsys.readouterr().out

    metrics = json.loads((out / "metrics.json").read_text())["grounding"]
    assert metrics["videos"] == 4 and metrics["grounded"] == 0.75
    assert metrics["shape"] == {"right": 0.75, "wrong": 0.25, "none": 0.0}
    assert metrics["motion"]["right"] == 1.0
    rows = {row["video_id"]: row["grounding"] for row in json.loads((out / "per_video.json").read_text())}
    assert rows[wrong] == {"shape": "wrong", "colour": "right", "size": "right", "motion": "right", "grounded": False}
    assert all(rows[v]["grounded"] for v in rows if v != wrong)

    report = parse_report((out / "report.html").read_text())
    assert "Grounding against the actor (% of videos)" in report.headings
    table = next(t for t in report.tables if t[0] == ["attribute", "right", "wrong", "none"])
    assert table[1] == ["shape", "75.0", "25.0", "0.0"] and [row[0] for row in table[1:]] == list(grounding.ATTRIBUTES)
    assert "75.0% of 4 videos grounded" in (out / "report.md").read_text()


def test_eval_on_data_without_a_world_has_no_grounding(tiny_captioner, tmp_path, parse_report, monkeypatch):
    from vidcap.evaluation import splits as split_evaluation
    from vidcap.evaluation.caption_metrics import METRIC_KEYS

    monkeypatch.setattr(split_evaluation, "score", lambda gts, res: {key: 0.5 for key in METRIC_KEYS})  # no Java
    data = tmp_path / "data"
    shutil.copytree(tiny_captioner / "vidcap-data", data)
    (data / world.META_NAME).unlink()
    predictions = tmp_path / "predictions.json"
    train = open_caption_dataset(data, split="train")
    predictions.write_text(json.dumps([{"video_id": i.video_id, "caption": i.captions[0]} for i in train.items]))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_captioner / "captioner"), "--split", "train", "--data", str(data),
                 "--predictions", str(predictions), "--out", str(out), "--quiet"]) == 0
    assert "grounding" not in json.loads((out / "metrics.json").read_text())
    assert not any(heading.startswith("Grounding") for heading in parse_report((out / "report.html").read_text()).headings)
