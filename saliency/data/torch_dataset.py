"""A torch `Dataset` over any saliency reader: model-ready tensors, augmentation reproducible per epoch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from saliency.data.readers import SaliencySample
from saliency.data.transforms import SaliencyTransform
from saliency.models.components import motion_input

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], `[..., 3, H, W]` float → normalised by ImageNet's channel mean and std, as every backbone here
    (and torchvision's weights) expects."""
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def image_tensor(image: np.ndarray, normalize: bool = True) -> torch.Tensor:
    """(H, W, 3) uint8 → [3, H, W] float32, ImageNet-normalised (or in [0, 1] if not `normalize`)."""
    x = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255.0
    if normalize:
        x = imagenet_normalise(x)
    return x


def sample_to_tensors(sample: SaliencySample, normalize: bool = True, motion: bool = False) -> dict[str, torch.Tensor | str]:
    """Tensors for one sample.

    `image` [3, H, W] float32 (ImageNet-normalised, or in [0, 1] if not `normalize`); for a `motion` model
    [6, H, W], `motion_input` of the frame and the frame before (a still image: a zero difference); `density`
    [1, H, W] float32 summing to 1; `fixations` [1, H, W] float32 binary (points on one pixel merge);
    `has_density` / `has_fixations` bool scalars, False where the ground truth is missing (or, for the
    density, empty after a crop) and the map is all zeros; `name` str.
    """
    height, width = sample.image.shape[:2]
    image = image_tensor(sample.image, normalize)
    if motion:
        previous = None if sample.previous is None else image_tensor(sample.previous, normalize)[None]
        image = motion_input(image[None], previous)[0]  # [6, H, W]
    density = torch.zeros(1, height, width)
    if sample.density is not None:
        density[0] = torch.tensor(sample.density, dtype=torch.float32)
    total = density.sum()
    has_density = bool(total > 0)
    if has_density:
        density /= total
    fixations = torch.zeros(1, height, width)
    if sample.fixations is not None:
        points = torch.tensor(sample.fixations, dtype=torch.int64)
        fixations[0, points[:, 0], points[:, 1]] = 1.0
    return {
        "image": image,
        "density": density,
        "fixations": fixations,
        "has_density": torch.tensor(has_density),
        "has_fixations": torch.tensor(sample.fixations is not None),
        "name": sample.name,
    }


class SaliencyTorchDataset(torch.utils.data.Dataset):
    """Samples of `reader`, transformed with an RNG seeded by `(seed, epoch, index)`, as tensor dicts (a `motion`
    model's input: 6 channels, see `sample_to_tensors`).

    Seeding per item makes the augmentation independent of worker count and order, so a resumed run
    sees the same data. Call `set_epoch` before each epoch (DataLoader workers copy the dataset when
    an epoch's iteration starts, so this needs `persistent_workers=False`, the default).
    """

    def __init__(
        self,
        reader: Sequence[SaliencySample],
        transform: SaliencyTransform | None = None,
        normalize: bool = True,
        seed: int = 0,
        motion: bool = False,
    ) -> None:
        self.reader = reader
        self.transform = transform
        self.normalize = normalize
        self.seed = seed
        self.motion = motion
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of `epoch` (0-based)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        index = range(len(self.reader))[index]  # normalises negative indices, raises IndexError
        sample = self.reader[index]
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng([self.seed, self.epoch, index]))
        return sample_to_tensors(sample, self.normalize, self.motion)
