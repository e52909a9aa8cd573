"""Why the paper's protocol and ours disagree: the paper's 2-bit SSIM/PSNR with one ingredient changed at a time.

    python benchmarks/velocity_protocol_parts.py [--dataset mnist] [--methods ot-equal-mass,ot] [--bits 2]

Starting from the paper's ``PSNR-SSIM.py`` exactly (raw velocity at t = 0 on the first 64 test images scaled to
[0, 1], every float tensor quantized per channel, 11×11 zero-padded SSIM, peak-1 PSNR), each line changes one
thing: the images in [-1, 1] (what the model was trained on), only Conv/Linear weights quantized, Gaussian noise
as the input at t = 0 (what the sampler feeds it there), SSIM without the padded zeros counted, and the velocity
at t = 0.5 on the linear path between noise and the test images. The generation protocol's figure, from the
committed ``results/<dataset>.csv``, closes the table. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from fmq.checkpoint import load_checkpoint  # noqa: E402
from fmq.metrics import PAPER_C1, PAPER_C2, paper_psnr, paper_ssim  # noqa: E402
from fmq.quantize import QuantConfig, quantize_model  # noqa: E402
from fmq.results import read_results, results_dir  # noqa: E402
from fmq.sampling import make_noise  # noqa: E402
from fmq.zoo import checkpoint_dir, test_images  # noqa: E402


def ssim_unpadded(ref: torch.Tensor, test: torch.Tensor) -> float:
    """The paper's SSIM, but border windows average only the pixels inside the image."""
    x, y = ref.double(), test.double()

    def avg(z):
        return F.avg_pool2d(z, 11, stride=1, padding=5, count_include_pad=False)

    mx, my = avg(x), avg(y)
    vx, vy, cxy = avg(x * x) - mx**2, avg(y * y) - my**2, avg(x * y) - mx * my
    return float((((2 * mx * my + PAPER_C1) * (2 * cxy + PAPER_C2))
                  / ((mx**2 + my**2 + PAPER_C1) * (vx + vy + PAPER_C2))).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--methods", default="ot-equal-mass,ot")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine_line())
    model = load_checkpoint(checkpoint_dir() / f"{a.dataset}.safetensors").model.eval()
    images = test_images(a.dataset)
    if images is None:
        raise SystemExit(f"no test images for {a.dataset} (../shared/data/{a.dataset}.npz)")
    real01 = (images[: a.n] + 1) / 2
    noise = make_noise(a.n, tuple(real01.shape[1:]), 0)
    t0, half = torch.zeros(a.n), torch.full((a.n,), 0.5)
    cases = [  # (label, input, t, scope, ssim function)
        ("the paper's protocol exactly", real01, t0, "all", paper_ssim),
        ("images in [-1, 1] instead of [0, 1]", images[: a.n], t0, "all", paper_ssim),
        ("only Conv/Linear weights quantized", real01, t0, "weights", paper_ssim),
        ("Gaussian noise as the t = 0 input", noise, t0, "all", paper_ssim),
        ("velocity at t = 0.5 between noise and image", 0.5 * noise + 0.5 * images[: a.n], half, "all", paper_ssim),
        ("SSIM without the padded zeros", real01, t0, "all", ssim_unpadded),
    ]
    gen = {}
    path = results_dir() / f"{a.dataset}.csv"
    if path.is_file():
        gen = {(r["method"], r["bits"]): r for r in read_results(path) if r["protocol"] == "generation"}
    methods = a.methods.split(",")
    print(f"{a.dataset}, {a.bits} bits, per channel; SSIM / PSNR dB of the quantized network against FP32")
    print(f"{'':46}" + "".join(f"{m:>22}" for m in methods))
    qmodels = {(m, s): quantize_model(model, QuantConfig(m, a.bits, "channel", s))[0].eval()
               for m in methods for s in ("all", "weights")}
    with torch.no_grad():
        for label, x, t, scope, ssim_fn in cases:
            ref = model(x, t)
            cells = []
            for m in methods:
                v = qmodels[(m, scope)](x, t)
                cells.append(f"{ssim_fn(ref, v):.3f} / {paper_psnr(ref, v):5.1f}")
            print(f"{label:46}" + "".join(f"{c:>22}" for c in cells))
    cells = [f"{gen[(m, a.bits)]['ssim']:.3f} / {gen[(m, a.bits)]['psnr']:5.1f}" if (m, a.bits) in gen else "—"
             for m in methods]
    print(f"{'generations from the same noise (results CSV)':46}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
