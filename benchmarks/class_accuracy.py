"""Class accuracy of the shipped FP32 conditional models' generations (prints figures; not a test).

    python benchmarks/class_accuracy.py [--datasets mnist,fashion_mnist] [--n 1000] [--guidance 1,2]

For each data set with a shipped classifier: ``--n`` generations (every class in turn, Heun 20 steps, seed 0),
the share the classifier assigns to the class asked for, with a 95 % Wilson interval, per guidance scale,
and the classifier's own test accuracy from its metadata. The sweeps use 64 samples at guidance 1; this says
how far that figure is from the model's real rate. Targets (issue 4): MNIST >= 95 %, FashionMNIST >= 85 %.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.classifier import load_classifier, predict  # noqa: E402
from fmq.sampling import make_noise, sample  # noqa: E402
from fmq.zoo import checkpoint_dir, labels_for  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion_mnist")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--guidance", default="1,2", help="comma-separated guidance scales")
    ap.add_argument("--batch", type=int, default=250)
    a = ap.parse_args()
    print(machine_line())
    for name in a.datasets.split(","):
        model = load_checkpoint(checkpoint_dir() / f"{name}.safetensors").model
        clf, meta = load_classifier(checkpoint_dir() / f"{name}_classifier.safetensors")
        c = model.config
        print(f"{name}: classifier test accuracy {meta.get('test_accuracy', float('nan')):.4f}")
        noise = make_noise(a.n, (c.in_channels, c.image_size, c.image_size), 0)
        labels = labels_for(c, a.n, None)  # every class in turn
        for g in (float(s) for s in a.guidance.split(",")):
            t0, hits = time.perf_counter(), 0
            for start in range(0, a.n, a.batch):
                x, y = noise[start:start + a.batch], labels[start:start + a.batch]
                with torch.no_grad():
                    images = sample(model, x, "heun", 20, y=y, guidance=g).images
                hits += int((predict(clf, images) == y).sum())
            lo, hi = wilson(hits, a.n)
            print(f"  guidance {g:g}: {hits}/{a.n} = {hits / a.n:.3f} classified as asked "
                  f"(95 % interval {lo:.3f}-{hi:.3f}); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
