"""The README's comparison with the paper's claims, from the committed sweeps (prints Markdown).

    python benchmarks/results_table.py [results/*.csv]

First each of the paper's claims beside what we measure: under its own protocol (``velocity``: the paper's
PSNR-SSIM.py formulas on one velocity evaluation at t = 0), with the paper's own quantizer and with the exact
``ot``, and on generations from the same noise (ours). Then, per data set, SSIM and PSNR at 2 bits of every
method under both protocols with the paper's latent statistics, the spread of the methods at 5 and 6 bits,
and the SSIM of every method at 1-8 bits under each protocol, the best at each width in bold; last, the
calibrated methods (generation protocol) beside plain ``ot`` at budgets of 1-4 bits per weight, with the bits
per weight each really used (codebooks and widths included) and its calibration time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmq.results import PAPER_CLAIMS, read_results, results_dir  # noqa: E402
from fmq.zoo import DATASETS  # noqa: E402

METHODS = ("ot", "ot-equal-mass", "uniform", "pwl", "log2", "pwl-paper", "log2-paper")
CALIBRATED = ("ot-mixed", "ot-mixed-cal", "ot-cal", "ot-gptq")
BUDGETS = (1, 1.5, 2, 3, 4)
FMQ_TWIN = {"ot-equal-mass": "ot", "pwl-paper": "pwl", "log2-paper": "log2", "uniform": "uniform"}  # fmq's own
# "≈ 0.8" counts as holding within ±0.1 (SSIM; the paper's claims give one decimal)
OPS = {"≈": lambda v, c: abs(v - c) <= 0.1, "<": lambda v, c: v < c, ">": lambda v, c: v > c}


def claim(dataset: str, method: str, metric: str) -> str:
    for c in PAPER_CLAIMS:
        if (c["dataset"], c["method"], c["bits"], c["metric"]) == (dataset, method, 2, metric):
            return f"{c['relation']} {c['value']:g}"
    return ""


def fmt(r: dict | None, metric: str) -> str:
    if r is None or r[metric] != r[metric]:
        return "—"
    return f"{r[metric]:.2f}" if metric == "ssim" else f"{r[metric]:.1f}"


def holds(r: dict | None, c: dict) -> str:
    if r is None or r[c["metric"]] != r[c["metric"]]:
        return "—"
    return "yes" if OPS[c["relation"]](r[c["metric"]], c["value"]) else "no"


def claims_table(data: dict[str, dict]) -> None:
    print("| data set | claim (2 bits) | velocity, paper's quantizer | holds | velocity, fmq's | "
          "generation, paper's quantizer | generation, fmq's | holds on generations |")
    print("|---|---|---|---|---|---|---|---|")
    for c in PAPER_CLAIMS:
        get = data.get(c["dataset"])
        if get is None:
            continue
        m, twin, k = c["method"], FMQ_TWIN[c["method"]], c["metric"]
        v, vt = get.get(("velocity", m, 2)), get.get(("velocity", twin, 2))
        g, gt = get.get(("generation", m, 2)), get.get(("generation", twin, 2))
        gen = g or gt  # generation rows: the paper's variant if it was swept, else fmq's
        print(f"| {c['dataset']} | {m} {k.upper()} {c['relation']} {c['value']:g} | {fmt(v, k)} | {holds(v, c)} | "
              f"{twin} {fmt(vt, k)} | {fmt(g, k)} | {twin} {fmt(gt, k)} | {holds(gen, c)} |")


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [results_dir() / f"{d}.csv" for d in sorted(DATASETS)
                                                 if (results_dir() / f"{d}.csv").is_file()]
    data = {}
    for path in paths:
        rows = read_results(path)
        if rows:
            data[rows[0]["dataset"]] = {(r["protocol"], r["method"], r["bits"]): r for r in rows}
    claims_table(data)
    print()
    print("| data set | method | 2-bit SSIM: generation | velocity (paper's formulas) | paper | 2-bit PSNR dB: "
          "generation | velocity | paper | latent mean_var / std_var / collapsed (FP32) | class acc. (FP32) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    spreads = []
    for ds, get in data.items():
        for m in METHODS:
            g, v = get.get(("generation", m, 2)), get.get(("velocity", m, 2))
            if g is None and v is None:
                continue
            acc = ("" if g is None or g["class_acc"] != g["class_acc"]
                   else f"{g['class_acc']:.2f} ({g['fp32_class_acc']:.2f})")
            lat = "—"
            if v is not None and v.get("latent_mean_var", float("nan")) == v.get("latent_mean_var"):
                lat = (f"{v['latent_mean_var']:.2f} / {v['latent_std_var']:.2f} / {v['latent_collapsed']} "
                       f"({v['fp32_latent_mean_var']:.2f} / {v['fp32_latent_std_var']:.2f} / "
                       f"{v['fp32_latent_collapsed']})")
            print(f"| {ds} | {m} | {fmt(g, 'ssim')} | {fmt(v, 'ssim')} | {claim(ds, m, 'ssim')} | {fmt(g, 'psnr')} | "
                  f"{fmt(v, 'psnr')} | {claim(ds, m, 'psnr')} | {lat} | {acc} |")
        for b in (5, 6):
            vals = [get[("generation", m, b)]["ssim"] for m in METHODS if ("generation", m, b) in get]
            if vals:
                spreads.append(f"{ds} {b} bits: SSIM {min(vals):.3f}–{max(vals):.3f}")
    print()
    print("Spread of mean SSIM over the methods (generation protocol): " + "; ".join(spreads))
    print()
    for protocol in ("generation", "velocity"):
        print()
        print(f"SSIM, {protocol} protocol:")
        print()
        print("| data set | method | " + " | ".join(f"{b} bits" for b in range(1, 9)) + " |")
        print("|---|---|" + "---|" * 8)
        for ds, get in data.items():
            measured = {(m, b): r["ssim"] for (p, m, b), r in get.items() if p == protocol and r["ssim"] == r["ssim"]}
            best = {b: max((v for (_, bb), v in measured.items() if bb == b), default=None) for b in range(1, 9)}
            for m in METHODS:
                if not any((m, b) in measured for b in range(1, 9)):
                    continue
                cells = []
                for b in range(1, 9):
                    v = measured.get((m, b))
                    cells.append("" if v is None else f"**{v:.3f}**" if v == best[b] else f"{v:.3f}")
                print(f"| {ds} | {m} | " + " | ".join(cells) + " |")
    calibrated_table(data)


def calibrated_table(data: dict[str, dict]) -> None:
    print()
    print("Calibrated methods, generation protocol: SSIM (bits per weight really used; seconds of calibration, "
          "trajectories and sensitivity cached after a data set's first point):")
    print()
    print("| data set | method | " + " | ".join(f"{b:g}" for b in BUDGETS) + " |")
    print("|---|---|" + "---|" * len(BUDGETS))
    for ds, get in data.items():
        for m in ("ot", *CALIBRATED):
            rows = [get.get(("generation", m, b)) for b in BUDGETS]
            if m != "ot" and not any(r is not None for r in rows):
                continue
            cells = []
            for r in rows:
                if r is None:
                    cells.append("")
                elif r["ssim"] != r["ssim"]:
                    cells.append("infeasible" if "below" in str(r.get("skipped", "")) else "—")
                else:
                    secs = r.get("calibration_seconds", float("nan"))
                    cells.append(f"{r['ssim']:.3f} ({r['bits_per_weight']:.2f}"
                                 + (f"; {secs:.0f} s)" if secs == secs else ")"))
            print(f"| {ds} | {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
