"""A trained captioner's trust record, made from its own videos: what they look like (a shrunk covariance, a
threshold that flags 1% of held-out in-domain videos) and how confidence maps onto being grounded (Platt)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from saliency.infra.media import write_test_pattern
from vidcap.inference.pipeline import caption_videos
from vidcap.model.trust import TRUST_FILE, Trust
from vidcap.run import load_run
from vidcap.training.trust import FALSE_ALARM, held_out_distances, ledoit_wolf, mahalanobis, platt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shrinkage_gives_the_inverse_covariance_of_plenty_of_data_and_a_usable_one_of_little():
    rng = np.random.default_rng(0)
    covariance = np.diag([1.0, 4.0, 9.0])
    many = rng.multivariate_normal(np.zeros(3), covariance, size=20_000)
    mean, precision = ledoit_wolf(many)
    assert np.allclose(mean, 0, atol=0.05) and np.allclose(precision, np.linalg.inv(covariance), atol=0.02)
    few = rng.normal(size=(5, 50))  # fewer videos than channels: the plain covariance has no inverse
    _, precision = ledoit_wolf(few)
    assert np.all(np.isfinite(precision)) and np.linalg.cond(precision) < 1e3


def test_the_threshold_flags_about_the_false_alarm_rate_of_in_domain_data_and_every_far_point():
    rng = np.random.default_rng(1)
    train, val = rng.normal(size=(400, 8)), rng.normal(size=(100, 8))
    threshold = np.quantile(held_out_distances(train, val), 1 - FALSE_ALARM)
    mean, precision = ledoit_wolf(train)
    fresh = mahalanobis(rng.normal(size=(2000, 8)), mean, precision)
    assert 0.0 <= np.mean(fresh > threshold) < 0.03
    assert np.all(mahalanobis(rng.normal(size=(100, 8)) + 6, mean, precision) > threshold)


def test_platt_fits_the_probability_of_known_outcomes_and_stays_finite_without_positives():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=5000)
    outcomes = rng.random(5000) < 1 / (1 + np.exp(-(2 * scores - 1)))  # the truth: slope 2, intercept -1
    slope, intercept = platt(scores, outcomes.astype(float))
    assert slope == pytest.approx(2, abs=0.2) and intercept == pytest.approx(-1, abs=0.15)
    slope, intercept = platt(rng.normal(size=16), np.zeros(16))
    assert slope == pytest.approx(0, abs=1e-3) and 1 / (1 + np.exp(-intercept)) == pytest.approx(1 / 18, rel=0.05)


@pytest.fixture(scope="module")
def unfamiliar(tmp_path_factory):
    """Clips of ffmpeg's generated sources, nothing like the synthetic world, at its size."""
    folder = tmp_path_factory.mktemp("unfamiliar")
    return [write_test_pattern(folder / f"{source}.mp4", size=(32, 64), seconds=1, fps=8, source=source)
            for source in ("testsrc2", "mandelbrot")]


def test_vidcap_train_records_trust_and_flags_clips_unlike_its_world(tiny_captioner, unfamiliar):
    run = tiny_captioner / "captioner"
    trust = Trust.load(run / TRUST_FILE)
    assert trust.threshold > 0 and trust.slope is not None
    assert trust.about["synthetic_world"] == {"seed": 0, "version": "v2"} and trust.about["train_videos"] == 4
    model, _ = load_run(run)
    synthetic = sorted((tiny_captioner / "vidcap-data").rglob("*.mp4"))
    results = {key: caption for key, caption, _ in caption_videos(model, [(p.name, str(p)) for p in synthetic + unfamiliar])}
    assert [results[p.name].in_domain for p in synthetic] == [True] * len(synthetic)
    assert [results[p.name].in_domain for p in unfamiliar] == [False, False]
    assert all(0 < caption.confidence < 1 for caption in results.values())


def test_a_flagged_caption_is_marked_in_text_and_json_and_explained_once(tiny_captioner, unfamiliar, cli):
    run = cli("vidcap")
    code, out, err = run("caption", *unfamiliar, "--model", tiny_captioner / "captioner", "--quiet")
    assert code == 0 and all(line.split("\t")[1].startswith("? ") for line in out.splitlines())
    assert err.count("? marks a caption of a video unlike those the model was trained on") == 1
    assert "the synthetic world" in err
    code, out, _ = run("caption", unfamiliar[0], "--model", tiny_captioner / "captioner", "--json", "--quiet")
    [entry] = json.loads(out)
    assert entry["in_domain"] is False and 0 < entry["confidence"] < 1 and not entry["caption"].startswith("?")


def test_the_card_says_what_the_captioner_was_trained_on(tiny_captioner, cli):
    code, out, _ = cli("vidcap")("info", tiny_captioner / "captioner")
    assert code == 0 and "a synthetic world (version v2, seed 0) of coloured shapes" in out
    assert "4 training videos" in out and "is flagged" in out and "calibrated on 1 validation videos" in out


def test_an_evaluation_reports_the_share_in_domain_and_how_confidence_matches_being_grounded(tiny_captioner,
                                                                                              tmp_path):
    from vidcap.evaluation.splits import evaluate_split

    metrics = evaluate_split(tiny_captioner / "captioner", "test", out=tmp_path, progress=False)
    assert metrics["in_domain"] == {"share": 1.0, "videos": metrics["videos"]}
    bins = metrics["calibration"]["bins"]
    assert sum(row["items"] for row in bins) == metrics["videos"] and 0 <= metrics["calibration"]["ece"] <= 1
    assert (tmp_path / "reliability.png").is_file() and "reliability.png" in (tmp_path / "report.md").read_text()
