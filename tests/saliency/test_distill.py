"""Distillation statistics and losses: hand-checked values on tiny feature maps, zero when the student
equals the (pooled) teacher, what an adapter alone cannot match, switches and presets, config errors,
gradients, and magnitudes at initialisation."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from saliency.infra.config import from_dict
from saliency.distill import (
    OFF,
    DistillConfig,
    Distiller,
    FeatureAdapter,
    attention_loss,
    batch_similarity,
    batch_similarity_loss,
    channel_mean_loss,
    channel_means,
    channel_variance_loss,
    channel_variances,
    covariance_matrix,
    fitnets_hint_loss,
    gram_loss,
    gram_matrix,
    output_kl,
    position_similarity,
    position_similarity_loss,
    spatial_attention_map,
)
from saliency.infra.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors throughout

ALL_TERMS = {
    "attention", "channel_mean", "channel_variance", "gram", "position_similarity", "batch_similarity", "output",
    "fitnets",
}


def tiny_features():
    """[1,2,2,2]: channel 0 = [[1,0],[0,1]], channel 1 = [[3,1],[1,−1]].

    Positions (row-major) as channel vectors: p0 = (1,3), p1 = (0,1), p2 = (0,1), p3 = (1,−1).
    """
    return torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[3.0, 1.0], [1.0, -1.0]]]])


def approx(tensor, expected, tol=1e-5):
    return torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype), atol=tol)


# --- statistics, by hand ----------------------------------------------------------------------------


def test_spatial_attention_map_by_hand():
    # mean over channels of f²: p0 (1+9)/2 = 5, p1 (0+1)/2 = ½, p2 ½, p3 (1+1)/2 = 1; ‖·‖ = √26.5
    expected = [[5 / math.sqrt(26.5), 0.5 / math.sqrt(26.5), 0.5 / math.sqrt(26.5), 1 / math.sqrt(26.5)]]
    assert approx(spatial_attention_map(tiny_features()), expected)


def test_spatial_attention_map_pools_the_energy_to_a_size():
    # column means of the energy (5, ½ | ½, 1) → (2.75, 0.75), then normalised
    norm = math.hypot(2.75, 0.75)
    assert approx(spatial_attention_map(tiny_features(), size=(1, 2)), [[2.75 / norm, 0.75 / norm]])


def test_channel_means_by_hand():
    # channel 0: (1+0+0+1)/4 = ½; channel 1: (3+1+1−1)/4 = 1
    assert approx(channel_means(tiny_features()), [[0.5, 1.0]])


def test_channel_variances_by_hand():
    # channel 0: (1,0,0,1) − ½ → squares sum 1; channel 1: (3,1,1,−1) − 1 → 4+0+0+4 = 8; / (H·W − 1 = 3)
    assert approx(channel_variances(tiny_features()), [[1 / 3, 8 / 3]])
    assert torch.allclose(channel_variances(tiny_features()), torch.diagonal(covariance_matrix(tiny_features()), dim1=1, dim2=2))
    assert torch.equal(channel_variances(torch.ones(2, 3, 1, 1)), torch.zeros(2, 3))


def test_gram_matrix_by_hand():
    # F = [[1,0,0,1],[3,1,1,−1]]: F Fᵀ = [[2, 2],[2, 12]], / (H·W = 4)
    assert approx(gram_matrix(tiny_features()), [[[0.5, 0.5], [0.5, 3.0]]])


def test_covariance_matrix_by_hand():
    # centred rows (½,−½,−½,½) and (2,0,0,−2): products 1, 0, 8, / (H·W − 1 = 3)
    assert approx(covariance_matrix(tiny_features()), [[[1 / 3, 0.0], [0.0, 8 / 3]]])


def test_covariance_of_a_single_position_is_zero():
    assert torch.equal(covariance_matrix(torch.ones(2, 3, 1, 1)), torch.zeros(2, 3, 3))


def test_position_similarity_by_hand():
    # unit vectors p0 = (1,3)/√10, p1 = p2 = (0,1), p3 = (1,−1)/√2
    a, b, c = 3 / math.sqrt(10), -1 / math.sqrt(5), -1 / math.sqrt(2)
    expected = [[[1, a, a, b], [a, 1, 1, c], [a, 1, 1, c], [b, c, c, 1]]]
    assert approx(position_similarity(tiny_features(), size=(2, 2)), expected)


def test_position_similarity_pools_to_its_size_first():
    # column means: left (p0+p2)/2 = (½, 2), right (p1+p3)/2 = (½, 0): cos = ¼ / (√4.25 · ½) = 1/√17
    c = 1 / math.sqrt(17)
    assert approx(position_similarity(tiny_features(), size=(1, 2)), [[[1, c], [c, 1]]])
    assert position_similarity(torch.rand(3, 5, 17, 23), size=(4, 4)).shape == (3, 16, 16)


def test_batch_similarity_by_hand():
    # two 1×1 images with channel vectors (1,0) and (1,1): F Fᵀ = [[1,1],[1,2]], rows / (√2, √5)
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    r2, r5 = 1 / math.sqrt(2), 1 / math.sqrt(5)
    assert approx(batch_similarity(f), [[r2, r2], [r5, 2 * r5]])
    # any width and resolution: [B, C·H·W] rows, so the matrix is B×B
    assert batch_similarity(torch.rand(3, 5, 7, 2)).shape == (3, 3)


# --- losses, by hand ----------------------------------------------------------------------------------


def test_attention_loss_by_hand_and_across_resolutions():
    student = torch.tensor([[[[1.0, 0.0]]]])  # energy (1, 0)
    teacher = torch.tensor([[[[0.0, 2.0]]]])  # energy (0, 4): orthogonal unit maps, ‖a_s − a_t‖² = 2
    assert attention_loss(student, teacher).item() == pytest.approx(2.0)
    f = torch.rand(2, 3, 4, 5)
    assert attention_loss(f, f * 7).item() == pytest.approx(0, abs=1e-6)  # scale-free
    # A wider teacher at twice the resolution with the same energy, constant on 2×2 blocks, pools
    # down to the student's map (and a larger student pools down to the teacher's).
    up = F.interpolate(f, scale_factor=2, mode="nearest")
    teacher = torch.cat([up, up], 1)  # [2,6,8,10], same channel mean of f²
    assert attention_loss(f, teacher).item() == pytest.approx(0, abs=1e-6)
    assert attention_loss(teacher, f).item() == pytest.approx(0, abs=1e-6)


def test_channel_mean_loss_compares_batch_centred_means_by_hand():
    # student means (1,0) and (0,1) → centred ±(½,−½); teacher (2,0) and (0,0) → ±(1,0): cos = 1/√2 each
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).view(2, 2, 1, 1)
    assert channel_mean_loss(student, teacher).item() == pytest.approx(2 - math.sqrt(2), rel=1e-5)
    assert channel_mean_loss(student, 5 * student).item() == pytest.approx(0, abs=1e-6)  # scale-free
    assert channel_mean_loss(student, -student).item() == pytest.approx(4.0)  # opposite deviations


def test_channel_variance_loss_compares_batch_centred_variances_by_hand():
    # two 1×2 images. Student: (0,2) | (0,0) has variances (2,0); (0,0) | (1,−1) has (0,2) → centred ±(1,−1).
    # Teacher: variances (2,0) and (0,0) → centred ±(1,0). cos = 1/√2 for both images.
    student = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[1.0, -1.0]]]])
    teacher = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    assert channel_variances(student).tolist() == [[2.0, 0.0], [0.0, 2.0]]
    assert channel_variance_loss(student, teacher).item() == pytest.approx(2 - math.sqrt(2), rel=1e-5)
    # resolutions may differ: each variance is over its own map's positions
    wide = F.interpolate(student, scale_factor=(1, 2), mode="nearest")  # (0,0,2,2): variance 4/3 instead of 2
    assert channel_variance_loss(wide, student).item() == pytest.approx(0, abs=1e-6)


def test_first_order_terms_ignore_any_constant_the_adapter_could_add():
    student, teacher = torch.rand(4, 3, 5, 5), torch.rand(4, 3, 2, 2)
    shift = torch.randn(1, 3, 1, 1)  # a bias: the same for every image
    for loss in (channel_mean_loss, channel_variance_loss):
        assert loss(student + shift, teacher).item() == pytest.approx(loss(student, teacher).item(), rel=1e-5)
    # a single image has no deviation from its batch's average: nothing to match
    assert channel_mean_loss(student[:1], teacher[:1]).item() == 0


def test_gram_loss_by_hand():
    first = torch.tensor([[[[1.0]], [[0.0]]]])  # Gram [[1,0],[0,0]]
    second = torch.tensor([[[[0.0]], [[1.0]]]])  # Gram [[0,0],[0,1]]: orthogonal, distance 2
    assert gram_loss(first, second).item() == pytest.approx(2.0)
    # tiny_features: G = [[½,½],[½,3]], ‖G‖² = 9.75; against the identity (‖I‖² = 2), cos = 3.5/√19.5
    f, eye = tiny_features(), torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # Gram of eye = I/2
    expected = 2 - 2 * 3.5 / math.sqrt(19.5)
    assert gram_loss(f, eye).item() == pytest.approx(expected, rel=1e-5)


def test_covariance_loss_by_hand():
    # covariance diag(⅓, 8/3) against a teacher whose covariance is I·⅔:
    # cos = (⅓ + 8/3) / (√65/3 · √2) = 9/√130
    teacher = torch.tensor([[[[1.0, -1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, -1.0]]]])
    expected = 2 - 2 * 9 / math.sqrt(130)
    assert gram_loss(tiny_features(), teacher, "covariance").item() == pytest.approx(expected, rel=1e-5)


def test_position_similarity_loss_by_hand_on_the_coarser_grid():
    # the 2×2 student is pooled to the 1×2 teacher's grid: [[1, c],[c, 1]], c = 1/√17; the teacher's
    # orthogonal halves give the identity; (c² + c²) / 4 entries
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    assert position_similarity_loss(tiny_features(), teacher).item() == pytest.approx(2 / 17 / 4, rel=1e-5)
    assert position_similarity_loss(teacher, tiny_features()).item() == pytest.approx(2 / 17 / 4, rel=1e-5)
    # and to at most max_grid: at 1×1 every cosine is 1
    assert position_similarity_loss(tiny_features(), torch.rand(1, 3, 4, 4), max_grid=(1, 1)).item() == pytest.approx(0, abs=1e-6)


def test_batch_similarity_loss_by_hand():
    # student images (1,0), (0,1): G = I; teacher images (1,0), (1,0): rows (1,1)/√2.
    # ‖G_s − G_t‖² = 2(1 − 1/√2)² + 2·½ = 4 − 2√2, / B² = 4
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(2, 2, 1, 1)
    assert batch_similarity_loss(student, teacher).item() == pytest.approx(1 - math.sqrt(2) / 2, rel=1e-5)
    # widths and resolutions may differ
    f = torch.rand(3, 4, 6, 8)
    assert batch_similarity_loss(f, torch.cat([f, f], 1)).item() == pytest.approx(0, abs=1e-6)


def test_output_kl_by_hand():
    student = torch.tensor([0.5, 0.5]).log().view(1, 1, 1, 2)
    teacher = torch.tensor([0.25, 0.75]).log().view(1, 1, 1, 2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL(teacher ‖ student)
    assert output_kl(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_output_kl_temperature_softens_the_teacher_and_scales_by_t_squared():
    student = torch.tensor([0.5, 0.5]).log().view(1, 1, 1, 2)
    teacher = torch.tensor([0.25, 0.75]).log().view(1, 1, 1, 2)
    # T = 2: the teacher becomes ∝ √p = (½, √¾), the uniform student stays uniform
    t = torch.tensor([0.5, math.sqrt(0.75)])
    t = t / t.sum()
    expected = 4 * float((t * (t / 0.5).log()).sum())
    assert output_kl(student, teacher, temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert output_kl(teacher, teacher, temperature=3.0).item() == pytest.approx(0, abs=1e-6)


def test_fitnets_hint_is_relative_mse_after_bilinear_resize():
    student = torch.ones(1, 1, 1, 1)  # upsampled to 2×2 ones
    teacher = torch.full((1, 1, 2, 2), 2.0)  # MSE 1, teacher mean square 4
    assert fitnets_hint_loss(student, teacher).item() == pytest.approx(0.25)


# --- Distiller ------------------------------------------------------------------------------------------


def features(widths, sizes, seed, scale=1.0):
    """Non-negative, spatially correlated random features, like post-ReLU CNN maps."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c, (h, w) in zip(widths, sizes):
        low = torch.randn(2, c, max(h // 4, 1), max(w // 4, 1), generator=gen)
        smooth = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        out.append(scale * torch.relu(smooth + 0.5 * torch.randn(2, c, h, w, generator=gen) - 0.3))
    return out


def log_maps(seed, sharpness):
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharpness * torch.randn(2, 32 * 48, generator=gen), 1).view(2, 1, 32, 48)


WIDTHS, SIZES = [4, 8, 8, 16], [(16, 24), (8, 12), (4, 6), (2, 3)]
EVERYTHING = DistillConfig(fitnets=1.0)


def set_to_identity(distiller):
    for adapter in distiller.adapters.values():
        c = adapter.conv.weight.shape[0]
        with torch.no_grad():
            adapter.conv.weight.copy_(torch.eye(c)[:, :, None, None])


@pytest.mark.parametrize("second_order", ["gram", "covariance"])
def test_every_term_is_zero_when_the_student_equals_the_teacher(second_order):
    config = DistillConfig(fitnets=1.0, second_order=second_order)
    distiller = Distiller(config, WIDTHS, WIDTHS)
    set_to_identity(distiller)
    f, log = features(WIDTHS, SIZES, seed=0), log_maps(0, 2.0)
    parts = distiller(f, f, log, log)
    assert set(parts) == ALL_TERMS
    for name, value in parts.items():
        assert value.item() == pytest.approx(0, abs=1e-5), name


def test_gradients_reach_the_student_and_the_adapters_but_not_the_teacher():
    student_widths, teacher_widths = [4, 6, 8, 10], [8, 16, 32, 64]
    student = [f.requires_grad_() for f in features(student_widths, SIZES, seed=1)]
    teacher_sizes = [(2 * h, 2 * w) for h, w in SIZES]  # a teacher at twice the resolution
    teacher = [f.requires_grad_() for f in features(teacher_widths, teacher_sizes, seed=2)]
    student_log, teacher_log = log_maps(1, 0.1).requires_grad_(), log_maps(2, 2.0).requires_grad_()
    distiller = Distiller(EVERYTHING, student_widths, teacher_widths)
    parts = distiller(student, teacher, student_log, teacher_log)
    sum(parts.values()).backward()
    for f in student:
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    for p in distiller.parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert torch.isfinite(student_log.grad).all() and student_log.grad.abs().sum() > 0
    assert all(f.grad is None for f in teacher) and teacher_log.grad is None


def test_each_term_is_its_weight_times_its_loss():
    config = DistillConfig(**{**OFF, "attention": 2.0, "position_similarity": 5.0, "batch_similarity": 7.0, "output": 3.0})
    f, g = features(WIDTHS, SIZES, seed=3), features(WIDTHS, SIZES, seed=4)
    s_log, t_log = log_maps(3, 1.0), log_maps(4, 1.0)
    parts = Distiller(config, WIDTHS, WIDTHS)(f, g, s_log, t_log)
    for name, weight, loss in (
        ("attention", 2.0, attention_loss), ("position_similarity", 5.0, position_similarity_loss),
        ("batch_similarity", 7.0, batch_similarity_loss),
    ):
        expected = weight * torch.stack([loss(a, b) for a, b in zip(f, g)]).mean()
        assert parts[name].item() == pytest.approx(expected.item(), rel=1e-5), name
    assert parts["output"].item() == pytest.approx(3 * output_kl(s_log, t_log).item(), rel=1e-5)


@pytest.mark.parametrize("term", sorted(ALL_TERMS))
def test_a_zero_weight_switches_its_term_off(term):
    config = DistillConfig(**{"fitnets": 1.0, term: 0.0})
    distiller = Distiller(config, WIDTHS, [2 * w for w in WIDTHS])
    parts = distiller(
        features(WIDTHS, SIZES, 5), features([2 * w for w in WIDTHS], SIZES, 6), log_maps(5, 1), log_maps(6, 1)
    )
    assert set(parts) == ALL_TERMS - {term}


def test_adapters_are_built_only_for_matched_stages_of_terms_that_need_them():
    assert len(Distiller(DistillConfig(stages=[1, 3]), WIDTHS, WIDTHS).adapters) == 2
    first_order_attention = DistillConfig(channel_mean=0.0, channel_variance=0.0, gram=0.0)
    assert len(Distiller(first_order_attention, WIDTHS, WIDTHS).adapters) == 0
    assert len(Distiller(DistillConfig.preset("output-only"), WIDTHS, WIDTHS).adapters) == 0
    with_bn = Distiller(DistillConfig(adapter_batch_norm=True), WIDTHS, [8, 8, 8, 8])
    assert isinstance(with_bn.adapters["0"], FeatureAdapter)
    assert with_bn.adapters["0"](torch.rand(2, 4, 3, 3)).shape == (2, 8, 3, 3)


def test_only_the_chosen_stages_are_matched():
    distiller = Distiller(DistillConfig(stages=[2]), WIDTHS, WIDTHS)
    f, g = features(WIDTHS, SIZES, 7), features(WIDTHS, SIZES, 8)
    h = [g[0] * 0 + 123, g[1] * 5 - 7, g[2], g[3] + 1]  # differs from g except at stage 2
    log = log_maps(7, 1)
    assert torch.equal(distiller(f, g, log, log)["attention"], distiller(f, h, log, log)["attention"])


@pytest.mark.parametrize("teacher_size", [(4, 6), (8, 12), (32, 48)])
def test_a_student_equal_to_the_pooled_teacher_has_zero_loss_at_a_coarser_stride(teacher_size):
    # e.g. VGG-16's stage 3 at stride 16 against the student's at stride 32 (2×2 positions per student
    # position), up to a shallow stage larger than position_grid (pooled further, to 8×8, on both sides)
    teacher = features([6], [teacher_size], seed=13)[0]
    student = F.avg_pool2d(teacher, 2)  # the same features on the student's coarser grid
    assert position_similarity_loss(student, teacher).item() == pytest.approx(0, abs=1e-6)
    # the attention map pools the energy: a student whose energy is the pooled teacher energy is perfect
    assert attention_loss(F.avg_pool2d(teacher.pow(2), 2).sqrt(), teacher).item() == pytest.approx(0, abs=1e-6)
    unrelated = features([6], [student.shape[2:]], seed=14)[0]
    assert position_similarity_loss(unrelated, teacher).item() > 1e-3


def test_the_distiller_compares_positions_on_the_coarser_grid():
    config = DistillConfig(**{**OFF, "position_similarity": 10.0})
    teacher = features(WIDTHS, [(h, w) for h, w in SIZES[:3]] + [(4, 6)], seed=15)  # last stage at half stride
    student = teacher[:3] + [F.avg_pool2d(teacher[3], 2)]
    parts = Distiller(config, WIDTHS, WIDTHS)(student, teacher, log_maps(13, 1), log_maps(13, 1))
    assert parts["position_similarity"].item() == pytest.approx(0, abs=1e-5)


def profiled_features(batch, channels, size, seed):
    """Post-ReLU random features with a channel profile every image shares, as real CNN features have."""
    gen = torch.Generator().manual_seed(seed)
    profile = 1.5 * torch.randn(1, channels, 1, 1, generator=gen)
    low = torch.randn(batch, channels, size[0] // 4, size[1] // 4, generator=gen)
    smooth = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return torch.relu(smooth + 0.5 * torch.randn(batch, channels, *size, generator=gen) + profile)


def adapter_alone(loss, student, teacher, steps=100):
    """The loss after optimising only a 1×1 conv (with a bias, the most it could have) on a frozen student."""
    torch.manual_seed(0)
    adapter = nn.Conv2d(student.shape[1], teacher.shape[1], 1)
    optimiser = torch.optim.Adam(adapter.parameters(), lr=0.1)
    for _ in range(steps):
        value = loss(adapter(student), teacher)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    return loss(adapter(student), teacher).item()


def test_an_adapter_alone_cannot_match_the_first_order_terms_for_a_student_that_knows_nothing():
    # 48 images; a frozen random 8-channel student; a 32-channel teacher unrelated to it
    student, teacher = profiled_features(48, 8, (8, 8), 1), profiled_features(48, 32, (4, 4), 2)
    # Uncentred channel means (the former term) are matched by the profile every image shares: ~0.2 of 2.
    uncentred = lambda adapted, t: 2 - 2 * F.cosine_similarity(channel_means(adapted), channel_means(t)).mean()
    assert adapter_alone(uncentred, student, teacher) < 0.3
    # Batch-centred statistics keep over half of the distance between unrelated unit vectors (2).
    assert adapter_alone(channel_mean_loss, student, teacher) > 1.0
    assert adapter_alone(channel_variance_loss, student, teacher) > 0.8
    # A student that carries the teacher's information (here: linearly) lets the adapter reach zero.
    knows = F.conv2d(student, torch.randn(32, 8, 1, 1, generator=torch.Generator().manual_seed(3)))
    assert adapter_alone(channel_mean_loss, student, knows) < 1e-3
    assert adapter_alone(channel_variance_loss, student, knows) < 1e-3


@pytest.mark.parametrize(
    "name, expected",
    [
        ("statistics", ALL_TERMS - {"fitnets"}),
        ("first-order", {"attention", "channel_mean", "channel_variance"}),
        ("second-order", {"gram", "position_similarity", "batch_similarity"}),
        ("output-only", {"output"}),
        ("fitnets", {"fitnets"}),
        ("none", set()),
    ],
)
def test_presets_produce_their_terms(name, expected):
    config = DistillConfig.preset(name)
    assert {term for term in ALL_TERMS if getattr(config, term)} == expected and config.ground_truth == 1.0
    distiller = Distiller(config, WIDTHS, WIDTHS)
    f = features(WIDTHS, SIZES, 9) if distiller.needs_features else None  # output-only needs none
    parts = distiller(f, f, log_maps(9, 1), log_maps(10, 1))
    assert set(parts) == expected
    assert DistillConfig.preset("statistics") == DistillConfig()
    default = DistillConfig()  # a preset keeps the default weight of every term it switches on
    assert all(getattr(config, t) == getattr(default, t) for t in expected - {"fitnets"})


def test_terms_at_init_are_within_two_orders_of_magnitude_on_realistic_widths():
    student_widths, teacher_widths = [16, 24, 48, 96], [256, 512, 1024, 2048]
    sizes = [(24, 32), (12, 16), (6, 8), (3, 4)]
    torch.manual_seed(0)
    # a teacher with 20× larger activations changes nothing
    for second_order, scale in (("gram", 1.0), ("gram", 20.0), ("covariance", 1.0)):
        distiller = Distiller(DistillConfig(fitnets=1.0, second_order=second_order), student_widths, teacher_widths)
        parts = distiller(
            features(student_widths, sizes, 10),
            features(teacher_widths, sizes, 11, scale),
            log_maps(11, 0.1),  # a near-uniform student
            log_maps(12, 2.0),  # a peaked teacher
        )
        values = [v.item() for v in parts.values()]
        assert max(values) / min(values) < 100, parts
        assert 0.01 < min(values) and max(values) < 10, parts


def test_bad_configs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown stage 4"):
        Distiller(DistillConfig(stages=[1, 4]), WIDTHS, WIDTHS)
    with pytest.raises(ConfigError, match="unknown stage -1"):
        Distiller(DistillConfig(stages=[-1]), WIDTHS, WIDTHS)
    with pytest.raises(ConfigError, match="weight must be >= 0"):
        Distiller(DistillConfig(gram=-1.0), WIDTHS, WIDTHS)
    with pytest.raises(ConfigError, match="temperature"):
        Distiller(DistillConfig(temperature=0.0), WIDTHS, WIDTHS)
    with pytest.raises(ConfigError, match="feature stages"):
        Distiller(DistillConfig(), WIDTHS, WIDTHS[:3])
    with pytest.raises(ConfigError, match="unknown distillation preset"):
        DistillConfig.preset("hints")


@pytest.mark.parametrize(
    "distill, message",
    [
        ({"channel_var": 1.0}, r"config\.distill: unknown key 'channel_var' \(known: .*channel_variance"),
        ({"batch_similarity": -1}, r"config\.distill\.batch_similarity: weight must be >= 0, got -1\.0"),
        ({"channel_variance": -0.5}, r"config\.distill\.channel_variance: weight must be >= 0, got -0\.5"),
        ({"position_grid": [0, 4]}, r"config\.distill\.position_grid: must be positive, got \(0, 4\)"),
        ({"second_order": "moments"}, r"config\.distill\.second_order: 'moments' is not one of"),
    ],
)
def test_config_mistakes_are_one_line_errors_naming_the_key(distill, message):
    from saliency.run import SaliencyRunConfig

    with pytest.raises(ConfigError, match=f"^{message}") as error:
        from_dict(SaliencyRunConfig, {"distill": distill})
    assert "\n" not in str(error.value)


def test_features_of_the_wrong_widths_are_rejected():
    distiller = Distiller(DistillConfig(), WIDTHS, WIDTHS)
    f, log = features(WIDTHS, SIZES, 12), log_maps(12, 1)
    with pytest.raises(ValueError, match="teacher feature widths"):
        distiller(f, f[:3], log, log)


def test_config_loads_from_yaml_data():
    config = from_dict(
        DistillConfig,
        {"second_order": "covariance", "stages": [1, 2, 3], "position_grid": [4, 4], "output": 0},
    )
    assert config.position_grid == (4, 4) and config.output == 0.0
    assert Distiller(config, WIDTHS, WIDTHS).adapters.keys() == {"1", "2", "3"}


def test_wide_teacher_stages_are_matched_through_a_fixed_orthonormal_projection():
    config = DistillConfig(matched_width=8, stages=[0, 1])
    distiller = Distiller(config, student_channels=[4, 4], teacher_channels=[6, 32])
    assert distiller.adapters["0"].conv.out_channels == 6 and not hasattr(distiller, "projection0")
    assert distiller.adapters["1"].conv.out_channels == 8
    basis = distiller.projection1  # [32, 8], a buffer: fixed, saved with the distiller, not trained
    assert basis.shape == (32, 8) and "projection1" in dict(distiller.named_buffers())
    assert torch.allclose(basis.T @ basis, torch.eye(8), atol=1e-5)
    teacher = torch.randn(2, 32, 5, 5)
    projected = distiller._matched_teacher(teacher, 1)
    # statistics of the adapted student are compared with the projected teacher's: equal → zero
    assert gram_loss(projected, projected) == 0 and channel_mean_loss(projected, projected) == 0
    assert channel_variance_loss(projected, projected) == 0
    assert torch.allclose(projected, torch.einsum("bchw,ck->bkhw", teacher, basis))


def test_matched_width_none_keeps_the_full_teacher_width():
    distiller = Distiller(DistillConfig(matched_width=None, stages=[0]), student_channels=[4], teacher_channels=[300])
    assert distiller.adapters["0"].conv.out_channels == 300 and not list(distiller.buffers())


def test_a_config_written_before_the_renaming_still_loads():
    from saliency.infra.config import from_dict

    old = from_dict(DistillConfig, {"similarity": 3.0, "similarity_size": [4, 4]})
    assert old.position_similarity == 3.0 and old.position_grid == (4, 4)
