"""The viewer in a real browser: `streamlit run app.py` + Chromium through Playwright."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MVGVIZ_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_model, demo_root, demo_cache, tmp_path_factory):
    """`streamlit run app.py` on the demo fixtures, one per module; always terminated."""
    tmp_path = tmp_path_factory.mktemp("server")
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it; set MVGVIZ_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    port = _free_port()
    env = dict(os.environ, MVGVIZ_DATA=str(demo_root), MVGVIZ_CACHE=str(demo_cache), MVGVIZ_AUTOFIT="0",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t0 > 60:
                log.flush()
                pytest.fail(f"streamlit did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit's "Running..." status widget is gone (the script rerun is over)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)


def _grid_src(page) -> str:
    img = page.locator("[data-testid=stMain] [data-testid=stImage] img").first
    img.wait_for(timeout=30_000)
    return img.get_attribute("src")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield b
        finally:
            b.close()


def test_grid_component_change_and_png_download(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(server, timeout=60_000)
    page.get_by_text("Overview:", exact=False).first.wait_for(timeout=60_000)
    # to the Grid page through the sidebar
    page.locator("[data-testid=stSidebar]").get_by_text("Grid", exact=True).click()
    page.get_by_role("heading", name="Grid:").wait_for(timeout=30_000)
    before = _grid_src(page)
    # change the components
    box = page.get_by_label("Components (best:N | worst:N | 12,40 | 3-7)")
    box.fill("0,1")
    box.press("Enter")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return i && i.getAttribute('src') !== old; }", arg=before, timeout=30_000)
    after = _grid_src(page)
    assert after != before
    # the scale table lists the new columns (glide cells are drawn on a canvas; their
    # accessible <td> copies are hidden but present). Click the expander once the rerun is
    # over: a click during a rerun can be lost when the page is redrawn.
    _wait_idle(page)
    page.get_by_text("Colour scale of each column").click()
    page.get_by_text("c 1 (AUROC").first.wait_for(state="attached", timeout=30_000)
    # export the PNG
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download PNG").click()
    download = dl.value
    assert download.suggested_filename.endswith(".png")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < len(data) < 20_000_000
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 500
    assert img.std() > 10, "an empty figure"
    assert not page.locator("[data-testid=stException]").count()


def test_inspect_click_picks_a_pixel(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/?page=Inspect", timeout=60_000)
    page.get_by_role("heading", name="Inspect a pixel").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for(timeout=30_000)
    row = page.get_by_role("spinbutton", name="Row")
    col = page.get_by_role("spinbutton", name="Col")
    before = (row.input_value(), col.input_value())
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    # the map spans the whole plot area: click a quarter of the way in
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.wait_for_function(
        "(old) => { const i = document.querySelector('input[aria-label=Row]'); return i && i.value !== old; }",
        arg=before[0], timeout=30_000)
    r, c = int(row.input_value()), int(col.input_value())
    assert (str(r), str(c)) != before
    assert abs(r - 56) <= 4 and abs(c - 56) <= 4, (r, c)
    page.get_by_text(f"Pixel (row {r}, col {c})").first.wait_for(timeout=30_000)
    assert not page.locator("[data-testid=stException]").count()
