"""TorrentClient, TorrentService and TorrentPatron: Kamaelia's torrent components, for real."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.threads import blockingCallFromThread

from pcpkit import Component, ProducerFinished, producerFinished
from pcpkit.threaded import ThreadedComponent
from pcpkit.torrent.client import TorrentClient
from pcpkit.torrent.ipc import (
    TIPCAddPeer,
    TIPCAddPeerFail,
    TIPCCloseTorrent,
    TIPCCreateNewTorrent,
    TIPCNewTorrentCreated,
    TIPCPeerAdded,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
)
from pcpkit.torrent.maker import makeTorrent
from pcpkit.torrent.patron import TorrentPatron
from pcpkit.torrent.service import TorrentService
from tests.torrentutil import MiB, reactor, waitUntil, withTimeout, writePayload


class Inbox(Component):
    """Records what a patron sends out; ends on a shutdown on control."""

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.got: list[Any] = []
        self.ended: Any = None

    def main(self) -> Generator[int, None, list[Any]]:
        while True:
            while self.dataReady("inbox"):
                self.got.append(self.recv("inbox"))
            if self.dataReady("control"):
                self.ended = self.recv("control")
                return self.got
            self.pause()
            yield 1

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.got if isinstance(m, kind)]


def attach(patron: Component) -> Inbox:
    box = Inbox()
    patron.link((patron, "outbox"), (box, "inbox"))
    patron.link((patron, "signal"), (box, "control"))
    box.activate()
    patron.activate()
    return box


async def leave(*pairs: tuple[Component, Inbox]) -> None:
    services = {p.service for p, _ in pairs if isinstance(p, TorrentPatron)}
    for patron, _ in pairs:
        patron.inboxes["control"].deliver(producerFinished())
    for patron, box in pairs:
        await withTimeout(patron.finished, 10)
        await withTimeout(box.finished, 10)
    # the last patron out stops the service, which stops its session
    for service in services:
        assert service is not None
        await withTimeout(service.finished, 30)
        assert service not in TorrentService._services.values()


@pytest_twisted.ensureDeferred
async def test_loopback_swarm_through_patrons(tmp_path: Path) -> None:
    seedDir, getDir = tmp_path / "seed", tmp_path / "get"
    data = writePayload(seedDir, "payload.bin", 32 * MiB, seed=3)
    getDir.mkdir()
    torrent = makeTorrent(seedDir / "payload.bin", pieceSize=256 * 1024)

    # different settings, so two services and two sessions: a session cannot swarm with itself
    seeder = TorrentPatron(tickInterval=0.2, savePath=str(seedDir))
    getter = TorrentPatron(tickInterval=0.25, savePath=str(getDir))
    seedBox, getBox = attach(seeder), attach(getter)

    seeder.inboxes["inbox"].deliver(TIPCCreateNewTorrent(rawmetainfo=torrent))
    await waitUntil(lambda: bool(seedBox.of(TIPCNewTorrentCreated)), 20, "the seed to start")
    assert seeder.service is not None and getter.service is not None
    assert seeder.service is not getter.service
    assert seeder.session is seeder.service.client.session is not None
    seedPort = seeder.session.listenPort

    getter.inboxes["inbox"].deliver(
        TIPCCreateNewTorrent(rawmetainfo=torrent, peers=(("127.0.0.1", seedPort),))
    )
    await waitUntil(lambda: bool(getBox.of(TIPCTorrentFinished)), 90, "the download")
    created = getBox.of(TIPCNewTorrentCreated)
    assert len(created) == 1 and created[0].savefolder == str(getDir)
    got = (getDir / "payload.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    fractions = [m.statsdictionary["fractionDone"] for m in getBox.of(TIPCTorrentStatusUpdate)]
    assert fractions, "no status updates"
    assert fractions == sorted(fractions), "fractionDone went backwards"
    assert {
        "fractionDone",
        "downRate",
        "upRate",
        "numPeers",
        "numSeeds",
        "activity",
        "totalDone",
        "timeEst",
        "infohash",
        "name",
    } <= set(getBox.of(TIPCTorrentStatusUpdate)[0].statsdictionary)
    # messages arrive in a sensible order: created, then status, then finished
    kinds = [type(m) for m in getBox.got]
    assert kinds.index(TIPCNewTorrentCreated) < kinds.index(TIPCTorrentFinished)
    # the seeder only hears about its own torrent
    seedId = seedBox.of(TIPCNewTorrentCreated)[0].torrentid
    assert all(m.torrentid == seedId for m in seedBox.got)
    await leave((seeder, seedBox), (getter, getBox))
    assert isinstance(seedBox.ended, ProducerFinished) and seedBox.ended.caller is seeder


@pytest_twisted.ensureDeferred
async def test_bad_input_gets_clear_answers_and_the_client_keeps_serving(
    tmp_path: Path,
) -> None:
    writePayload(tmp_path, "ok.bin", 100_000)
    good = makeTorrent(tmp_path / "ok.bin")
    patron = TorrentPatron(tickInterval=0.3, savePath=str(tmp_path))
    box = attach(patron)
    inbox = patron.inboxes["inbox"]
    inbox.deliver(TIPCCreateNewTorrent(rawmetainfo=b"this is not bencoded"))
    inbox.deliver(TIPCCreateNewTorrent(rawmetainfo=good[: len(good) // 2]))
    inbox.deliver(TIPCCreateNewTorrent(magnet="magnet:?xt=urn:btih:nothex"))
    inbox.deliver(TIPCCloseTorrent(4242))
    inbox.deliver(TIPCCreateNewTorrent(rawmetainfo=good))
    inbox.deliver(TIPCCreateNewTorrent(rawmetainfo=good))
    await waitUntil(lambda: len(box.got) >= 6, 20, "six answers")
    answers = box.got[:6]
    assert [type(a) for a in answers] == [
        TIPCTorrentStartFail,
        TIPCTorrentStartFail,
        TIPCTorrentStartFail,
        TIPCUnknownTorrent,
        TIPCNewTorrentCreated,
        TIPCTorrentAlreadyDownloading,
    ]
    for fail in answers[:3]:
        assert fail.reason and fail.reason != "unknown reason", fail
    assert answers[3].torrentid == 4242
    tid = answers[4].torrentid
    assert answers[5].torrentid == tid
    # it seeds what is already there, and closes on request
    await waitUntil(lambda: bool(box.of(TIPCTorrentFinished)), 20, "the complete torrent")
    inbox.deliver(TIPCCloseTorrent(tid))
    await waitUntil(lambda: bool(box.of(TIPCTorrentClosed)), 20, "the close")
    await leave((patron, box))


@pytest_twisted.ensureDeferred
async def test_200_patrons_see_only_their_own_messages(tmp_path: Path) -> None:
    pairs = []
    torrents = []
    for i in range(200):
        folder = tmp_path / f"t{i}"
        writePayload(folder, f"file{i}.bin", 20_000, seed=i)
        torrents.append((makeTorrent(folder / f"file{i}.bin"), folder))
    for _ in range(200):
        patron = TorrentPatron(tickInterval=0.5, savePath=str(tmp_path))
        pairs.append((patron, attach(patron)))
    for (patron, _), (torrent, folder) in zip(pairs, torrents, strict=True):
        patron.inboxes["inbox"].deliver(
            TIPCCreateNewTorrent(rawmetainfo=torrent, savefolder=str(folder))
        )
    services = {p.service for p, _ in pairs}
    assert len(services) == 1, "patrons with the same settings share one service"
    await waitUntil(lambda: all(b.of(TIPCNewTorrentCreated) for _, b in pairs), 60, "every answer")
    # let a few status ticks go round, so there is per-torrent traffic to misroute
    await waitUntil(
        lambda: sum(bool(b.of(TIPCTorrentStatusUpdate)) for _, b in pairs) >= 50,
        60,
        "status updates",
    )
    ids = set()
    for (patron, box), (_, folder) in zip(pairs, torrents, strict=True):
        created = box.of(TIPCNewTorrentCreated)
        assert len(created) == 1 and created[0].savefolder == str(folder)
        tid = created[0].torrentid
        ids.add(tid)
        for m in box.got:
            assert getattr(m, "torrentid", tid) == tid, f"{patron} got {m}"
    assert len(ids) == 200
    await leave(*pairs)


@pytest_twisted.ensureDeferred
async def test_patrons_created_and_fed_from_20_threads(tmp_path: Path) -> None:
    torrents = []
    for i in range(20):
        folder = tmp_path / f"t{i}"
        writePayload(folder, f"f{i}.bin", 10_000, seed=100 + i)
        torrents.append((makeTorrent(folder / f"f{i}.bin"), folder))
    made: list[tuple[TorrentPatron, Inbox]] = []
    lock = threading.Lock()

    class Feeder(ThreadedComponent):
        def __init__(self, torrent: bytes, folder: Path) -> None:
            super().__init__()
            self.torrent, self.folder = torrent, folder

        def main(self) -> None:
            patron = TorrentPatron(tickInterval=0.5, savePath=str(tmp_path))  # built here

            def wire() -> None:
                self.link((self, "outbox"), (patron, "inbox"))
                with lock:
                    made.append((patron, attach(patron)))

            blockingCallFromThread(reactor, wire)
            self.send(TIPCCreateNewTorrent(rawmetainfo=self.torrent, savefolder=str(self.folder)))

    feeders = [Feeder(t, f) for t, f in torrents]
    for f in feeders:
        f.activate()
    for f in feeders:
        await withTimeout(f.finished, 30)
    assert len(made) == 20
    await waitUntil(lambda: all(b.of(TIPCNewTorrentCreated) for _, b in made), 30, "answers")
    ids = {b.of(TIPCNewTorrentCreated)[0].torrentid for _, b in made}
    assert len(ids) == 20
    for _, box in made:
        assert len(box.of(TIPCNewTorrentCreated)) == 1
    await leave(*made)


@pytest_twisted.ensureDeferred
async def test_torrentclient_alone_answers_in_request_order(tmp_path: Path) -> None:
    writePayload(tmp_path, "a.bin", 50_000, seed=1)
    writePayload(tmp_path, "b.bin", 50_000, seed=2)
    ta, tb = makeTorrent(tmp_path / "a.bin"), makeTorrent(tmp_path / "b.bin")
    client = TorrentClient(0.2, savePath=str(tmp_path))
    box = attach(client)
    for msg in (
        TIPCCreateNewTorrent(rawmetainfo=ta),
        TIPCCreateNewTorrent(rawmetainfo=b"garbage"),
        TIPCCreateNewTorrent(rawmetainfo=tb),
        TIPCCloseTorrent(99),
    ):
        client.inboxes["inbox"].deliver(msg)
    await waitUntil(
        lambda: (
            len(
                [
                    m
                    for m in box.got
                    if not isinstance(m, (TIPCTorrentStatusUpdate, TIPCTorrentFinished))
                ]
            )
            >= 4
        ),
        20,
        "answers",
    )
    answers = [
        m for m in box.got if not isinstance(m, (TIPCTorrentStatusUpdate, TIPCTorrentFinished))
    ]
    assert [type(m) for m in answers[:4]] == [
        TIPCNewTorrentCreated,
        TIPCTorrentStartFail,
        TIPCNewTorrentCreated,
        TIPCUnknownTorrent,
    ]
    client.inboxes["control"].deliver(producerFinished())
    await withTimeout(client.finished, 30)
    await withTimeout(box.finished, 10)


@pytest_twisted.ensureDeferred
async def test_streamFile_takes_a_torrentclient(tmp_path: Path) -> None:
    from pcpkit.testing import RecordingConsumer
    from pcpkit.torrent.stream import streamFile

    data = writePayload(tmp_path, "s.bin", 3 * MiB, seed=9)
    client = TorrentClient(0.2, savePath=str(tmp_path))
    box = attach(client)
    client.inboxes["inbox"].deliver(
        TIPCCreateNewTorrent(rawmetainfo=makeTorrent(tmp_path / "s.bin", pieceSize=64 * 1024))
    )
    await waitUntil(lambda: bool(box.of(TIPCNewTorrentCreated)), 20, "the torrent")
    tid = box.of(TIPCNewTorrentCreated)[0].torrentid
    consumer = RecordingConsumer()
    await withTimeout(streamFile(client, tid, 0, consumer, start=100_000, end=1_100_000), 30)
    assert consumer.data == data[100_000:1_100_000]
    try:
        streamFile(object(), tid, 0, consumer)
    except TypeError as e:
        assert "TorrentSession or a started TorrentClient" in str(e)
    else:
        raise AssertionError("streamFile accepted an object without a session")
    client.inboxes["control"].deliver(producerFinished())
    await withTimeout(client.finished, 30)
    await withTimeout(box.finished, 10)


@pytest_twisted.ensureDeferred
async def test_add_peer_through_a_patron(tmp_path: Path) -> None:
    """No tracker and no ``peers=``: the downloader is told of the seed by TIPCAddPeer."""
    seedDir, getDir = tmp_path / "seed", tmp_path / "get"
    data = writePayload(seedDir, "payload.bin", 2 * MiB, seed=5)
    getDir.mkdir()
    torrent = makeTorrent(seedDir / "payload.bin", pieceSize=64 * 1024)
    seeder = TorrentPatron(tickInterval=0.2, savePath=str(seedDir))
    getter = TorrentPatron(tickInterval=0.3, savePath=str(getDir))
    assert getter.session is None  # not started yet
    seedBox, getBox = attach(seeder), attach(getter)
    seeder.inboxes["inbox"].deliver(TIPCCreateNewTorrent(rawmetainfo=torrent))
    getter.inboxes["inbox"].deliver(TIPCCreateNewTorrent(rawmetainfo=torrent))
    await waitUntil(
        lambda: bool(seedBox.of(TIPCNewTorrentCreated)) and bool(getBox.of(TIPCNewTorrentCreated)),
        20,
        "both torrents to start",
    )
    assert seeder.session is not None and getter.session is not None
    getId = getBox.of(TIPCNewTorrentCreated)[0].torrentid
    inbox = getter.inboxes["inbox"]
    inbox.deliver(TIPCAddPeer(getId, "not-an-address", 1))
    inbox.deliver(TIPCAddPeer(getId + 1000, "127.0.0.1", seeder.session.listenPort))
    inbox.deliver(TIPCAddPeer(getId, "127.0.0.1", seeder.session.listenPort))
    await waitUntil(lambda: bool(getBox.of(TIPCPeerAdded)), 20, "the peer to be added")
    answers = [
        m for m in getBox.got if isinstance(m, (TIPCAddPeerFail, TIPCUnknownTorrent, TIPCPeerAdded))
    ]
    assert [type(m) for m in answers] == [TIPCAddPeerFail, TIPCUnknownTorrent, TIPCPeerAdded]
    assert "IP address" in answers[0].reason and answers[1].torrentid == getId + 1000
    assert answers[2] == TIPCPeerAdded(getId, "127.0.0.1", seeder.session.listenPort)
    await waitUntil(lambda: bool(getBox.of(TIPCTorrentFinished)), 60, "the download")
    got = (getDir / "payload.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    await leave((seeder, seedBox), (getter, getBox))
