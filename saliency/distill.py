"""Knowledge distillation by feature statistics: the statistics, their losses, and `Distiller`.

The teacher passes on not its raw feature maps but their statistics, which do not depend on its width
or resolution. First order, per image: where it looks (spatial attention map: channel mean of f² at
each position) and how strongly and how unevenly each channel fires (per-channel mean and variance over
positions). Second order: how channels co-activate (C×C Gram or covariance matrices), how the positions
of an image relate (pairwise position similarity: s×s cosines) and how the images of a batch relate
(batch similarity: B×B, similarity-preserving KD, Tung & Mori 2019). Plus its output map; FitNets' raw
feature hint is kept as the baseline.

Common grid. Attention and position similarity pool both maps to the coarser of their two grids
(position similarity: at most `position_grid`), so a teacher stage at stride 16 meets a student stage
at stride 32 on the student's grid, and a student equal to the pooled teacher has zero loss.

Adapters. Channel statistics need the student's features at the teacher's width: one learned 1×1 conv
per stage (`FeatureAdapter`). A learned map could meet a first-order target by itself: a bias, or the
image under the adapter of the channel profile all of a student's images share (post-ReLU features
have one), outputs the teacher's average channel profile whatever the student sees. So channel means
and variances are compared as deviations from their batch average, i.e. by what sets each image apart,
which nothing input-independent produces: a bias cancels exactly, and with a frozen student an
adapter matches the teacher's deviations only as far as they are a linear (means) or quadratic
(variances) function of the student's — for a random student, far from all of it (tested). A batch
of one image gives these two terms zero (under data parallelism: each process's share is centred). The
adapter has no bias for the Gram's sake: the Gram is not centred, and a bias b would add b bᵀ, the
rank-one mean part that dominates a post-ReLU teacher's Gram.

Normalisation, so that the default weights give terms of comparable size: attention maps, centred
channel means and variances, and Gram/covariance matrices (by their Frobenius norm) are L2-normalised
per image before they are compared, and the loss is the squared distance between the two unit
vectors, 2 − 2·cos ∈ [0, 4], averaged over the batch and then over the matched stages: it depends
neither on the widths, the resolutions nor the activation scales of the two networks. The similarity
matrices are cosines already and are compared by their mean squared difference; the FitNets hint is
divided by the teacher's mean square (a relative error); the output term is a KL divergence in nats.
Measured at init (random-init student against each random-init teacher, 16 synthetic 96×128 images):
attention ≈ 0.44–0.57, channel mean ≈ 2.0, channel variance ≈ 1.5–1.8, Gram ≈ 1.7–2.0 (covariance
1.6–2.0; a random adapter leaves the directions uncorrelated), position similarity ≈ 0.42–0.58 (×10),
batch similarity ≈ 0.008–0.025 (hence its default weight 100), FitNets ≈ 1 (2,000 with MobileNetV2,
whose stage outputs are tiny at init), output ≈ 0 (untrained decoders give near-uniform maps). On random
post-ReLU features (`tests/saliency/test_distill.py` checks the spread) attention ≈ 0.18–0.25, position
similarity ≈ 0.015–0.06 and batch similarity ≈ 0.0005–0.003.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from saliency.infra.config import require, require_positive
from saliency.infra.errors import ConfigError


# --- statistics ----------------------------------------------------------------------------------


def spatial_attention_map(f: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """[B,C,H,W] → [B, h*w]: channel mean of f² (attention transfer, p=2), average-pooled to `size`
    (default: H×W), flattened and L2-normalised per image."""
    energy = f.pow(2).mean(1, keepdim=True)  # [B,1,H,W]
    if size is not None:
        energy = F.adaptive_avg_pool2d(energy, size)  # [B,1,h,w]
    return F.normalize(energy.flatten(1), dim=1)


def channel_means(f: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] → [B,C]: each channel's mean over positions (global average pool)."""
    return f.mean((2, 3))


def channel_variances(f: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] → [B,C]: each channel's variance over positions, / (H·W − 1) (the covariance matrix's
    diagonal); zero for a 1×1 map."""
    flat = f.flatten(2)  # [B,C,HW]
    return (flat - flat.mean(2, keepdim=True)).pow(2).sum(2) / max(flat.shape[2] - 1, 1)


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] → [B,C,C]: F Fᵀ / (H·W), F the [B,C,H·W] features."""
    flat = f.flatten(2)  # [B,C,HW]
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def covariance_matrix(f: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] → [B,C,C]: channel covariance over positions, / (H·W − 1); zero for a 1×1 map."""
    flat = f.flatten(2)  # [B,C,HW]
    centred = flat - flat.mean(2, keepdim=True)
    return centred @ centred.transpose(1, 2) / max(flat.shape[2] - 1, 1)


def position_similarity(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,C,H,W] → [B,s,s], s = size[0]·size[1]: cosine similarity between every pair of positions of
    the features average-pooled to `size`."""
    pooled = F.adaptive_avg_pool2d(f, size).flatten(2)  # [B,C,s]
    unit = F.normalize(pooled, dim=1)  # unit vector per position
    return unit.transpose(1, 2) @ unit  # [B,s,s]


