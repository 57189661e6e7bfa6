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
    """`streamlit run app.py` on the demo fixtures, one per module; always terminated. The Grid
    is drawn by the server (``MVGVIZ_FAST_GRID=0``: ``st.image``, the Components box a page
    control); :func:`fast_server` draws it in the browser."""
    yield from _serve(demo_root, demo_cache, tmp_path_factory, fast=False)


@pytest.fixture(scope="module")
def fast_server(demo_model, demo_root, demo_cache, tmp_path_factory):
    """As :func:`server`, the Grid drawn in the browser (the fastgrid component, the default)."""
    yield from _serve(demo_root, demo_cache, tmp_path_factory, fast=True)


def _serve(demo_root, demo_cache, tmp_path_factory, *, fast: bool):
    tmp_path = tmp_path_factory.mktemp("server")
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it; set MVGVIZ_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    port = _free_port()
    env = dict(os.environ, MVGVIZ_DATA=str(demo_root), MVGVIZ_CACHE=str(demo_cache), MVGVIZ_AUTOFIT="0",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), MVGVIZ_FAST_GRID="1" if fast else "0")
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
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """End a server process: terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit's "Running..." status widget is gone (the script rerun is over)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)


def _wait_settled(page, timeout_ms: int = 30_000) -> None:
    """Wait until no rerun shows (status widget) and no element is stale (a fragment rerun shows
    no status widget, only stale elements), then a little longer for the redraw."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')"
                           " && !document.querySelector('[data-stale=true]')", timeout=timeout_ms)
    page.wait_for_timeout(300)


def _open_expander_until(page, label: str, text: str, timeout_s: float = 45) -> None:
    """Open the expander ``label`` until ``text`` is in the page. A click during a rerun can be
    lost, or land on the old element that the rerun then replaces, so it is retried while the
    expander reads closed; the text is then waited for in short slices."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    details = page.locator("[data-testid=stExpander] details").filter(has_text=label).first
    deadline = time.time() + timeout_s
    while True:
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        try:
            page.get_by_text(text).first.wait_for(state="attached", timeout=3_000)
            return
        except PlaywrightTimeout:
            if time.time() > deadline:
                raise


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
    # accessible <td> copies are hidden but present). A grid change reruns only the Grid
    # fragment, which shows no status widget: also wait until no element is stale.
    _wait_settled(page)
    _open_expander_until(page, "Colour scale of each column", "c 1 (AUROC")
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


# ---------------------------------------------------------------------------------------
# Issue 10: offline and local, the picture at its displayed size, the manifest's name,
# the launcher's warm-up
# ---------------------------------------------------------------------------------------

SHOTS = os.environ.get("MVGVIZ_SHOTS")  # a folder: the tests also save screenshots there


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


def test_every_page_stays_on_localhost(server, browser):
    """No request leaves the machine (the page icon was an external font), no Deploy button,
    a local favicon."""
    from urllib.parse import urlparse
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    hosts: list[str] = []
    page.on("request", lambda r: hosts.append(r.url))
    for name, marker in (("Overview", "Overview:"), ("Components", "Components of"), ("Grid", "Grid:"),
                         ("Inspect", "Inspect a pixel"), ("Methods", "Methods:")):
        page.goto(f"{server}/?page={name}", timeout=60_000)
        page.get_by_role("heading", name=marker).first.wait_for(timeout=60_000)
        _wait_idle(page)
        page.wait_for_timeout(500)
        _shot(page, f"page_{name.lower()}")
        assert not page.locator("[data-testid=stException]").count()
    outside = sorted({u for u in hosts if urlparse(u).scheme in ("http", "https", "ws", "wss")
                      and urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert not outside, outside
    assert len(hosts) > 10
    assert page.get_by_role("button", name="Deploy").count() == 0
    assert page.locator("[data-testid=stAppDeployButton]").count() == 0
    icon = page.evaluate("() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
    assert icon and all(urlparse(h).hostname in ("127.0.0.1", "localhost") or h.startswith("data:")
                        for h in icon), icon


def test_grid_picture_at_display_size_and_manifest_name(server, browser, tmp_path):
    from mvgviz.viewer.tables import GRID_DISPLAY_WIDTH
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/?page=Grid", timeout=60_000)
    page.get_by_role("heading", name="Grid:").wait_for(timeout=60_000)
    box = page.get_by_label("Components (best:N | worst:N | 12,40 | 3-7)")
    before = _grid_src(page)
    box.fill("0,1,2,3,4,5,6,7")
    box.press("Enter")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }",
        arg=before, timeout=30_000)
    _wait_idle(page)
    natural, shown = page.evaluate(
        "() => { const i = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return [i.naturalWidth, i.getBoundingClientRect().width]; }")
    assert natural <= GRID_DISPLAY_WIDTH and shown <= natural + 1, (natural, shown)
    assert shown > 0.7 * natural, (natural, shown)  # sent at about the size shown, not 2x
    # a grid change reruns only the Grid fragment, which shows no status widget: wait until no
    # element is stale (a click on a button being redrawn is lost)
    page.get_by_role("button", name="Download manifest (JSON)").wait_for(timeout=30_000)
    _wait_settled(page)
    _shot(page, "grid_8_components")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download manifest (JSON)").click()
    name = dl.value.suggested_filename
    assert name.endswith(".png.json") and name.startswith("brick_efficientnet_lite0_"), name
    path = tmp_path / name
    dl.value.save_as(path)
    import json
    assert json.loads(path.read_text())["spec"]["components"] == list(range(8))


def test_outside_root_message_renders_literally(server, browser):
    """The refusal shows the path and '--'-free, backtick-free words as typed (no markdown dashes)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_text("Overview:", exact=False).first.wait_for(timeout=60_000)
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.locator("[data-testid=stSelectbox]").filter(has_text="Data root").get_by_role("button", name="Open").click()
    page.get_by_role("option", name="other folder ...").click()
    typed = sidebar.get_by_label("Folder (inside an allowed root)")
    typed.wait_for(timeout=30_000)
    typed.fill("/etc/a--b_c")
    typed.press("Enter")
    alert = page.locator("[data-testid=stMain] [data-testid=stAlert]").filter(has_text="outside the allowed")
    alert.first.wait_for(timeout=30_000)
    text = alert.first.inner_text()
    _shot(page, "outside_root")
    assert "'/etc/a--b_c'" in text, text
    assert "`" not in text and "\u2014" not in text and "\u2013" not in text, text


