"""Speed and W2 of the quantizers (prints figures; not a test).

    python benchmarks/bench_quantizers.py [--part model|solvers|all] [--bits 2 4 8] [--ks 4 16 64 256]
                                          [--methods ot uniform ...] [--checkpoint PATH]

Prints a machine line, then
* model: seconds to quantize the MNIST-sized model (``checkpoints/mnist.safetensors`` if present, else a
  fresh model of the same size) per method, bits and granularity, and the model's W2 (weight-count
  weighted RMS of the layers' W2) and MSE per method;
* solvers: one tensor of 10^6 Student-t(3) weights (seed 0), exact ``ot`` against the exact 1-D k-means
  solvers of the PyPI packages ``kmeans1d`` and ``ckmeans`` (install them for this benchmark only:
  ``pip install kmeans1d ckmeans``), seconds and W2 side by side at each k. ``ckmeans`` accepts k <= 255,
  so where k = 256 its figure is for k = 255 (marked). A run under 2 s is repeated: best of 3.
Targets (issue 3): exact ``ot`` faster than both solvers at every k; the whole model in under 1 s.
Torch runs on one thread (``torch.set_num_threads(1)``): on a shared machine more threads only wait.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmq.quant import METHODS  # noqa: E402
from fmq.quant.ot import kmeans_1d  # noqa: E402
from fmq.quantize import QuantConfig, quantize_model  # noqa: E402

GRANULARITIES = ("tensor", "channel", "group:128")


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {cpu}; {os.cpu_count()} cores, load {load}; python {platform.python_version()}, "
            f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} thread)")


def load_model(path: str | None):
    path = Path(path) if path else Path(__file__).resolve().parent.parent / "checkpoints" / "mnist.safetensors"
    if path.is_file():
        import hashlib

        from fmq.checkpoint import load_checkpoint

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return load_checkpoint(path).model, f"{path.name} (sha256 {digest})"
    from fmq.models import ModelConfig, UNet

    torch.manual_seed(0)
    return UNet(ModelConfig()).eval(), "fresh MNIST-sized UNet"


def bench_model(bits_list: list[int], methods: list[str], checkpoint: str | None) -> None:
    model, name = load_model(checkpoint)
    n = sum(p.numel() for p in model.parameters())
    print(f"\nmodel: {name}, {n:,} parameters; scope weights (Conv/Linear); seconds to quantize_model")
    header = f"{'method':14s} {'bits':>4s} " + " ".join(f"{g:>10s}" for g in GRANULARITIES)
    print(header + f" {'W2 (channel)':>13s} {'MSE (channel)':>14s}")
    for method in methods:
        for bits in bits_list:
            if method == "pwl" and bits < 2:
                continue
            secs, w2, mse = [], float("nan"), float("nan")
            for gran in GRANULARITIES:
                t0 = time.perf_counter()
                _, report = quantize_model(model, QuantConfig(method, bits, gran))
                secs.append(time.perf_counter() - t0)
                if gran == "channel":
                    w2, mse = report.w2, report.mse
            print(f"{method:14s} {bits:4d} " + " ".join(f"{s:10.2f}" for s in secs) + f" {w2:13.4g} {mse:14.4g}",
                  flush=True)
            print(f"machine-readable: model method={method} bits={bits} "
                  + " ".join(f"{g}={s:.3f}" for g, s in zip(GRANULARITIES, secs)) + f" w2={w2:.6g} mse={mse:.6g}")


def _timed(fn):
    """(result, seconds): the best of 3 runs when one run takes under 2 s, else one run (same rule for
    every solver, so the first run's page faults do not decide a close race)."""
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    if best < 2.0:
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return out, best


def _w2_sorted(xs: np.ndarray, qs: np.ndarray) -> float:
    return float(np.sqrt(np.mean((xs - qs) ** 2)))


def bench_solvers(ks: list[int]) -> None:
    x = np.random.default_rng(0).standard_t(3, size=10**6).astype(np.float32).astype(np.float64)
    xs = np.sort(x)
    try:
        import kmeans1d
    except ImportError:
        kmeans1d = None
        print("kmeans1d is not installed (pip install kmeans1d): its column is skipped")
    try:
        import ckmeans
    except ImportError:
        ckmeans = None
        print("ckmeans is not installed (pip install ckmeans): its column is skipped")
    print("\n10^6 Student-t(3) weights: seconds (W2) of exact 1-D k-means; float64 input, unsorted")
    print(f"{'k':>4s} {'fmq ot':>22s} {'kmeans1d':>22s} {'ckmeans':>30s}")
    for k in ks:
        cells, line = [], [f"k={k}"]
        (levels, idx), t = _timed(lambda k=k: kmeans_1d(x[None], k))
        w2 = _w2_sorted(xs, np.sort(levels[0, idx[0]]))
        cells.append(f"{t:8.2f} s ({w2:.6g})")
        line.append(f"ot={t:.3f} ot_w2={w2:.9g}")
        if kmeans1d is not None:
            (labels, centroids), t = _timed(lambda k=k: kmeans1d.cluster(x, k))
            w2 = _w2_sorted(xs, np.sort(np.asarray(centroids)[np.asarray(labels)]))
            cells.append(f"{t:8.2f} s ({w2:.6g})")
            line.append(f"kmeans1d={t:.3f} kmeans1d_w2={w2:.9g}")
        else:
            cells.append("not installed")
        if ckmeans is not None:
            kc = min(k, 255)  # ckmeans refuses k > 255: run it at 255 and say so
            clusters, t = _timed(lambda kc=kc: ckmeans.ckmeans(x, kc))
            w2 = _w2_sorted(xs, np.concatenate([np.full(len(c), np.mean(c)) for c in clusters]))
            cells.append(f"{t:8.2f} s ({w2:.6g})" + ("" if kc == k else f" at k={kc}"))
            line.append(f"ckmeans={t:.3f} ckmeans_w2={w2:.9g} ckmeans_k={kc}")
        else:
            cells.append("not installed")
        print(f"{k:4d} " + " ".join(f"{c:>22s}" for c in cells[:2]) + f" {cells[2]:>30s}", flush=True)
        print("machine-readable: solvers " + " ".join(line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("model", "solvers", "all"), default="all")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 16, 64, 256])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--checkpoint", help="model to quantize (default checkpoints/mnist.safetensors)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_line())
    if a.part in ("model", "all"):
        bench_model(a.bits, a.methods, a.checkpoint)
    if a.part in ("solvers", "all"):
        bench_solvers(a.ks)


if __name__ == "__main__":
    main()