def batch_similarity(f: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] → [B,B]: similarity-preserving KD's matrix, F Fᵀ with each row L2-normalised, F the
    [B,C·H·W] flattened features (Tung & Mori 2019)."""
    flat = f.flatten(1)  # [B,CHW]
    return F.normalize(flat @ flat.T, dim=1)


# --- losses between student and teacher statistics ----------------------------------------------


def _unit_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance between per-image L2-normalised statistics [B,...] → batch mean, in [0, 4]."""
    s = F.normalize(student.flatten(1), dim=1)
    t = F.normalize(teacher.flatten(1), dim=1)
    return (s - t).pow(2).sum(1).mean()


def _batch_centred(statistic: torch.Tensor) -> torch.Tensor:
    """[B,C] → [B,C]: each image's statistic minus the batch average, so no input-independent part
    (an adapter's bias, the channel profile every image shares) survives."""
    return statistic - statistic.mean(0, keepdim=True)


def _common_size(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """The coarser of two [B,C,H,W] maps' grids: the smaller spatial size, per axis."""
    return min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3])


def attention_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """‖a_s − a_t‖² between attention maps, batch mean; features [B,C_s,H_s,W_s] and [B,C_t,H_t,W_t].

    Both maps are taken at the coarser of the two grids: the energy map (channel mean of f²) of the
    finer is average-pooled down before normalising. Pooling the energy rather than the features
    keeps activations of opposite sign from cancelling, and pooling never invents detail.
    """
    size = _common_size(student, teacher)
    return _unit_distance(spatial_attention_map(student, size), spatial_attention_map(teacher, size))


