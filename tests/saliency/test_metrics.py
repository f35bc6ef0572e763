"""Specification of saliency.metrics: hand-worked values, invariances, MIT-code agreement, edge cases."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from saliency import metrics
from saliency.metrics import (
    METRICS,
    auc_borji,
    auc_judd,
    cc,
    fixation_map,
    higher_is_better,
    kld,
    nss,
    sauc,
    score_all,
    sim,
)

EPS = 2.2204e-16


def random_fixations(rng, shape, n):
    return fixation_map(np.stack([rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)], 1), shape)


@pytest.fixture
def scene():
    """A small image: fixations, their blurred density, a smooth imperfect prediction, other fixations."""
    rng = np.random.default_rng(7)
    shape = (24, 32)
    fix = random_fixations(rng, shape, 40)
    gt = gaussian_filter(fix.astype(float), 2.0)
    pred = gaussian_filter(fix.astype(float), 3.0) + 0.2 * gaussian_filter(rng.random(shape), 2.0)
    other = random_fixations(rng, shape, 120)
    return pred, gt, fix, other


# --- hand-worked tiny cases ------------------------------------------------------------------


def test_cc_of_two_by_two_maps_by_hand():
    # pred centred: -1.5 -.5 .5 1.5 (Σa² = 5); gt mean 2.75, centred: -1.75 -.75 .25 2.25
    # (Σb² = 8.75); Σab = 2.625 + .375 + .125 + 3.375 = 6.5  →  CC = 6.5 / √(5 · 8.75)
    assert cc(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]])) == pytest.approx(
        6.5 / math.sqrt(43.75), abs=1e-12
    )


def test_kld_of_two_by_two_maps_by_hand():
    # P uniform (¼ each); Q = (½, ½, 0, 0): 2 · ½ · log(½ / ¼) = log 2
    assert kld(np.ones((2, 2)), np.array([[1, 1], [0, 0]])) == pytest.approx(math.log(2), abs=1e-12)
    # Q all on one pixel: log(1 / ¼) = log 4
    assert kld(np.ones((2, 2)), np.array([[0, 0], [0, 5]])) == pytest.approx(math.log(4), abs=1e-12)


def test_sim_of_two_by_two_maps_by_hand():
    # pred → min-max (0, ⅓, ⅔, 1) → sum (0, ⅙, ⅓, ½); gt is its mirror (½, ⅓, ⅙, 0)
    # Σ min = 0 + ⅙ + ⅙ + 0 = ⅓
    assert sim(np.array([[0, 1], [2, 3]]), np.array([[3, 2], [1, 0]])) == pytest.approx(1 / 3, abs=1e-12)


def test_nss_of_two_by_two_map_by_hand():
    # pred (0, 0, 0, 4): mean 1, centred (-1, -1, -1, 3), std (N-1) = √(12/3) = 2
    # → standardised (-.5, -.5, -.5, 1.5)
    pred = np.array([[0, 0], [0, 4]])
    assert nss(pred, np.array([[0, 0], [0, 1]])) == pytest.approx(1.5, abs=1e-12)
    assert nss(pred, np.array([[1, 0], [0, 1]])) == pytest.approx(0.5, abs=1e-12)


def test_auc_judd_of_two_by_two_map_by_hand():
    # values a=.1, b=.4 (not fixated), c=.35, d=.8 (fixated); thresholds d then c:
    #   d: 1 pixel above → tp ½, fp (1-1)/2 = 0;   c: 3 pixels above (d, b, c) → tp 1, fp (3-2)/2 = ½
    # curve (0,0) (0,½) (½,1) (1,1): area 0 + ½·(½+1)/2 + ½·(1+1)/2 = .875
    pred = np.array([[0.1, 0.4], [0.35, 0.8]])
    fix = np.array([[0, 0], [1, 1]])
    assert auc_judd(pred, fix) == pytest.approx(0.875, abs=1e-12)


def test_auc_borji_of_a_two_level_map_is_one_minus_half_the_negatives_on_fixations():
    # pred is 1 on the fixations, 0 elsewhere. For every threshold above 0, tp = 1 and fp = h, the
    # share of a split's negatives that landed on a fixation; at 0, tp = fp = 1. The curve
    # (0,0) (h,1) (1,1) has area h/2 + (1-h) = 1 - h/2.
    rng = np.random.default_rng(3)
    fix = random_fixations(rng, (10, 10), 30)
    pred = fix.astype(float)
    n_fix = int(fix.sum())
    draws = np.random.default_rng(5).integers(0, fix.size, size=(n_fix, 50))  # the documented draws
    h = fix.ravel()[draws].mean(axis=0)
    assert auc_borji(pred, fix, n_splits=50, seed=5) == pytest.approx(np.mean(1 - h / 2), abs=1e-12)


def test_sauc_is_one_when_other_fixations_fall_where_the_map_is_low():
    # pred 1 on the fixations, 0 on the other images' fixations: fp = 0 above 0, so the curve is
    # (0,0) (0,1) (1,1), area 1.
    fix = np.zeros((4, 4), bool)
    fix[0, :2] = True
    other = np.zeros((4, 4), bool)
    other[3, :] = True
    assert sauc(fix.astype(float), fix, other) == pytest.approx(1.0, abs=1e-12)


def test_sauc_is_one_half_when_other_fixations_are_the_same_pixels():
    # negatives are fixated pixels too: tp = fp at every threshold, the diagonal, area ½.
    fix = np.zeros((4, 4), bool)
    fix[1:3, 1:3] = True
    assert sauc(fix.astype(float), fix, fix) == pytest.approx(0.5, abs=1e-12)


def test_constant_prediction_scores_zero_cc_and_nss_and_chance_auc(scene):
    _, gt, fix, other = scene
    flat = np.full(fix.shape, 0.3)
    assert cc(flat, gt) == 0.0
    assert nss(flat, fix) == 0.0
    # every pixel tied: one threshold (0) with tp = fp = 1 → the diagonal, ½
    assert auc_judd(flat, fix) == pytest.approx(0.5, abs=1e-12)
    assert auc_borji(flat, fix) == pytest.approx(0.5, abs=1e-12)
    assert sauc(flat, fix, other) == pytest.approx(0.5, abs=1e-12)


def test_constant_prediction_is_a_uniform_distribution_for_sim():
    gt = np.array([[1.0, 0.0], [0.0, 0.0]])  # all mass on one pixel
    assert sim(np.full((2, 2), 7.0), gt) == pytest.approx(0.25, abs=1e-12)


# --- invariances -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale, shift", [(3.0, 0.0), (0.01, 5.0), (250.0, -40.0)])
def test_cc_and_nss_are_invariant_to_affine_rescaling(scene, scale, shift):
    pred, gt, fix, _ = scene
    # (a shift of 5 on values of 0.01 leaves ~1e-14 relative precision; allow for it)
    assert cc(scale * pred + shift, gt) == pytest.approx(cc(pred, gt), abs=1e-9)
    assert nss(scale * pred + shift, fix) == pytest.approx(nss(pred, fix), abs=1e-9)


def test_kld_is_zero_for_identical_maps(scene):
    _, gt, _, _ = scene
    assert abs(kld(gt, gt)) < 1e-12


def test_sim_is_one_for_identical_maps(scene):
    _, gt, _, _ = scene
    assert sim(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_cc_is_one_for_identical_maps(scene):
    _, gt, _, _ = scene
    assert cc(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_auc_judd_is_one_for_a_map_peaked_at_the_fixations(scene):
    _, _, fix, _ = scene
    assert auc_judd(fix.astype(float), fix) == pytest.approx(1.0, abs=1e-12)
    assert auc_judd(gaussian_filter(fix.astype(float), 0.5), fix) > 0.99


def test_auc_borji_is_near_one_for_a_map_peaked_at_sparse_fixations():
    rng = np.random.default_rng(11)
    fix = random_fixations(rng, (60, 80), 30)  # 30 of 4800 pixels: few negatives land on them
    assert auc_borji(fix.astype(float), fix) > 0.99
    assert auc_borji(gaussian_filter(fix.astype(float), 0.5), fix) > 0.99


def test_sauc_is_near_one_for_a_map_peaked_at_the_fixations(scene):
    _, _, fix, other = scene
    assert sauc(gaussian_filter(fix.astype(float), 0.5), fix, other & ~fix) > 0.99


def test_aucs_are_one_half_for_a_random_map_over_many_fixations():
    rng = np.random.default_rng(12)
    shape = (100, 100)
    fix, other = random_fixations(rng, shape, 3000), random_fixations(rng, shape, 3000)
    pred = rng.random(shape)
    assert auc_judd(pred, fix) == pytest.approx(0.5, abs=0.05)
    assert auc_borji(pred, fix) == pytest.approx(0.5, abs=0.05)
    assert sauc(pred, fix, other) == pytest.approx(0.5, abs=0.05)


def test_borji_and_sauc_are_reproducible_by_seed(scene):
    pred, _, fix, other = scene
    assert auc_borji(pred, fix, seed=4) == auc_borji(pred, fix, seed=4)
    assert sauc(pred, fix, other, seed=4) == sauc(pred, fix, other, seed=4)
    assert auc_borji(pred, fix, seed=4) != auc_borji(pred, fix, seed=5)
    assert sauc(pred, fix, other, seed=4) != sauc(pred, fix, other, seed=5)


def test_kld_is_lower_and_the_rest_higher_for_the_better_prediction(scene):
    pred, gt, fix, other = scene
    noise = np.random.default_rng(1).random(fix.shape)
    good, bad = score_all(pred, gt, fix, other), score_all(noise, gt, fix, other)
    for name, higher in higher_is_better.items():
        assert (good[name] > bad[name]) == higher, name


# --- resizing --------------------------------------------------------------------------------


def smooth_map(shape):
    """Two Gaussian blobs sampled at the pixel centres of a `shape` grid over the unit square."""
    h, w = shape
    y, x = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return np.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.02) + 0.6 * np.exp(
        -((x - 0.7) ** 2 + (y - 0.6) ** 2) / 0.03
    )


def test_half_resolution_prediction_is_upsampled_to_the_ground_truth():
    full, half = smooth_map((96, 128)), smooth_map((48, 64))
    assert cc(half, full) > 0.99
    assert sim(half, full) > 0.95
    assert kld(half, full) < 0.01
    fix = full > 0.9 * full.max()
    assert nss(half, fix) == pytest.approx(nss(full, fix), rel=0.02)
    assert auc_judd(half, fix) > 0.99


def test_resizing_is_bilinear_with_pixel_centres_aligned():
    # output centres fall at input x = -.25, .25, .75, 1.25; edges clamp: 0, ¼, ¾, 1
    out = metrics._resized(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]], atol=1e-12)


# --- input types and the common interface ----------------------------------------------------


def test_numpy_and_torch_inputs_give_identical_scores(scene):
    pred, gt, fix, other = scene
    as_numpy = score_all(pred, gt, fix, other)
    as_torch = score_all(*(torch.from_numpy(a) for a in (pred, gt, fix, other)))
    assert as_numpy == as_torch
    for name, metric in METRICS.items():
        targets = {"gt": gt, "fix": fix, "other_fix": other}
        tensors = [torch.from_numpy(targets[k]) for k in metric.needs]
        assert metric(torch.from_numpy(pred), *tensors) == as_numpy[name]


def test_score_all_matches_each_metric_and_skips_sauc_without_other_fixations(scene):
    pred, gt, fix, other = scene
    scores = score_all(pred, gt, fix, other)
    assert list(scores) == ["CC", "KLD", "NSS", "SIM", "AUC_Judd", "AUC_Borji", "sAUC"]
    assert scores["CC"] == cc(pred, gt) and scores["sAUC"] == sauc(pred, fix, other)
    assert all(isinstance(v, float) for v in scores.values())
    assert "sAUC" not in score_all(pred, gt, fix)
    assert list(score_all(pred, gt, fix, names=["NSS", "CC"])) == ["NSS", "CC"]
    with pytest.raises(ValueError, match="sAUC needs other_fix"):
        score_all(pred, gt, fix, names=["sAUC"])
    with pytest.raises(ValueError, match="unknown metric"):
        score_all(pred, gt, fix, names=["EMD"])


def test_registry_says_what_each_metric_needs_and_which_way_is_better():
    assert METRICS["sAUC"].needs == ("fix", "other_fix")
    assert METRICS["CC"].needs == ("gt",) and METRICS["NSS"].needs == ("fix",)
    assert higher_is_better["KLD"] is False
    assert all(higher_is_better[n] for n in METRICS if n != "KLD")


def test_fixation_map_marks_points_and_clips_those_outside():
    fm = fixation_map(np.array([[0, 0], [2, 3], [2, 3], [-5, 1], [9, 99]]), (3, 4))
    expected = np.zeros((3, 4), bool)
    expected[0, 0] = expected[2, 3] = expected[0, 1] = True
    np.testing.assert_array_equal(fm, expected)
    assert not fixation_map(np.zeros((0, 2), int), (3, 4)).any()


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["NSS", "AUC_Judd", "AUC_Borji", "sAUC"])
def test_empty_fixation_map_raises_a_clear_value_error(scene, name):
    pred, _, fix, other = scene
    targets = {"fix": np.zeros_like(fix), "other_fix": other}
    with pytest.raises(ValueError, match="fix has no fixations"):
        METRICS[name](pred, *(targets[k] for k in METRICS[name].needs))


def test_sauc_without_other_fixations_raises_a_clear_value_error(scene):
    pred, _, fix, _ = scene
    with pytest.raises(ValueError, match="other_fix has no fixations"):
        sauc(pred, fix, np.zeros_like(fix))


def test_non_2d_and_non_finite_maps_are_rejected(scene):
    pred, gt, _, _ = scene
    with pytest.raises(ValueError, match="2-D"):
        cc(pred[None], gt)
    broken = pred.copy()
    broken[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cc(broken, gt)
    with pytest.raises(ValueError, match="non-negative"):
        kld(np.log(pred + 1e-3), gt)


# --- agreement with a literal transcription of the MIT MATLAB code ---------------------------
# Plain loops over pixels, thresholds and splits, one MATLAB line after another; the random draws
# follow the module's documented contract so that both see the same negatives.


def mean_std(values):
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def ref_cc(s1, s2):
    a, b = list(s1.ravel()), list(s2.ravel())
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    a, b = [(v - ma) / sa for v in a], [(v - mb) / sb for v in b]  # normalise both maps
    (ma, _), (mb, _) = mean_std(a), mean_std(b)  # corr2
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def ref_kld(s, f):
    p, q = list(s.ravel()), list(f.ravel())
    sp, sq = sum(p), sum(q)
    p, q = [v / sp for v in p], [v / sq for v in q]
    return sum(y * math.log(EPS + y / (x + EPS)) for x, y in zip(p, q))


def ref_sim(s1, s2):
    def normalise(m):
        lo, hi = min(m), max(m)
        m = [(v - lo) / (hi - lo) for v in m]
        return [v / sum(m) for v in m]

    return sum(min(x, y) for x, y in zip(normalise(list(s1.ravel())), normalise(list(s2.ravel()))))


def ref_nss(s, f):
    m, sd = mean_std(list(s.ravel()))
    at_fix = [(v - m) / sd for v, fx in zip(s.ravel(), f.ravel()) if fx]
    return sum(at_fix) / len(at_fix)


def ref_normalise(s):
    lo, hi = s.min(), s.max()
    return [(v - lo) / (hi - lo) for v in s.ravel()]


def ref_trapz(x, y):
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))


def ref_auc_judd(s, f):
    S = ref_normalise(s)
    sth = [v for v, fx in zip(S, f.ravel()) if fx]
    n_fix, n_pix = len(sth), len(S)
    allthreshes = sorted(sth, reverse=True)
    tp, fp = [0.0] * (n_fix + 2), [0.0] * (n_fix + 2)
    tp[-1] = fp[-1] = 1.0
    for i in range(1, n_fix + 1):
        thresh = allthreshes[i - 1]
        aboveth = sum(1 for v in S if v >= thresh)
        tp[i] = i / n_fix
        fp[i] = (aboveth - i) / (n_pix - n_fix)
    return ref_trapz(fp, tp)


def matlab_colon(start, step, stop):
    return [start + k * step for k in range(int(math.floor((stop - start) / step + 1e-10)) + 1)]


def ref_split_auc(sth, randfix, step):
    auc = []
    for curfix in randfix:
        allthreshes = matlab_colon(0, step, max(sth + curfix))[::-1]
        tp, fp = [0.0] * (len(allthreshes) + 2), [0.0] * (len(allthreshes) + 2)
        tp[-1] = fp[-1] = 1.0
        for i, thresh in enumerate(allthreshes, start=1):
            tp[i] = sum(1 for v in sth if v >= thresh) / len(sth)
            fp[i] = sum(1 for v in curfix if v >= thresh) / len(curfix)
        auc.append(ref_trapz(fp, tp))
    return sum(auc) / len(auc)


def ref_auc_borji(s, f, n_splits, step, seed):
    S = ref_normalise(s)
    sth = [v for v, fx in zip(S, f.ravel()) if fx]
    r = np.random.default_rng(seed).integers(0, len(S), size=(len(sth), n_splits))
    randfix = [[S[r[i, k]] for i in range(len(sth))] for k in range(n_splits)]
    return ref_split_auc(sth, randfix, step)


def ref_sauc(s, f, other, n_splits, step, seed):
    S = ref_normalise(s)
    sth = [v for v, fx in zip(S, f.ravel()) if fx]
    ind = [i for i, o in enumerate(other.ravel()) if o]
    n_oth = min(len(sth), len(ind))
    rng = np.random.default_rng(seed)
    randfix = [[S[i] for i in rng.choice(ind, n_oth, replace=False)] for _ in range(n_splits)]
    return ref_split_auc(sth, randfix, step)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deterministic_metrics_agree_with_the_matlab_transcription(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (18, 22)
    fix = random_fixations(rng, shape, 25)
    gt = gaussian_filter(fix.astype(float), 1.5)
    pred = gaussian_filter(rng.random(shape), 1.0) + rng.random(shape) ** 3
    assert cc(pred, gt) == pytest.approx(ref_cc(pred, gt), abs=1e-9)
    assert kld(pred, gt) == pytest.approx(ref_kld(pred, gt), abs=1e-9)
    assert sim(pred, gt) == pytest.approx(ref_sim(pred, gt), abs=1e-9)
    assert nss(pred, fix) == pytest.approx(ref_nss(pred, fix), abs=1e-9)
    assert auc_judd(pred, fix) == pytest.approx(ref_auc_judd(pred, fix), abs=1e-9)


@pytest.mark.parametrize("seed, n_splits, step", [(0, 100, 0.1), (1, 20, 0.05), (2, 30, 0.3)])
def test_borji_and_sauc_agree_with_the_matlab_transcription_on_the_same_draws(seed, n_splits, step):
    rng = np.random.default_rng(200 + seed)
    shape = (16, 20)
    fix, other = random_fixations(rng, shape, 30), random_fixations(rng, shape, 18 + 20 * seed)
    pred = gaussian_filter(rng.random(shape), 1.0) + 0.5 * fix
    assert auc_borji(pred, fix, n_splits, step, seed) == pytest.approx(
        ref_auc_borji(pred, fix, n_splits, step, seed), abs=1e-12
    )
    assert sauc(pred, fix, other, n_splits, step, seed) == pytest.approx(
        ref_sauc(pred, fix, other, n_splits, step, seed), abs=1e-12
    )
