"""scikit-image's LFW subset: 100 face and 100 non-face crops of real photos, offline.

The images ship inside scikit-image (``skimage.data.lfw_subset()``), so the transfer
learning demo (``configs/transfer_demo.yaml``) runs on real photographs with no download.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from lightning_hw.data.base import Split
from lightning_hw.data.images import ImageDataModule, check_image_settings
from lightning_hw.errors import DataError

#: lfw_subset() holds the 100 faces first, then the 100 non-faces
NUM_FACES = 100


class LFWFaces(ImageDataModule):
    """Faces vs. non-faces: 200 grey 25x25 crops from Labeled Faces in the Wild, upscaled.

    Label 1 is ``face``, 0 ``non-face`` (crops of the photos' backgrounds).

    Args:
        image_size: side of the square images the model sees (the crops are 25x25).
        interpolation: resize filter (``bilinear``, ``bicubic``...); follows the
            backbone's timm data config unless you change it.
        channels: 3 (the grey image repeated, what ImageNet backbones expect) or 1.
        **kwargs: ``mean``/``std``/``standardize``/``augment`` (see
            :class:`~lightning_hw.data.images.ImageDataModule`), batch size, splits, seeds.
    """

    def __init__(self, image_size: int = 64, interpolation: str = "bilinear", channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interpolation = check_image_settings(channels, interpolation)
        self.image_size = image_size
        self.channels = channels

    @property
    def class_names(self) -> list[str]:
        return ["non-face", "face"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def load_tensors(self) -> Split:
        try:
            from skimage.data import lfw_subset
        except ImportError:
            raise DataError("LFWFaces needs scikit-image: pip install scikit-image") from None
        crops = torch.as_tensor(lfw_subset())  # (200, 25, 25), floats in [0, 1]
        images = (crops * 255).round().to(torch.uint8).unsqueeze(1)
        images = TF.resize(images, [self.image_size] * 2, interpolation=self.interpolation, antialias=True)
        images = images.expand(-1, self.channels, -1, -1).contiguous()
        labels = (torch.arange(images.shape[0]) < NUM_FACES).long()
        return images, labels
