"""Shared fixtures: tiny models and synthetic data sets made inside the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmq.models import ModelConfig, UNet

# Tiny models gain nothing from a second thread, and one thread keeps tests steady on a busy machine.
torch.set_num_threads(1)


def tiny_config(**kw) -> ModelConfig:
    base = dict(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                norm_groups=4, num_heads=2, patch_size=1)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def tiny_model() -> UNet:
    torch.manual_seed(0)
    return UNet(tiny_config(num_classes=3)).eval()


def toy_images(n: int = 256, size: int = 8, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of uint8 images: a bright square top-left or a bright bar at the bottom, with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    img = np.zeros((n, size, size), np.float64)
    img[labels == 0, : size // 2, : size // 2] = 1.0
    img[labels == 1, -2:, :] = 1.0
    img = np.clip(img * 220 + rng.normal(0, 10, img.shape) + 20, 0, 255).astype(np.uint8)
    if channels == 3:
        img = np.stack([img, img[:, ::-1], img // 2], axis=-1)
    return img, labels.astype(np.int64)


@pytest.fixture
def toy_npz(tmp_path):
    images, labels = toy_images()
    path = tmp_path / "toy.npz"
    np.savez_compressed(path, images=images, labels=labels, split=np.zeros(len(images), np.uint8))
    return path
