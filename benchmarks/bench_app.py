"""App responsiveness, measured in a real browser against the shipped checkpoints.

Starts `streamlit run app.py`, opens the Generate page in a fresh session (MNIST, the sidebar's defaults)
and prints the time to the first grid and to the whole page; then visits every page once, and again,
and prints the second-visit times (everything cached). Usage:

    python benchmarks/bench_app.py [--dataset mnist]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine_line  # noqa: E402

from tests.app import driver  # noqa: E402

TITLES = {"home": "Does an image generator", "generate": "Generate:", "weights": "Weights:",
          "fidelity": "Fidelity:", "trajectories": "Trajectories:", "theory": "Theory:", "compression": "Compression:"}
NAV = {"home": "Home", "generate": "Generate", "weights": "Weights", "fidelity": "Fidelity",
       "trajectories": "Trajectories", "theory": "Theory", "compression": "Compression"}


def visit(page, name: str) -> float:
    """Click the page in the sidebar; seconds until its title is up and every image and chart is drawn."""
    t0 = time.perf_counter()
    page.locator("[data-testid=stSidebarNavLink]", has_text=NAV[name]).first.click()
    page.wait_for_function("t => (document.querySelector('h1') || {}).innerText?.startsWith(t)",
                           arg=TITLES[name], timeout=600_000, polling=20)
    titled = time.perf_counter() - t0
    return titled + driver.wait_ready(page, timeout_ms=600_000, settle_ms=300)  # the settling wait not counted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    print(machine_line() + f"; app torch threads {os.environ.get('FMQ_TORCH_THREADS', '1')}")
    # a frozen copy of the checkpoints: a training run rewriting one mid-benchmark would be a cache miss
    frozen = Path(tempfile.mkdtemp(prefix="fmq_bench_app_"))
    for f in (ROOT / "checkpoints").glob("*.safetensors"):
        if not f.name.endswith(".state.safetensors"):
            shutil.copy2(f, frozen / f.name)
    env = {"FMQ_CHECKPOINT_DIR": str(frozen)}
    with driver.serve(env, log=frozen / "streamlit.log") as url, sync_playwright() as p:
        browser = driver.launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        driver.wait_ready(page)
        if a.dataset != "mnist":
            print("(only the sidebar's default data set is measured)")
        t0 = time.perf_counter()
        page.locator("[data-testid=stSidebarNavLink]", has_text="Generate").first.click()
        # the FP32 grid's caption ("16 evaluations · 0.57 s") follows its image; Home has none (its images
        # may still be on screen while the new page starts)
        page.wait_for_function("() => /evaluations ·/.test(document.querySelector('[data-testid=stMain]').innerText)"
                               " && document.querySelector('h1')?.innerText.startsWith('Generate:')",
                               timeout=600_000, polling=20)
        first = time.perf_counter() - t0
        driver.wait_ready(page, timeout_ms=600_000)
        whole = time.perf_counter() - t0
        print(f"Generate, first visit (MNIST, ot + uniform 2-bit, 16 samples, heun x 8): "
              f"first grid {first:.2f} s, whole page {whole:.2f} s")
        firsts = {name: visit(page, name) for name in NAV if name != "generate"}
        print("first visits: " + ", ".join(f"{k} {v:.2f} s" for k, v in firsts.items()))
        seconds = {name: visit(page, name) for name in NAV}
        print("second visits, same settings: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))
        print(f"slowest second visit: {max(seconds.values()):.2f} s")
        browser.close()
    shutil.rmtree(frozen, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
