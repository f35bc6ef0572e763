"""Paired bootstrap: the interval covers the true mean difference, and shrinks with more items."""

import numpy as np
import pytest

from saliency.infra.stats import paired_bootstrap


def test_interval_is_around_the_mean_difference_and_excludes_zero_for_a_clear_effect():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 500)
    result = paired_bootstrap(base + 0.05 + rng.normal(0, 0.02, 500), base)
    lo, hi = result["ci95"]
    assert result["n"] == 500 and lo < result["diff"] < hi
    assert 0.045 < lo and hi < 0.055


def test_pairing_removes_the_between_item_spread():
    """Item difficulty varies a lot; the per-item difference does not: the interval reflects the latter."""
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 1, 300)
    result = paired_bootstrap(difficulty + 0.01, difficulty)
    assert result["ci95"][1] - result["ci95"][0] < 1e-9


def test_no_effect_gives_an_interval_containing_zero():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    lo, hi = paired_bootstrap(a, b)["ci95"]
    assert lo < 0 < hi


def test_unpaired_lengths_are_refused():
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_mcnemar_counts_the_discordant_pairs_and_gives_the_exact_binomial_p():
    from saliency.infra.stats import mcnemar

    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3  # 10 where only a succeeds, 2 where only b does
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    result = mcnemar(a, b)
    assert result["a_only"] == 10 and result["b_only"] == 2
    assert result["p"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # P(X <= 2), X ~ Bin(12, 1/2), both tails
    assert mcnemar(a, a) == {"a_only": 0, "b_only": 0, "p": 1.0}
    assert mcnemar([True, False], [False, True])["p"] == 1.0


def test_a_spread_sample_takes_first_and_last_and_everything_when_short():
    from saliency.infra.stats import spread

    assert spread(10, 4) == [0, 3, 6, 9] and spread(3, 8) == [0, 1, 2] and spread(0, 4) == [] and spread(5, 1) == [0]


def test_reliability_finds_calibrated_confidence_calibrated_and_overconfidence_off():
    import numpy as np

    from saliency.infra.stats import reliability

    rng = np.random.default_rng(0)
    confidence = rng.random(20_000)
    calibrated = reliability(confidence, rng.random(20_000) < confidence)
    assert calibrated["ece"] < 0.02 and sum(row["items"] for row in calibrated["bins"]) == 20_000
    overconfident = reliability(np.full(100, 0.9), np.zeros(100, bool))
    assert overconfident["ece"] == pytest.approx(0.9) and len(overconfident["bins"]) == 1
