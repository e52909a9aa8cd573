"""Time of a full sweep against the bare network evaluations it needs (prints figures; not a test).

    python benchmarks/bench_sweep.py [--dataset mnist] [--n 64] [--repeats 3]

The sweep: all five methods, bits 1–8, ``--n`` samples, Heun 20 steps, per-channel, generation protocol,
without cache, with what ``python -m fmq sweep`` measures against (512 real test images for the latent
stability, the classifier for class accuracy). The bare evaluations: the network passes that sweep needs,
run on the FP32 network and nothing else: for the FP32 run and each point, the ODE's evaluations on a batch
of ``--n``, one pass over the test images (latent stability) and the classifier on the samples. Both are
measured in one run, taking turns, and the medians and their ratio are printed. Target (issue 4): ratio
within 1.3 and the sweep under 3 min.
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

from fmq.sampling import make_noise  # noqa: E402
from fmq.sweep import SweepConfig, iter_sweep  # noqa: E402
from fmq.zoo import checkpoint_dir, sweep_inputs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from fmq.checkpoint import load_checkpoint

    print(machine_line())
    model = load_checkpoint(checkpoint_dir() / f"{a.dataset}.safetensors").model
    images, classifier = sweep_inputs(a.dataset, model.config, n=a.n)
    cfg = SweepConfig(n=a.n)
    points = len(cfg.methods) * len(cfg.bits)
    nfe = 2 * cfg.steps  # Heun
    c = model.config
    x = make_noise(a.n, (c.in_channels, c.image_size, c.image_size), 0)
    y = torch.arange(a.n) % c.num_classes if c.conditional else None

    def bare() -> None:
        with torch.no_grad():
            for _ in range(points + 1):
                for i in range(nfe):
                    model(x, torch.full((a.n,), i / nfe), y)
                if images is not None:
                    model(images, torch.zeros(len(images)))
                if classifier is not None and y is not None:
                    classifier(x)

    def sweep() -> None:
        for _ in iter_sweep(model, cfg, images, classifier, use_cache=False):
            pass

    t_bare, t_sweep = [], []
    for _ in range(a.repeats):
        for fn, acc in ((bare, t_bare), (sweep, t_sweep)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    mb, ms = statistics.median(t_bare), statistics.median(t_sweep)
    print(f"{a.dataset}: {points} points ({len(cfg.methods)} methods x bits 1-8), n={a.n}, heun {cfg.steps} steps, "
          f"{(points + 1) * nfe} network evaluations of batch {a.n}"
          + (f", {points + 1} of the {len(images)} test images" if images is not None else "")
          + (", the classifier on each point's samples" if classifier is not None else ""))
    print(f"bare network evaluations: median {mb:.1f} s over {a.repeats} runs")
    print(f"full sweep:               median {ms:.1f} s over {a.repeats} runs")
    print(f"ratio sweep / bare: {ms / mb:.2f}")


if __name__ == "__main__":
    main()
