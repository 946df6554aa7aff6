"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) through selenium.

Opens the page built from the fixture history (:mod:`tests.history.fixture_runs`: a Pi with 4 runs,
a laptop with 3) from ``file://`` and checks: no JavaScript console errors, every chart drawn with
its expected traces, the machine selector switching what is shown. It saves a PNG screenshot and
prints its path (``$PRUNELIB_SCREENSHOT_DIR/history.png``, else in the test's tmp folder). Without
Chromium, its driver, selenium or plotly the test is skipped with that reason. Selenium is given the
driver's path, so selenium-manager never downloads anything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prunelib.history.dashboard import write_dashboard
from prunelib.history.table import build_history
from tests.history.fixture_runs import write_history

CHROMIUM = os.environ.get("PRUNELIB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PRUNELIB_CHROMEDRIVER", "/usr/bin/chromedriver")
PI = "Cortex-A72 · aarch64 · Linux"
LAPTOP = "Intel(R) Core(TM) i7-1165G7 · x86_64 · Linux"
#: Per machine, the traces of each chart in page order: curves (one per run), latency per
#: (method, runtime) (band + line per iteration, + the change markers), sizes (dense, sparse, compact).
EXPECTED = {
    PI: [4, 4, 7, 7, 7, 7, 3, 3],
    LAPTOP: [3, 7, 6, 3],
}
VISIBLE_TRACES = """return Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(function(el){return el.offsetParent !== null;})
  .map(function(el){return {title: el.layout.title.text, names: el.data.map(function(t){return t.name;})};});"""


@pytest.fixture
def driver() -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            pytest.skip(f"no {path}: the browser test needs Chromium (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="the browser test needs selenium (pip install 'prunelib[history]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1700",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager, should it run at all, must not download
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def test_dashboard_renders_in_chromium(driver: Any, tmp_path: Path) -> None:
    pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'prunelib[history]')")
    from selenium.webdriver.support.ui import Select, WebDriverWait

    folders = write_history(tmp_path / "runs")
    history = build_history([folders["storage"], folders["reports"], folders["laptop"]])
    page = write_dashboard(history, tmp_path / "site")
    driver.get(page.as_uri())
    total = sum(len(v) for v in EXPECTED.values())
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            and d.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == total
        )
    )
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, f"JavaScript console errors: {errors}"

    select = Select(driver.find_element("id", "machine"))
    assert select.first_selected_option.text.startswith(PI)  # the machine of the newest run
    pi = driver.execute_script(VISIBLE_TRACES)
    assert [len(c["names"]) for c in pi] == EXPECTED[PI]
    assert pi[0]["names"][-1].endswith("(latest)") and "detected change" in pi[2]["names"]

    shot = Path(os.environ.get("PRUNELIB_SCREENSHOT_DIR") or tmp_path) / "history.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"\nhistory dashboard screenshot: {shot}")

    select.select_by_visible_text(f"{LAPTOP} (3 runs)")
    laptop = driver.execute_script(VISIBLE_TRACES)
    assert [len(c["names"]) for c in laptop] == EXPECTED[LAPTOP]
    pi_runs = {n for c in pi for n in c["names"]}
    assert not pi_runs & {n for c in laptop for n in c["names"] if n[:4] == "2026"}, (
        "a run of the Pi shown on the laptop"
    )
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, f"JavaScript console errors after switching machines: {errors}"
