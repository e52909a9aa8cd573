"""The sidebar's state in the URL: a link opens the app on given settings, and every change updates the link.

``?data=cifar10&methods=ot,uniform&bits=4`` opens CIFAR-10 with ot and uniform at 4 bits; whatever the link
leaves out keeps its default (``effort=quick`` sets the calibration effort, carried only when a calibrated
method is chosen; ``budget=1.5`` the mixed methods' average bits per weight, carried only when one is chosen
and it is not the bit slider's). A value that cannot be used is named in the sidebar, not silently dropped.
The link is read once per session (on its first run); after that the sidebar is the truth and is written
back to the URL on every run, so a reload or a copied address gives the same page.
"""

from __future__ import annotations

import streamlit as st

from fmq.methods import METHODS
from fmq.quant import BITS
from fmq.sampling import SOLVER_TABLE
from views._settings import BUDGETS, CALIB_EFFORT

GRANULARITIES = ("channel", "tensor", "group")
GROUP_SIZES = (16, 32, 64, 128, 256)
SAMPLE_COUNTS = (4, 8, 16, 32, 64)
MAX_STEPS = 100
SOLVERS = ("heun", *(s for s in SOLVER_TABLE if s != "heun"))  # the picker's order: the default first
# what a new session starts with (session-state key -> value); "guidance" follows the data set (zoo)
DEFAULTS = {"bits": 2, "granularity": "channel", "group_size": 64, "solver": "heun", "steps": 8, "n": 16,
            "seed": 0, "label": "any"}
READ = "_link_read"  # session-state flag: the URL has been read for this session
WRITTEN = "_link_written"  # session-state: the parameters the app last put into the URL
PAGE = "_link_page"  # session-state: the page of the last run


def _int(text: str, ok) -> int | None:
    try:
        v = int(text)
    except ValueError:
        return None
    return v if ok(v) else None


def _parse(params: dict[str, str], models: dict[str, str], methods: list[str]) -> tuple[dict, list[str]]:
    """(session-state values, messages about what could not be used) from the URL's parameters."""
    out: dict = {}
    bad: list[str] = []

    def take(key: str, value, why: str) -> None:
        if value is None:
            bad.append(f"`{key}={params[key]}` ({why})")
        else:
            out.update(value if isinstance(value, dict) else {key: value})

    if "data" in params:
        take("data", {"model_id": params["data"]} if params["data"] in models else None,
             "choose one of " + ", ".join(m for m in models if not m.startswith("upload:")))
    if "methods" in params:
        chosen = [m for m in params["methods"].split(",") if m]
        take("methods", {"methods": chosen} if chosen and all(m in methods for m in chosen) else None,
             "known: " + ", ".join(methods))
    if "bits" in params:
        take("bits", _int(params["bits"], lambda v: v in BITS), f"{BITS[0]}..{BITS[-1]}")
    if "gran" in params:
        g = params["gran"]
        size = _int(g.split(":", 1)[1], lambda v: v in GROUP_SIZES) if g.startswith("group:") else None
        value = ({"granularity": g} if g in ("channel", "tensor")
                 else {"granularity": "group", "group_size": size} if size else None)
        take("gran", value, "channel, tensor or group:G with G in " + ", ".join(map(str, GROUP_SIZES)))
    if "budget" in params:
        try:
            b = float(params["budget"])
        except ValueError:
            b = None
        take("budget", next((v for v in BUDGETS if b is not None and v == b), None), ", ".join(map(str, BUDGETS)))
    if "effort" in params:
        take("effort", {"cal_effort": params["effort"]} if params["effort"] in CALIB_EFFORT else None,
             ", ".join(CALIB_EFFORT))
    if "solver" in params:
        take("solver", params["solver"] if params["solver"] in SOLVER_TABLE else None, ", ".join(SOLVER_TABLE))
    if "steps" in params:
        take("steps", _int(params["steps"], lambda v: 1 <= v <= MAX_STEPS), f"1..{MAX_STEPS}")
    if "n" in params:
        take("n", _int(params["n"], lambda v: v in SAMPLE_COUNTS), ", ".join(map(str, SAMPLE_COUNTS)))
    if "seed" in params:
        take("seed", _int(params["seed"], lambda v: 0 <= v < 2**31), "a whole number from 0")
    if "class" in params:
        c = params["class"]
        take("class", {"label": "any" if c == "any" else _int(c, lambda v: 0 <= v < 1000)}
             if c == "any" or _int(c, lambda v: 0 <= v < 1000) is not None else None, "any or a class number")
    if "guidance" in params:
        try:
            g = float(params["guidance"])
        except ValueError:
            g = None
        take("guidance", g if g is not None and 1.0 <= g <= 5.0 and (g * 2).is_integer() else None,
             "1 to 5 in steps of 0.5")
    return out, bad


def read_link(models: dict[str, str], methods: list[str], page: str) -> None:
    """The URL's settings into session state, and a note on any it could not use: on a session's first run,
    and when a link inside the app opens another page with settings other than the app last wrote.

    Never on a rerun of the same page: the browser sends its address with every rerun, and one the app has
    just rewritten may not have reached it yet, so reading it then would undo the widget just moved.
    """
    s = st.session_state
    params = {k: st.query_params[k] for k in st.query_params}
    moved, s[PAGE] = s.get(PAGE) != page, page
    if s.get(READ) and not (moved and params and params != s.get(WRITTEN)):
        return
    s[READ] = True
    values, bad = _parse(params, models, methods)
    for k, v in values.items():
        s[k] = v
    if "guidance" in values:  # the link's guidance wins over the data set's default
        s["_guidance_for"] = s.get("model_id", next(iter(models), ""))
    if bad:
        s["_link_bad"] = bad


def show_problems() -> None:
    bad = st.session_state.pop("_link_bad", None)
    if bad:
        st.sidebar.warning("This link's " + "; ".join(bad) + " could not be used, so the default stays.",
                           icon=":material/link_off:")


def link_params(s, conditional: bool) -> dict[str, str]:
    """The URL parameters that reproduce the sidebar's state ``s`` (session state or a dict); class and
    guidance only for a conditional model."""
    gran = s.get("granularity", "channel")
    if gran == "group":
        gran = f"group:{s.get('group_size', 64)}"
    out = {"data": s.get("model_id", ""), "methods": ",".join(s.get("methods", ())), "bits": s.get("bits", 2),
           "gran": gran}
    if any(METHODS[m].mixed for m in s.get("methods", ()) if m in METHODS) and s.get("budget") in BUDGETS:
        out["budget"] = f"{float(s['budget']):g}"
    if any(METHODS[m].calibrated for m in s.get("methods", ()) if m in METHODS):
        out["effort"] = s.get("cal_effort", "standard")
    out["solver"] = s.get("solver", "heun")
    if not SOLVER_TABLE[out["solver"]].adaptive:
        out["steps"] = s.get("steps", 8)
    out.update({"n": s.get("n", 16), "seed": s.get("seed", 0)})
    if conditional:
        out.update({"class": s.get("label", "any"), "guidance": f"{float(s['guidance']):g}"})
    if str(out["data"]).startswith("upload:"):  # an upload lives in this session only: a link cannot carry it
        del out["data"]
    return {k: str(v) for k, v in out.items()}


def write_link(conditional: bool) -> None:
    """The sidebar's state into the URL (replacing what was there), so a reload or a copied link reopens it."""
    want = link_params(st.session_state, conditional)
    st.session_state[WRITTEN] = want
    if {k: st.query_params[k] for k in st.query_params} != want:
        st.query_params.from_dict(want)
