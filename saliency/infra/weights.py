"""Weights from files: strict key/shape checks and torchvision ImageNet backbones from local files only.

Nothing is downloaded and nothing is unpickled: torchvision files go through `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from saliency.infra.errors import UserError
from saliency.infra.rundir import WEIGHTS, load_safetensors

logger = logging.getLogger(__name__)
_MISSING_SAID: set[Path] = set()  # ImageNet files already reported missing: said once per process


def state_dict_mismatch(expected: dict[str, Tensor], given: dict[str, Tensor]) -> str | None:
    """None if `given` has exactly `expected`'s keys and shapes, else a one-line description."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if k in given and given[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"shape mismatch at {', '.join(wrong[:3])}")
    return "; ".join(problems) or None


def torchvision_cache_path(weights) -> Path:
    """Where torchvision keeps `weights` (a torchvision WeightsEnum member) once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def load_imagenet_backbone(
    backbone: nn.Module,
    weights,
    pretrained: bool | str,
    *,
    name: str,
    prefix: str,
    rename: Callable[[str], str] | None = None,
) -> None:
    """Load torchvision ImageNet weights into `backbone` from a local file, never downloading.

    `pretrained`: False → keep random init; True → torchvision's cache file for `weights` if present,
    else random init with one warning; a str → that file, `.pth` or `.safetensors`, or a `saliency pretrain` run
    directory (missing → UserError). Every backbone key
    `k` must be present as `prefix + k` with the same shape; the file's other keys (classifier,
    layers we drop) are ignored. `rename` maps legacy key spellings to current ones.
    """
    if not isinstance(pretrained, (bool, str)):
        raise UserError(f"{name} option pretrained must be true, false or a file path, got {pretrained!r}")
    if pretrained is False:
        return
    if pretrained is True:
        path = torchvision_cache_path(weights)
        if not path.is_file():
            if path not in _MISSING_SAID:
                _MISSING_SAID.add(path)
                logger.warning("ImageNet weights for %s not found in %s; using random initialisation", name, path)
            return
    else:
        path = Path(pretrained)
        path = path / WEIGHTS if path.is_dir() else path  # a `saliency pretrain` run directory
        if not path.is_file():
            raise UserError(f"{path}: pretrained weights file for {name} not found")
    state = read_backbone_file(path)
    rename = rename or (lambda key: key)
    state = {rename(k): v for k, v in state.items()}
    own = backbone.state_dict()
    # Checkpoints saved before BatchNorm tracked batch counts lack these; they are not weights.
    kept = {k: state[prefix + k] for k in own if prefix + k in state}
    expected = {k: v for k, v in own.items() if k in kept or not k.endswith("num_batches_tracked")}
    problem = state_dict_mismatch(expected, kept)
    if problem:
        raise UserError(f"{path}: does not fit the {name} backbone ({problem})")
    backbone.load_state_dict(kept, strict=True)  # BatchNorm fills in absent num_batches_tracked


def read_backbone_file(path: Path) -> dict[str, Tensor]:
    """A state_dict from a torchvision `.pth` file (never unpickled: `weights_only`) or from a `.safetensors`
    file (`saliency pretrain` writes one), as a one-line UserError when it is neither."""
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise UserError(f"{path}: cannot read as a torchvision state_dict ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return state


def load_state_strictly(module: nn.Module, state: dict[str, Tensor], where: str | Path, what: str,
                        skip_prefix: str | None = None) -> None:
    """Load `state` into `module`: exactly its keys and shapes (those under `skip_prefix`, weights kept
    elsewhere, excepted), else a one-line UserError naming `where` and `what` — never a silently random model."""
    expected = {k: v for k, v in module.state_dict().items() if not (skip_prefix and k.startswith(skip_prefix))}
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise UserError(f"{where}: weights do not fit {what} ({problem})")
    missing, unexpected = module.load_state_dict(state, strict=skip_prefix is None)
    assert not unexpected and all(k.startswith(skip_prefix) for k in missing)
