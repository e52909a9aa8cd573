"""Packed sizes, index entropy, the fp16 kept tensors' effect, and the packed runtime (prints figures; not a test).

    python benchmarks/bench_packing.py [--models mnist,cifar10,celeba32,tinyimagenet32] [--repeats 5]

For each shipped model and each setting, the packed file's size against the FP32 checkpoint file
(whole files, headers included; the packed file carries the same provenance the CLI writes), for:
plain (b-bit indices, kept tensors in FP32), plain with fp16 kept tensors, and entropy-coded indices with
fp16 kept tensors; and the mean empirical entropy of the indices beside their width. Targets (issue 15):
MNIST and the colour models at 2 bits per channel ``ot`` >= 14.5x plain and >= 16x entropy-coded; 8-bit per
channel ``uniform`` and 8-bit per tensor ``ot`` >= 3.8x.

Then, on MNIST at 2 bits per channel ``ot``: what fp16 kept tensors change (SSIM of 16 generations against
the FP32 model's, with FP32 and with fp16 kept tensors, and between the two), resident weight bytes of the
packed runtime against the FP32 model (target <= 1/10), and seconds to sample 16 images (Heun, 20 steps),
FP32 model and packed runtime taking turns, medians of ``--repeats`` (target <= 1.3x), and single network
passes taking turns (10 x ``--repeats`` each).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.metrics import ssim_per_image  # noqa: E402
from fmq.packed import packed_model, resident_weight_bytes  # noqa: E402
from fmq.quant.packing import read_packed, save_packed  # noqa: E402
from fmq.quantize import QuantConfig, quantize_model, select_tensors  # noqa: E402
from fmq.sampling import make_noise, sample  # noqa: E402
from fmq.zoo import checkpoint_dir, labels_for  # noqa: E402

SETTINGS = (("ot", 2, "channel"), ("uniform", 8, "channel"), ("ot", 8, "tensor"))
VARIANTS = (("plain", "fixed", "float32"), ("plain, fp16 kept", "fixed", "float16"),
            ("entropy-coded, fp16 kept", "ans", "float16"))


def sizes(name: str, tmp: Path) -> None:
    path = checkpoint_dir() / f"{name}.safetensors"
    ck = load_checkpoint(path)
    fp32 = path.stat().st_size
    meta = {"source": str(path), "source_meta": {k: v for k, v in ck.meta.items() if k != "loss_history"}}
    print(f"\n{name}: FP32 file {fp32:,} bytes")
    for method, bits, gran in SETTINGS:
        config = QuantConfig(method, bits, gran)
        _, report = quantize_model(ck.model, config)
        cells = []
        for label, coding, kept in VARIANTS:
            out = save_packed(ck.model, config, tmp / "q.safetensors", source_meta=meta, codebooks=report.codebooks,
                              coding=coding, kept_dtype=kept)
            size = out.stat().st_size
            cells.append(f"{label} {size:,} B = {fp32 / size:.2f}x")
            if coding == "ans":
                pf = read_packed(out)
                n = sum(layer.numel for layer in pf.layers)
                h = sum(layer.entropy * layer.numel for layer in pf.layers) / n
                lo, hi = min(layer.entropy for layer in pf.layers), max(layer.entropy for layer in pf.layers)
        print(f"  {method:8s} {bits} bits {gran:8s}: " + "; ".join(cells)
              + f"; index entropy {h:.3f} bits (layers {lo:.2f}..{hi:.2f}) at {bits} bits")


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def runtime(tmp: Path, repeats: int) -> None:
    ck = load_checkpoint(checkpoint_dir() / "mnist.safetensors")
    config = QuantConfig("ot", 2, "channel")
    qmodel, report = quantize_model(ck.model, config)
    noise = make_noise(16, (ck.config.in_channels, ck.config.image_size, ck.config.image_size), seed=0)
    y = labels_for(ck.config, 16, None)
    ref = sample(ck.model, noise, "heun", 20, y=y).images

    _, kept = select_tensors(qmodel, config)
    q16 = quantize_model(ck.model, config)[0]
    with torch.no_grad():
        for n in kept:
            t = q16.state_dict()[n]
            t.copy_(t.half().float())
    a, b = sample(qmodel, noise, "heun", 20, y=y).images, sample(q16, noise, "heun", 20, y=y).images
    s32, s16, between = (float(np.mean(ssim_per_image(r, x))) for r, x in ((ref, a), (ref, b), (a, b)))
    print(f"\nfp16 kept tensors (MNIST, ot 2 bits per channel, 16 images, Heun 20): SSIM vs FP32 {s32:.4f} with "
          f"FP32 kept, {s16:.4f} with fp16 kept; SSIM between the two {between:.4f}; "
          f"max |pixel difference| {float((a - b).abs().max()):.4f} (images in [-1, 1])")

    path = save_packed(ck.model, config, tmp / "r.safetensors", codebooks=report.codebooks)
    pmodel = packed_model(path)
    assert torch.equal(sample(pmodel, noise, "heun", 20, y=y).images, a), "packed runtime differs"
    fp, pk = resident_weight_bytes(ck.model), resident_weight_bytes(pmodel)
    print(f"packed runtime (MNIST, ot 2 bits per channel): resident weight bytes {pk:,} against FP32 {fp:,} "
          f"= 1/{fp / pk:.1f} (target <= 1/10); its 16 images equal the fake-quantized model's bit for bit")
    t_fp, t_pk = [], []
    for _ in range(repeats):  # taking turns, so both see the same load
        t_fp.append(_time(lambda: sample(ck.model, noise, "heun", 20, y=y), 1))
        t_pk.append(_time(lambda: sample(pmodel, noise, "heun", 20, y=y), 1))
    m_fp, m_pk = statistics.median(t_fp), statistics.median(t_pk)
    print(f"sampling 16 images, Heun 20 steps, medians of {repeats} taking turns: FP32 {m_fp:.3f} s, packed "
          f"runtime {m_pk:.3f} s = {m_pk / m_fp:.2f}x (target <= 1.3x)")
    x, t = noise, torch.full((16,), 0.5)
    f_fp, f_pk = [], []
    with torch.no_grad():
        for _ in range(10 * repeats):  # single network passes taking turns: finer against a changing load
            f_fp.append(_time(lambda: ck.model(x, t, y), 1))
            f_pk.append(_time(lambda: pmodel(x, t, y), 1))
    m_fp, m_pk = statistics.median(f_fp), statistics.median(f_pk)
    print(f"one network pass at batch 16, medians of {10 * repeats} taking turns: FP32 {1e3 * m_fp:.1f} ms, "
          f"packed runtime {1e3 * m_pk:.1f} ms = {m_pk / m_fp:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mnist,cifar10,celeba32,tinyimagenet32")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_line())
    with tempfile.TemporaryDirectory() as d:
        for name in a.models.split(","):
            sizes(name, Path(d))
        runtime(Path(d), a.repeats)


if __name__ == "__main__":
    main()
