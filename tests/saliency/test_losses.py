"""Ground-truth losses: hand-checked values on tiny maps, agreement with the benchmark metrics,
finite gradients in the edge cases, and the weighted combination."""
import math

import pytest
import torch

from saliency import metrics
from saliency.infra.errors import ConfigError
from saliency.losses import LossConfig, SaliencyLoss, cc_loss, kld_loss, nss_loss, sim_loss


def log_map(values, shape=None):
    """Log of the sum-normalised `values`, as a [1,1,1,N] (or `shape`) log-density."""
    p = torch.tensor(values, dtype=torch.float64)
    p = (p / p.sum()).log().float()
    return p.view(shape or (1, 1, 1, -1))


def density(values, shape=None):
    q = torch.tensor(values, dtype=torch.float32)
    return (q / q.sum()).view(shape or (1, 1, 1, -1))


def fixations(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


# --- KLD ----------------------------------------------------------------------------------------


def test_kld_of_two_known_two_pixel_distributions():
    # Q = (1/2, 1/2), P = (1/4, 3/4): ½·ln(½ / ¼) + ½·ln(½ / ¾) = ½·ln(4/3)
    value = kld_loss(log_map([1, 3]), density([1, 1]))
    assert value.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)


def test_kld_is_zero_for_identical_maps():
    assert kld_loss(log_map([1, 2, 3, 4]), density([1, 2, 3, 4])).item() == pytest.approx(0, abs=1e-6)


def test_kld_sum_normalises_the_ground_truth():
    unnormalised = torch.tensor([2.0, 2.0]).view(1, 1, 1, 2)
    assert kld_loss(log_map([1, 3]), unnormalised).item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)


def test_kld_is_finite_where_the_prediction_underflows():
    # P = (1, ~0): Q·log(ε + Q/(P+ε)) per pixel with P₂ = 0 exactly in float32 → ½·ln ½ + ½·ln(ε + ½/ε)
    log_pred = torch.tensor([0.0, -1e4]).view(1, 1, 1, 2).requires_grad_()
    value = kld_loss(log_pred, density([1, 1]))
    eps = metrics.EPS
    expected = 0.5 * math.log(eps + 0.5 / (1 + eps)) + 0.5 * math.log(eps + 0.5 / eps)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(log_pred.grad).all() and log_pred.grad.abs().sum() > 0


def test_kld_is_the_batch_mean():
    log_pred = torch.cat([log_map([1, 3]), log_map([1, 1])])
    q = torch.cat([density([1, 1]), density([1, 1])])
    assert kld_loss(log_pred, q).item() == pytest.approx(0.25 * math.log(4 / 3), rel=1e-5)


# --- CC -----------------------------------------------------------------------------------------


def test_cc_is_one_for_identical_maps():
    assert cc_loss(log_map([1, 2, 5, 3]), density([1, 2, 5, 3])).item() == pytest.approx(1, abs=1e-5)


def test_cc_known_value():
    # deviations (−1, 0, 1) and (−1, 1, 0): Σ dx·dy = 1, ‖dx‖² = ‖dy‖² = 2 → CC = ½
    assert cc_loss(log_map([1, 2, 3]), density([1, 3, 2])).item() == pytest.approx(0.5, abs=1e-5)


@pytest.mark.parametrize("loss, target", [(cc_loss, density([1, 3, 2])), (nss_loss, fixations([0, 1, 0]))])
def test_a_flat_prediction_scores_zero_with_zero_gradient(loss, target):
    # e.g. a zero-initialised head: CC and NSS are undefined there, and must not blow up training
    log_pred = log_map([1, 1, 1]).requires_grad_()
    value = loss(log_pred, target)
    value.backward()
    assert value.item() == 0 and (log_pred.grad == 0).all()


# --- NSS ----------------------------------------------------------------------------------------


def test_nss_known_value():
    # (1, 2, 3) standardised with ddof=1 is (−1, 0, 1)
    assert nss_loss(log_map([1, 2, 3]), fixations([0, 0, 1])).item() == pytest.approx(1, abs=1e-5)
    assert nss_loss(log_map([1, 2, 3]), fixations([1, 0, 1])).item() == pytest.approx(0, abs=1e-5)


def test_nss_excludes_images_without_fixations_from_the_mean():
    log_pred = torch.cat([log_map([1, 2, 3]), log_map([3, 2, 1])])
    fix = torch.cat([fixations([0, 0, 1]), fixations([0, 0, 0])])
    assert nss_loss(log_pred, fix).item() == pytest.approx(1, abs=1e-5)


def test_nss_without_any_fixation_is_zero_and_not_nan():
    log_pred = log_map([1, 2, 3]).requires_grad_()
    value = nss_loss(log_pred, fixations([0, 0, 0]))
    value.backward()
    assert value.item() == 0 and torch.isfinite(log_pred.grad).all()


# --- SIM ----------------------------------------------------------------------------------------


def test_sim_known_value():
    # min-max then sum-normalised: (1,2,3) → (0, ⅓, ⅔); (1,3,2) → (0, ⅔, ⅓); Σ min = ⅔
    assert sim_loss(log_map([1, 2, 3]), density([1, 3, 2])).item() == pytest.approx(2 / 3, abs=1e-5)


def test_sim_is_one_for_identical_maps():
    assert sim_loss(log_map([1, 2, 5, 3]), density([1, 2, 5, 3])).item() == pytest.approx(1, abs=1e-5)


