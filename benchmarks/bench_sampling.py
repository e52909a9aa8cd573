"""Speed of training and sampling on the MNIST-sized model (prints figures; not a test).

    python benchmarks/bench_sampling.py [--checkpoint checkpoints/mnist.safetensors] [--repeats 5] [--no-train]
                                        [--no-bf16] [--compile-train]

Prints a machine line, then medians over ``--repeats`` runs of: seconds per training step at batch 128
(FP32, bf16 autocast unless ``--no-bf16``, and with ``--compile-train`` an FP32 step through
``torch.compile``, its compile time printed apart), one network pass at batch 64 in the standard and the
channels-last layout (taking turns), and seconds to sample 16 and 64 images per solver and step count.
Target (issue 2): 16 MNIST images with Heun at 20 steps in under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from fmq.flow import cfm_loss  # noqa: E402
from fmq.models import ModelConfig, UNet, count_parameters  # noqa: E402
from fmq.sampling import make_noise, sample  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="use this model (default: a fresh MNIST-sized model)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-train", action="store_true", help="skip the training steps (emulated bf16 is slow)")
    ap.add_argument("--no-bf16", action="store_true", help="time the training step in FP32 only")
    ap.add_argument("--compile-train", action="store_true", help="also time a torch.compile'd FP32 training step")
    a = ap.parse_args()
    print(machine_line())
    if a.checkpoint:
        from fmq.checkpoint import load_checkpoint

        model = load_checkpoint(a.checkpoint).model
    else:
        torch.manual_seed(0)
        model = UNet(ModelConfig(num_classes=10)).eval().requires_grad_(False)
    cfg = model.config
    print(f"model: {count_parameters(model):,} parameters, {cfg.image_size}x{cfg.image_size}x{cfg.in_channels}, "
          f"patch {cfg.patch_size}, base {cfg.base_channels}, mults {cfg.channel_mults}")

    x = torch.randn(128, cfg.in_channels, cfg.image_size, cfg.image_size)
    y = torch.randint(0, max(cfg.num_classes, 1), (128,)) if cfg.conditional else None
    variants = [] if a.no_train else ["fp32"] + ([] if a.no_bf16 else ["bf16 autocast"]) + (
        ["fp32 torch.compile"] if a.compile_train else [])
    for variant in variants:
        torch.manual_seed(0)
        train_model = UNet(cfg)
        net = torch.compile(train_model) if "compile" in variant else train_model
        opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(0)

        def step(net=net, opt=opt, g=g, bf16="bf16" in variant) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = cfm_loss(net, x, y, g)
            opt.zero_grad()
            loss.backward()
            opt.step()

        if "compile" in variant:
            t0 = time.perf_counter()
            step()  # compiles forward and backward
            print(f"torch.compile of the training step: {time.perf_counter() - t0:.0f} s (first step)")
        print(f"train step, batch 128, {variant}: {median_time(step, a.repeats):.3f} s")

    import copy

    standard = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    standard.channels_last = False
    xs = torch.randn(64, cfg.in_channels, cfg.image_size, cfg.image_size)
    ys = torch.arange(64) % cfg.num_classes if cfg.conditional else None
    times: dict[str, list[float]] = {"standard": [], "channels-last": []}
    with torch.inference_mode():
        for _ in range(a.repeats):  # taking turns
            for name, m in (("standard", standard), ("channels-last", model)):
                times[name].append(median_time(lambda m=m: m(xs, 0.5, ys), 1))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"one network pass, batch 64: standard layout {med['standard'] * 1e3:.1f} ms, channels-last "
          f"{med['channels-last'] * 1e3:.1f} ms, ratio {med['standard'] / med['channels-last']:.2f}")

    print("sampling (fp32, guidance 1):")
    print(f"{'solver':>8} {'steps':>5} {'NFE':>4} {'16 images s':>12} {'64 images s':>12}")
    for solver, steps in [("euler", 20), ("midpoint", 10), ("heun", 10), ("heun", 20), ("rk4", 10), ("dopri5", 0),
                          ("sde", 40)]:
        row = []
        nfe = 0
        for n in (16, 64):
            noise = make_noise(n, (cfg.in_channels, cfg.image_size, cfg.image_size), seed=0)
            labels = torch.arange(n) % cfg.num_classes if cfg.conditional else None
            res = {}

            def run(noise=noise, labels=labels, res=res, solver=solver, steps=steps) -> None:
                res["r"] = sample(model, noise, solver, steps, y=labels, sde_scale=0.5, rtol=1e-3, atol=1e-3)

            row.append(median_time(run, a.repeats))
            nfe = res["r"].nfe
        label = "tol 1e-3" if solver == "dopri5" else str(steps)
        print(f"{solver:>8} {label:>5} {nfe:>4} {row[0]:>12.3f} {row[1]:>12.3f}")


if __name__ == "__main__":
    main()
