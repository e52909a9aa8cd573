"""Fixtures for the app tests: a zoo of tiny checkpoints, and AppTest wired to it.

The tiny zoo has one checkpoint per shipped data set with that data set's image size, channels and
conditioning, so every page sees each kind of model, in a fraction of a second per run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from fmq.checkpoint import save_checkpoint
from fmq.models import ModelConfig, UNet

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
# data set -> (image size, channels, classes): the shipped models' shapes
SHAPES = {"mnist": (28, 1, 10), "fashion_mnist": (28, 1, 10), "cifar10": (32, 3, 10),
          "celeba32": (32, 3, 0), "tinyimagenet32": (32, 3, 0)}
FAST = {"n": 4, "steps": 2, "solver": "euler"}  # sidebar settings that keep a page run well under a second


def tiny_checkpoint(path: Path, name: str, seed: int = 0) -> Path:
    size, channels, classes = SHAPES[name]
    torch.manual_seed(seed)
    cfg = ModelConfig(image_size=size, in_channels=channels, base_channels=8, channel_mults=(1, 2),
                      num_res_blocks=1, attention=False, num_classes=classes, norm_groups=4, num_heads=2)
    return save_checkpoint(UNet(cfg).eval(), path / f"{name}.safetensors", meta={"dataset": name})


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("zoo")
    for name in SHAPES:
        tiny_checkpoint(d, name)
    return d


@pytest.fixture
def make_app(tiny_zoo, monkeypatch):
    """make_app(**sidebar) -> an AppTest on the tiny zoo, sidebar state preset, already run once."""
    monkeypatch.setenv("FMQ_CHECKPOINT_DIR", str(tiny_zoo))
    monkeypatch.setenv("FMQ_CACHE", str(tiny_zoo / "cache"))  # calibration states and sensitivity of the tiny zoo

    def make(**state) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        for k, v in {**FAST, **state}.items():
            at.session_state[k] = v
        return at.run()

    return make