def test_launcher_prepares_the_first_page_before_a_browser(tmp_path):
    """`python app.py` writes the demo data and fits the default model at server start, with
    progress lines on stderr, before any browser connects; the first page is then ready."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    port = _free_port()
    root, cache = tmp_path / "fresh", tmp_path / "cache"
    err = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--data", str(root), "--cache", str(cache), "--port", str(port),
         "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")),
        stdout=subprocess.DEVNULL, stderr=err)
    try:
        t0 = time.time()
        log = tmp_path / "stderr.log"
        while "fit brick / efficientnet_lite0: done" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() - t0 < 300, log.read_text()[-3000:]
            time.sleep(0.5)
        text = log.read_text()
        assert "demo data in" in text and "% " not in text.split("demo data in", 1)[0]
        assert any("backbone" in l and "left" in l for l in text.splitlines()) or "backbone" in text, text
        assert (root / "brick" / "train" / "good").is_dir()
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM,
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t1 = time.time()
                page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
                page.get_by_role("heading", name="Overview: brick").wait_for(timeout=60_000)
                first_page_s = time.time() - t1
                _wait_idle(page)
                _shot(page, "launcher_overview")
            finally:
                b.close()
        assert first_page_s < 30, first_page_s   # no fit left to wait for
    finally:
        _stop(proc)
        err.close()


def test_diagnostics_page_and_pattern_png(server, browser, tmp_path):
    """Issue 11: the Diagnostics page draws its table, pattern grid and charts; the pattern PNG downloads."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/?page=Diagnostics", timeout=60_000)
    page.get_by_role("heading", name="Diagnostics of").wait_for(timeout=60_000)
    img = page.locator("[data-testid=stMain] [data-testid=stImage] img").first
    img.wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=30_000)  # spectrum, M2, agreement
    _wait_idle(page)
    page.wait_for_timeout(500)
    img.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    _shot(page, "page_diagnostics")
    assert img.evaluate("i => i.naturalWidth") > 500
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download PNG").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name.endswith("_patterns.png")
    data = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert data is not None and data.shape[1] > 600 and data.std() > 10
    page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    _shot(page, "page_diagnostics_agreement")
    assert not page.locator("[data-testid=stException]").count()


