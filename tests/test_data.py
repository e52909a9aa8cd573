import gzip
import struct

import numpy as np
import pytest
import torch

from fmq.data import DataError, load_dataset, load_npz, load_root, to_uint8

from .conftest import toy_images


def test_npz_to_minus_one_one(toy_npz):
    d = load_npz(toy_npz)
    assert d.images.shape == (256, 1, 8, 8) and d.images.dtype == torch.float32
    assert d.images.min() >= -1 and d.images.max() <= 1
    raw, labels = toy_images()
    np.testing.assert_array_equal(to_uint8(d.images)[..., 0], raw)  # exact round trip
    np.testing.assert_array_equal(d.labels.numpy(), labels)


def test_rgb_and_split(tmp_path):
    images, labels = toy_images(n=10, channels=3)
    split = np.array([0] * 6 + [1] * 4, np.uint8)
    p = tmp_path / "rgb.npz"
    np.savez(p, images=images, labels=labels, split=split)
    assert load_npz(p, split=0).images.shape == (6, 3, 8, 8)
    assert len(load_npz(p, split=1)) == 4
    assert len(load_npz(p, split=None)) == 10
    with pytest.raises(DataError, match="split == 2"):
        load_npz(p, split=2)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="not a readable npz"):
        load_npz(bad)
    p = tmp_path / "noimg.npz"
    np.savez(p, labels=np.zeros(3))
    with pytest.raises(DataError, match="missing arrays"):
        load_npz(p)
    p2 = tmp_path / "float.npz"
    np.savez(p2, images=np.zeros((3, 8, 8), np.float32), labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="uint8"):
        load_npz(p2)


def _write_idx(path, arr):
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def test_torchvision_mnist_root(tmp_path):
    images, labels = toy_images(n=12)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte.gz", images)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    d = load_dataset(tmp_path)
    assert d.images.shape == (12, 1, 8, 8)
    np.testing.assert_array_equal(to_uint8(d.images)[..., 0], images)
    np.testing.assert_array_equal(d.labels.numpy(), labels)


def test_image_folder_root(tmp_path):
    from PIL import Image

    images, _ = toy_images(n=4, channels=3)
    for i, cls in enumerate(["a", "a", "b", "b"]):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(tmp_path / cls / f"{i}.png")
    d = load_root(tmp_path)
    assert d.images.shape == (4, 3, 8, 8) and d.class_names == ["a", "b"]
    assert d.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(DataError, match="not found"):
        load_root(tmp_path / "missing")
