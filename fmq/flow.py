"""Conditional flow matching on the linear path, and the training loop.

Path: x_t = (1 - t)·x0 + t·x1 with x0 ~ N(0, I) (noise) and x1 a data image; its velocity is
u_t = x1 - x0, and the loss is E_{t ~ U(0,1)} ‖v(x_t, t, y) - (x1 - x0)‖² (Lipman et al. 2023).

Training: AdamW with linear warm-up, EMA of the weights (the checkpoint holds the EMA weights), labels
replaced by the null label with probability ``label_dropout`` (classifier-free guidance), periodic
checkpoints, and exact resume: model, EMA, optimiser moments and the random generator are saved in a
``<out>.state.safetensors`` file, so an interrupted run continued later gives the very same weights.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, atomic_save_tensors, load_tensors, save_checkpoint, validate_state
from .data import ImageData
from .models import ModelConfig, UNet

__all__ = ["TrainConfig", "cfm_loss", "train", "state_path"]


def cfm_loss(
    model: nn.Module,
    x1: torch.Tensor,
    y: torch.Tensor | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Flow-matching loss for a batch of data x1 (B, C, H, W) with labels y (B,) or None."""
    b = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device)
    t = torch.rand(b, generator=generator, device=x1.device)
    tt = t[:, None, None, None]
    xt = (1 - tt) * x0 + tt * x1  # (B, C, H, W)
    v = model(xt, t, y)
    return (v.float() - (x1 - x0)).pow(2).mean()


@dataclass
class TrainConfig:
    dataset: str  # data set name (recorded in the checkpoint)
    data: str  # path of the npz file or torchvision root
    out: str  # checkpoint path (.safetensors)
    steps: int = 1000  # total optimiser steps (a resumed run continues up to this)
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 200  # linear warm-up steps
    weight_decay: float = 0.0
    ema_decay: float = 0.999  # upper bound; early on the decay is (1+s)/(10+s)
    label_dropout: float = 0.1  # probability of the null label (classifier-free guidance)
    grad_clip: float = 1.0
    hflip: bool = False  # random horizontal flips
    ckpt_every: int = 250  # steps between checkpoints (and resume states)
    log_every: int = 25
    seed: int = 0
    bf16: bool = False  # bfloat16 autocast for the forward pass
    command: str = ""  # the command line that started this run (recorded)
    init_from: str = ""  # checkpoint to continue from when no resume state exists (weights only, fresh AdamW)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> TrainConfig:
        d = json.loads(s)
        d["model"] = ModelConfig.from_dict(d["model"])
        return cls(**d)


def state_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".state.safetensors")


def _ema_decay(cfg: TrainConfig, step: int) -> float:
    return min(cfg.ema_decay, (1 + step) / (10 + step))


