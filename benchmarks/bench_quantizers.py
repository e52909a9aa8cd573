"""Speed and W2 of the quantizers (prints figures; not a test).

    python benchmarks/bench_quantizers.py [--part model|threads|search|solvers|compile|all] [--bits 2 4 8]
                                          [--ks 4 16 64 256] [--methods ot uniform ...] [--repeats 3]
                                          [--checkpoint PATH]

Prints a machine line, then
* model: seconds to quantize the MNIST-sized model (``checkpoints/mnist.safetensors`` if present, else a
  fresh model of the same size) per method, bits and granularity (median of ``--repeats`` runs), and the
  model's W2 (weight-count weighted RMS of the layers' W2) and MSE per method;
* threads: ``ot`` and ``pwl`` at 8 bits, seconds with the batches solved in one thread and in two
  (``fmq.quant.common._WORKERS``), taking turns;
* search: the exact solvers inside ``ot`` on the MNIST model's tensors and channels: the Lagrangian
  search (``solver="lagrange"``) against the layered DP (``"halves"``, what ``auto`` ran before) at
  k = 4 .. 256, taking turns, with the search's mean number of penalised solves per group;
* solvers: one tensor of 10^6 Student-t(3) weights (seed 0), exact ``ot`` against the exact 1-D k-means
  solvers of the PyPI packages ``kmeans1d`` and ``ckmeans`` (install them for this benchmark only:
  ``pip install kmeans1d ckmeans``): seconds (median of ``--repeats`` runs, the solvers taking turns, so
  all three see the same load; a solver whose first run takes over 20 s runs once), the ratio to
  ``ot``, and the SSE, which must agree: all three are exact. ``ckmeans`` accepts k <= 255, so where
  k = 256 its figure is for k = 255 (marked);
* compile: the first ``ot`` call in a fresh process, with an empty numba cache (what a clean checkout
  pays once: the compiled DP kernels are then cached in ``fmq/quant/__pycache__``) and with that cache.
Targets (issue 3): exact ``ot`` faster than both solvers at every k; the whole model in under 1 s.
Torch runs on one thread (``torch.set_num_threads(1)``); the quantizers' batches run in two threads
unless the ``threads`` part says otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_line  # noqa: E402

from fmq.quant import METHODS  # noqa: E402
from fmq.quant.ot import kmeans_1d  # noqa: E402
from fmq.quantize import QuantConfig, quantize_model  # noqa: E402

GRANULARITIES = ("tensor", "channel", "group:128")
_ONCE = 20.0  # a run longer than this many seconds is not repeated


def load_model(path: str | None):
    path = Path(path) if path else ROOT / "checkpoints" / "mnist.safetensors"
    if path.is_file():
        import hashlib

        from fmq.checkpoint import load_checkpoint

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return load_checkpoint(path).model, f"{path.name} (sha256 {digest})"
    from fmq.models import ModelConfig, UNet

    torch.manual_seed(0)
    return UNet(ModelConfig()).eval(), "fresh MNIST-sized UNet"


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_model(bits_list: list[int], methods: list[str], checkpoint: str | None, repeats: int) -> None:
    model, name = load_model(checkpoint)
    n = sum(p.numel() for p in model.parameters())
    quantize_model(model, QuantConfig("ot", 2, "channel"))  # load the compiled kernels before timing
    print(f"\nmodel: {name}, {n:,} parameters; scope weights (Conv/Linear); seconds to quantize_model, "
          f"median of {repeats}")
    header = f"{'method':14s} {'bits':>4s} " + " ".join(f"{g:>10s}" for g in GRANULARITIES)
    print(header + f" {'W2 (channel)':>13s} {'MSE (channel)':>14s}")
    for method in methods:
        for bits in bits_list:
            if method == "pwl" and bits < 2:
                continue
            secs, w2, mse = [], float("nan"), float("nan")
            for gran in GRANULARITIES:
                cfg = QuantConfig(method, bits, gran)
                secs.append(statistics.median(_seconds(lambda cfg=cfg: quantize_model(model, cfg))
                                              for _ in range(repeats)))
                if gran == "channel":
                    _, report = quantize_model(model, cfg)
                    w2, mse = report.w2, report.mse
            print(f"{method:14s} {bits:4d} " + " ".join(f"{s:10.2f}" for s in secs) + f" {w2:13.4g} {mse:14.4g}",
                  flush=True)
            print(f"machine-readable: model method={method} bits={bits} "
                  + " ".join(f"{g}={s:.3f}" for g, s in zip(GRANULARITIES, secs)) + f" w2={w2:.6g} mse={mse:.6g}")


def bench_threads(checkpoint: str | None, repeats: int) -> None:
    import fmq.quant.common as common

    model, name = load_model(checkpoint)
    print(f"\nthreads: {name}; seconds to quantize_model at 8 bits with 1 and 2 worker threads, median of "
          f"{repeats}, taking turns")
    saved = common._WORKERS
    try:
        for method in ("ot", "pwl"):
            for gran in ("tensor", "channel"):
                cfg = QuantConfig(method, 8, gran)
                quantize_model(model, cfg)
                times: dict[int, list[float]] = {1: [], 2: []}
                for _ in range(repeats):
                    for workers in times:
                        common._WORKERS = workers
                        times[workers].append(_seconds(lambda cfg=cfg: quantize_model(model, cfg)))
                med = {w: statistics.median(v) for w, v in times.items()}
                print(f"{method:4s} {gran:8s} 1 thread {med[1]:.3f} s, 2 threads {med[2]:.3f} s, "
                      f"ratio {med[1] / med[2]:.2f}")
                print(f"machine-readable: threads method={method} granularity={gran} one={med[1]:.3f} "
                      f"two={med[2]:.3f}")
    finally:
        common._WORKERS = saved


def bench_search(checkpoint: str | None, repeats: int, ks: list[int]) -> None:
    from fmq.quant.dp_lagrange import lagrange_groups
    from fmq.quant.kmeans1d import _LAGRANGE_ITERS, kmeans_boundaries, prefix_sums

    model, name = load_model(checkpoint)
    ws = [p.detach().double().numpy() for p in model.parameters() if p.ndim > 1]
    print(f"\nsearch: {name}, {len(ws)} weight tensors; seconds of the exact solver over all of them (sorted "
          f"groups given), median of {repeats}, taking turns; solves: mean penalised DPs per group")
    for gran in ("tensor", "channel"):
        groups = [np.sort(w.reshape(1, -1) if gran == "tensor" else w.reshape(len(w), -1), 1) for w in ws]
        for k in ks:
            rows = [g for g in groups if g.shape[1] > k]
            times: dict[str, list[float]] = {"lagrange": [], "halves": []}
            for _ in range(repeats):
                for solver in times:
                    t0 = time.perf_counter()
                    for g in rows:
                        kmeans_boundaries(g, np.ones_like(g), k, solver)
                    times[solver].append(time.perf_counter() - t0)
            solves, solved = [], 0
            for g in rows:
                n = np.zeros(len(g), dtype=np.int64)
                ok = np.zeros(len(g), dtype=bool)
                lagrange_groups(*prefix_sums(g, np.ones_like(g)), k, np.zeros((len(g), k + 1), dtype=np.int64), ok,
                                _LAGRANGE_ITERS, n)
                solves += n[n > 0].tolist()
                solved += int(ok.sum())
            med = {s: statistics.median(v) for s, v in times.items()}
            print(f"{gran:8s} k={k:3d}: lagrange {med['lagrange']:.3f} s, halves {med['halves']:.3f} s, "
                  f"ratio {med['halves'] / med['lagrange']:.2f}; {solved}/{sum(len(g) for g in rows)} groups "
                  f"certified, {np.mean(solves) if solves else float('nan'):.2f} solves per group")
            print(f"machine-readable: search granularity={gran} k={k} lagrange={med['lagrange']:.3f} "
                  f"halves={med['halves']:.3f} certified={solved}")


def _sse(x: np.ndarray, q: np.ndarray) -> float:
    return float(((x - q) ** 2).sum())


def bench_solvers(ks: list[int], repeats: int) -> None:
    x = np.random.default_rng(0).standard_t(3, size=10**6).astype(np.float32).astype(np.float64)
    solvers = {"ot": lambda k: _ot(x, k)}
    try:
        import kmeans1d

        solvers["kmeans1d"] = lambda k: _kmeans1d(kmeans1d, x, k)
    except ImportError:
        print("kmeans1d is not installed (pip install kmeans1d): its column is skipped")
    try:
        import ckmeans

        solvers["ckmeans"] = lambda k: _ckmeans(ckmeans, x, min(k, 255))
    except ImportError:
        print("ckmeans is not installed (pip install ckmeans): its column is skipped")
    _ot(x[:1000], 4)  # load the compiled kernels before timing
    print(f"\n10^6 Student-t(3) weights (float32 values), unsorted: seconds of exact 1-D k-means, median of "
          f"{repeats} (one run if over {_ONCE:.0f} s), ratio to ot, and SSE")
    print(f"{'k':>4s} " + " ".join(f"{s:>26s}" for s in solvers))
    for k in ks:
        times: dict[str, list[float]] = {s: [] for s in solvers}
        sse: dict[str, float] = {}
        for r in range(repeats):
            for s, fn in solvers.items():  # taking turns: every solver sees the same load
                if r and times[s][0] > _ONCE:
                    continue
                t0 = time.perf_counter()
                q = fn(k)
                times[s].append(time.perf_counter() - t0)
                sse[s] = _sse(x, q)
        med = {s: statistics.median(v) for s, v in times.items()}
        cells = []
        for s in solvers:
            at = " k=255" if s == "ckmeans" and k > 255 else ""
            cells.append(f"{med[s]:7.2f} s ({med[s] / med['ot']:5.1f}x) {sse[s]:.7g}{at}")
        print(f"{k:4d} " + " ".join(f"{c:>26s}" for c in cells), flush=True)
        print(f"machine-readable: solvers k={k} "
              + " ".join(f"{s}={med[s]:.3f} {s}_runs={len(times[s])} {s}_sse={sse[s]:.10g}" for s in solvers))


def _ot(x: np.ndarray, k: int) -> np.ndarray:
    levels, idx = kmeans_1d(x[None], k)
    return levels[0, idx[0]]


def _kmeans1d(mod, x: np.ndarray, k: int) -> np.ndarray:
    labels, centroids = mod.cluster(x, k)
    return np.asarray(centroids)[np.asarray(labels)]


def _ckmeans(mod, x: np.ndarray, k: int) -> np.ndarray:
    clusters = mod.ckmeans(x, k)  # the values, grouped by cluster and sorted: compare sorted
    q = np.concatenate([np.full(len(c), np.mean(c)) for c in clusters])
    out = np.empty_like(x)
    out[np.argsort(x, kind="stable")] = q
    return out


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from fmq.quant import kmeans_1d
t1 = time.perf_counter()
rng = np.random.default_rng(0)
kmeans_1d(rng.normal(size=(64, 576)), 256)      # Lagrangian search
kmeans_1d(rng.normal(size=(4, 128)), 4)         # plain DP
kmeans_1d(rng.normal(size=(1, 200000)), 4)      # bin-bound windows
kmeans_1d(np.arange(40.0)[None], 16)            # no λ gives 16 clusters of a grid: the layered DP
t2 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f}")
"""


def bench_compile() -> None:
    """The first ``ot`` calls of a fresh process (all four solvers), with an empty and a filled cache."""
    print("\nfirst ot calls in a fresh process (import fmq.quant; then one call per solver):")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        for label in ("empty numba cache (compiles)", "cache filled by the run above"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            print(f"  {label:32s} import {out[0]} s, first calls {out[1]} s")
            print(f"machine-readable: compile {label.split()[0]} import={out[0]} first_calls={out[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("model", "threads", "search", "solvers", "compile", "all"), default="all")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 16, 64, 256])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is printed")
    ap.add_argument("--checkpoint", help="model to quantize (default checkpoints/mnist.safetensors)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_line())
    if a.part in ("compile", "all"):
        bench_compile()
    if a.part in ("model", "all"):
        bench_model(a.bits, a.methods, a.checkpoint, a.repeats)
    if a.part in ("threads", "all"):
        bench_threads(a.checkpoint, a.repeats)
    if a.part in ("search", "all"):
        bench_search(a.checkpoint, a.repeats, [4, 8, 16, 64, 256])
    if a.part in ("solvers", "all"):
        bench_solvers(a.ks, a.repeats)
    print(machine_line().replace("machine:", "machine at the end:"))


if __name__ == "__main__":
    main()
