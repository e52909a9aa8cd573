"""Screenshots of every app page with the shipped checkpoints, for the README: assets/screens/<page>.png.

Starts `streamlit run app.py`, opens each page in Debian's chromium (MNIST, ot + uniform at 2 bits, the
sidebar's defaults, or the settings of ``--link``), waits for every image and chart, and saves a full-page
PNG; the Fidelity page twice, once per protocol (``fidelity.png``, ``fidelity_paper.png``). Usage:

    python benchmarks/app_screens.py [--out assets/screens] [--link "data=mnist&bits=4&n=64&steps=20"]

The screenshots of a calibrated method (``generate_calibrated.png``, ``weights_calibrated.png``; Generate
calibrates first, Weights reuses it, and the printed seconds say how long each waited):

    python benchmarks/app_screens.py --pages generate,weights --link "methods=ot,ot-mixed-cal&effort=standard" \
        --suffix _calibrated
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app import driver  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "screens"))
    ap.add_argument("--pages", default=",".join(driver.PAGES), help="comma-separated page names")
    ap.add_argument("--link", default="", help="URL parameters every page opens with (the app's shareable link)")
    ap.add_argument("--suffix", default="", help="added to each file name: <page><suffix>.png")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with driver.serve(log=out / "streamlit.log") as url, sync_playwright() as p:
        browser = driver.launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name in a.pages.split(","):
            path = driver.PAGES[name]
            page.goto(f"{url}/{path}" + (f"?{a.link}" if a.link else ""))
            seconds = driver.wait_ready(page, timeout_ms=900_000)
            problems = driver.exceptions(page)
            driver.screenshot(page, out / f"{name}{a.suffix}.png")
            print(f"{name}: {seconds:.1f} s{'  EXCEPTION ' + problems[0][:200] if problems else ''}")
            if name == "fidelity" and not a.suffix:  # the page's other protocol: the paper's number, with its claims
                page.get_by_text("The paper's number").click()
                seconds = driver.wait_ready(page, timeout_ms=900_000)
                driver.screenshot(page, out / "fidelity_paper.png")
                print(f"fidelity (the paper's protocol): {seconds:.1f} s")
        browser.close()
    (out / "streamlit.log").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
