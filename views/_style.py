"""How the pages draw methods: one colour per method on every page."""

from __future__ import annotations

from fmq import compare

# one colour per method on every page: ot and uniform (the contrast the app is about) in blue and red
_METHOD_COLORS = {"ot": "#636efa", "uniform": "#ef553b", "ot-equal-mass": "#00cc96", "pwl": "#ab63fa",
                  "log2": "#ffa15a", "pwl-paper": "#19d3f3", "log2-paper": "#ff6692"}

_SPARE_COLORS = ("#2ca02c", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#1f3d7a", "#b6e880")


def method_color(method: str) -> str:
    """The colour ``method`` has on every page (methods without a fixed one take spares in registry order)."""
    if method in _METHOD_COLORS:
        return _METHOD_COLORS[method]
    others = [m for m in compare.method_names() if m not in _METHOD_COLORS]
    i = others.index(method) if method in others else len(others)
    return _SPARE_COLORS[i % len(_SPARE_COLORS)]