# --- agreement with the benchmark metrics and gradients ------------------------------------------


@pytest.mark.parametrize("name", ["kld", "cc", "nss", "sim"])
def test_losses_equal_the_benchmark_metrics(name):
    gen = torch.Generator().manual_seed(0)
    log_pred = torch.log_softmax(torch.randn(1, 12 * 16, generator=gen), 1).view(1, 1, 12, 16)
    gt = torch.rand(1, 1, 12, 16, generator=gen) ** 4
    gt = gt / gt.sum()
    fix = (torch.rand(1, 1, 12, 16, generator=gen) > 0.9).float()
    loss = {"kld": kld_loss, "cc": cc_loss, "nss": nss_loss, "sim": sim_loss}[name]
    metric = getattr(metrics, name)
    target = fix if name == "nss" else gt
    expected = metric(log_pred[0, 0].exp().double(), target[0, 0].double())
    assert loss(log_pred, target).item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("loss", [kld_loss, cc_loss, nss_loss, sim_loss])
def test_gradients_reach_the_prediction(loss):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 8, generator=gen, requires_grad=True)
    log_pred = torch.log_softmax(logits.flatten(1), 1).view_as(logits)
    gt = torch.rand(2, 1, 6, 8, generator=gen)
    target = (gt > 0.8).float() if loss is nss_loss else gt / gt.sum((2, 3), keepdim=True)
    loss(log_pred, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="density"):
        kld_loss(log_map([1, 2, 3, 4]), density([1, 2, 3, 4], (1, 1, 2, 2)))


# --- SaliencyLoss ---------------------------------------------------------------------------------


def batch():
    gen = torch.Generator().manual_seed(2)
    log_pred = torch.log_softmax(torch.randn(3, 8 * 8, generator=gen), 1).view(3, 1, 8, 8)
    gt = torch.rand(3, 1, 8, 8, generator=gen)
    return log_pred, gt / gt.sum((2, 3), keepdim=True), (gt > 0.7).float()


def test_default_loss_is_kld_minus_tenth_cc_minus_tenth_nss():
    total, parts = SaliencyLoss()(*batch())
    assert set(parts) == {"kld", "cc", "nss"}  # SIM has weight 0: not computed
    expected = parts["kld"] - 0.1 * parts["cc"] - 0.1 * parts["nss"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    log_pred, gt, fix = batch()
    assert parts["kld"].item() == pytest.approx(kld_loss(log_pred, gt).item())
    assert parts["nss"].item() == pytest.approx(nss_loss(log_pred, fix).item())


def test_four_term_preset_is_ten_kld_minus_two_cc_minus_sim_minus_nss():
    total, parts = SaliencyLoss(LossConfig.preset("four-term"))(*batch())
    expected = 10 * parts["kld"] - 2 * parts["cc"] - parts["sim"] - parts["nss"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_zero_weight_terms_are_absent_and_total_is_differentiable():
    log_pred, gt, fix = batch()
    logits = log_pred.clone().requires_grad_()
    total, parts = SaliencyLoss(LossConfig(kld=0.0, cc=-1.0, nss=0.0))(logits, gt, fix)
    assert set(parts) == {"cc"}
    total.backward()
    assert logits.grad.abs().sum() > 0


def test_bad_loss_configs_are_config_errors():
    with pytest.raises(ConfigError, match="weight 0"):
        SaliencyLoss(LossConfig(kld=0.0, cc=0.0, nss=0.0, sim=0.0))
    with pytest.raises(ConfigError, match="unknown loss preset"):
        LossConfig.preset("kld-only")


def test_images_without_a_map_add_nothing_to_the_map_terms():
    """An unlabelled image (all-zero density, has_density False) must not pull the batch mean towards zero."""
    log_pred, gt, fix = batch()
    unlabelled_pred = torch.log_softmax(torch.randn(1, 1, *log_pred.shape[2:]).flatten(1), 1).view(1, 1, *log_pred.shape[2:])
    mixed_pred = torch.cat([log_pred, unlabelled_pred])
    mixed_gt = torch.cat([gt, torch.zeros_like(gt[:1])])
    mixed_fix = torch.cat([fix, torch.zeros_like(fix[:1])])
    has_density = torch.tensor([True] * len(gt) + [False])
    loss = SaliencyLoss(LossConfig(kld=1.0, cc=-0.5, nss=-0.1, sim=-0.2))
    labelled_total, labelled_parts = loss(log_pred, gt, fix)
    total, parts = loss(mixed_pred, mixed_gt, mixed_fix, has_density)
    assert total.item() == pytest.approx(labelled_total.item(), rel=1e-5)
    for name in parts:
        assert parts[name].item() == pytest.approx(labelled_parts[name].item(), rel=1e-5)
    unmasked_total, _ = loss(mixed_pred, mixed_gt, mixed_fix)
    assert unmasked_total.item() != pytest.approx(labelled_total.item(), rel=1e-3)  # the mask matters


def test_a_batch_without_any_map_gives_zero_and_a_usable_graph():
    log_pred, gt, fix = batch()
    logits = log_pred.clone().requires_grad_()
    total, parts = SaliencyLoss()(logits, torch.zeros_like(gt), torch.zeros_like(fix), torch.zeros(len(gt), dtype=torch.bool))
    assert total.item() == 0 and all(value.item() == 0 for value in parts.values())
    total.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
