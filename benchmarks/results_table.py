"""The README's comparison with the paper's claims, from the committed sweeps (prints Markdown).

    python benchmarks/results_table.py [results/*.csv]

For each data set: SSIM and PSNR at 2 bits per method under both protocols (ours: generations from the same
noise; the paper's: one velocity evaluation at t = 0 on real images), the paper's claim beside it, and how
far apart the methods are at 5 and 6 bits (largest minus smallest mean SSIM); then generation SSIM of
every method at 1-8 bits, the best at each width in bold.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmq.quant import BITS  # noqa: E402
from fmq.results import PAPER_CLAIMS, read_results  # noqa: E402

METHODS = ("ot", "ot-equal-mass", "uniform", "pwl", "log2")


def claim(dataset: str, method: str, metric: str) -> str:
    for c in PAPER_CLAIMS:
        if (c["dataset"], c["method"], c["bits"], c["metric"]) == (dataset, method, 2, metric):
            return f"{c['relation']} {c['value']:g}"
    return ""


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("results").glob("*.csv"))
    print("| data set | method | 2-bit SSIM (generation) | 2-bit SSIM (velocity, paper's protocol) | paper SSIM "
          "| 2-bit PSNR dB (generation) | PSNR (velocity) | paper PSNR | class acc. (FP32) |")
    print("|---|---|---|---|---|---|---|---|---|")
    spreads = []
    for path in paths:
        rows = read_results(path)
        if not rows:
            continue
        ds = rows[0]["dataset"]
        get = {(r["protocol"], r["method"], r["bits"]): r for r in rows}
        for m in METHODS:
            g, v = get.get(("generation", m, 2)), get.get(("velocity", m, 2))
            if g is None:
                continue
            acc = g["class_acc"]
            acc_txt = "" if acc != acc else f"{acc:.2f} ({g['fp32_class_acc']:.2f})"
            print(f"| {ds} | {m} | {g['ssim']:.3f} | {v['ssim']:.3f} | {claim(ds, m, 'ssim')} | {g['psnr']:.1f} | "
                  f"{v['psnr']:.1f} | {claim(ds, m, 'psnr')} | {acc_txt} |" if v else
                  f"| {ds} | {m} | {g['ssim']:.3f} | | {claim(ds, m, 'ssim')} | {g['psnr']:.1f} | | | {acc_txt} |")
        for b in (5, 6):
            vals = [get[("generation", m, b)]["ssim"] for m in METHODS if ("generation", m, b) in get]
            if vals:
                spreads.append(f"{ds} {b} bits: SSIM {min(vals):.3f}–{max(vals):.3f}")
    print()
    print("Spread of mean SSIM over the methods (generation protocol): " + "; ".join(spreads))
    print()
    print("| data set | method | " + " | ".join(f"{b} bits" for b in BITS) + " |")
    print("|---|---|" + "---|" * 8)
    for path in paths:
        rows = [r for r in read_results(path) if r["protocol"] == "generation"]
        if not rows:
            continue
        ds = rows[0]["dataset"]
        get = {(r["method"], r["bits"]): r["ssim"] for r in rows}
        measured = {k: v for k, v in get.items() if v == v}  # NaN rows: a width a method does not have
        best = {b: max((v for (_, bb), v in measured.items() if bb == b), default=None) for b in BITS}
        for m in METHODS:
            cells = []
            for b in BITS:
                v = measured.get((m, b))
                cells.append("" if v is None else f"**{v:.3f}**" if v == best[b] else f"{v:.3f}")
            print(f"| {ds} | {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
