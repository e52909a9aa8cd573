"""A small CNN classifier for 28×28 grey images (MNIST, FashionMNIST), used to measure semantic fidelity:
the share of class-conditional generations that the classifier assigns to the class that was asked for.

Trained on the real training split; its test accuracy is stored in the checkpoint metadata. Stored like
the generators: safetensors + JSON metadata, validated on load, never unpickled.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, atomic_save_tensors, load_tensors, validate_state
from .data import ImageData

__all__ = ["ClassifierConfig", "Classifier", "train_classifier", "save_classifier", "load_classifier", "accuracy",
           "predict"]

FORMAT = "fmq-classifier/1"


@dataclass(frozen=True)
class ClassifierConfig:
    image_size: int = 28  # input height = width
    in_channels: int = 1
    num_classes: int = 10
    width: int = 32  # channels of the first conv block (the second has twice as many)


class Classifier(nn.Module):
    """conv-conv-pool ×2, then a 128-unit hidden layer; logits (B, num_classes) for images in [-1, 1]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = config.image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * side * side, 128), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(128, config.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Predicted class (N,) for images (N, C, H, W) in [-1, 1] (clipped first, like saved images)."""
    model.eval()
    out = [model(images[i : i + batch].clamp(-1, 1)).argmax(1) for i in range(0, len(images), batch)]
    return torch.cat(out)


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(model, images) == labels).float().mean())


def train_classifier(train: ImageData, test: ImageData, epochs: int = 3, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0) -> tuple[Classifier, float]:
    """Adam with a cosine schedule and small random shifts; returns (model, test accuracy)."""
    torch.manual_seed(seed)
    c, h, _ = train.shape
    model = Classifier(ClassifierConfig(image_size=h, in_channels=c, num_classes=int(train.labels.max()) + 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=g)
        for i in range(len(train) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = train.images[idx]
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()  # shift augmentation
            x = torch.roll(x, (dx, dy), dims=(2, 3))
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model, accuracy(model, test.images, test.labels)


def save_classifier(model: Classifier, path: str | Path, meta: dict) -> Path:
    path = Path(path)
    meta = {**meta, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_save_tensors(model.state_dict(), path,
                        {"fmq_format": FORMAT, "config": json.dumps(asdict(model.config)), "meta": json.dumps(meta)})
    path.with_suffix(".json").write_text(json.dumps({"format": FORMAT, "config": asdict(model.config), **meta},
                                                    indent=2, sort_keys=True) + "\n")
    return path


def load_classifier(path: str | Path) -> tuple[Classifier, dict]:
    tensors, metadata = load_tensors(path)
    if metadata.get("fmq_format") != FORMAT:
        raise CheckpointError(f"{path} is not an fmq classifier (format {metadata.get('fmq_format')!r})")
    try:
        config = ClassifierConfig(**json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: classifier config is invalid ({e})") from e
    model = Classifier(config)
    validate_state(model.state_dict(), tensors, str(path))
    model.load_state_dict(tensors)
    return model.eval().requires_grad_(False), json.loads(metadata.get("meta", "{}"))