def channel_mean_loss(adapted_student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance between L2-normalised batch-centred channel means; both [B,C_t,·,·], batch mean."""
    return _unit_distance(_batch_centred(channel_means(adapted_student)), _batch_centred(channel_means(teacher)))


def channel_variance_loss(adapted_student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared distance between L2-normalised batch-centred channel variances; both [B,C_t,·,·] (any
    resolutions), batch mean."""
    return _unit_distance(
        _batch_centred(channel_variances(adapted_student)), _batch_centred(channel_variances(teacher))
    )


def gram_loss(
    adapted_student: torch.Tensor,
    teacher: torch.Tensor,
    second_order: Literal["gram", "covariance"] = "gram",
) -> torch.Tensor:
    """Squared Frobenius distance between the Frobenius-normalised Gram (or covariance) matrices of
    features [B,C_t,·,·] (resolutions may differ), batch mean."""
    statistic = gram_matrix if second_order == "gram" else covariance_matrix
    return _unit_distance(statistic(adapted_student), statistic(teacher))


def position_similarity_loss(
    student: torch.Tensor, teacher: torch.Tensor, max_grid: tuple[int, int] = (8, 8)
) -> torch.Tensor:
    """Mean squared difference between the [B,s,s] position similarity matrices of any two feature maps,
    both pooled to the coarser of their grids, at most `max_grid` (s² entries cost memory)."""
    common = _common_size(student, teacher)
    size = min(common[0], max_grid[0]), min(common[1], max_grid[1])
    return F.mse_loss(position_similarity(student, size), position_similarity(teacher, size))


def batch_similarity_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """‖G_s − G_t‖²_F / B² between the [B,B] batch similarity matrices of any two feature maps."""
    return F.mse_loss(batch_similarity(student), batch_similarity(teacher))


def output_kl(
    student_log: torch.Tensor, teacher_log: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(teacher ‖ student) over pixels of [B,1,H,W] log-densities softened by T (log_softmax(x/T)),
    × T² so gradients keep their scale across temperatures; batch mean, in nats."""
    s = F.log_softmax(student_log.flatten(1) / temperature, dim=1)
    t = F.log_softmax(teacher_log.flatten(1) / temperature, dim=1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def fitnets_hint_loss(adapted_student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FitNets hint: MSE between adapted student features, resized (bilinear) to the teacher's H×W, and
    teacher features [B,C_t,H_t,W_t], divided by the teacher's mean square (a relative error)."""
    resized = F.interpolate(adapted_student, size=teacher.shape[2:], mode="bilinear", align_corners=False)
    return F.mse_loss(resized, teacher) / teacher.pow(2).mean().clamp_min(1e-12)


# --- configuration and the module ----------------------------------------------------------------


TERMS = (
    "attention", "channel_mean", "channel_variance", "gram", "position_similarity", "batch_similarity",
    "output", "fitnets",
)
FEATURE_TERMS = tuple(t for t in TERMS if t != "output")
# terms that need student features at teacher width
ADAPTED_TERMS = ("channel_mean", "channel_variance", "gram", "fitnets")
PRESETS = ("statistics", "first-order", "second-order", "output-only", "fitnets", "none")
OFF = {t: 0.0 for t in TERMS}  # every term switched off: what presets and ablations start from


@dataclass
class DistillConfig:
    """Weights of the distillation terms (0 = off, not computed) and what they match.

    Defaults are the paper's method ("statistics"), weighted so that at initialisation the terms are
    within about one order of magnitude of each other and of the ground-truth KLD (module docstring).
    """

    attention: float = 1.0  # first order: spatial attention maps
    channel_mean: float = 1.0  # first order: per-channel means (batch-centred) of adapted student features
    channel_variance: float = 1.0  # first order: per-channel variances (batch-centred), adapted likewise
    gram: float = 1.0  # second order: Gram or covariance of adapted student features
    position_similarity: float = 10.0  # second order: cosines between positions (MSE of cosines: small)
    batch_similarity: float = 100.0  # second order: B×B similarity across the batch (MSE of cosines: tiny)
    output: float = 3.0  # KL(teacher ‖ student) between output maps (x3 won the validation sweep, BENCHMARKS.md)
    fitnets: float = 0.0  # FitNets raw feature hint (baseline)
    ground_truth: float = 1.0  # weight of the ground-truth SaliencyLoss in the training total
    second_order: Literal["gram", "covariance"] = "gram"
    stages: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # feature indices, shallow → deep
    temperature: float = 1.0  # softens both output maps in the output term
    # position similarity compares both maps at the coarser of their grids, at most this one (s² cost)
    position_grid: tuple[int, int] = (8, 8)
    adapter_batch_norm: bool = False  # BatchNorm (no learned shift or scale) after each adapter's 1×1 conv
    # Teacher stages wider than this are compressed by a fixed random orthonormal projection before the
    # adapted terms (channel statistics, Gram/covariance, FitNets): 2048-channel Gram matrices would cost
    # B·2048² per stage and dominate a training step, while a random projection keeps the statistics'
    # structure (Johnson–Lindenstrauss). None matches the full teacher width.
    matched_width: Optional[int] = 256

    # config.yaml files written before the renaming still load (their runs' students do not change)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"similarity": "position_similarity", "similarity_size": "position_grid"}

    def __post_init__(self) -> None:
        for term in (*TERMS, "ground_truth"):
            require(getattr(self, term) >= 0, term, f"weight must be >= 0, got {getattr(self, term)}")
        require(self.second_order in ("gram", "covariance"), "second_order",
                f"{self.second_order!r} is not 'gram' or 'covariance'")
        require(len(set(self.stages)) == len(self.stages), "stages", f"repeated stage in {self.stages}")
        require(bool(self.stages) or not any(getattr(self, t) != 0 for t in FEATURE_TERMS), "stages",
                "empty, but feature terms are switched on")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(min(self.position_grid) >= 1, "position_grid", f"must be positive, got {self.position_grid}")
        require_positive(self, "matched_width")

    @classmethod
    def preset(cls, name: str) -> "DistillConfig":
        """A named ablation: "statistics" (first + second order + output, the default), "first-order",
        "second-order" (those statistics only, at their default weights), "output-only", "fitnets" (hint
        only), "none"."""
        d = cls()
        statistics = {t: getattr(d, t) for t in TERMS if t != "fitnets"}
        weights = {
            "statistics": statistics,
            "first-order": {t: statistics[t] for t in ("attention", "channel_mean", "channel_variance")},
            "second-order": {t: statistics[t] for t in ("gram", "position_similarity", "batch_similarity")},
            "output-only": {"output": statistics["output"]},
            "fitnets": {"fitnets": 1.0},
            "none": {},
        }
        if name not in weights:
            raise ConfigError(f"unknown distillation preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**{**OFF, **weights[name]})


class FeatureAdapter(nn.Module):
    """Learned bias-free 1×1 conv (+ optional BatchNorm without affine): [B,C_s,H,W] → [B,C_t,H,W]. No
    bias or shift, so that it cannot add a Gram matrix's rank-one mean part by itself (module docstring)."""

    def __init__(self, student_channels: int, teacher_channels: int, batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(teacher_channels, affine=False) if batch_norm else nn.Identity()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(f))


class Distiller(nn.Module):
    """Distillation losses between student and teacher features and outputs.

    Holds one `FeatureAdapter` per matched stage when a term needs adapted features; its parameters
    are optimised with the student's but are not part of the student model.
    """

    def __init__(self, config: DistillConfig, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        self.config = config
        if len(student_channels) != len(teacher_channels):
            raise ConfigError(
                f"distill: student has {len(student_channels)} feature stages, teacher {len(teacher_channels)}"
            )
        bad = [s for s in config.stages if not 0 <= s < len(teacher_channels)]
        if bad:
            raise ConfigError(
                f"distill.stages: unknown stage {bad[0]} (valid: 0..{len(teacher_channels) - 1})"
            )
        self.student_channels = list(student_channels)
        self.teacher_channels = list(teacher_channels)
        needs_adapter = any(getattr(config, t) != 0 for t in ADAPTED_TERMS)
        stages = config.stages if needs_adapter else []
        widths = {s: min(teacher_channels[s], config.matched_width or teacher_channels[s]) for s in stages}
        self.adapters = nn.ModuleDict(
            {str(s): FeatureAdapter(student_channels[s], widths[s], config.adapter_batch_norm) for s in stages}
        )
        generator = torch.Generator().manual_seed(0)
        for s in stages:
            if widths[s] < teacher_channels[s]:  # orthonormal columns: [C_teacher, width]
                basis, _ = torch.linalg.qr(torch.randn(teacher_channels[s], widths[s], generator=generator))
                self.register_buffer(f"projection{s}", basis)

    def _matched_teacher(self, teacher: torch.Tensor, stage: int) -> torch.Tensor:
        """Teacher features `[B,C,H,W]` in the adapter's output space (projected when C > matched_width)."""
        basis = getattr(self, f"projection{stage}", None)
        return teacher if basis is None else torch.einsum("bchw,ck->bkhw", teacher, basis)

    @property
    def needs_features(self) -> bool:
        """Whether any feature term is on (otherwise forward accepts None for the feature lists)."""
        return any(getattr(self.config, t) != 0 for t in FEATURE_TERMS)

    def forward(
        self,
        student_features: list[torch.Tensor] | None,
        teacher_features: list[torch.Tensor] | None,
        student_log: torch.Tensor,
        teacher_log: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Weighted terms by name (only those switched on), each 0-d; feature terms are averaged over
        the matched stages. Teacher inputs are detached; everything runs in float32."""
        c = self.config
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(student_log.device.type, enabled=False):
            if self.needs_features:
                per_stage = self._feature_terms(student_features, teacher_features)
                for name, values in per_stage.items():
                    terms[name] = getattr(c, name) * torch.stack(values).mean()
            if c.output != 0:
                if student_log.shape != teacher_log.shape:
                    raise ValueError(
                        f"student output {tuple(student_log.shape)} != teacher output {tuple(teacher_log.shape)}"
                    )
                terms["output"] = c.output * output_kl(
                    student_log.float(), teacher_log.detach().float(), c.temperature
                )
        return terms

    def _feature_terms(
        self, student_features: list[torch.Tensor] | None, teacher_features: list[torch.Tensor] | None
    ) -> dict[str, list[torch.Tensor]]:
        """Unweighted feature terms per matched stage, by name."""
        c = self.config
        self._check_features(student_features, self.student_channels, "student")
        self._check_features(teacher_features, self.teacher_channels, "teacher")
        per_stage: dict[str, list[torch.Tensor]] = {
            t: [] for t in FEATURE_TERMS if getattr(c, t) != 0
        }
        for s in c.stages:
            student = student_features[s].float()
            teacher = teacher_features[s].detach().float()
            adapted = self.adapters[str(s)](student) if str(s) in self.adapters else None
            matched = self._matched_teacher(teacher, s) if adapted is not None else None
            if c.attention != 0:
                per_stage["attention"].append(attention_loss(student, teacher))
            if c.channel_mean != 0:
                per_stage["channel_mean"].append(channel_mean_loss(adapted, matched))
            if c.channel_variance != 0:
                per_stage["channel_variance"].append(channel_variance_loss(adapted, matched))
            if c.gram != 0:
                per_stage["gram"].append(gram_loss(adapted, matched, c.second_order))
            if c.position_similarity != 0:
                per_stage["position_similarity"].append(position_similarity_loss(student, teacher, c.position_grid))
            if c.batch_similarity != 0:
                per_stage["batch_similarity"].append(batch_similarity_loss(student, teacher))
            if c.fitnets != 0:
                per_stage["fitnets"].append(fitnets_hint_loss(adapted, matched))
        return per_stage

    @staticmethod
    def _check_features(features: list[torch.Tensor] | None, channels: list[int], who: str) -> None:
        if features is None:
            raise ValueError(f"{who} features are needed by the feature terms (return_features=True)")
        widths = [f.shape[1] for f in features]
        if widths != channels:
            raise ValueError(f"{who} feature widths {widths} != the {channels} this Distiller was built for")
