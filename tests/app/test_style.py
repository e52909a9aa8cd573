"""One colour per method on every page, and distinct colours for every registered method."""

from __future__ import annotations

from fmq import compare
from views._style import method_color

from .test_pages import figures, goto


def test_every_registered_method_has_its_own_colour():
    colours = [method_color(m) for m in compare.method_names()]
    assert len(set(colours)) == len(colours)


def test_a_method_is_drawn_in_its_colour_on_every_page(make_app):
    at = make_app(model_id="mnist", methods=["uniform", "ot"])
    want = {"ot": method_color("ot"), "uniform": method_color("uniform")}
    for page in ("trajectories", "theory", "weights", "compression"):
        for fig in figures(goto(at, page)):
            for t in fig["data"]:
                name = t.get("name", "").split(" ")[0]
                if name in want:
                    colour = (t.get("line") or {}).get("color") or (t.get("marker") or {}).get("color")
                    assert colour == want[name], (page, t.get("name"), colour)
