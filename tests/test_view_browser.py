"""`uvd view` in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against the app served by uvicorn on loopback, over a small real build."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.view_build import view_build
from uvd.cli.view.app import create_app
from uvd.shard_summary import sentence_shards

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="chromium and chromium-driver are not installed (scripts/setup.sh installs them)")]
PER_PAGE = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> str:
    return view_build(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(out: str) -> Iterator[str]:
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(out, per_page=PER_PAGE), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def visit(browser: webdriver.Chrome, url: str) -> None:
    """Open a page and wait for its load event: by then every <img> has loaded or failed."""
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], f"{url}: images that did not load: {broken}"


def ids_on_page(browser: webdriver.Chrome) -> list[str]:
    return [e.get_attribute("data-id") for e in browser.find_elements(By.CSS_SELECTOR, ".sentence")]


def test_home_counts_equal_the_manifest(browser: webdriver.Chrome, server: str, out: str, tmp_path: Path) -> None:
    totals = json.loads((Path(out) / "manifest.json").read_text())["totals"]
    visit(browser, server + "/")
    for key in ("sentences", "images", "inputs", "ok", "failed"):
        assert browser.find_element(By.ID, f"total-{key}").text == str(totals[key]), key
    assert browser.find_element(By.ID, "units").text == f"{totals['units_done']} / {totals['units']}"
    rows = browser.find_elements(By.CSS_SELECTOR, "#datasets tr[data-dataset]")
    assert sum(int(r.find_element(By.CSS_SELECTOR, ".n-sentences").text) for r in rows) == totals["sentences"]
    assert browser.save_screenshot(str(tmp_path / "view_home.png"))
    assert (tmp_path / "view_home.png").stat().st_size > 10_000


def test_paging_reaches_the_last_sentence(browser: webdriver.Chrome, server: str, out: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    expected = [r for url in sentence_shards(out) if "/sentences/photos/" in url
                for r in pq.read_table(url, columns=["sentence_id"]).column("sentence_id").to_pylist()]
    visit(browser, server + "/")
    browser.find_element(By.LINK_TEXT, "photos").click()
    WebDriverWait(browser, 30).until(lambda d: "/dataset/photos" in d.current_url)
    visit(browser, browser.current_url)
    assert browser.save_screenshot(str(tmp_path / "view_dataset.png"))
    seen = ids_on_page(browser)
    while browser.find_elements(By.CSS_SELECTOR, "a.next"):
        browser.find_elements(By.CSS_SELECTOR, "a.next")[0].click()
        visit(browser, browser.current_url)
        seen += ids_on_page(browser)
    assert seen == expected and seen[-1] == expected[-1]
    # the last sentence's own page: its full-size images load, its neighbour links back
    browser.find_element(By.LINK_TEXT, expected[-1]).click()
    visit(browser, browser.current_url)
    assert browser.find_element(By.CSS_SELECTOR, "h1.sid").text == expected[-1]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".full img")) >= 1
    assert not browser.find_elements(By.ID, "next")  # the last of its shard


def test_a_filter_narrows_the_grid(browser: webdriver.Chrome, server: str) -> None:
    visit(browser, server + "/dataset/mixed")
    total = int(browser.find_element(By.ID, "count").text.split()[0])
    Select(browser.find_element(By.ID, "layout")).select_by_value("pairs")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 30).until(lambda d: "layout=pairs" in d.current_url)
    visit(browser, browser.current_url)
    narrowed = int(browser.find_element(By.ID, "count").text.split()[0])
    assert 0 < narrowed < total
    layouts = {e.get_attribute("data-layout") for e in browser.find_elements(By.CSS_SELECTOR, ".sentence")}
    assert layouts == {"pairs"}


def test_failures_show_every_reason_of_the_audit(browser: webdriver.Chrome, server: str, out: str) -> None:
    import pyarrow.parquet as pq

    audit = pq.read_table(Path(out) / "audit", columns=["status", "reason"]).to_pylist()
    reasons = {r["reason"] for r in audit if r["status"] == "failed"}
    visit(browser, server + "/failures")
    shown = {e.get_attribute("data-reason") for e in browser.find_elements(By.CSS_SELECTOR, "#reasons tr[data-reason]")}
    assert shown == reasons and len(reasons) >= 2
    for reason in reasons:
        table = browser.find_element(By.CSS_SELECTOR, f"table.examples[data-reason='{reason}']")
        assert len(table.find_elements(By.TAG_NAME, "tr")) >= 2, reason  # a header and at least one example


def test_a_bad_sentence_id_is_a_404_page(browser: webdriver.Chrome, server: str) -> None:
    visit(browser, server + "/sentence/0123456789abcdef01234567")
    assert browser.find_element(By.TAG_NAME, "h1").text == "404"
    assert "no sentence" in browser.find_element(By.ID, "error").text
