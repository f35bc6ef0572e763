"""The comparison report shows each run's grounded share when its evaluation has one."""
from pathlib import Path

from vidcap.evaluate import METRIC_KEYS
from vidcap.reports.comparison import EvaluatedRun, comparison_blocks
from vidcap.reports.document import Table
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
