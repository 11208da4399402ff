"""
The inspector's page in a real browser (Debian's chromium, headless, through selenium and
chromedriver): it draws a running pipeline, its fill bars follow the sink as it is slowed
and sped up, the waits-on chain names the sink, and the page's EventSource reconnects after
the server restarts; a page whose name is rebound to 127.0.0.1 reads none of it. Selenium
blocks, so the browser session runs in a thread while the reactor runs the pipeline; the
test thread changes the sink's speed and restarts the server through
``blockingCallFromThread``.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from twisted.internet.threads import blockingCallFromThread, deferToThread

import pcpkit.inspect as pi
from pcpkit.chassis import Pipeline
from pcpkit.component import Component
from pcpkit.ipc import ShutdownMicroprocess
from tests.test_status_page_browser import headlessChromium, requireChromium
from tests.test_webui_browser import readPage, rebindingChromium

R: Any = reactor


class Pulse(Component):
    """Sends ``perTick`` messages each time it is ticked (``tick()``)."""

    perTick = 5
    sent = 0

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            for _ in range(self.perTick):
                self.send(self.sent, "outbox")
                self.sent += 1
            self.pause()
            yield 1


class Pass(Component):
    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
            self.pause()
            yield 1


class Sink(Component):
    """Takes at most ``perTick`` messages a tick (``None``: all of them)."""

    perTick: int | None = 0
    allowance = 0
    taken = 0

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            while self.dataReady("inbox") and (self.perTick is None or self.allowance > 0):
                self.recv("inbox")
                self.allowance -= 1
                self.taken += 1
            self.pause()
            yield 1


class Running:
    """The pipeline, its clock and the inspector server."""

    def __init__(self) -> None:
        self.src, self.mid, self.sink = Pulse(), Pass(), Sink()
        for c in (self.mid, self.sink):
            c.setInboxSize("inbox", 20, park=True)
        self.pipe = Pipeline(self.src, self.mid, self.sink)
        self.ticker = LoopingCall(self.tick)
        self.server: Any = None
        self.port = 0

    def tick(self) -> None:
        self.sink.allowance = self.sink.perTick or 0
        self.sink.unpause()
        self.src.unpause()

    def setSinkRate(self, perTick: int | None) -> None:
        self.sink.perTick = perTick

    async def startServer(self, allowedHosts: tuple[str, ...] = ()) -> int:
        self.server = pi.serve(f"tcp:{self.port}:interface=127.0.0.1", allowedHosts=allowedHosts)
        self.port = (await self.server.listening).getHost().port
        return self.port

    async def stopServer(self) -> None:
        await self.server.stop()

    async def stop(self) -> None:
        """End the pipeline and the server."""
        self.pipe.inboxes["control"].deliver(ShutdownMicroprocess())
        for c in (self.src, self.mid, self.sink):
            c.inboxes["control"].deliver(ShutdownMicroprocess())
            c.unpause()
        await self.pipe.finished
        await self.stopServer()


def browse(run: Running, url: str, profile: Path, shots: Path) -> dict[str, Any]:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def call(f: Any, *a: Any) -> Any:
        return blockingCallFromThread(R, f, *a)

    driver = headlessChromium(profile)
    seen: dict[str, Any] = {}
    src, mid, sink = (f"c{c.id}" for c in (run.src, run.mid, run.sink))
    edge = f'g.edge[data-from="{mid}"][data-to="{sink}"].kind-data'
    try:
        driver.get(url)
        wait = WebDriverWait(
            driver, 30, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        driver.execute_script("window.pcpkitMarker = 7;")
        wait.until(
            lambda d: all(
                d.find_elements(By.CSS_SELECTOR, f'g.node[data-id="{i}"]') for i in (src, mid, sink)
            )
        )
        seen["title"] = driver.title
        seen["group"] = wait.until(
            lambda d: d.execute_script(
                "const t = document.querySelector(arguments[0]); return t && t.textContent;",
                f'g.group[data-id="c{run.pipe.id}"] text',
            )
        )

        # One script reads the drawing at once (it is redrawn on every update).
        def state(d: Any) -> dict[str, Any]:
            result: dict[str, Any] = d.execute_script(
                """
                const e = document.querySelector(arguments[0]);
                const bar = e && e.querySelector("rect.bar-fill");
                const root = document.querySelector('g.node[data-id="' + arguments[1] + '"]');
                return {
                  fill: e ? parseFloat(e.getAttribute("data-fill")) : null,
                  bar: bar ? bar.getAttribute("class") : "",
                  sinkClass: root ? root.getAttribute("class") : "",
                  roots: Array.from(document.querySelectorAll("#waits li[data-root]"))
                    .map((li) => li.dataset.root),
                  firstWait: (document.querySelector("#waits li") || {}).textContent || "",
                  chainEdges: document.querySelectorAll("g.edge.chain").length,
                  idle: document.querySelectorAll("#waits li.hint").length,
                };
                """,
                edge,
                sink,
            )
            return result

        # the sink takes nothing: its inbox fills, the bar goes red, the chain ends at it
        def blocked(d: Any) -> Any:
            st = state(d)
            ok = (
                st["fill"] is not None
                and st["fill"] >= 1
                and "fill-red" in st["bar"]
                and "root" in st["sinkClass"]
                and sink in st["roots"]
                # the ticker wakes the sink (to take nothing) 20 times a second: a snapshot
                # can catch it running; wait for one that shows it idle
                and "not reading" in st["firstWait"]
            )
            return st if ok else False

        st = wait.until(blocked)
        seen["slowWaits"] = st["firstWait"]
        seen["slowChainEdges"] = st["chainEdges"]
        driver.save_screenshot(str(shots / "slow.png"))

        # a slow but moving sink: about half full, yellow or green, and moving
        call(run.setSinkRate, 3)
        # the sink keeps up: the boxes empty, the bars go green, nobody waits
        call(run.setSinkRate, None)

        def flowing(d: Any) -> bool:
            st = state(d)
            return (
                st["fill"] is not None
                and st["fill"] < 0.6
                and "fill-green" in st["bar"]
                and st["idle"] == 1
                and "root" not in st["sinkClass"]
            )

        wait.until(flowing)
        driver.save_screenshot(str(shots / "fast.png"))
        # click the sink: its boxes and counters
        driver.execute_script(
            "document.querySelector('g.node[data-id=\"' + arguments[0] + '\"]')"
            '.dispatchEvent(new MouseEvent("click"));',
            sink,
        )
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'#details tr[data-box="{sink}.in.inbox"]')
        )
        seen["details"] = driver.execute_script(
            "return document.getElementById('details').innerText;"
        )

        # the server restarts: the page notices, and carries on without a reload
        before = driver.execute_script("return window.pcpkitUpdates;")
        call(run.stopServer)
        wait.until(lambda d: "disconnected" in d.find_element(By.ID, "status").text)
        seen["down"] = driver.find_element(By.ID, "status").text
        call(run.setSinkRate, 0)
        call(run.startServer)
        wait.until(
            lambda d: (
                d.find_element(By.ID, "status").text == "live"
                and d.execute_script("return window.pcpkitUpdates;") > before
            )
        )
        wait.until(blocked)  # and it shows the new state
        seen["marker"] = driver.execute_script("return window.pcpkitMarker;")
        driver.save_screenshot(str(shots / "reconnected.png"))
        return seen
    finally:
        driver.quit()


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_inspector_page_in_headless_chromium(tmp_path: Path) -> None:
    requireChromium()
    run = Running()
    port = await run.startServer()
    run.pipe.activate()
    run.ticker.start(0.05)
    try:
        seen = await deferToThread(
            browse, run, f"http://127.0.0.1:{port}/", tmp_path / "profile", tmp_path
        )
    finally:
        run.ticker.stop()
        await run.stop()
    assert seen["title"] == "pcpkit inspector"
    assert seen["group"] == str(run.pipe)
    assert str(run.src) in seen["slowWaits"] and str(run.sink) in seen["slowWaits"]
    assert "not reading" in seen["slowWaits"]
    assert seen["slowChainEdges"] >= 2  # source -> middle -> sink highlighted
    assert "in inbox" in seen["details"] and "messages in" in seen["details"]
    assert seen["down"].startswith("disconnected")
    assert seen["marker"] == 7  # the same page load all along
    assert run.sink.taken > 0
    for name in ("slow.png", "fast.png", "reconnected.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def rebind(run: Running, port: int, paths: list[str], profile: Path) -> dict[str, Any]:
    """
    In a thread: a browser in which ``evil.example`` and ``media.lan`` resolve to 127.0.0.1
    (as after DNS rebinding) opens the inspector under each name and fetches ``paths`` as
    same-origin requests from there (but ``/events`` from ``media.lan``: it would never end).
    Returns what each page could read.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = rebindingChromium(profile)
    sink = f'g.node[data-id="c{run.sink.id}"]'
    try:
        driver.get(f"http://evil.example:{port}/")
        seen = {"evil.example": readPage(driver, paths)}
        driver.get(f"http://media.lan:{port}/")
        # the page goes live and draws the pipeline
        WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: (
                d.find_element(By.ID, "status").text == "live"
                and d.find_elements(By.CSS_SELECTOR, sink)
            )
        )
        seen["media.lan"] = readPage(driver, [p for p in paths if p != "/events"])
        return seen
    finally:
        driver.quit()


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_a_rebound_name_reads_nothing_in_chromium(tmp_path: Path) -> None:
    """
    DNS rebinding in a real browser: a page whose name now resolves to 127.0.0.1 is
    same-origin with the inspector, yet every read (the graph, the event stream, the page's
    own files) is refused (421); the name given as ``allowedHosts`` sees the live graph.
    """
    requireChromium()
    run = Running()
    port = await run.startServer(allowedHosts=("media.lan",))
    run.pipe.activate()
    paths = ["/graph.json", "/events", "/inspect.js", "/inspect.css"]
    try:
        seen = await deferToThread(rebind, run, port, paths, tmp_path / "profile")
    finally:
        await run.stop()

    evil = seen["evil.example"]
    assert evil["origin"] == f"http://evil.example:{port}"  # the browser was fooled
    assert f"Host 'evil.example:{port}' is not a name of this pcpkit inspector" in evil["text"]
    assert "--inspect-allowed-host evil.example" in evil["text"]
    assert str(run.sink).encode() not in evil["text"].encode()
    for path in paths:
        code, body = evil["fetched"][path]
        assert code == 421, (path, code, body)
        assert json.loads(body)["error"].startswith(f"Host 'evil.example:{port}'")
        assert str(run.sink).encode() not in body and b"components" not in body

    allowed = seen["media.lan"]
    assert allowed["title"] == "pcpkit inspector" and evil["title"] != allowed["title"]
    code, body = allowed["fetched"]["/graph.json"]
    assert code == 200
    assert any(c["id"] == f"c{run.sink.id}" for c in json.loads(body)["components"])
