"""The synthetic world's reference points: in v1 colour finds the actor; in v2 only knowledge does."""

from __future__ import annotations

import numpy as np
import pytest

from saliency import world
from saliency.world import BASELINES, baseline_scores, centre_prior, saturation_blob
from saliency.infra.errors import DatasetError


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, str]:
    roots = {}
    for version in world.WORLDS:
        root = tmp_path_factory.mktemp(version)
        world.write_salicon(root, n=200, seed=3, size=(72, 96), progress=False, world=version)
        roots[version] = str(root)
    return roots


def test_v2_defeats_the_colour_heuristic_but_not_the_world_itself(worlds):
    scores = {name: float(np.mean(values)) for name, values in baseline_scores(worlds["v2"], "test").items()}
    assert scores["heuristic"] <= 0.6 and scores["centre"] <= 0.4
    assert scores["oracle"] >= 0.95 and scores["inter_observer"] >= 0.9


def test_v1_is_pop_out_the_heuristic_nearly_matches_the_oracle(worlds):
    scores = {name: float(np.mean(values)) for name, values in baseline_scores(worlds["v1"], "test").items()}
    assert scores["heuristic"] >= 0.85 and scores["oracle"] >= 0.95


def test_scores_are_per_image_in_reader_order(worlds):
    scores = baseline_scores(worlds["v2"], "test")
    assert list(scores) == list(BASELINES) and len({len(v) for v in scores.values()}) == 1
    assert len(scores["oracle"]) == 30


def test_heuristic_finds_the_largest_saturated_blob_and_falls_back_to_the_centre():
    image = np.full((40, 60, 3), 128, np.uint8)
    image[5:15, 40:55] = (220, 20, 20)  # the larger saturated blob
    image[30:33, 5:8] = (20, 200, 20)
    peak = np.unravel_index(saturation_blob(image).argmax(), (40, 60))
    assert 5 <= peak[0] < 15 and 40 <= peak[1] < 55
    grey = np.full((40, 60, 3), 128, np.uint8)
    assert np.array_equal(saturation_blob(grey), centre_prior((40, 60)))


def test_a_folder_without_the_generators_meta_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no synthetic_meta.json"):
        baseline_scores(tmp_path)
