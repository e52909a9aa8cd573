"""Calibrated 2 bits (and fewer): generation SSIM against FP32 per budget, and what it costs (prints figures).

    python benchmarks/bench_calibration.py [--datasets mnist cifar10] [--budgets 2 1.5 1.25]
        [--eval-seeds 0 1 2] [--cal-seeds 0 1] [--curve 0 100 300] [--plain]

For every data set: one FP32 64-image Heun-20 generation (the time unit, median of 3); then for each budget
the calibrated method (default ``ot-mixed-cal``) end to end from an empty calibration cache, each stage
timed (trajectories, sensitivity, allocation, refinement); its generation SSIM against FP32 from the same
noise (the sweep's protocol: n 64, Heun 20; per channel unless ``--granularity``) at every evaluation seed,
with the 95 % interval and, for MNIST and FashionMNIST, the share classified as asked beside FP32's.
``--curve`` repeats the first budget at several refinement lengths (states and sensitivity then come from
the cache, so the time is what a user waits for that choice) and prints SSIM against seconds.
``--cal-seeds`` beyond the first recalibrate the first budget from another calibration draw. ``--plain``
adds plain ``ot`` at 2 bits.

Calibration never sees the evaluation noise: its seeds live in [2^31, 2^32), evaluation's below 2^31.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402
from two_bit_grids import write_grid  # noqa: E402

from fmq.classifier import predict  # noqa: E402
from fmq.compare import generate, score  # noqa: E402
from fmq.qconfig import CalibConfig, QuantConfig  # noqa: E402
from fmq.quantize import quantize_model  # noqa: E402
from fmq.sampling import make_noise  # noqa: E402
from fmq.zoo import checkpoint_dir, sweep_inputs  # noqa: E402


def evaluate(model, qmodel, seeds, n, classifier):
    """{seed: (ssim, lo, hi, acc_q, acc_fp, per-image ssim)} of qmodel's generations against model's from the
    same noise."""
    c = model.config
    out = {}
    for seed in seeds:
        noise = make_noise(n, (c.in_channels, c.image_size, c.image_size), seed)
        y = torch.arange(n) % c.num_classes if c.conditional else None
        ref = generate(model, noise, y, "heun", 20)
        run = generate(qmodel, noise, y, "heun", 20)
        sc = score(ref, run)
        s = sc.summary()
        acc_q = acc_fp = float("nan")
        if classifier is not None and y is not None:
            acc_q = float((predict(classifier, run.images) == y).float().mean())
            acc_fp = float((predict(classifier, ref.images) == y).float().mean())
        out[seed] = (s["ssim"], s["ssim_lo"], s["ssim_hi"], acc_q, acc_fp, np.asarray(sc.ssim))
    return out


TAIL = 4  # --tail: how many of the lowest per-image SSIMs to print


def fmt(ev, tail: bool = False) -> str:
    parts = []
    for seed, (s, lo, hi, aq, af, *per_image) in ev.items():
        acc = f", class {aq:.2f} (FP32 {af:.2f})" if aq == aq else ""
        spread = ""
        if tail and per_image:
            img = np.sort(per_image[0])
            spread = f", median {np.median(img):.3f}, lowest {' '.join(f'{v:.2f}' for v in img[:TAIL])}"
        parts.append(f"seed {seed}: {s:.3f} ({lo:.3f}-{hi:.3f}){acc}{spread}")
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist"])
    ap.add_argument("--method", default="ot-mixed-cal")
    ap.add_argument("--budgets", nargs="+", type=float, default=[2.0, 1.5])
    ap.add_argument("--steps", type=int, default=CalibConfig().steps, help="refinement steps of the main runs")
    ap.add_argument("--early", type=float, default=CalibConfig().early,
                    help="the refinement's weight of a state at t = 0 against t = 1 (CalibConfig.early)")
    ap.add_argument("--restarts", type=int, default=CalibConfig().restarts,
                    help="refinement runs kept by held-out loss (CalibConfig.restarts)")
    ap.add_argument("--curve", nargs="*", type=int, default=[], help="refinement lengths for SSIM against seconds")
    ap.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--cal-seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--granularity", default="channel", help="of the calibrated method (tensor reaches ~1.0 bits)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plain", action="store_true", help="also plain ot at 2 bits, for reference")
    ap.add_argument("--grids", action="store_true",
                    help="also write assets/two_bits/<dataset>.png (FP32 / ot 2-bit / the first budget's model)")
    ap.add_argument("--tail", action="store_true",
                    help=f"also each seed's median per-image SSIM and its {TAIL} lowest (a few images that change "
                         "shape pull the mean down)")
    ap.add_argument("--cache", help="calibration cache folder to use and keep (default: a fresh temporary one)")
    a = ap.parse_args()

    def cal(steps: int, seed: int) -> CalibConfig:
        return CalibConfig(steps=steps, seed=seed, early=a.early, restarts=a.restarts)

    torch.set_num_threads(a.threads)
    from fmq.checkpoint import load_checkpoint

    print(machine_line(), flush=True)
    for name in a.datasets:
        model = load_checkpoint(checkpoint_dir() / f"{name}.safetensors").model
        _, classifier = sweep_inputs(name, model.config, n=a.n)
        c = model.config
        noise = make_noise(a.n, (c.in_channels, c.image_size, c.image_size), 0)
        y = torch.arange(a.n) % c.num_classes if c.conditional else None
        unit = statistics.median(generate(model, noise, y, "heun", 20).seconds for _ in range(3))
        print(f"\n{name}: one FP32 generation of {a.n} images (Heun 20) takes {unit:.2f} s (median of 3); "
              f"n {a.n}, per channel, evaluation seeds {a.eval_seeds}", flush=True)
        plain = None
        if a.plain or a.grids:
            plain = (QuantConfig("ot", 2), *quantize_model(model, QuantConfig("ot", 2)))
            print(f"  ot 2-bit (plain): {plain[2].bits_per_weight:.3f} bits/weight; "
                  f"{fmt(evaluate(model, plain[1], a.eval_seeds, a.n, classifier), a.tail)}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            # the first budget starts from an empty cache (the time a user waits) unless --cache says otherwise
            os.environ["FMQ_CACHE"] = a.cache or tmp
            for i, budget in enumerate(a.budgets):
                cfg = QuantConfig(a.method, budget, a.granularity,
                                  calibration=cal(a.steps, a.cal_seeds[0]))
                t0 = time.perf_counter()
                q, rep = quantize_model(model, cfg)
                total = time.perf_counter() - t0
                stages = ", ".join(f"{k} {v:.1f}" for k, v in rep.calibration.seconds.items())
                ref = rep.calibration.refine
                print(f"  {cfg.label}: {rep.bits_per_weight:.3f} bits/weight (codebooks and widths included); "
                      f"{total:.1f} s = {total / unit:.1f} FP32 generations ({stages})"
                      + ("" if i == 0 else ", states and sensitivity cached")
                      + (f"; held-out velocity MSE {ref.start_loss:.3g} -> {ref.end_loss:.3g}" if ref else "")
                      + (" (runs: " + ", ".join(f"{v:.3g}" for v in ref.run_losses) + ")"
                         if ref and len(ref.run_losses) > 1 else ""),
                      flush=True)
                print(f"    SSIM {fmt(evaluate(model, q, a.eval_seeds, a.n, classifier), a.tail)}", flush=True)
                if i == 0 and a.grids:
                    write_grid(name, model, [plain, (cfg, q, rep)])
            for steps in a.curve:
                cfg = QuantConfig(a.method, a.budgets[0], a.granularity,
                                  calibration=cal(steps, a.cal_seeds[0]))
                t0 = time.perf_counter()
                q, rep = quantize_model(model, cfg)
                dt = time.perf_counter() - t0
                ev = evaluate(model, q, a.eval_seeds[:1], a.n, classifier)
                print(f"  curve {cfg.label}, {steps} refinement steps: {dt:.1f} s after the cached stages "
                      f"({dt / unit:.1f} FP32 generations), SSIM {fmt(ev)}", flush=True)
            for seed in a.cal_seeds[1:]:
                cfg = QuantConfig(a.method, a.budgets[0], a.granularity,
                                  calibration=cal(a.steps, seed))
                q, rep = quantize_model(model, cfg)
                print(f"  calibration draw {seed}: {cfg.label}, {rep.bits_per_weight:.3f} bits/weight; "
                      f"SSIM {fmt(evaluate(model, q, a.eval_seeds, a.n, classifier), a.tail)}", flush=True)


if __name__ == "__main__":
    main()
