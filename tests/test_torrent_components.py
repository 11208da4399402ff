"""TorrentMaker and BasicTorrentExplainer as components."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import LoopingCall

from pcpkit import Component, ErrorInformation, producerFinished
from pcpkit.chassis import Pipeline
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.torrent.ipc import (
    TIPCCreateNewTorrent,
    TIPCMakeTorrent,
    TIPCNewTorrentCreated,
    TIPCTorrentFinished,
)
from pcpkit.torrent.maker import BasicTorrentExplainer, TorrentMaker, infohashOf, torrentName
from pcpkit.torrent.patron import TorrentPatron
from tests.torrentutil import MiB, waitUntil, withTimeout, writePayload


class Requests(Component):
    """Sends its messages, then producerFinished."""

    def __init__(self, *messages: Any, **argd: Any) -> None:
        super().__init__(**argd)
        self.messages_ = messages

    def main(self) -> Generator[int, None, None]:
        for m in self.messages_:
            self.send(m, "outbox")
        self.send(producerFinished(self), "signal")
        yield 1


@pytest_twisted.ensureDeferred
async def test_torrentmaker_answers_in_order_and_reports_bad_requests(tmp_path: Path) -> None:
    writePayload(tmp_path, "a.bin", 300_000, seed=1)
    writePayload(tmp_path, "b.bin", 300_000, seed=2)
    maker = TorrentMaker()
    sink = MessageCollector()
    p = Pipeline(
        Requests(
            TIPCMakeTorrent(
                "http://127.0.0.1:1/announce", 16, "A", "first", str(tmp_path / "a.bin")
            ),
            TIPCMakeTorrent("", 18, "", "", str(tmp_path / "missing.bin")),
            "not a request",
            TIPCMakeTorrent("", 15, "", "", str(tmp_path / "b.bin")),  # 32 KiB pieces
        ),
        maker,
        sink,
    )
    await runComponent(p, timeout=30)
    assert len(sink.messages) == 2
    assert torrentName(sink.messages[0]) == "a.bin"
    assert torrentName(sink.messages[1]) == "b.bin"
    assert infohashOf(sink.messages[0]) != infohashOf(sink.messages[1])
    errors = [m for m in sink.controlMessages if isinstance(m, ErrorInformation)]
    assert len(errors) == 2
    assert "missing.bin" in str(errors[0])
    assert "not a request" in str(errors[1])


@pytest_twisted.ensureDeferred
async def test_hashing_does_not_block_the_reactor(tmp_path: Path) -> None:
    writePayload(tmp_path, "big.bin", 160 * MiB, seed=5)
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    maker = TorrentMaker()
    sink = MessageCollector()
    p = Pipeline(Requests(TIPCMakeTorrent("", 18, "", "", str(tmp_path / "big.bin"))), maker, sink)
    loop = LoopingCall(tick)
    loop.start(0.005, now=False)
    try:
        await runComponent(p, timeout=60)
    finally:
        loop.stop()
    assert len(sink.messages) == 1
    # hashing 160 MiB takes over 0.1 s here; a reactor blocked by it would not tick
    assert ticks >= 3


@pytest_twisted.ensureDeferred
async def test_made_torrent_seeds_through_a_patron_and_is_explained(tmp_path: Path) -> None:
    writePayload(tmp_path, "c.bin", 200_000, seed=3)
    made = MessageCollector()
    await runComponent(
        Pipeline(
            Requests(TIPCMakeTorrent("", 16, "", "", str(tmp_path / "c.bin"))), TorrentMaker(), made
        ),
        timeout=30,
    )
    patron = TorrentPatron(tickInterval=0.3, savePath=str(tmp_path))
    explainer = BasicTorrentExplainer()
    lines = MessageCollector()
    patron.link((patron, "outbox"), (explainer, "inbox"))
    explainer.link((explainer, "outbox"), (lines, "inbox"))
    explainer.link((explainer, "signal"), (lines, "control"))
    patron.link((patron, "signal"), (explainer, "control"))
    for c in (lines, explainer, patron):
        c.activate()
    patron.inboxes["inbox"].deliver(TIPCCreateNewTorrent(rawmetainfo=made.messages[0]))
    await waitUntil(lambda: any("finished" in line for line in lines.messages), 20, "finished")
    assert any(line.startswith("New torrent") for line in lines.messages)
    assert all(isinstance(line, str) for line in lines.messages)
    assert explainer(TIPCTorrentFinished(7)) == "Torrent 7 has finished downloading"
    assert "created" in explainer.explain(TIPCNewTorrentCreated(1, "/x"))
    patron.inboxes["control"].deliver(producerFinished())
    await withTimeout(lines.finished, 30)
    assert patron.service is not None
    await withTimeout(patron.service.finished, 30)
