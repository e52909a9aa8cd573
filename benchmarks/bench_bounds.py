"""The degradation bound against the measured deviation: the figures quoted in docs/theory.md.

Prints three tables: RMS error per bit width of every quantizer on 4096 Gaussian weights (the scaling in b),
bound vs measured on small random MLPs (where the rigorous bounds are finite), and bound vs measured on a
shipped checkpoint for every method and bit width. Usage:

    python benchmarks/bench_bounds.py [--checkpoint checkpoints/mnist.safetensors] [--steps 10] [--samples 4]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine_line  # noqa: E402

from fmq.bounds import degradation_report, fp32_sensitivity  # noqa: E402
from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.quant import METHODS  # noqa: E402
from fmq.quantize import QuantConfig, quantize_model  # noqa: E402
from fmq.sampling import make_noise  # noqa: E402
from tests.test_bounds import mlp_field, report, round_weights  # noqa: E402


def gaussian_table(bits: list[int]) -> None:
    w = torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))
    print(f"\nRMS error / sigma, per tensor, 4096 Gaussian weights; bits {bits}")
    law = [math.sqrt(math.sqrt(3) * math.pi / 2) * 2.0**-b for b in bits]
    print(f"  {'Panter-Dite law':16s}" + "".join(f"{x:10.3g}" for x in law))
    for name, fn in METHODS.items():
        row = [float((fn(w, b, "tensor").dequantize() - w).pow(2).mean().sqrt()) if b > 1 or "pwl" not in name
               else math.nan for b in bits]
        print(f"  {name:16s}" + "".join(f"{x:10.3g}" for x in row))


def mlp_table() -> None:
    print("\nrandom MLP (D=16, tanh, 24 hidden), 8 samples, 8 steps: max deviation and bounds")
    print(f"  {'solver':8s}{'bits':>5s}{'measured':>11s}{'post':>11s}{'post est':>11s}{'prior':>11s}")
    for solver in ("euler", "heun", "rk4"):
        for b in (1, 2, 4, 8):
            f = mlp_field(b)
            r = report(f, round_weights(f, b), solver, steps=8)
            print(f"  {solver:8s}{b:5d}{r.deviation.max():11.3g}{r.bound_a_posteriori.max():11.3g}"
                  f"{r.bound_a_posteriori_estimate.max():11.3g}{r.bound_a_priori:11.3g}")


def checkpoint_table(path: str, steps: int, samples: int, bits: list[int], solver: str, guidance: float) -> None:
    ck = load_checkpoint(path)
    model, cfg = ck.model.eval(), ck.config
    noise = make_noise(samples, (cfg.in_channels, cfg.image_size, cfg.image_size), 0)
    y = torch.arange(samples) % cfg.num_classes if cfg.conditional else None
    t0 = time.perf_counter()
    sens = fp32_sensitivity(model, noise, y, solver, steps, guidance, power_iters=3)
    print(f"\n{path} ({ck.meta.get('steps', '?')} training steps), {solver} {steps} steps, guidance {guidance}, "
          f"{samples} samples; FP32 sensitivity {time.perf_counter() - t0:.1f} s; "
          f"local L per step {[round(x, 1) for x in sens.lip_local.max(0).values.tolist()]}")
    print(f"  {'method':15s}{'bits':>5s}{'measured':>10s}{'post est':>10s}{'ratio':>7s}{'noise model':>12s}"
          f"{'ratio':>7s}{'prior est':>11s}{'eps max':>9s}{'rigorous':>10s}{'sec':>6s}")
    for method in METHODS:
        for b in bits:
            t0 = time.perf_counter()
            try:
                q, _ = quantize_model(model, QuantConfig(method=method, bits=b))
            except ValueError as e:
                print(f"  {method:15s}{b:5d}  ({e})")
                continue
            s = degradation_report(model, q, noise, y, solver, steps, guidance, sensitivity=sens).summary()
            dev = s["deviation_max"]
            print(f"  {method:15s}{b:5d}{dev:10.3g}{s['bound_a_posteriori_estimate']:10.3g}"
                  f"{s['bound_a_posteriori_estimate'] / dev:7.1f}{s['bound_noise_model']:12.3g}"
                  f"{s['bound_noise_model'] / dev:7.1f}{s['bound_a_priori_estimate']:11.3g}"
                  f"{s['eps_max']:9.3g}{s['bound_a_posteriori']:10.3g}{time.perf_counter() - t0:6.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "mnist.safetensors"))
    ap.add_argument("--solver", default="heun")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--bits", default="2,3,4,6,8")
    ap.add_argument("--checkpoint-only", action="store_true", help="skip the Gaussian and MLP tables")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bits = [int(b) for b in args.bits.split(",")]
    print(machine_line())
    if not args.checkpoint_only:
        gaussian_table([2, 4, 6, 8])
        mlp_table()
    checkpoint_table(args.checkpoint, args.steps, args.samples, bits, args.solver, args.guidance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
