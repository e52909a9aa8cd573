"""Image data sets as [-1, 1] float tensors.

Two sources:
* the npz format of ``../shared/data`` (arrays ``images`` uint8 N×H×W or N×H×W×3, ``labels`` int64 N,
  ``split`` uint8 N with 0 = train, 1 = test, 2 = other);
* torchvision-style roots: ``MNIST/raw`` and ``FashionMNIST/raw`` idx files (optionally .gz),
  ``cifar-10-batches-py`` (read with an unpickler that admits numpy arrays only), or an image-folder tree
  ``root/<class>/<image>.png|jpg``.

Everything returns an :class:`ImageData`: images (N, C, H, W) float32 in [-1, 1] and labels (N,) int64.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ImageData", "DataError", "DATASETS", "load_npz", "load_dataset", "sha256_file", "to_uint8"]


class DataError(ValueError):
    """A data file is missing or not in the expected format."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    file: str  # file name inside ../shared/data
    num_classes: int  # classes used for conditioning (0 = train unconditionally)
    hflip: bool  # horizontal flips are a valid augmentation
    title: str


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "mnist.npz", 10, False, "MNIST digits"),
    "fashion_mnist": DatasetInfo("fashion_mnist", "fashion_mnist.npz", 10, False, "Fashion-MNIST"),
    "cifar10": DatasetInfo("cifar10", "cifar10.npz", 10, True, "CIFAR-10 (27k JPEG subset)"),
    "celeba32": DatasetInfo("celeba32", "celeba32.npz", 0, True, "CelebA faces 32×32 (6k)"),
    "tinyimagenet32": DatasetInfo(
        "tinyimagenet32", "tinyimagenet32.npz", 0, True, "Tiny-ImageNet-200 at 32×32 (20k)"
    ),
}


@dataclass
class ImageData:
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    labels: torch.Tensor  # (N,) int64, -1 where unknown
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W or N×H×W×C -> float32 (N, C, H, W) in [-1, 1]."""
    if images.dtype != np.uint8:
        raise DataError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"images must be N×H×W or N×H×W×3, got shape {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C); values outside [-1, 1] are clipped."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def load_npz(path: str | Path, split: int | None = 0) -> ImageData:
    """Read a ../shared/data style npz. ``split=None`` keeps every row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path} (see ../shared/data/README.md)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "labels"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}; found {z.files}")
            images, labels = z["images"], z["labels"]
            splits = z["split"] if "split" in z.files else np.zeros(len(images), np.uint8)
            names = [str(n) for n in z["class_names"]] if "class_names" in z.files else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path} is not a readable npz file ({type(e).__name__}: {e})") from e
    if not (len(images) == len(labels) == len(splits)):
        raise DataError(f"{path}: images, labels and split differ in length")
    if split is not None:
        keep = splits == split
        if not keep.any():
            raise DataError(f"{path}: no rows with split == {split}")
        images, labels = images[keep], labels[keep]
    return ImageData(_from_uint8(images), torch.from_numpy(labels.astype(np.int64)), names)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(f"{path} is not an idx file")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} bytes of data, got {arr.size}")
    return arr.reshape(dims).copy()  # frombuffer arrays are read-only


def _find(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / (stem + ".gz")):
        if cand.is_file():
            return cand
    raise DataError(f"missing {stem}[.gz] under {root}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickled dicts of numpy arrays; admit nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name} from a CIFAR batch file")


def _load_cifar_batches(root: Path, train: bool) -> ImageData:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = [], []
    for n in names:
        with open(_find(root, n), "rb") as f:
            d = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"labels"], np.int64))
    return ImageData(_from_uint8(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))


def _load_image_folder(root: Path) -> ImageData:
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"}:
                img = Image.open(f)
                xs.append(np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB")))
                ys.append(label)
    if not xs:
        raise DataError(f"no images found under {root}/<class>/")
    try:
        images = np.stack(xs)
    except ValueError as e:
        raise DataError(f"images under {root} differ in size; resize them first") from e
    return ImageData(_from_uint8(images), torch.tensor(ys, dtype=torch.int64), classes)


def load_root(root: str | Path, train: bool = True) -> ImageData:
    """Read a torchvision-style root (see module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root}")
    for sub in ("MNIST", "FashionMNIST"):
        raw = root / sub / "raw"
        if raw.is_dir():
            prefix = "train" if train else "t10k"
            x = _read_idx(_find(raw, f"{prefix}-images-idx3-ubyte"))
            y = _read_idx(_find(raw, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
            return ImageData(_from_uint8(x), torch.from_numpy(y))
    if (root / "cifar-10-batches-py").is_dir():
        return _load_cifar_batches(root / "cifar-10-batches-py", train)
    return _load_image_folder(root)


def load_dataset(path: str | Path, split: int | None = 0) -> ImageData:
    """An ``.npz`` file or a torchvision-style root directory (split 0 = train, 1 = test)."""
    path = Path(path)
    if path.suffix == ".npz" or path.is_file():
        return load_npz(path, split)
    return load_root(path, train=split in (0, None))
