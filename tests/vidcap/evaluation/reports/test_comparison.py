"""The comparison report shows each run's grounded share when its evaluation has one, and on a synthetic world the
actor beside the captions with what each got right or wrong."""
from pathlib import Path

from vidcap.evaluation.caption_metrics import METRIC_KEYS
from vidcap.evaluation.reports.comparison import EvaluatedRun, comparison_blocks
from vidcap.evaluation.reports.document import Table
from vidcap.run import VidcapRunConfig


def evaluated(name: str, cider: float, grounded: float | None) -> EvaluatedRun:
    """A run as `vidcap eval` leaves it, with `grounding` in its metrics when `grounded` is given."""
    metrics = {"split": "test", "videos": 2, "data": "data/x", "metrics": {key: 0.5 for key in METRIC_KEYS} | {"CIDEr": cider},
               "sec_per_video": {}}
    if grounded is not None:
        metrics["grounding"] = {"videos": 2, "grounded": grounded}
    return EvaluatedRun(name, Path(name), VidcapRunConfig(), metrics, {"video1": "a red ball", "video2": "a box"})


def tables(runs: list[EvaluatedRun]) -> list[Table]:
    return [block for block in comparison_blocks(runs, {}) if isinstance(block, Table)]


def test_grounded_per_run_and_its_difference_to_the_first():
    scores, deltas, *_ = tables([evaluated("none", 0.4, 0.25), evaluated("student", 0.6, 0.5)])
    assert scores.headers[-1] == "grounded" and [row[-1] for row in scores.rows] == ["25.0", "50.0"]
    assert deltas.headers[-1] == "grounded" and deltas.rows[0][-1] == "+25.0"


def test_runs_without_grounding_have_no_column_and_a_missing_one_is_na():
    scores, deltas, *_ = tables([evaluated("none", 0.4, None), evaluated("student", 0.6, None)])
    assert "grounded" not in scores.headers and "grounded" not in deltas.headers
    scores, deltas, *_ = tables([evaluated("real", 0.4, None), evaluated("synthetic", 0.6, 0.5)])
    assert [row[-1] for row in scores.rows] == ["n/a", "50.0"] and deltas.rows[0][-1] == "n/a"


def test_captions_side_by_side_show_the_actor_and_what_each_caption_got_right_or_wrong():
    actors = {"video1": {"shape": "circle", "colour": "red", "size": "big", "motion": "left"},
              "video2": {"shape": "star", "colour": "blue", "size": "small", "motion": "grows"}}
    runs = [evaluated("none", 0.4, 0.0), evaluated("student", 0.6, 0.5)]
    side_by_side = [block for block in comparison_blocks(runs, {"video1": ["a big red ball"]}, actors)
                    if isinstance(block, Table)][-1]
    assert side_by_side.headers == ["video", "actor", "a reference", "none", "student"]
    first = side_by_side.rows[[row[0] for row in side_by_side.rows].index("video1")]
    assert first[1] == "big red circle, left" and first[2] == "a big red ball"
    assert first[3] == "a red ball (shape ✓, colour ✓, size –, motion –)"  # "ball": a synonym of circle
    second = side_by_side.rows[[row[0] for row in side_by_side.rows].index("video2")]
    assert second[3] == "a box (shape ✗, colour –, size –, motion –)"  # "box": a square
    plain = [block for block in comparison_blocks(runs, {}) if isinstance(block, Table)][-1]
    assert plain.headers == ["video", "a reference", "none", "student"] and plain.rows[0][2] == "a red ball"