def test_methods_page_table_heatmaps_and_png(server, browser, demo_root, demo_cache, tmp_path):
    """The Methods page: the comparison table and the heatmap figure render; the PNG downloads."""
    from methods_helpers import fit_methods
    fit_methods(demo_root, demo_cache, ("mvg", "mvg-concat", "padim"))   # the rest is run by the button
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(f"{server}/?page=Methods", timeout=60_000)
    page.get_by_role("heading", name="Methods:").wait_for(timeout=60_000)
    _wait_settled(page)
    page.get_by_role("button", name="Run / compare").click()
    # the run ends with a rerun of the page: no "not run yet" left, no progress bar
    page.wait_for_function("() => !document.body.innerText.includes('Not run yet')"
                           " && !document.querySelector('[data-testid=stProgress]')", timeout=240_000)
    _wait_settled(page)
    table = page.locator("[data-testid=stDataFrame]").first
    table.wait_for(timeout=30_000)
    for name in ("mvg-concat", "padim", "spade"):
        table.get_by_text(name, exact=True).first.wait_for(state="attached", timeout=30_000)
    _shot(page, "page_methods")
    img = page.locator("[data-testid=stMain] [data-testid=stImage] img").first
    img.wait_for(timeout=60_000)
    img.scroll_into_view_if_needed()
    # the picture decoded (a rerun may replace the element: ask the page, not this handle)
    page.wait_for_function("() => { const i = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
                           " return i && i.complete && i.naturalWidth > 500; }", timeout=30_000)
    page.wait_for_timeout(500)
    _shot(page, "page_methods_heatmaps")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download PNG").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == "brick_efficientnet_lite0_methods_test.png"
    data = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert data is not None and data.shape[1] > 800 and data.std() > 10
    if SHOTS:
        cv2.imwrite(str(Path(SHOTS) / "methods_export.png"), data)
    page.get_by_role("heading", name="Explanations").scroll_into_view_if_needed()
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)
    page.wait_for_timeout(800)
    _shot(page, "page_methods_explain")
    assert not page.locator("[data-testid=stException]").count()


def test_model_control_subset_pages(server, browser):
    """Issue 11: the sidebar's "Model: M2 over" set to a subset rule changes the Grid's picture, adds
    the subset's metrics to the Overview and its map to Inspect; the Diagnostics page draws the
    variants' curves beside their table."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/?page=Grid", timeout=60_000)
    page.get_by_role("heading", name="Grid:").wait_for(timeout=60_000)
    before = _grid_src(page)
    _wait_settled(page)
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.locator("[data-testid=stSelectbox]").filter(has_text="Model: M2 over").get_by_role(
        "button", name="Open").click()
    page.get_by_role("option", name="npca:5 (train-only)").click()
    page.wait_for_function(
        "(old) => { const i = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }",
        arg=before, timeout=60_000)
    page.get_by_text("M2 column: the subset model", exact=False).first.wait_for(timeout=30_000)
    _wait_settled(page)
    _shot(page, "subset_grid")
    # the other pages through the sidebar (the same session keeps the control)
    sidebar.get_by_text("Overview", exact=True).click()
    heading = page.get_by_role("heading", name="Model: M2 [npca:5]")
    heading.wait_for(timeout=60_000)
    page.locator("[data-testid=stDataFrame]").nth(1).wait_for(timeout=60_000)
    _wait_settled(page)
    heading.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    _shot(page, "subset_overview")
    sidebar.get_by_text("Inspect", exact=True).click()
    page.get_by_role("heading", name="Inspect a pixel").wait_for(timeout=60_000)
    page.get_by_text("M2 [npca:5] of test image", exact=False).first.wait_for(timeout=30_000)
    _wait_settled(page)
    _shot(page, "subset_inspect")
    sidebar.get_by_text("Diagnostics", exact=True).click()
    page.get_by_role("heading", name="Diagnostics of").wait_for(timeout=60_000)
    _wait_settled(page)
    page.get_by_role("button", name="Compute the variants").click()
    note = page.get_by_text("Each variant's curves", exact=False).first
    note.wait_for(timeout=180_000)
    _wait_settled(page)
    page.get_by_role("heading", name="Variants: M2 on a subset").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    _shot(page, "diagnostics_variants_table")
    curves = page.locator(".js-plotly-plot").last
    curves.scroll_into_view_if_needed()
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(800)
    _shot(page, "diagnostics_variant_curves")
    assert not page.locator("[data-testid=stException]").count()


# ---------------------------------------------------------------------------------------
# The Grid drawn in the browser (issue 10, item 11: the fastgrid component)
# ---------------------------------------------------------------------------------------

FASTGRID = "iframe[title*=fastgrid]"


def _fast_grid(page):
    """The fastgrid component's frame, once its grid is laid out."""
    frame = page.frame_locator(FASTGRID)
    frame.locator("#grid img.tile").first.wait_for(timeout=60_000)
    return frame


