"""The published site in a real browser: headless Chromium, driven through Selenium, loads
the pages from a local HTTP server, finds a step with the search box, shows the statistics
charts, and makes no request to any host but the local one."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from cmgit.cli import cli

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT = 20
# Read before the hermetic fixture clears the CMGIT_ variables and points TMPDIR into the
# test's folder (too deep for Chromium's singleton socket path).
REQUIRE_BROWSER = os.environ.get("CMGIT_REQUIRE_BROWSER") == "1"
SYSTEM_TEMP = tempfile.gettempdir()


def _require_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    if not CHROMEDRIVER.exists():
        missing.append(str(CHROMEDRIVER))
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = "browser test needs " + ", ".join(missing)
    if REQUIRE_BROWSER:
        pytest.fail(reason + " (CMGIT_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def served_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    _require_browser()
    demo = tmp_path / "demo"
    made = CliRunner().invoke(
        cli,
        ["demo", str(demo), "--cases", "12"],
        env={"CMGIT_TODAY": "2026-04-01"},
        catch_exceptions=False,
    )
    assert made.exit_code == 0, made.output
    out = tmp_path / "public"
    built = CliRunner().invoke(
        cli,
        ["-C", str(demo / "cases"), "site", "build", "--out", str(out)],
        env={"CMGIT_TODAY": "2026-04-01"},
        catch_exceptions=False,
    )
    assert built.exit_code == 0, built.output
    assert (out / "index.html").is_file() and (out / "statistics" / "index.html").is_file()

    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield out, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    short_temp = tempfile.mkdtemp(prefix="cmgit-chromium-", dir=SYSTEM_TEMP)
    service = Service(str(CHROMEDRIVER), env={**os.environ, "TMPDIR": short_temp})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Network.enable", {})
        # The first matching pattern decides: the local server passes, every other host
        # is blocked before any connection is made.
        driver.execute_cdp_cmd(
            "Network.setBlockedURLs",
            {
                "urlPatterns": [
                    {"urlPattern": "*://127.0.0.1:*", "block": False},
                    {"urlPattern": "*://localhost:*", "block": False},
                    {"urlPattern": "*://*:*", "block": True},
                ]
            },
        )
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(short_temp, ignore_errors=True)


def _network_log(driver: WebDriver) -> tuple[list[str], set[str]]:
    """URLs requested since the last call, and those of them the block stopped."""
    urls: dict[str, list[str]] = {}
    blocked: set[str] = set()
    entries: list[dict[str, Any]] = driver.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in entries:
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            urls.setdefault(params["requestId"], []).append(params["request"]["url"])
        elif message.get("method") == "Network.loadingFailed" and params.get("blockedReason"):
            blocked.update(urls.get(params["requestId"], []))
    return [u for chain in urls.values() for u in chain], blocked


def _requested_urls(driver: WebDriver) -> list[str]:
    return _network_log(driver)[0]


def _wait(driver: WebDriver, condition: Callable[[Any], Any]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(condition)


def test_site_in_a_browser_searches_charts_and_stays_local(
    served_site: tuple[Path, str], browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    out, base = served_site
    driver = browser
    shots = out / "screenshots"
    shots.mkdir()
    requested: list[str] = []

    # home page
    driver.get(base + "index.html")
    _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, ".md-content")))
    assert driver.title
    driver.save_screenshot(str(shots / "home.png"))

    # the block is in force: a request to another host fails without leaving the machine
    outcome = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('http://blocked.example/probe').then(() => done('loaded'), () => done('failed'));"
    )
    assert outcome == "failed"
    probe, blocked = _network_log(driver)
    assert "http://blocked.example/probe" in blocked, probe
    requested += [u for u in probe if u != "http://blocked.example/probe"]

    # search for a step
    search = driver.find_element(By.CSS_SELECTOR, '[data-md-component="search-query"]')
    if not search.is_displayed():
        driver.find_element(By.CSS_SELECTOR, 'label[for="__search"]').click()
        _wait(driver, ec.visibility_of(search))
    search.click()
    search.send_keys("assessment")
    _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, ".md-search-result__item")))
    items = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")
    hrefs = [a.get_attribute("href") or "" for a in items]
    step_hits = [h for h in hrefs if "sop/step-" in h]
    assert step_hits, hrefs
    requested += _requested_urls(driver)

    # a step page, reached from the search result
    step_url = next((h for h in step_hits if "step-2-assessment" in h), step_hits[0])
    driver.get(step_url)
    _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, ".md-content h1")))
    assert "sop/step-" in driver.current_url
    driver.save_screenshot(str(shots / "step.png"))
    requested += _requested_urls(driver)

    # statistics, with charts
    driver.get(base + "statistics/index.html")
    _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, ".md-content svg")))
    charts = driver.find_elements(By.CSS_SELECTOR, ".md-content svg")
    assert charts
    driver.save_screenshot(str(shots / "statistics.png"))
    requested += _requested_urls(driver)

    for name in ("home.png", "step.png", "statistics.png"):
        shot = shots / name
        assert shot.is_file() and shot.stat().st_size > 0, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert any(u.startswith(base) for u in requested), requested
    outside = sorted(
        {
            u
            for u in requested
            if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOCAL_HOSTS
        }
    )
    assert outside == [], outside


IDENTIFIER = re.compile(r"[A-Za-z0-9_./]+")  # a state, guard, form or field name; no patterns
# For each <code> in the tables of a page: where the browser broke its line, by the
# characters before each break. A character's box starts a new line when its top is below
# the previous one's.
_LINE_BREAKS = """
const found = [];
for (const code of document.querySelectorAll('.md-typeset table code')) {
  const text = code.textContent;
  const range = document.createRange();
  let top = null, at = 0;
  const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++, at++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.width === 0) continue;
      if (top !== null && box.top > top + 2) found.push([text, text.slice(0, at)]);
      top = box.top;
    }
  }
}
return found;
"""


def test_reference_tables_break_identifiers_only_between_words(
    served_site: tuple[Path, str], browser: WebDriver
) -> None:
    """On a narrow screen the guards and transitions tables wrap, but a code such as
    comprehensive_after_immediate breaks only after an underscore, never inside a word."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _, base = served_site
    browser.set_window_size(420, 900)
    for page in ("reference/guards.html", "reference/transitions.html", "reference/forms.html"):
        browser.get(base + page)
        _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".md-typeset table")))
        breaks = browser.execute_script(_LINE_BREAKS)
        assert breaks, f"{page}: nothing wrapped at this width, so nothing was tested"
        inside = [
            (text, before)
            for text, before in breaks
            if IDENTIFIER.fullmatch(text) and not before.endswith(("_", ".", "/"))
        ]
        assert inside == [], page
