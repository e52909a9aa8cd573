"""Draw assets/two_bits/<dataset>.png: FP32, plain 2-bit OT and calibrated 2 bits per weight from the same noise.

    python benchmarks/two_bit_grids.py [--datasets mnist fashion_mnist cifar10 celeba32 tinyimagenet32]

Each picture is three grids side by side (16 samples, Heun 20 steps, seed 0, per channel), with the SSIM of
each quantized grid against FP32 in a JSON beside it (what Home shows under the picture). The calibrated
model is ``ot-mixed-cal`` at a budget of 2 bits per weight with its default settings; calibration reads its
states and sensitivity from the cache when a sweep or benchmark made them before.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.compare import generate, score  # noqa: E402
from fmq.images import make_grid  # noqa: E402
from fmq.qconfig import QuantConfig  # noqa: E402
from fmq.quantize import quantize_model  # noqa: E402
from fmq.sampling import make_noise  # noqa: E402
from fmq.zoo import REPO_ROOT, ZOO, checkpoint_dir  # noqa: E402

OUT = REPO_ROOT / "assets" / "two_bits"
N, SEED = 16, 0


def panel(images: torch.Tensor, title: str, scale: int) -> Image.Image:
    grid = make_grid(images, nrow=4, scale=scale)
    head = 22
    img = Image.new("RGB", (grid.shape[1], grid.shape[0] + head), "white")
    img.paste(Image.fromarray(grid), (0, head))
    ImageDraw.Draw(img).text((4, 5), title, fill="black")
    return img


def write_grid(name: str, model, qmodels: dict) -> dict:
    """assets/two_bits/<name>.png and .json from the FP32 model and {label: (config, qmodel, report)}."""
    c = model.config
    noise = make_noise(N, (c.in_channels, c.image_size, c.image_size), SEED)
    y = torch.arange(N) % c.num_classes if c.conditional else None
    ref = generate(model, noise, y, "heun", 20)
    scale = max(1, 96 // c.image_size)
    panels, info = [panel(ref.images, "FP32 (32 bits per weight)", scale)], {"n": N, "seed": SEED}
    for cfg, q, rep in qmodels:
        run = generate(q, noise, y, "heun", 20)
        s = float(np.mean(score(ref, run).ssim))
        info[cfg.method] = {"ssim": s, "bits_per_weight": rep.bits_per_weight}
        panels.append(panel(run.images, f"{cfg.method}: {rep.bits_per_weight:.2f} bits/weight, SSIM {s:.2f}", scale))
    gap = 12
    out = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    OUT.mkdir(parents=True, exist_ok=True)
    out.save(OUT / f"{name}.png")
    (OUT / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{name}: wrote {OUT / (name + '.png')}: "
          + ", ".join(f"{k} SSIM {v['ssim']:.3f}" for k, v in info.items() if isinstance(v, dict)), flush=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(ZOO))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.datasets:
        model = load_checkpoint(checkpoint_dir() / f"{name}.safetensors").model
        write_grid(name, model, [(cfg, *quantize_model(model, cfg)) for cfg in (QuantConfig("ot", 2),
                                                                                QuantConfig("ot-mixed-cal", 2))])


if __name__ == "__main__":
    main()
