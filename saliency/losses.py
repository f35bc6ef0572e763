"""Ground-truth saliency losses: differentiable, batched versions of the benchmark metrics.

Every function takes the model's `log_pred [B,1,H,W]` (log-softmax over pixels) and a target of the
same shape, follows the conventions of `saliency.metrics` (MIT benchmark), and returns the batch mean
as a 0-d float32 tensor. They return the metric itself (CC, NSS and SIM are higher-is-better); the
signs live in `LossConfig`'s weights. They run in float32 even under autocast: sums over ~10^5
pixels of values ~10^-5 are where half precision breaks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from saliency.infra.errors import ConfigError
from saliency.metrics import EPS


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] → [B, H*W] in float32."""
    return x.flatten(1).float()


def _check(log_pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if log_pred.dim() != 4 or log_pred.shape[1] != 1:
        raise ValueError(f"log_pred must be [B,1,H,W], got {tuple(log_pred.shape)}")
    if target.shape != log_pred.shape:
        raise ValueError(f"{name} has shape {tuple(target.shape)}, log_pred {tuple(log_pred.shape)}")


def _standardised(p: torch.Tensor) -> torch.Tensor:
    """[B,N] rows of mean ~1 → (p − mean) / std (ddof=1, as MATLAB); a (near-)constant row → zeros.

    A constant row gets zero gradient, not an unbounded one: CC and NSS of a flat map (e.g. a
    zero-initialised head) depend only on the direction in which it stops being flat.
    """
    centred = p - p.mean(1, keepdim=True)
    var = centred.pow(2).sum(1, keepdim=True) / (p.shape[1] - 1)
    varies = var > 1e-10  # float32 rounding of a flat map of mean 1 stays far below this
    std = torch.where(varies, var, torch.ones_like(var)).sqrt()
    return torch.where(varies, centred / std, torch.zeros_like(centred))


def kld_loss(log_pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """KL(Q‖P) = Σ Q·log(ε + Q/(P+ε)), Q = density (sum-normalised), P = exp(log_pred); mean over batch.

    Rewritten as Q·[log(Q + ε(P+ε)) − log(P+ε)] with log(P+ε) = logaddexp(log_pred, log ε), so a
    pixel where P underflows gives a finite value and gradient.
    """
    _check(log_pred, density, "density")
    log_p = _flat(log_pred)
    q = _flat(density)
    q = q / q.sum(1, keepdim=True).clamp_min(EPS)
    log_p_eps = torch.logaddexp(log_p, torch.full_like(log_p, math.log(EPS)))  # log(P + ε)
    terms = q * (torch.log(q + EPS * log_p_eps.exp()) - log_p_eps)
    return terms.sum(1).mean()


def cc_loss(log_pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """Pearson CC between exp(log_pred) and density per image, mean over batch; 0 for a constant map."""
    _check(log_pred, density, "density")
    n = log_pred[0].numel()
    # Both scaled to mean 1 (CC is scale-free) so the constant-map guard is scale-independent.
    p = _flat(log_pred).exp() * n
    q = _flat(density)
    q = q / q.mean(1, keepdim=True).clamp_min(EPS)
    return ((_standardised(p) * _standardised(q)).sum(1) / (n - 1)).mean()


def nss_loss(log_pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """Mean standardised exp(log_pred) at fixated pixels (fixations > 0), averaged over the images
    that have fixations; 0 when none has."""
    _check(log_pred, fixations, "fixations")
    p = _standardised(_flat(log_pred).exp() * log_pred[0].numel())
    mask = (_flat(fixations) > 0).float()
    count = mask.sum(1)  # [B]
    per_image = (p * mask).sum(1) / count.clamp_min(1)
    has_fix = (count > 0).float()
    return (per_image * has_fix).sum() / has_fix.sum().clamp_min(1)


def _distribution(x: torch.Tensor) -> torch.Tensor:
    """[B,N] min-max then sum normalised per row (= (x − min) / Σ(x − min)); constant rows uniform."""
    shifted = x - x.min(1, keepdim=True).values
    total = shifted.sum(1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[1])
    return torch.where(total > 0, shifted / total.clamp_min(torch.finfo(x.dtype).tiny), uniform)


def sim_loss(log_pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """SIM = Σ min(P, Q) of the min-max, sum-normalised maps per image (1 = identical); batch mean."""
    _check(log_pred, density, "density")
    p = _distribution(_flat(log_pred).exp())
    q = _distribution(_flat(density))
    return torch.minimum(p, q).sum(1).mean()


TERMS = {"kld": kld_loss, "cc": cc_loss, "nss": nss_loss, "sim": sim_loss}


@dataclass
class LossConfig:
    """Weights of the ground-truth terms; total = Σ weight·term (CC, NSS, SIM enter negated)."""

    kld: float = 1.0
    cc: float = -0.1
    nss: float = -0.1
    sim: float = 0.0

    @classmethod
    def preset(cls, name: str) -> "LossConfig":
        """`"kld-cc-nss"`: KLD − 0.1·CC − 0.1·NSS (the default); `"four-term"`: 10·KLD − 2·CC − SIM − NSS."""
        presets = {
            "kld-cc-nss": cls(),
            "four-term": cls(kld=10.0, cc=-2.0, nss=-1.0, sim=-1.0),
        }
        if name not in presets:
            raise ConfigError(f"unknown loss preset {name!r} (known: {', '.join(presets)})")
        return presets[name]


class SaliencyLoss(nn.Module):
    """Weighted sum of KLD, CC, NSS and SIM against the ground truth; zero-weight terms are skipped."""

    def __init__(self, config: LossConfig | None = None):
        super().__init__()
        self.config = config or LossConfig()
        self.weights = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        if not any(self.weights.values()):
            raise ConfigError("loss: every term has weight 0; set at least one of kld, cc, nss, sim")

    def forward(
        self, log_pred: torch.Tensor, density: torch.Tensor, fixations: torch.Tensor,
        has_density: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """→ (total, parts): total a 0-d tensor to backpropagate; parts the unweighted, detached terms.

        `has_density` [B] bool: the map terms (KLD, CC, SIM) average over the images that have a map only, so
        unlabelled images (seen only through a teacher) add nothing, rather than zeros, to the batch mean; 0 when
        no image of the batch has one. NSS already skips images without fixations."""
        labelled = slice(None) if has_density is None else has_density.bool()
        with_map = log_pred[labelled], density[labelled]
        with torch.autocast(log_pred.device.type, enabled=False):
            values = {}
            for name, weight in self.weights.items():
                if weight == 0:
                    continue
                if name == "nss":
                    values[name] = TERMS[name](log_pred, fixations)
                elif len(with_map[0]):
                    values[name] = TERMS[name](*with_map)
                else:
                    values[name] = log_pred.sum() * 0.0  # no map in this batch: no signal, graph kept
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, {name: value.detach() for name, value in values.items()}
