"""Where along the flow a quantized model's velocity is wrong: MSE against FP32 on calibration states, by time.

    python benchmarks/velocity_error_by_time.py [--dataset mnist] [--points ot:4 ot:3 ot-cal:4 ot-mixed:2]

For each (method, bits) the mean squared velocity error against the FP32 model on 1 024 calibration states
(FP32 Heun trajectories from calibration noise, as the calibrated methods use; never an evaluation seed),
overall, for labelled and null-label states, and per quarter of t. The refinement of the calibrated methods
minimises the overall figure, every t weighted alike; this shows where that error sits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from fmq.calibrate.cache import cached_states  # noqa: E402
from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.methods import method_spec  # noqa: E402
from fmq.qconfig import CalibConfig, QuantConfig  # noqa: E402
from fmq.quantize import quantize_model  # noqa: E402
from fmq.zoo import checkpoint_dir  # noqa: E402

QUARTERS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--points", nargs="+", default=["ot:4", "ot:3", "ot:2", "ot-mixed:2"], help="method:bits")
    ap.add_argument("--states", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(machine_line(), flush=True)
    model = load_checkpoint(checkpoint_dir() / f"{a.dataset}.safetensors").model
    cal = cached_states(model, CalibConfig())
    pick = torch.randperm(len(cal), generator=torch.Generator().manual_seed(1))[: a.states]
    x, t, y, v = cal.batch(pick)
    null = torch.zeros_like(t, dtype=torch.bool) if y is None else y == model.config.null_label
    print(f"{a.dataset}: velocity MSE against FP32 on {len(x)} calibration states "
          f"({int(null.sum())} with the null label); t quarters {[q[0] for q in QUARTERS]}")
    for point in a.points:
        method, _, bits = point.partition(":")
        spec = method_spec(method)
        b = float(bits) if spec.mixed else int(bits)
        q, _ = quantize_model(model, QuantConfig(method, b, calibration=CalibConfig() if spec.calibrated else None))
        with torch.no_grad():
            e = (q(x, t, y) - v).pow(2).flatten(1).mean(1)  # (S,) per state
        quarters = " / ".join(f"{float(e[(t >= lo) & (t < hi)].mean()):.4f}" for lo, hi in QUARTERS)
        labelled = f"labelled {float(e[~null].mean()):.4f}, null {float(e[null].mean()):.4f}; " if null.any() else ""
        print(f"  {method} {bits}: all {float(e.mean()):.4f}; {labelled}by quarter of t {quarters}", flush=True)


if __name__ == "__main__":
    main()