def _lr(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


class _Trainer:
    def __init__(self, cfg: TrainConfig, data: ImageData) -> None:
        if data.shape != (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size):
            raise ValueError(f"data images are {data.shape}, the model config expects "
                             f"{(cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)}")
        self.cfg, self.data = cfg, data
        with torch.random.fork_rng():  # initial weights depend on cfg.seed only
            torch.manual_seed(cfg.seed)
            self.model = UNet(cfg.model)
        self.ema = UNet(cfg.model).requires_grad_(False)
        self.ema.load_state_dict(self.model.state_dict())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.warm_from = 0  # step of a warm start (init_from): the lr warms up again from there
        self.loss_avg = float("nan")
        self.history: list[tuple[int, float]] = []

    # ---- resume state -------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        t.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for i, p in enumerate(self.model.parameters()):
            st = self.opt.state.get(p)
            if st:
                t[f"opt.{i}.exp_avg"] = st["exp_avg"]
                t[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"]
                t[f"opt.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
        t["rng"] = self.gen.get_state()
        return t

    def save_state(self) -> None:
        meta = {
            "train_config": self.cfg.to_json(),
            "step": str(self.step),
            "warm_from": str(self.warm_from),
            "loss_avg": repr(self.loss_avg),
            "history": json.dumps(self.history[-400:]),
        }
        atomic_save_tensors(self.state_tensors(), state_path(self.cfg.out), meta)

    def load_state(self, path: Path) -> None:
        tensors, meta = load_tensors(path)
        saved = TrainConfig.from_json(meta["train_config"])
        if saved.model != self.cfg.model:
            raise CheckpointError(f"{path} was trained with a different model config; use another --out")
        sub = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        validate_state(self.model.state_dict(), sub("model."), str(path))
        self.model.load_state_dict(sub("model."))
        self.ema.load_state_dict(sub("ema."))
        for i, p in enumerate(self.model.parameters()):
            if f"opt.{i}.exp_avg" in tensors:
                self.opt.state[p] = {
                    "step": tensors[f"opt.{i}.step"].reshape(()).clone(),
                    "exp_avg": tensors[f"opt.{i}.exp_avg"].clone(),
                    "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].clone(),
                }
        self.gen.set_state(tensors["rng"])
        self.step = int(meta["step"])
        self.warm_from = int(meta.get("warm_from", "0"))
        self.loss_avg = float(meta["loss_avg"])
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]

    def init_from_checkpoint(self, path: str) -> None:
        """Continue from a checkpoint's EMA weights (model and EMA), at its step count; the optimiser
        moments and the data order start afresh, so this is a warm start, not an exact resume. The lr
        warms up again over ``warmup`` steps: fresh Adam moments make the first full-lr steps large."""
        from .checkpoint import load_checkpoint

        ck = load_checkpoint(path)
        if ck.config != self.cfg.model:
            raise CheckpointError(f"{path} has another model config than this run: {ck.config} vs {self.cfg.model}")
        self.model.load_state_dict(ck.model.state_dict())
        self.ema.load_state_dict(ck.model.state_dict())
        self.step = self.warm_from = int(ck.meta.get("steps", 0))
        self.history = [tuple(h) for h in ck.meta.get("loss_history", [])]
        self.gen.manual_seed(self.cfg.seed + self.step)  # a new data order, not a replay of the first one

    # ---- one step -----------------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg, n = self.cfg, len(self.data)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=self.gen)
        x = self.data.images[idx]
        if cfg.hflip:
            flip = torch.rand(cfg.batch_size, generator=self.gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = None
        if cfg.model.conditional:
            y = self.data.labels[idx].clone()
            drop = torch.rand(cfg.batch_size, generator=self.gen) < cfg.label_dropout
            y[drop] = cfg.model.null_label
        return x, y

    def train_step(self) -> float:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = _lr(cfg, self.step - self.warm_from)
        x, y = self.batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = cfm_loss(self.model, x, y, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        d = _ema_decay(cfg, self.step)
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - d)
            for be, bm in zip(self.ema.buffers(), self.model.buffers()):
                be.copy_(bm)
        self.step += 1
        val = loss.item()
        self.loss_avg = val if math.isnan(self.loss_avg) else 0.98 * self.loss_avg + 0.02 * val
        return val

    def checkpoint_meta(self, data_sha: str) -> dict:
        cfg = self.cfg
        return {
            "dataset": cfg.dataset,
            "steps": self.step,
            "batch_size": cfg.batch_size,
            "ema": True,
            "ema_decay": cfg.ema_decay,
            "final_loss": round(self.loss_avg, 5),
            "loss_history": self.history[-200:],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "data_file": Path(cfg.data).name,
            "data_sha256": data_sha,
            "command": cfg.command,
            "train_config": json.loads(cfg.to_json()),
        }


def train(cfg: TrainConfig, data: ImageData, data_sha: str = "", resume: bool = True, progress: bool = True) -> UNet:
    """Train (or resume) a velocity field; writes ``cfg.out`` (EMA weights) every ``ckpt_every`` steps.

    Returns the EMA model. ``resume`` continues from ``<out>.state.safetensors`` when it exists.
    """
    trainer = _Trainer(cfg, data)
    sp = state_path(cfg.out)
    if resume and sp.exists():
        trainer.load_state(sp)
        print(f"resumed from {sp} at step {trainer.step}", file=sys.stderr)
    elif cfg.init_from:
        trainer.init_from_checkpoint(cfg.init_from)
        print(f"continuing from {cfg.init_from} at step {trainer.step} (weights only)", file=sys.stderr)
    if trainer.step >= cfg.steps:
        return trainer.ema

    from tqdm import tqdm

    show = progress and sys.stderr.isatty()  # logs get plain lines instead (below)
    bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not show, dynamic_ncols=True, mininterval=2.0,
               file=sys.stderr)
    t_start, s_start = time.perf_counter(), trainer.step
    while trainer.step < cfg.steps:
        loss = trainer.train_step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {trainer.step}; lower --lr")
        rate = (trainer.step - s_start) / (time.perf_counter() - t_start)
        bar.update(1)
        bar.set_postfix(loss=f"{trainer.loss_avg:.4f}", steps_per_s=f"{rate:.2f}", refresh=False)
        if trainer.step % cfg.log_every == 0:
            trainer.history.append((trainer.step, round(trainer.loss_avg, 5)))
            if not sys.stderr.isatty():
                print(f"step {trainer.step} loss {trainer.loss_avg:.4f} {rate:.2f} steps/s",
                      file=sys.stderr, flush=True)
        if trainer.step % cfg.ckpt_every == 0 or trainer.step == cfg.steps:
            save_checkpoint(trainer.ema, cfg.out, trainer.checkpoint_meta(data_sha))
            trainer.save_state()
    bar.close()
    return trainer.ema
