"""
The torrent daemon's web UI in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromedriver, against ``twistd -n pcpkit torrent`` (a child
process) fed by a rate-limited seeder session in this process.

The page is used as a person would: paste the token, add a ``.torrent`` through the form,
watch it complete, pause and resume it, change a file's priority, remove it. Screenshots are
saved in the test's tmp dir. Selenium blocks, so the browser session runs in a thread
(``deferToThread``) while the reactor keeps the seeder and the child process going.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from pcpkit.torrent.maker import infohashOf, makeTorrent
from tests.test_status_page_browser import headlessChromium, requireChromium
from tests.test_twistd_torrent import (  # noqa: F401 - the "daemons" fixture
    Daemons,
    daemonsFixture,
)
from tests.torrentutil import (  # noqa: F401 - the "sessions" fixture
    MiB,
    Sessions,
    freePort,
    sessionsFixture,
    withTimeout,
    writePayload,
)

PIECE = 16384


def useUi(url: str, torrentFile: Path, infohash: str, shots: Path, token: str) -> dict[str, Any]:
    """In a thread: drive the page through a torrent's life. Returns what was seen."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = headlessChromium(shots / "chromium-profile")
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(
            driver, 60, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )

        def css(selector: str) -> Any:
            return driver.find_element(By.CSS_SELECTOR, selector)

        def shot(name: str) -> None:
            assert driver.save_screenshot(str(shots / f"{name}.png"))

        driver.get(url)
        seen["tokenState"] = css("#token-state").text
        # without the token the controls say what is missing, and nothing is added
        css("#add-file").send_keys(str(torrentFile))
        css("#add-submit").click()
        wait.until(lambda d: css("#message").text)
        seen["noToken"] = css("#message").text

        # the token goes in by hand, as a user pastes it
        css("#token").send_keys(token)
        css("#token-save").click()
        wait.until(lambda d: "token set" in css("#token-state").text)
        seen["stored"] = driver.execute_script("return localStorage.getItem('pcpkit-token');")
        driver.execute_script("window.pcpkitMarker = 42;")  # a reload would lose it

        # add it through the form: the row appears without a reload
        css("#add-submit").click()
        row = f'#torrents tr[data-infohash="{infohash}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        wait.until(lambda d: css("#message").text.startswith("added "))
        seen["added"] = css("#message").text
        seen["addFileCleared"] = css("#add-file").get_attribute("value")

        # downloading: its ETA, its tracker error, a stream link and a priority per file
        wait.until(lambda d: css(f"{row} td.tracker").text)
        seen["tracker"] = css(f"{row} td.tracker").text
        etas: list[str] = []

        def progressed(d: Any) -> bool:
            etas.append(css(f"{row} td.eta").text)
            return float(css(f"{row} progress").get_attribute("value") or 0) >= 1.0

        values = []

        def moving(d: Any) -> bool:
            values.append(float(css(f"{row} progress").get_attribute("value") or 0))
            return 0 < values[-1] < 1.0

        wait.until(moving)
        shot("1-downloading")
        wait.until(progressed)
        seen["etas"] = etas
        seen["links"] = [
            a.get_attribute("href")
            for a in driver.find_elements(By.CSS_SELECTOR, f"{row} .files a")
        ]
        wait.until(lambda d: css(f"{row} td.state").text in ("seeding", "finished"))
        seen["done"] = {c: css(f"{row} td.{c}").text for c in ("name", "percent", "state", "eta")}
        shot("2-complete")

        # pause, then resume
        css(f"{row} button.pause").click()
        wait.until(lambda d: css(f"{row} td.state").text == "paused")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.resume"))
        seen["paused"] = css("#message").text
        shot("3-paused")
        css(f"{row} button.resume").click()
        wait.until(lambda d: css(f"{row} td.state").text in ("seeding", "finished"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.pause"))
        seen["resumed"] = css("#message").text

        # a file's priority
        Select(css(f'{row} select.priority[data-index="1"]')).select_by_visible_text("skip")
        wait.until(lambda d: "skip" in css("#message").text)
        seen["priority"] = css("#message").text

        # remove it (the page asks first)
        css(f"{row} button.remove").click()
        alert = wait.until(lambda d: d.switch_to.alert)
        seen["confirm"] = alert.text
        alert.accept()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#torrents tr.empty"))
        seen["removed"] = css("#message").text
        seen["marker"] = driver.execute_script("return window.pcpkitMarker;")
        shot("4-removed")
        return seen
    finally:
        driver.quit()


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_web_ui_in_headless_chromium(
    daemons: Daemons, sessions: Sessions, tmp_path: Path
) -> None:
    requireChromium()
    seedDir = tmp_path / "seed"
    a = writePayload(seedDir, "show/episode.mkv", 3 * MiB, seed=5)
    writePayload(seedDir, "show/subtitles.srt", 20000, seed=6)
    deadTracker = f"http://127.0.0.1:{freePort()}/announce"
    raw = makeTorrent(seedDir / "show", trackers=[deadTracker], pieceSize=PIECE)
    infohash = infohashOf(raw)
    torrentFile = tmp_path / "show.torrent"
    torrentFile.write_bytes(raw)
    seeder = sessions(
        settings={"upload_rate_limit": 1 * MiB, "ignore_limits_on_local_network": False}
    )
    await withTimeout(seeder.addTorrent(raw, savefolder=str(seedDir), seed=True), 20)

    state = tmp_path / "state"
    daemon = await daemons(
        tmp_path / "save", stateDir=state, peers=[("127.0.0.1", seeder.listenPort)]
    ).start()
    token = (state / "api-token").read_text().strip()
    # the token is in the log once, at its making
    assert daemon.text().count(token) == 1
    url = f"http://127.0.0.1:{daemon.port}/"
    shots = tmp_path / "screenshots"
    shots.mkdir()

    seen = await deferToThread(useUi, url, torrentFile, infohash, shots, token)

    assert seen["tokenState"] == "no token: this page can only watch"
    assert "paste the API token first" in seen["noToken"]
    assert seen["stored"] == token
    assert seen["added"] == "added show"
    assert seen["addFileCleared"] == ""
    assert deadTracker in seen["tracker"]
    # while it downloaded the ETA was a time (or unknown before the first rate), then empty
    assert any(e.endswith(" s") for e in seen["etas"]), seen["etas"]
    assert seen["done"]["percent"] == "100.0%" and seen["done"]["eta"] == ""
    assert seen["done"]["name"].startswith("show")
    assert seen["links"] == [f"{url}stream/{infohash}/0", f"{url}stream/{infohash}/1"]
    assert seen["paused"] == "paused show" and seen["resumed"] == "resumed show"
    assert seen["priority"] == "show/subtitles.srt: skip"
    assert "Remove show?" in seen["confirm"] and "kept" in seen["confirm"]
    assert seen["removed"] == "removed show"
    assert seen["marker"] == 42  # one page load all along
    for name in ("1-downloading", "2-complete", "3-paused", "4-removed"):
        data = (shots / f"{name}.png").read_bytes()
        assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")

    # the daemon did it all: the data arrived whole, and was kept on removal
    assert (tmp_path / "save" / "show" / "episode.mkv").read_bytes() == a
    code, _, body = await daemon.request("/status.json")
    assert code == 200 and json.loads(body) == []


#: (a selenium async script) fetch each of ``arguments[0]``: ``[path, status, hex body]``
FETCH_PATHS = """
const done = arguments[arguments.length - 1];
Promise.all(arguments[0].map(path => fetch(path).then(async response => {
    const bytes = new Uint8Array(await response.arrayBuffer());
    const hex = Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
    return [path, response.status, hex];
}).catch(error => [path, 0, String(error)]))).then(done);
"""


def rebindingChromium(profile: Path) -> Any:
    """A headless Chromium in which ``evil.example`` and ``media.lan`` resolve to 127.0.0.1."""
    rules = "MAP evil.example 127.0.0.1, MAP media.lan 127.0.0.1"
    driver = headlessChromium(profile, f"--host-resolver-rules={rules}")
    driver.set_script_timeout(30)
    return driver


def readPage(driver: Any, paths: list[str]) -> dict[str, Any]:
    """What the page open in ``driver`` shows, and reads of ``paths`` as same-origin requests."""
    from selenium.webdriver.common.by import By

    return {
        "title": driver.title,
        "text": driver.find_element(By.TAG_NAME, "body").text,
        "origin": driver.execute_script("return location.origin;"),
        "fetched": {
            path: (code, bytes.fromhex(hexData) if code else hexData)
            for path, code, hexData in driver.execute_async_script(FETCH_PATHS, paths)
        },
    }


def rebind(port: int, paths: list[str], profile: Path) -> dict[str, Any]:
    """
    In a thread: a browser in which ``evil.example`` and ``media.lan`` resolve to 127.0.0.1
    (as after DNS rebinding) opens the daemon under each name, and fetches ``paths`` as
    same-origin requests from there. Returns what each page could read.
    """
    driver = rebindingChromium(profile)
    try:
        seen: dict[str, Any] = {}
        for name in ("evil.example", "media.lan"):
            driver.get(f"http://{name}:{port}/")
            seen[name] = readPage(driver, paths)
        return seen
    finally:
        driver.quit()


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_a_rebound_name_reads_nothing_in_chromium(daemons: Daemons, tmp_path: Path) -> None:
    """
    DNS rebinding in a real browser: a page whose name now resolves to 127.0.0.1 is
    same-origin with the daemon, yet every read of it is refused (421); the name given with
    ``--allowed-host`` reads everything.
    """
    from tests.test_twistd_torrent import drop

    requireChromium()
    data = writePayload(tmp_path / "save", "home-video.mp4", 3 * PIECE + 5, seed=8)
    raw = makeTorrent(tmp_path / "save" / "home-video.mp4", pieceSize=PIECE)
    infohash = infohashOf(raw)
    watch = tmp_path / "watch"
    daemon = await daemons(
        tmp_path / "save", watchDir=watch, extra=["--allowed-host", "media.lan"]
    ).start()
    drop(watch, "home-video.torrent", raw)
    await daemon.waitFor(infohash, lambda t: t["fractionDone"] == 1.0, 30, "the file checked")
    paths = ["/status.json", "/api/torrents", f"/api/torrents/{infohash}/peers"]
    paths += [f"/stream/{infohash}/0", "/status.js"]

    seen = await deferToThread(rebind, daemon.port, paths, tmp_path / "chromium-profile")

    evil = seen["evil.example"]
    assert evil["origin"] == f"http://evil.example:{daemon.port}"  # the browser was fooled
    assert f"Host 'evil.example:{daemon.port}' is not a name of this" in evil["text"]
    assert "--allowed-host evil.example" in evil["text"]
    for path in paths:
        code, body = evil["fetched"][path]
        assert code == 421, (path, code, body)
        assert infohash.encode() not in body and data[:64] not in body, path
        assert json.loads(body)["error"].startswith(f"Host 'evil.example:{daemon.port}'")

    allowed = seen["media.lan"]
    assert allowed["title"] == "pcpkit torrents" and evil["title"] != allowed["title"]
    assert "home-video.mp4" in allowed["text"]
    fetched = allowed["fetched"]
    assert fetched["/status.json"][0] == 200
    assert json.loads(fetched["/status.json"][1])[0]["infohash"] == infohash
    assert fetched[f"/stream/{infohash}/0"] == (200, data)
