"""Driving the real app: `streamlit run app.py` in a subprocess and Debian's chromium through playwright.

Used by the browser test, the app benchmark and the README screenshot script. Never downloads a browser:
it uses the chromium on PATH (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"home": "", "generate": "generate", "weights": "weights", "fidelity": "fidelity",
         "trajectories": "trajectories", "theory": "theory", "compression": "compression"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(env: dict[str, str] | None = None, log: Path | None = None, timeout: float = 90) -> Iterator[str]:
    """Start `streamlit run app.py` on a free localhost port; yield its URL; stop it (by pid) afterwards."""
    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {proc.poll()}); see {log}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if log:
            out.close()


def launch(playwright):
    """Debian's chromium, headless."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


READY_JS = """() => {
    const app = document.querySelector('[data-testid=stApp]');
    return app && app.dataset.testScriptState === 'notRunning' && app.dataset.testConnectionState === 'CONNECTED'
        && !document.querySelector('[data-testid=stSkeleton], [data-testid=stSpinner], [data-testid=stStatusWidget]')
        && document.querySelector('[data-testid=stSidebarUserContent] [data-testid=stElementContainer]')
        && [...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(c => c.querySelector('.main-svg'))
        && [...document.querySelectorAll('[data-testid=stMain] img')].every(i => i.complete && i.naturalWidth > 0);
}"""


STATE_JS = """() => ({
    script: document.querySelector('[data-testid=stApp]')?.dataset.testScriptState,
    busy: [...document.querySelectorAll(
        '[data-testid=stSkeleton], [data-testid=stSpinner], [data-testid=stStatusWidget]')]
        .map(e => e.dataset.testid + ': ' + e.innerText.slice(0, 80)),
    charts: [...document.querySelectorAll('[data-testid=stPlotlyChart]')].map(c => !!c.querySelector('.main-svg')),
    images: [...document.querySelectorAll('[data-testid=stMain] img')].map(i => i.complete && i.naturalWidth > 0),
})"""


def wait_ready(page, timeout_ms: int = 180_000, settle_ms: int = 400) -> float:
    """Wait until the script run is over and every chart and image has been drawn; returns seconds waited.

    Ready must hold twice, ``settle_ms`` apart, so a rerun that starts just after an action is not missed.
    """
    t0 = time.perf_counter()
    while True:
        try:
            page.wait_for_function(READY_JS, timeout=timeout_ms, polling=50)
        except Exception as e:  # say what was still missing
            raise TimeoutError(f"page not ready: {page.evaluate(STATE_JS)}") from e
        done = time.perf_counter()
        page.wait_for_timeout(settle_ms)
        if page.evaluate(READY_JS):
            return done - t0


def exceptions(page) -> list[str]:
    """Text of every exception box Streamlit is showing."""
    return [e.inner_text() for e in page.locator("[data-testid=stException]").all()]


def set_slider(page, label: str, value: int) -> None:
    """Move the sidebar slider called ``label`` to ``value`` with the keyboard, as a person would."""
    thumb = page.locator("[data-testid=stSlider]", has_text=label).first.locator("input[type=range]").first
    now = int(float(thumb.input_value()))
    thumb.focus()
    key = "ArrowRight" if value > now else "ArrowLeft"
    for _ in range(abs(value - now)):
        page.keyboard.press(key)
    page.wait_for_function("([el, v]) => Number(el.value) === v", arg=[thumb.element_handle(), value])


def metric_values(page, label: str) -> list[str]:
    """The displayed values of every st.metric whose label is ``label``."""
    out = []
    for m in page.locator("[data-testid=stMetric]").all():
        if m.locator("[data-testid=stMetricLabel]").inner_text().strip() == label:
            out.append(m.locator("[data-testid=stMetricValue]").inner_text().strip())
    return out


def screenshot(page, path: str | Path, width: int = 1400) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it first."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight), 800)")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(300)  # charts re-layout to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": 1000})