def test_fastgrid_components_repaint_client_side(fast_server, browser, tmp_path):
    """Typing components into the component's box repaints the grid in the browser (no server-drawn
    picture, no new request for it), then the typed text reaches Python: the scale table and the
    manifest export hold those components."""
    from urllib.parse import urlparse
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))  # the component's frame included: all local
    page.goto(f"{fast_server}/?page=Grid", timeout=60_000)
    page.get_by_role("heading", name="Grid:").wait_for(timeout=60_000)
    frame = _fast_grid(page)
    grid = frame.locator("#grid")
    n_rows = frame.locator("#grid .rowlab").count()
    assert n_rows >= 1
    assert not page.locator("[data-testid=stMain] [data-testid=stImage] img").count()  # no server picture
    _wait_settled(page)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    gen = grid.get_attribute("data-gen")
    box = frame.locator("#box")
    box.fill("7, 2-3")
    box.press("Enter")
    # laid out synchronously from the tiles it holds: the new grid is there before any server answer
    assert grid.get_attribute("data-gen") != gen
    assert grid.get_attribute("data-components") == "7,2,3"
    assert frame.locator("#grid img.tile").count() == n_rows * (3 + 1)     # 3 components + M2
    assert frame.locator("#grid .hdr").first.inner_text().startswith("c 7") or \
        frame.locator("#grid .hdr").first.inner_text() == "7"
    assert grid.evaluate("g => [...g.querySelectorAll('img.tile')].every(i => i.complete && i.naturalWidth > 0)")
    assert not [u for u in requests if "/media/" in u], requests                # no picture fetched
    # an error is shown inline and keeps the grid
    box.fill("3-1")
    box.press("Enter")
    assert "empty (start > end)" in frame.locator("#err").inner_text()
    assert grid.get_attribute("data-components") == "7,2,3"
    box.fill("7, 2-3")  # back to the good text (unchanged for Python)
    box.press("Enter")
    assert not frame.locator("#err").is_visible()
    # Python got the typed components: the scale table and the export follow them
    _wait_settled(page)
    _open_expander_until(page, "Colour scale of each column", "c 7 (AUROC")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download manifest (JSON)").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    import json
    assert json.loads(path.read_text())["spec"]["components"] == [7, 2, 3]
    # two changes in a row: the reruns they start never lay out an older text again
    for text in ("1", "4"):
        box.fill(text)
        box.press("Enter")
        _wait_settled(page)
    page.wait_for_timeout(500)
    assert grid.get_attribute("data-components") == "4" and box.input_value() == "4"
    outside = sorted({u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
                      and urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert not outside, outside
    assert not page.locator("[data-testid=stException]").count()
    _shot(page, "fastgrid_7_2_3")


GRAMMAR_INPUTS = ["best:4", "worst:2", "BEST:3", " best: 5 ", "best:0", "best:999", "best:x", "best:1_0",
                  "worst:+3", "best:-1", "12,40", "3-7", " 3 - 5 , 1,3", "5-3", "0", "+2", "-1", "11",
                  "10,11", "0-11", "0-9999999", "", "  ", ",", "1,,2", "a", "1,a", "1-", "-", "1-2-3",
                  "1.5", "all", "3 4", "0x3", "2,2,2", "9-11", "best", "best:"]


def _py_parse(text, layer):
    from mvgviz.selection import parse_components
    try:
        return list(parse_components(text, layer)), None
    except ValueError as e:
        return None, str(e)


def test_fastgrid_grammar_matches_selection_py(browser):
    """The component's parser (fastgrid_frontend/selection.js) against mvgviz.selection.parse_components
    on a table of inputs: the same indices, or an error with the same message (less the parameter
    name, which the component writes as "Components:")."""
    from types import SimpleNamespace

    from mvgviz.viewer.fastgrid import FRONTEND
    rng = np.random.default_rng(0)
    order = rng.permutation(12)
    layers = [SimpleNamespace(name="_blocks[4]", channels=12, has_ranking=True, metrics_note="",
                              ranking=lambda: order),
              SimpleNamespace(name="layer2", channels=12, has_ranking=False, metrics_note="no masks",
                              ranking=lambda: None)]
    page = browser.new_page()
    page.add_script_tag(content=(FRONTEND / "selection.js").read_text())
    for layer in layers:
        js_layer = {"name": layer.name, "channels": layer.channels, "metrics_note": layer.metrics_note,
                    "ranking": [int(i) for i in order] if layer.has_ranking else None}
        got = page.evaluate(
            "([texts, layer]) => texts.map(t => { try { return [window.mvgvizParseComponents(t, layer), null]; }"
            " catch (e) { return [null, e.message]; } })", [GRAMMAR_INPUTS, js_layer])
        for text, (js_sel, js_err) in zip(GRAMMAR_INPUTS, got):
            py_sel, py_err = _py_parse(text, layer)
            assert js_sel == py_sel, (layer.name, text, js_sel, py_sel, js_err, py_err)
            if py_err is not None:
                assert js_err is not None, (layer.name, text)
                py_msg = py_err.removeprefix("`components`").lstrip(": ").replace("\"", "'")
                assert js_err == py_msg, (layer.name, text, js_err, py_err)


def test_fastgrid_other_controls_and_page_return(fast_server, browser):
    """A control outside the component (the colour scale) sends new tiles: cross-component shows one
    colour bar under all component columns (and the M2 one); leaving the page and coming back draws
    the grid again with the typed components (the component asks for tiles it does not hold)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{fast_server}/?page=Grid", timeout=60_000)
    page.get_by_role("heading", name="Grid:").wait_for(timeout=60_000)
    frame = _fast_grid(page)
    _wait_settled(page)
    box = frame.locator("#box")
    box.fill("0-2")
    box.press("Enter")
    _wait_settled(page)
    assert frame.locator("#grid .cbar").count() == 3 + 1
    page.get_by_text("cross-component", exact=True).click()
    frame.locator("#grid .cbar").nth(1).wait_for(timeout=30_000)
    page.wait_for_function(
        "() => { const f = document.querySelector('iframe[title*=fastgrid]');"
        " return f && f.contentDocument.querySelectorAll('#grid .cbar').length === 2; }", timeout=30_000)
    assert "all y2" in frame.locator("#grid .cbar").first.get_attribute("title")
    _wait_settled(page)
    page.locator("[data-testid=stSidebar]").get_by_text("Overview", exact=True).click()
    page.get_by_text("Overview:", exact=False).first.wait_for(timeout=60_000)
    _wait_settled(page)
    page.locator("[data-testid=stSidebar]").get_by_text("Grid", exact=True).click()
    page.get_by_role("heading", name="Grid:").wait_for(timeout=30_000)
    frame = _fast_grid(page)
    assert frame.locator("#grid").get_attribute("data-components") == "0,1,2"
    assert frame.locator("#box").input_value() == "0-2"
    assert not page.locator("[data-testid=stException]").count()
