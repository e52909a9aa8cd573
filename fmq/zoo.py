"""The shipped checkpoints: names, titles, where their files live, and how to load them.

Caching is left to the caller (the app wraps :func:`load` in ``st.cache_resource``): this module only
makes the cache key honest. A :class:`ModelRef` carries the file's path, modification time and size, so a
checkpoint that is replaced on disk (the MNIST model is rewritten while it trains) gets a new key and is
loaded afresh, while an unchanged one is served from the cache.

``FMQ_CHECKPOINT_DIR`` points the zoo at another folder (the tests use tiny models made in a fixture).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .data import DATASETS
from .models import ModelConfig

__all__ = [
    "ZOO",
    "ModelRef",
    "REPO_ROOT",
    "checkpoint_dir",
    "shipped",
    "ref_for",
    "load",
    "load_upload",
    "class_names",
    "labels_for",
    "asset_path",
    "grid_note",
    "default_guidance",
    "MAX_UPLOAD_BYTES",
    "DEFAULT_DATA_DIR",
    "sweep_inputs",
    "test_images",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
ZOO: tuple[str, ...] = ("mnist", "fashion_mnist", "cifar10", "celeba32", "tinyimagenet32")
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"  # ../shared/data beside the project
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # an fmq UNet for 32×32 images is a few MB; anything far larger is wrong

_CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


@dataclass(frozen=True)
class ModelRef:
    """A checkpoint file as of one moment: hashable, so it can key a cache."""

    name: str  # data set name for shipped models, "upload:<sha>" for uploaded ones
    title: str  # what a person reads in the data set picker
    path: str
    mtime_ns: int
    size: int

    @property
    def dataset(self) -> str:
        """The data set this model was trained on, as far as the zoo knows ("" for uploads)."""
        return self.name if self.name in ZOO else ""


def checkpoint_dir() -> Path:
    return Path(os.environ.get("FMQ_CHECKPOINT_DIR") or REPO_ROOT / "checkpoints")


def asset_path(name: str) -> Path:
    """The sample grid the README and the Home page show (may not exist)."""
    return REPO_ROOT / "assets" / f"{name}.png"


_GRID_NOTES = {"cifar10": "guidance 3 (one class per column); at guidance 1 few objects are recognisable"}


# where a shipped model draws what it was trained on: CIFAR-10 shows objects at guidance 3, blobs at 1
_DEFAULT_GUIDANCE = {"cifar10": 3.0}


def default_guidance(name: str) -> float:
    """The guidance scale a shipped model is best shown at (1 = plain conditional sampling)."""
    return _DEFAULT_GUIDANCE.get(name, 1.0)


def grid_note(name: str) -> str:
    """How a shipped grid was drawn where it differs from the default sampling (else "")."""
    return _GRID_NOTES.get(name, "")


def ref_for(path: str | Path, name: str | None = None, title: str | None = None) -> ModelRef:
    path = Path(path)
    st = path.stat()
    name = name or path.stem
    if title is None:
        title = DATASETS[name].title if name in DATASETS else name
    return ModelRef(name, title, str(path), st.st_mtime_ns, st.st_size)


def shipped() -> list[ModelRef]:
    """The shipped checkpoints that exist right now, in the zoo's order."""
    out = []
    for name in ZOO:
        path = checkpoint_dir() / f"{name}.safetensors"
        try:
            out.append(ref_for(path, name, DATASETS[name].title))
        except FileNotFoundError:
            continue
    return out


def load(ref: ModelRef) -> Checkpoint:
    """Load the checkpoint a ref points at (eval mode, gradients off). Raises CheckpointError."""
    return load_checkpoint(ref.path)


def load_upload(data: bytes, filename: str, max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[Checkpoint, str]:
    """Validate and load an uploaded checkpoint's bytes. Returns (checkpoint, sha256 of the bytes).

    Only ``.safetensors`` files written by fmq are accepted; anything else raises CheckpointError with a
    message meant for the person who uploaded it.
    """
    if not filename.lower().endswith(".safetensors"):
        raise CheckpointError(f"{filename}: only .safetensors checkpoints written by fmq can be uploaded")
    if len(data) > max_bytes:
        raise CheckpointError(f"{filename} is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    sha = hashlib.sha256(data).hexdigest()
    fd, tmp = tempfile.mkstemp(suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        ck = load_checkpoint(tmp)
    except CheckpointError as e:  # the person knows their file by its name, not by our temporary copy
        raise CheckpointError(str(e).replace(tmp, filename)) from None
    finally:
        os.remove(tmp)
    ck.path = Path(filename)
    return ck, sha


def class_names(dataset: str, config: ModelConfig) -> list[str]:
    """Names of the classes a conditional model knows ([] for unconditional models)."""
    if not config.conditional:
        return []
    names = _CLASS_NAMES.get(dataset, [])
    if len(names) == config.num_classes:
        return names
    return [str(i) for i in range(config.num_classes)]


def labels_for(config: ModelConfig, n: int, label: int | None) -> torch.Tensor | None:
    """Labels for n samples: None for unconditional models; one class, or every class in turn (None)."""
    if not config.conditional:
        return None
    if label is None:
        return torch.arange(n) % config.num_classes
    if not 0 <= label < config.num_classes:
        raise ValueError(f"class must be in 0..{config.num_classes - 1}, got {label}")
    return torch.full((n,), int(label), dtype=torch.long)


def test_images(name: str, data: str | Path | None = None) -> torch.Tensor | None:
    """The test split of data set ``name`` in file order, (N, C, H, W) in [-1, 1]: split 1 of ``data``
    (default ``../shared/data/<name>.npz``), or every row of an npz without one; None without the file."""
    from .data import DataError, load_dataset

    info = DATASETS.get(name)
    path = Path(data) if data else (DEFAULT_DATA_DIR / info.file if info else None)
    if path is None or not path.exists():
        return None
    try:
        return load_dataset(path, split=1).images
    except DataError:  # an npz without a test split: all its rows (a broken file raises again)
        return load_dataset(path, split=None).images


def sweep_inputs(name: str, config: ModelConfig, data: str | Path | None = None, n: int = 64,
                 seed: int = 0) -> tuple[torch.Tensor | None, nn.Module | None]:
    """What a generation sweep of a shipped model measures against: real test images and the classifier.

    Returns (images, classifier). ``images`` are ``max(n, 512)`` images of :func:`test_images` drawn with
    ``seed``, or None when the data file is not there; the classifier is
    ``checkpoints/<name>_classifier.safetensors`` for a conditional model, else None.
    """
    from .classifier import load_classifier

    images = test_images(name, data)
    if images is not None:
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: max(n, 512)]
        images = images[perm]
    classifier = None
    cpath = checkpoint_dir() / f"{name}_classifier.safetensors"
    if cpath.is_file() and config.conditional:
        classifier = load_classifier(cpath)[0]
    return images, classifier
