"""Saliency datasets: readers for the official layouts, aligned augmentation, a torch Dataset."""

from saliency.data.readers import (
    LAYOUTS,
    READERS,
    Cat2000Reader,
    Dhf1kReader,
    FolderReader,
    Mit1003Reader,
    SaliconReader,
    SaliencyReader,
    SaliencySample,
    detect_layout,
    frames_before,
    open_dataset,
    read_gray,
    read_rgb,
)
from saliency.data.torch_dataset import (IMAGENET_MEAN, IMAGENET_STD, SaliencyTorchDataset, imagenet_normalise,
                                         sample_to_tensors)
from saliency.data.transforms import SaliencyTransform, crop_sample, hflip_sample, resize_sample

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_normalise",
    "LAYOUTS",
    "READERS",
    "Cat2000Reader",
    "Dhf1kReader",
    "FolderReader",
    "Mit1003Reader",
    "SaliconReader",
    "SaliencyReader",
    "SaliencySample",
    "SaliencyTorchDataset",
    "SaliencyTransform",
    "crop_sample",
    "detect_layout",
    "frames_before",
    "hflip_sample",
    "open_dataset",
    "read_gray",
    "read_rgb",
    "resize_sample",
    "sample_to_tensors",
]
