"""Screenshots of Generate and Weights with a calibrated method: assets/screens/<page>_calibrated.png.

Starts `streamlit run app.py`, picks MNIST, adds ``ot-mixed-cal`` beside ``ot`` in the sidebar as a person
would (2 bits, calibration effort "standard"), waits for the calibration and the page, then opens Weights in
the same session (calibrated once, reused). Prints how long each page took. Usage:

    python benchmarks/calibrated_screens.py [--out assets/screens] [--method ot-mixed-cal]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app import driver  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "screens"))
    ap.add_argument("--method", default="ot-mixed-cal")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with driver.serve(log=out / "streamlit.log") as url, sync_playwright() as p:
        browser = driver.launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/generate")
        driver.wait_ready(page, timeout_ms=600_000)
        box = page.locator("[data-testid=stMultiSelect]", has_text="Quantizers").first
        box.locator("input").first.click()
        page.keyboard.type(a.method)
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        t0 = time.perf_counter()
        page.wait_for_timeout(1500)
        driver.wait_ready(page, timeout_ms=3_600_000)
        print(f"generate with {a.method}: {time.perf_counter() - t0:.1f} s (calibration included)", flush=True)
        driver.screenshot(page, out / "generate_calibrated.png")
        page.locator("[data-testid=stSidebarNav] a", has_text="Weights").first.click()
        t0 = time.perf_counter()
        page.wait_for_timeout(1500)
        driver.wait_ready(page, timeout_ms=600_000)
        print(f"weights: {time.perf_counter() - t0:.1f} s", flush=True)
        driver.screenshot(page, out / "weights_calibrated.png")
        problems = driver.exceptions(page)
        if problems:
            print("EXCEPTION", problems[0][:300])
        browser.close()
    (out / "streamlit.log").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
