"""Figures of sweep results: SSIM and PSNR against bits, one line per method, with 95 % intervals and
the paper's claimed points as reference markers. Interactive (plotly, HTML) and static (matplotlib, PNG).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["METHOD_COLORS", "fidelity_figure", "save_fidelity_png", "save_fidelity_html", "save_sweep_plots",
           "ssim_range", "ssim_values"]

METHOD_COLORS = {
    "ot": "#d62728", "ot-equal-mass": "#ff7f0e", "uniform": "#1f77b4", "pwl": "#2ca02c", "log2": "#9467bd",
    "pwl-paper": "#17becf", "log2-paper": "#8c564b",
    "ot-cal": "#e377c2", "ot-mixed": "#7f7f7f", "ot-mixed-cal": "#111111", "ot-gptq": "#bcbd22",
}


def _by_method(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["method"], r["bits"])):
        out.setdefault(r["method"], []).append(r)
    return out


def ssim_range(values) -> list[float]:
    """y range of an SSIM axis: 0 to 1 with a margin, reaching down to the lowest value when one is negative
    (SSIM goes down to -1; a fixed axis from 0 hid such points below the frame)."""
    import math

    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    low = min(finite, default=0.0)
    return [-0.05 if low >= 0 else math.floor((low - 0.05) * 10) / 10, 1.05]


def ssim_values(rows: list[dict]) -> list[float]:
    """The SSIMs a plot of these rows draws lowest: each point and the bottom of its interval."""
    return [r.get(k) for r in rows for k in ("ssim", "ssim_lo")]


def fidelity_figure(rows: list[dict], claims: list[dict] | None = None, title: str = ""):
    """A plotly figure with SSIM (left) and PSNR (right) against bits."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("SSIM vs FP32", "PSNR vs FP32 (dB)"))
    for method, rs in _by_method(rows).items():
        color = METHOD_COLORS.get(method, "#444")
        bits = [r["bits"] for r in rs]
        for col, m in ((1, "ssim"), (2, "psnr")):
            fig.add_scatter(
                x=bits, y=[r[m] for r in rs], mode="lines+markers", name=method, legendgroup=method,
                showlegend=col == 1, line={"color": color}, row=1, col=col,
                error_y={"type": "data", "symmetric": False, "array": [r[f"{m}_hi"] - r[m] for r in rs],
                         "arrayminus": [r[m] - r[f"{m}_lo"] for r in rs], "thickness": 1},
            )
    for c in claims or []:
        col = 1 if c["metric"] == "ssim" else 2
        fig.add_scatter(x=[c["bits"]], y=[c["value"]], mode="markers", row=1, col=col, showlegend=False,
                        marker={"symbol": "star-open" if c["relation"] == "≈" else "triangle-up-open"
                                if c["relation"] == ">" else "triangle-down-open", "size": 12,
                                "color": METHOD_COLORS.get(c["method"], "#444")},
                        hovertext=f"paper: {c['method']} {c['bits']}-bit {c['metric']} {c['relation']} {c['value']}",
                        hoverinfo="text", name="paper claim")
    fig.update_xaxes(title_text="bits per weight (index width; mixed methods: budget)", dtick=1)
    fig.update_yaxes(range=ssim_range(ssim_values(rows)), row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", height=420, legend={"orientation": "h", "y": -0.2})
    return fig


def save_fidelity_html(rows: list[dict], path: str | Path, claims=None, title: str = "") -> Path:
    path = Path(path)
    fidelity_figure(rows, claims, title).write_html(path, include_plotlyjs="cdn")
    return path


def save_fidelity_png(rows: list[dict], path: str | Path, claims=None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, rs in _by_method(rows).items():
        color = METHOD_COLORS.get(method, "#444")
        bits = [r["bits"] for r in rs]
        for ax, m in zip(axes, ("ssim", "psnr")):
            ax.errorbar(bits, [r[m] for r in rs], yerr=[[r[m] - r[f"{m}_lo"] for r in rs],
                                                        [r[f"{m}_hi"] - r[m] for r in rs]],
                        marker="o", ms=4, capsize=2, color=color, label=method)
    for c in claims or []:
        ax = axes[0] if c["metric"] == "ssim" else axes[1]
        marker = {"≈": "*", ">": "^", "<": "v"}[c["relation"]]
        ax.scatter([c["bits"]], [c["value"]], marker=marker, s=90, facecolors="none",
                   edgecolors=METHOD_COLORS.get(c["method"], "#444"), linewidths=1.2)
    axes[0].set(title="SSIM vs FP32", xlabel="bits per weight (index width; mixed methods: budget)",
                ylim=tuple(ssim_range(ssim_values(rows))))
    axes[1].set(title="PSNR vs FP32 (dB)", xlabel="bits per weight (index width; mixed methods: budget)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({r["bits"] for r in rows}))
    handles, labels = axes[0].get_legend_handles_labels()  # below the plots: inside, it hid the claim markers
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title + ("  (hollow markers: the paper's claims)" if claims else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_SWEEP_PLOT_COLUMNS = ("dataset", "method", "bits", "protocol", "granularity", "n", "solver", "steps", "guidance",
                       "ssim", "ssim_lo", "ssim_hi", "psnr", "psnr_lo", "psnr_hi")  # what the plots and titles read


def save_sweep_plots(rows: list[dict], out: str | Path, claims: list[dict] | None = None) -> list[Path]:
    """PNG and HTML plots of a sweep's rows beside its CSV ``out``: ``D.png``/``D.html`` for the generation
    protocol, ``D_<protocol>.png``/``.html`` for the others. Titles come from the rows' own settings, so a
    results CSV redraws the very plots its sweep wrote. The paper's claims are drawn on the plot of the
    protocol they were measured with only."""
    out = Path(out)
    missing = [k for k in _SWEEP_PLOT_COLUMNS if any(k not in r for r in rows)]
    if missing:
        raise ValueError(f"{out} is not a sweep results CSV (missing columns: {', '.join(missing)})")
    written = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        rs = [r for r in rows if r["protocol"] == protocol]
        r0 = rs[0]
        if protocol == "velocity":  # one network evaluation: no solver, no steps
            title = (f"{r0['dataset']}: velocity protocol (the paper's: v at t = 0 on the first {r0['n']} test "
                     f"images), {r0['granularity']}")
        else:
            title = (f"{r0['dataset']}: {protocol} protocol, {r0['granularity']}, n={r0['n']}, "
                     f"{r0['solver']} {r0['steps']} steps")
        if float(r0["guidance"]) != 1.0:
            title += f", guidance {float(r0['guidance']):g}"
        # a claim is drawn on the protocol it was measured with (the paper's: velocity)
        cl = [c for c in claims or [] if c["dataset"] == r0["dataset"] and c.get("protocol", "velocity") == protocol]
        stem = out.with_suffix("") if protocol == "generation" else out.with_name(out.stem + f"_{protocol}")
        written.append(save_fidelity_png(rs, stem.with_suffix(".png"), cl, title))
        written.append(save_fidelity_html(rs, stem.with_suffix(".html"), cl, title))
    return written
