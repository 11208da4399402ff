"""
The torrent daemon's status page in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromedriver.

The daemon runs as ``twistd -n pcpkit torrent`` (a child process); a TorrentSession in the
test process seeds the payload, rate limited so the download is seen moving. Selenium
blocks, so the whole browser session runs in a thread (``deferToThread``) while the reactor
keeps the seeder and the child process going.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from pcpkit.torrent.maker import infohashOf
from tests.test_twistd_torrent import (  # noqa: F401 - the "daemons" fixture
    Daemons,
    daemonsFixture,
    drop,
    seeder,
)
from tests.torrentutil import MiB, Sessions, sessionsFixture  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def requireChromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: apt-get install chromium chromium-driver "
            "(.ci/run installs them)",
            pytrace=False,
        )


def headlessChromium(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def browse(
    url: str, infohash: str, dropTorrent: Any, profile: Path, screenshot: Path
) -> dict[str, Any]:
    """
    In a thread: open the page, drop the torrent, watch its row appear and fill without
    a reload, save a screenshot. Returns what was seen.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headlessChromium(profile)
    try:
        driver.get(url)
        seen: dict[str, Any] = {"title": driver.title}
        seen["emptyRow"] = driver.find_element(By.CSS_SELECTOR, "#torrents tr.empty").text
        # marks this page load: a reload would lose it
        driver.execute_script("window.pcpkitMarker = 42;")
        dropTorrent()

        row = f'#torrents tr[data-infohash="{infohash}"]'
        wait = WebDriverWait(
            driver, 45, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        values: list[float] = []

        def progressed(d: Any) -> bool:
            value = float(
                d.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("value") or 0
            )
            values.append(value)
            return value >= 1.0

        wait.until(progressed)
        seen["values"] = values
        cells = {
            name: driver.find_element(By.CSS_SELECTOR, f"{row} td.{name}").text
            for name in ("name", "infohash", "percent", "peers", "state")
        }
        seen["cells"] = cells
        seen["max"] = driver.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("max")
        seen["link"] = driver.find_element(By.CSS_SELECTOR, f"{row} .files a").get_attribute("href")
        seen["rows"] = len(driver.find_elements(By.CSS_SELECTOR, "#torrents tbody tr"))
        seen["marker"] = driver.execute_script("return window.pcpkitMarker;")
        seen["updated"] = driver.find_element(By.ID, "updated").text
        seen["screenshot"] = driver.save_screenshot(str(screenshot))
        return seen
    finally:
        driver.quit()


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_status_page_in_headless_chromium(
    daemons: Daemons, sessions: Sessions, tmp_path: Path
) -> None:
    requireChromium()
    size = 4 * MiB
    seed, _, _, raw = await seeder(
        sessions, tmp_path / "seed", "lecture.mkv", size, seed=7, rateLimit=1 * MiB
    )
    infohash = infohashOf(raw)
    watch = tmp_path / "watch"
    daemon = await daemons(tmp_path / "save", watch, peers=[("127.0.0.1", seed.listenPort)]).start()
    url = f"http://127.0.0.1:{daemon.port}/"
    screenshot = tmp_path / "status-page.png"

    seen = await deferToThread(
        browse,
        url,
        infohash,
        lambda: drop(watch, "lecture.torrent", raw),
        tmp_path / "chromium-profile",
        screenshot,
    )

    assert seen["title"] == "pcpkit torrents"
    assert seen["emptyRow"] == "no torrents"
    # the row appeared and filled up while the page stayed loaded: the script refreshed it
    assert seen["marker"] == 42
    assert seen["updated"].startswith("(updated ")
    assert seen["rows"] == 1
    assert seen["max"] == "1"
    assert seen["values"][-1] == 1.0
    assert any(v < 1.0 for v in seen["values"]), seen["values"]  # it was seen moving
    cells = seen["cells"]
    assert cells["name"].startswith("lecture.mkv")
    assert cells["infohash"] == infohash
    assert cells["percent"] == "100.0%"
    assert cells["state"] in ("seeding", "finished")
    assert seen["link"] == f"{url}stream/{infohash}/0"
    assert seen["screenshot"] is True
    data = screenshot.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")
