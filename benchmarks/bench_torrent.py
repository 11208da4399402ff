"""
P4 / P5: torrents on the reactor against plain libtorrent, side by side in one run.

Three measures, every run of every contender in a fresh process of its own (``python
bench_torrent.py --child KIND ...``), runs interleaved, the median of ``--repeat`` reported:

(a) **swarm** (P4) -- a 256 MiB single-file torrent (256 KiB pieces) moved over loopback
    between two libtorrent sessions in one process, timed from the downloader's add to
    "finished and flushed to disk":

    * ``pcpkit-patrons``: two :class:`~pcpkit.torrent.patron.TorrentPatron` s with different
      save paths (so two services, two sessions), default ``tickInterval``; the seed is
      started with ``TIPCCreateNewTorrent(seed=True)``, the download with
      ``TIPCCreateNewTorrent(peers=(("127.0.0.1", seedPort),))``, the clock stops at
      ``TIPCTorrentFinished`` (sent once libtorrent has flushed the files).
    * ``plain-libtorrent``: a plain script -- two ``lt.session`` objects with the same
      settings as pcpkit's defaults, ``add_torrent``, ``connect_peer``, a loop of
      ``wait_for_alert`` / ``pop_alerts`` until ``torrent_finished_alert`` and then (as
      pcpkit does) ``flush_cache`` and its ``cache_flushed_alert``.

(b) **stream** (P5) -- a 64 MiB torrent downloaded from a seeding peer (two
    :class:`~pcpkit.torrent.session.TorrentSession` s in one process):

    * ``streamFile``: :func:`~pcpkit.torrent.stream.streamFile` of the whole file, started
      as soon as the torrent is added, into a null ``IConsumer`` that honours flow control
      (it pauses the producer after each 1 MiB and resumes it on the next reactor turn, as
      a fast transport would) and checks a CRC-32 of what it got; timed from the add to the
      stream's Deferred, less the time the CRC took (measured around each call, ~25 ms).
    * ``download``: the same torrent downloaded without a stream, timed from the add to
      ``torrentFinished``.

(c) **idle** (P4) -- CPU used by a process holding an open session with one seeding torrent
    (the 64 MiB one, no peers) over 5 s, from ``resource.getrusage`` (user + system, all
    threads, libtorrent's included), after 1 s to settle: a ``TorrentPatron`` at its default
    ``tickInterval`` (5 s), and for reference a plain ``lt.session`` in a
    ``wait_for_alert(1000)`` loop.

Timing: libtorrent acts on ``connect_peer`` (and resumes a just-added torrent) on its
once-a-second tick, which comes 0.5 s + k s after a session starts; left alone that adds a
random 0-1 s to transfers that take about a second. Every timed run therefore adds its
download 1.4 s + k s into the downloading session's life (see :data:`PHASE`): each contender
then waits the same ~0.1 s for its peer connection, and that 0.1 s is in every figure.

Every download is checked (SHA-256 of the file written, CRC-32 of the streamed bytes)
outside the timed part. Payloads live in a temporary folder; each run downloads into a fresh
one.

Usage::

    python benchmarks/bench_torrent.py            # 256 MiB / 64 MiB, 3 runs each, 5 s idle
    python benchmarks/bench_torrent.py --quick    # 64 MiB / 16 MiB, 3 runs each, 2 s idle
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Generator
from typing import Any

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # run from a checkout

MiB = 1024 * 1024
PIECE_SIZE = 256 * 1024
CHILD_TIMEOUT = 600.0
#: bytes of each stream checked against the file in the seek runs
HEAD = 64 * 1024
#: the seek runs: bytes of the fresh stream delivered before it seeks to 90%
SEEK_AFTER = 2 * MiB


# -- helpers shared by the children ------------------------------------------------------


def cpuSeconds() -> float:
    """User + system CPU of this process so far (every thread)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sha256File(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


#: libtorrent acts on ``connect_peer`` (and resumes a newly added auto-managed torrent) on
#: its once-a-second tick, which falls 0.5 s + k s after a session starts. Left alone, that
#: adds a random 0-1 s to a transfer of about a second. Every timed contender therefore adds
#: its download PHASE + k seconds (k >= 1) into the downloading session's life, and so waits
#: the same ~0.1 s for its connection.
PHASE = 0.4


def untilPhase(born: float) -> float:
    """Seconds to wait so that a session started at ``born`` is PHASE + k s old (k >= 1)."""
    age = time.perf_counter() - born
    return max(1.0 + PHASE, math.ceil(age - PHASE) + PHASE) - age


def report(**values: Any) -> None:
    """A child's one line of output: JSON, read by the parent."""
    print(json.dumps(values), flush=True)


# -- child: pcpkit patrons ----------------------------------------------------------------


def _patronChild(job: dict[str, Any]) -> None:
    """Run ``job`` ("swarm" or "idle") through TorrentPatrons; report what it measured."""
    from twisted.internet.defer import Deferred, ensureDeferred, succeed
    from twisted.internet.task import deferLater, react

    from pcpkit import Component, producerFinished
    from pcpkit.torrent.ipc import (
        TIPCCreateNewTorrent,
        TIPCNewTorrentCreated,
        TIPCTorrentError,
        TIPCTorrentFinished,
        TIPCTorrentStartFail,
    )
    from pcpkit.torrent.patron import TorrentPatron

    class Watch(Component):
        """Takes a patron's outbox and signal; ``next(kind)`` waits for a message type."""

        def __init__(self, patron: TorrentPatron) -> None:
            super().__init__()
            self.waiting: list[tuple[type, Deferred[Any]]] = []
            self.seen: list[object] = []
            patron.link((patron, "outbox"), (self, "inbox"))
            patron.link((patron, "signal"), (self, "control"))
            self.activate()

        def next(self, kind: type) -> Deferred[Any]:
            for msg in self.seen:
                if isinstance(msg, kind):
                    self.seen.remove(msg)
                    return succeed(msg)
            d: Deferred[Any] = Deferred()
            self.waiting.append((kind, d))
            return d

        def main(self) -> Generator[int, None, None]:
            while not self.dataReady("control"):
                while self.dataReady("inbox"):
                    self._got(self.recv("inbox"))
                self.pause()
                yield 1

        def _got(self, msg: object) -> None:
            if isinstance(msg, (TIPCTorrentStartFail, TIPCTorrentError)):
                waiting, self.waiting = self.waiting, []
                for _, d in waiting:
                    d.errback(RuntimeError(str(msg)))
                return
            for i, (kind, d) in enumerate(self.waiting):
                if isinstance(msg, kind):
                    del self.waiting[i]
                    d.callback(msg)
                    return
            self.seen.append(msg)

    async def leave(*patrons: TorrentPatron) -> None:
        services = [p.service for p in patrons]
        for p in patrons:
            p.inboxes["control"].deliver(producerFinished())
        for p in patrons:
            await p.finished
        for s in services:
            if s is not None:
                await s.finished

    async def run(reactor: Any) -> None:
        with open(job["torrent"], "rb") as f:
            raw = f.read()
        seeder = TorrentPatron(savePath=job["seedDir"])
        seedWatch = Watch(seeder)
        seeder.activate()
        getter = TorrentPatron(savePath=job["getDir"])
        getWatch = Watch(getter)
        if job["kind"] != "idle":
            getter.activate()
            while getter.session is None:
                await deferLater(reactor, 0.002, lambda: None)
            born = time.perf_counter()
        seeder.inboxes["inbox"].deliver(TIPCCreateNewTorrent(rawmetainfo=raw, seed=True))
        await seedWatch.next(TIPCNewTorrentCreated)
        if job["kind"] == "idle":
            await deferLater(reactor, 1.0, lambda: None)
            cpu0, t0 = cpuSeconds(), time.perf_counter()
            await deferLater(reactor, job["seconds"], lambda: None)
            cpu, wall = cpuSeconds() - cpu0, time.perf_counter() - t0
            await leave(seeder)
            report(cpu=cpu, wall=wall, percent=100.0 * cpu / wall)
            return
        assert seeder.session is not None
        port = seeder.session.listenPort
        await deferLater(reactor, untilPhase(born), lambda: None)
        cpu0, t0 = cpuSeconds(), time.perf_counter()
        getter.inboxes["inbox"].deliver(
            TIPCCreateNewTorrent(rawmetainfo=raw, peers=(("127.0.0.1", port),))
        )
        await getWatch.next(TIPCTorrentFinished)
        elapsed, cpu = time.perf_counter() - t0, cpuSeconds() - cpu0
        await leave(seeder, getter)
        report(
            seconds=elapsed, cpu=cpu, sha256=sha256File(os.path.join(job["getDir"], job["name"]))
        )

    react(lambda reactor: ensureDeferred(run(reactor)))  # type: ignore[no-untyped-call]


# -- child: pcpkit TorrentSession, streaming or downloading --------------------------------


def _sessionChild(job: dict[str, Any]) -> None:
    from twisted.internet import reactor as _reactor
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.interfaces import IConsumer
    from twisted.internet.task import deferLater, react
    from zope.interface import implementer

    from pcpkit.torrent.session import BaseTorrentSessionObserver, TorrentSession
    from pcpkit.torrent.stream import streamFile

    reactor: Any = _reactor

    @implementer(IConsumer)
    class NullConsumer:
        """Counts and CRCs; pauses its producer every ``burst`` bytes for one reactor turn."""

        def __init__(self, burst: int = MiB) -> None:
            self.burst = burst
            self.producer: Any = None
            self.received = 0
            self.crc = 0
            self.pending = 0
            self.pauses = 0
            #: time spent on the CRC, taken off the stream's time (the download's check
            #: is done after its clock stops)
            self.checkSeconds = 0.0
            #: perf_counter() of the first write, and the first bytes (checked after)
            self.firstByte: float | None = None
            self.head = b""
            #: fires once ``stopAt`` bytes have come (the producer is then stopped)
            self.stopAt: int | None = None
            self.stopped: Deferred[None] = Deferred()

        def registerProducer(self, producer: Any, streaming: bool) -> None:
            self.producer = producer

        def unregisterProducer(self) -> None:
            self.producer = None

        def write(self, data: bytes) -> None:
            if self.firstByte is None:
                self.firstByte = time.perf_counter()
                self.head = data[:HEAD]
            self.received += len(data)
            t = time.perf_counter()
            self.crc = zlib.crc32(data, self.crc)
            self.checkSeconds += time.perf_counter() - t
            self.pending += len(data)
            if self.stopAt is not None and self.received >= self.stopAt:
                self.stopAt = None
                producer, self.producer = self.producer, None
                producer.stopProducing()  # what an HTTP request does when its client goes
                self.stopped.callback(None)
                return
            if self.pending >= self.burst and self.producer is not None:
                self.pauses += 1
                self.producer.pauseProducing()
                reactor.callLater(0, self._drained)

        def _drained(self) -> None:
            self.pending = 0
            if self.producer is not None:
                self.producer.resumeProducing()

    class Finished(BaseTorrentSessionObserver):
        def __init__(self) -> None:
            self.waiters: dict[int, Deferred[None]] = {}
            self.done: set[int] = set()

        def torrentFinished(self, torrentid: int) -> None:
            self.done.add(torrentid)
            d = self.waiters.pop(torrentid, None)
            if d is not None:
                d.callback(None)

        def wait(self, torrentid: int) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            if torrentid in self.done:
                d.callback(None)
            else:
                self.waiters[torrentid] = d
            return d

    def expectHead(offset: int) -> bytes:
        with open(os.path.join(job["seedDir"], job["name"]), "rb") as f:
            f.seek(offset)
            return f.read(HEAD)

    async def seek(gets: TorrentSession, torrentid: int, t0: float) -> dict[str, Any]:
        """A fresh stream from 0; after SEEK_AFTER bytes it goes, one from 90% starts."""
        from twisted.internet.defer import CancelledError

        from pcpkit.torrent.stream import StreamStopped

        first = NullConsumer()
        first.stopAt = SEEK_AFTER
        d = streamFile(gets, torrentid, 0, first)
        d.addErrback(lambda f: f.trap(StreamStopped))
        await first.stopped
        await d
        size = int(gets.handle(torrentid).torrent_file().total_size())
        offset = size * 9 // 10
        t1 = time.perf_counter()
        then = NullConsumer()
        then.stopAt = HEAD
        d = streamFile(gets, torrentid, 0, then, offset)
        d.addErrback(lambda f: f.trap(StreamStopped, CancelledError))
        await then.stopped
        await d
        assert first.firstByte is not None and then.firstByte is not None
        if first.head != expectHead(0) or then.head != expectHead(offset):
            raise RuntimeError("seek: the streamed bytes do not match the file")
        return {"ttfb": first.firstByte - t0, "seekTtfb": then.firstByte - t1}

    async def run(reactor: Any) -> None:
        result: dict[str, Any] = {}
        with open(job["torrent"], "rb") as f:
            raw = f.read()
        rate = int(job.get("seedRate", 0))
        limit = {"upload_rate_limit": rate, "ignore_limits_on_local_network": False}
        seeds = TorrentSession(5.0, savePath=job["seedDir"], settings=limit if rate else None)
        finished = Finished()
        gets = TorrentSession(5.0, savePath=job["getDir"], observers=[finished])
        born = time.perf_counter()
        try:
            await seeds.addTorrent(raw, seed=True)
            await deferLater(reactor, untilPhase(born), lambda: None)
            cpu0, t0 = cpuSeconds(), time.perf_counter()
            added = await gets.addTorrent(raw)
            gets.connectPeer(added.torrentid, "127.0.0.1", seeds.listenPort)
            if job["kind"] == "seek":
                result.update(await seek(gets, added.torrentid, t0))
                report(**result)
                return
            if job["kind"] == "stream":
                consumer = NullConsumer()
                await streamFile(gets, added.torrentid, 0, consumer)
                elapsed = time.perf_counter() - t0 - consumer.checkSeconds
                cpu = cpuSeconds() - cpu0 - consumer.checkSeconds
                assert consumer.firstByte is not None
                result.update(
                    received=consumer.received,
                    crc=consumer.crc,
                    pauses=consumer.pauses,
                    checkSeconds=consumer.checkSeconds,
                    ttfb=consumer.firstByte - t0,
                )
            else:
                await finished.wait(added.torrentid)
                elapsed, cpu = time.perf_counter() - t0, cpuSeconds() - cpu0
                result.update(sha256=sha256File(os.path.join(job["getDir"], job["name"])))
            result.update(seconds=elapsed, cpu=cpu)
        finally:
            await gets.stop()
            await seeds.stop()
        report(**result)

    react(lambda reactor: ensureDeferred(run(reactor)))  # type: ignore[no-untyped-call]


# -- children: memory of many HTTP streams -------------------------------------------------


def _memoryChild(job: dict[str, Any]) -> None:
    """
    A seeding session behind the daemon's HTTP site; ``streams`` clients (another process)
    read the whole file at once. Reports the peak and the after RSS (psutil), the Python
    allocations' peak and after (tracemalloc), and the streams' own accounting.
    """
    import gc
    import tracemalloc

    import psutil
    from twisted.internet import protocol
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.task import LoopingCall, deferLater, react

    from pcpkit.torrent.session import TorrentSession
    from pcpkit.torrent.web import makeSite

    me = psutil.Process()

    class Source:
        def __init__(self, session: TorrentSession) -> None:
            self.session = session

        def skippedFiles(self) -> list[tuple[str, str]]:
            return []

    class Clients(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.out = b""
            self.done: Deferred[None] = Deferred()

        def outReceived(self, data: bytes) -> None:
            self.out += data

        def processEnded(self, reason: Any) -> None:
            self.done.callback(None)

    async def run(reactor: Any) -> None:
        with open(job["torrent"], "rb") as f:
            raw = f.read()
        seeds = TorrentSession(5.0, savePath=job["seedDir"])
        added = await seeds.addTorrent(raw, seed=True)
        site = makeSite(Source(seeds))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        gc.collect()
        rss0 = me.memory_info().rss
        tracemalloc.start()
        peak = {"rss": rss0, "held": 0, "streams": 0}

        def look() -> None:
            peak["rss"] = max(peak["rss"], me.memory_info().rss)
            producers = list(site.streams.producers)
            peak["streams"] = max(peak["streams"], len(producers))
            peak["held"] = max(peak["held"], sum(p.bufferedBytes for p in producers))

        sampler = LoopingCall(look)
        sampler.clock = reactor
        sampler.start(0.05)
        clientJob = {
            "port": port.getHost().port,
            "infohash": added.infohash,
            "streams": job["streams"],
            "size": job["size"],
        }
        argv = [sys.executable, HERE, "--child", "memclients", "--job", json.dumps(clientJob)]
        clients = Clients()
        t0 = time.perf_counter()
        reactor.spawnProcess(clients, sys.executable, argv, env=os.environ.copy())
        await clients.done
        seconds = time.perf_counter() - t0
        got = json.loads(clients.out.decode().strip().splitlines()[-1])
        while site.streams.producers or site.channels:
            await deferLater(reactor, 0.05, lambda: None)
        sampler.stop()
        gc.collect()
        await deferLater(reactor, 1.0, lambda: None)
        gc.collect()
        current, tracedPeak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rssAfter = me.memory_info().rss
        port.stopListening()
        await seeds.stop()
        report(
            rss0=rss0,
            rssPeak=peak["rss"],
            rssAfter=rssAfter,
            tracedPeak=tracedPeak,
            tracedAfter=current,
            heldPeak=peak["held"],
            streamsPeak=peak["streams"],
            seconds=seconds,
            complete=got["complete"],
            received=got["received"],
        )

    react(lambda reactor: ensureDeferred(run(reactor)))  # type: ignore[no-untyped-call]


def _memoryClients(job: dict[str, Any]) -> None:
    """``streams`` sockets reading the whole file at once (a selector loop)."""
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    request = (
        f"GET /stream/{job['infohash']}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()
    counts: dict[int, int] = {}
    for _ in range(job["streams"]):
        s = socket.create_connection(("127.0.0.1", job["port"]))
        s.sendall(request)
        s.setblocking(False)
        counts[s.fileno()] = 0
        sel.register(s, selectors.EVENT_READ)
    left = len(counts)
    while left:
        for key, _ in sel.select(timeout=30):
            sock: Any = key.fileobj
            data = sock.recv(256 * 1024)
            if data:
                counts[sock.fileno()] += len(data)
            else:
                sel.unregister(sock)
                sock.close()
                left -= 1
    # each body is the file plus the response's headers (a few hundred bytes)
    complete = sum(1 for n in counts.values() if job["size"] < n < job["size"] + 4096)
    report(complete=complete, received=sum(counts.values()))


# -- child: a plain libtorrent script -----------------------------------------------------


def _plainSettings() -> dict[str, Any]:
    import libtorrent as lt

    from pcpkit.torrent.session import DEFAULT_SETTINGS

    settings = dict(DEFAULT_SETTINGS)  # the same libtorrent settings as pcpkit's sessions
    cat = lt.alert.category_t
    settings["alert_mask"] = int(
        cat.error_notification | cat.status_notification | cat.storage_notification
    )
    return settings


def _plainChild(job: dict[str, Any]) -> None:
    import libtorrent

    lt: Any = libtorrent  # its bundled stubs lag the 2.1 binding (settings dicts)

    settings = _plainSettings()
    with open(job["torrent"], "rb") as f:
        raw = f.read()

    def add(session: Any, folder: str) -> Any:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(raw)
        atp.save_path = folder
        return session.add_torrent(atp)

    def waitFor(session: Any, kind: type, others: tuple[Any, ...] = ()) -> None:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while time.monotonic() < deadline:
            session.wait_for_alert(500)
            alerts = session.pop_alerts()
            for other in others:
                other.pop_alerts()
            for a in alerts:
                if isinstance(a, kind):
                    return
                if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                    raise RuntimeError(a.message())
        raise RuntimeError(f"timed out waiting for {kind.__name__}")

    seeds = lt.session(settings)
    if job["kind"] != "idle":
        gets = lt.session(settings)
        born = time.perf_counter()
    seedHandle = add(seeds, job["seedDir"])
    waitFor(seeds, lt.torrent_checked_alert)
    if not seedHandle.status().is_seeding:
        raise RuntimeError("the seed's data did not check out")
    if job["kind"] == "idle":
        time.sleep(1.0)
        cpu0, t0 = cpuSeconds(), time.perf_counter()
        end = t0 + job["seconds"]
        while (left := end - time.perf_counter()) > 0:
            seeds.wait_for_alert(int(min(left, 1.0) * 1000))
            seeds.pop_alerts()
        cpu, wall = cpuSeconds() - cpu0, time.perf_counter() - t0
        report(cpu=cpu, wall=wall, percent=100.0 * cpu / wall)
        return

    time.sleep(untilPhase(born))
    cpu0, t0 = cpuSeconds(), time.perf_counter()
    handle = add(gets, job["getDir"])
    handle.connect_peer(("127.0.0.1", seeds.listen_port()))
    waitFor(gets, lt.torrent_finished_alert, (seeds,))
    handle.flush_cache()
    waitFor(gets, lt.cache_flushed_alert, (seeds,))
    elapsed, cpu = time.perf_counter() - t0, cpuSeconds() - cpu0
    del handle, seedHandle, gets, seeds  # joins libtorrent's threads
    report(seconds=elapsed, cpu=cpu, sha256=sha256File(os.path.join(job["getDir"], job["name"])))


CHILDREN: dict[str, Callable[[dict[str, Any]], None]] = {
    "swarm-pcpkit": _patronChild,
    "swarm-plain": _plainChild,
    "stream-pcpkit": _sessionChild,
    "download-pcpkit": _sessionChild,
    "seek-pcpkit": _sessionChild,
    "idle-pcpkit": _patronChild,
    "idle-plain": _plainChild,
    "memory-pcpkit": _memoryChild,
    "memclients": _memoryClients,
}


def child(kind: str, job: dict[str, Any]) -> None:
    """Run one measurement; it prints one JSON line (``react()`` exits the process)."""
    job["kind"] = kind.split("-")[0]  # swarm, stream, download, idle
    CHILDREN[kind](job)


# -- parent -------------------------------------------------------------------------------


class Payload:
    """A random file and its v1 torrent, in its own folder."""

    def __init__(self, root: str, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.seedDir = os.path.join(root, name + ".seed")
        os.makedirs(self.seedDir)
        path = os.path.join(self.seedDir, name)
        h = hashlib.sha256()
        crc = 0
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 8 * MiB))
                h.update(chunk)
                crc = zlib.crc32(chunk, crc)
                f.write(chunk)
                left -= len(chunk)
        self.sha256 = h.hexdigest()
        self.crc = crc
        from pcpkit.torrent.maker import makeTorrent

        self.torrent = os.path.join(root, name + ".torrent")
        with open(self.torrent, "wb") as f:
            f.write(makeTorrent(path, pieceSize=PIECE_SIZE))


def runChild(
    kind: str,
    payload: Payload,
    root: str,
    seconds: float = 0.0,
    seedRate: int = 0,
    streams: int = 0,
) -> dict[str, Any]:
    getDir = tempfile.mkdtemp(prefix="get-", dir=root)
    job = {
        "torrent": payload.torrent,
        "seedDir": payload.seedDir,
        "getDir": getDir,
        "name": payload.name,
        "seconds": seconds,
        "seedRate": seedRate,
        "streams": streams,
        "size": payload.size,
    }
    try:
        p = subprocess.run(
            [sys.executable, HERE, "--child", kind, "--job", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(
                f"{kind} failed (rc={p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            )
        out: dict[str, Any] = json.loads(lines[-1])
    finally:
        shutil.rmtree(getDir, ignore_errors=True)
    if "sha256" in out and out["sha256"] != payload.sha256:
        raise RuntimeError(f"{kind}: the downloaded file's SHA-256 does not match")
    if "crc" in out and (out["crc"], out["received"]) != (payload.crc, payload.size):
        raise RuntimeError(
            f"{kind}: streamed {out['received']} bytes, CRC {out['crc']:#x}; "
            f"expected {payload.size} bytes, CRC {payload.crc:#x}"
        )
    return out


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="64 MiB swarm, 16 MiB stream, 2 s idle"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (3)")
    parser.add_argument("--swarm-mib", type=int, default=None, help="swarm size (256)")
    parser.add_argument("--stream-mib", type=int, default=None, help="stream size (64)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle window (5)")
    parser.add_argument(
        "--seek-rate",
        type=float,
        default=16.0,
        help="the seeder's upload limit in the seek runs, MB/s (16)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=("swarm", "stream", "seek", "idle", "memory"),
        help="run only these measures (repeatable)",
    )
    parser.add_argument(
        "--memory-streams", type=int, default=200, help="concurrent HTTP streams (200)"
    )
    parser.add_argument("--memory-mib", type=int, default=32, help="their file's size (32)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args.child, json.loads(args.job))
        return 0

    swarmSize = (args.swarm_mib or (64 if args.quick else 256)) * MiB
    streamSize = (args.stream_mib or (16 if args.quick else 64)) * MiB
    idleSeconds = args.idle_seconds or (2.0 if args.quick else 5.0)
    # memory only when asked: it moves streams x size bytes through one process
    measures = args.only or ["swarm", "stream", "seek", "idle"]
    seekRate = int(args.seek_rate * 1e6)

    import libtorrent

    import twisted

    print(
        f"# P4/P5 torrent benchmark {datetime.date.today()}: swarm {swarmSize // MiB} MiB, "
        f"stream {streamSize // MiB} MiB, idle {idleSeconds:g} s, {args.repeat} runs each; "
        f"Python {platform.python_version()}, Twisted {twisted.__version__}, "
        f"libtorrent {libtorrent.__version__}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}",
        flush=True,
    )
    root = tempfile.mkdtemp(prefix="bench-torrent-")
    rows: list[str] = []
    try:
        big = Payload(root, "swarm.bin", swarmSize) if "swarm" in measures else None
        small = (
            Payload(root, "stream.bin", streamSize)
            if {"stream", "seek", "idle"} & set(measures)
            else None
        )
        results: dict[str, list[dict[str, Any]]] = {}

        def run(kind: str, payload: Payload, seconds: float = 0.0, seedRate: int = 0) -> None:
            out = runChild(kind, payload, root, seconds, seedRate)
            results.setdefault(kind, []).append(out)
            if "seekTtfb" in out:
                shown = (
                    f"first byte {1e3 * out['ttfb']:6.1f} ms, after a seek to 90% "
                    f"{1e3 * out['seekTtfb']:6.1f} ms"
                )
            elif "seconds" in out:
                shown = f"{mbps(payload.size, out['seconds']):7.1f} MB/s, cpu {out['cpu']:.2f} s"
                if "ttfb" in out:
                    shown += f", first byte {1e3 * out['ttfb']:.1f} ms"
            else:
                shown = f"{out['percent']:.3f}% CPU"
            print(f"  {kind:16s} {shown}", flush=True)

        for i in range(args.repeat):
            print(f"round {i + 1}/{args.repeat}", flush=True)
            flip = i % 2 == 1  # alternate who goes first
            if big is not None:
                for kind in (
                    ["swarm-plain", "swarm-pcpkit"] if flip else ["swarm-pcpkit", "swarm-plain"]
                ):
                    run(kind, big)
            if small is not None and "stream" in measures:
                for kind in (
                    ["download-pcpkit", "stream-pcpkit"]
                    if flip
                    else ["stream-pcpkit", "download-pcpkit"]
                ):
                    run(kind, small)
            if small is not None and "seek" in measures:
                run("seek-pcpkit", small, seedRate=seekRate)
            if small is not None and "idle" in measures:
                for kind in (
                    ["idle-plain", "idle-pcpkit"] if flip else ["idle-pcpkit", "idle-plain"]
                ):
                    run(kind, small, idleSeconds)

        def rates(kind: str, size: int) -> tuple[float, str, float]:
            rs = [mbps(size, r["seconds"]) for r in results[kind]]
            cpu = statistics.median(r["cpu"] for r in results[kind])
            return statistics.median(rs), ", ".join(f"{r:.0f}" for r in rs), cpu

        rows.append("| id | measure | pcpkit | runs | plain | runs | ratio | goal | verdict |")
        rows.append("|---|---|---:|---|---:|---|---:|---|---|")
        if big is not None:
            a, aRuns, aCpu = rates("swarm-pcpkit", big.size)
            b, bRuns, bCpu = rates("swarm-plain", big.size)
            ratio = a / b
            rows.append(
                f"| P4 | {big.size // MiB} MiB loopback swarm, MB/s (process CPU s): "
                f"2 TorrentPatrons vs plain libtorrent script | {a:.1f} ({aCpu:.2f}) | "
                f"{aRuns} | {b:.1f} ({bCpu:.2f}) | {bRuns} | {ratio:.2f}x | >= 0.95x | "
                f"{'met' if ratio >= 0.95 else 'missed'} |"
            )
        if small is not None and "stream" in measures:
            a, aRuns, aCpu = rates("stream-pcpkit", small.size)
            b, bRuns, bCpu = rates("download-pcpkit", small.size)
            ratio = a / b
            pauses = statistics.median(r["pauses"] for r in results["stream-pcpkit"])
            rows.append(
                f"| P5 | {small.size // MiB} MiB in order, MB/s (process CPU s): streamFile "
                f"into a null consumer ({pauses:.0f} pauses) vs plain download "
                f"| {a:.1f} ({aCpu:.2f}) | {aRuns} | {b:.1f} ({bCpu:.2f}) | {bRuns} | "
                f"{ratio:.2f}x | >= 0.95x | {'met' if ratio >= 0.95 else 'missed'} |"
            )
            ttfb = [1e3 * r["ttfb"] for r in results["stream-pcpkit"]]
            rows.append(
                f"| P5 | {small.size // MiB} MiB: first byte of a fresh stream, ms from the "
                f"add (unlimited loopback) | {statistics.median(ttfb):.1f} | "
                f"{', '.join(f'{t:.0f}' for t in ttfb)} | - | - | - | - | - |"
            )
        if small is not None and "seek" in measures:
            for key, what in (
                ("ttfb", "first byte of a fresh stream, ms from the add"),
                (
                    "seekTtfb",
                    f"first byte after a seek to 90% (stream stopped "
                    f"after {SEEK_AFTER // MiB} MiB, new one "
                    f"started), ms",
                ),
            ):
                ms = [1e3 * r[key] for r in results["seek-pcpkit"]]
                rows.append(
                    f"| P5 | {small.size // MiB} MiB, seeder limited to "
                    f"{args.seek_rate:g} MB/s: {what} | {statistics.median(ms):.1f} | "
                    f"{', '.join(f'{t:.0f}' for t in ms)} | - | - | - | - | - |"
                )
        if small is not None and "idle" in measures:
            pa = [r["percent"] for r in results["idle-pcpkit"]]
            pb = [r["percent"] for r in results["idle-plain"]]
            a, b = statistics.median(pa), statistics.median(pb)
            rows.append(
                f"| P4 | idle CPU over {idleSeconds:g} s, session seeding one torrent: "
                f"TorrentPatron vs plain lt.session | {a:.3f}% | "
                f"{', '.join(f'{p:.3f}' for p in pa)} | {b:.3f}% | "
                f"{', '.join(f'{p:.3f}' for p in pb)} | - | < 1% | "
                f"{'met' if a < 1.0 else 'missed'} |"
            )
        if "memory" in measures:
            rows += memory(root, args.memory_streams, args.memory_mib * MiB)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("\n".join(rows))
    return 0


def memory(root: str, streams: int, size: int) -> list[str]:
    """One run of the memory measure; its table."""
    payload = Payload(root, "memory.bin", size)
    out = runChild("memory-pcpkit", payload, root, streams=streams)
    if out["complete"] != streams:
        raise RuntimeError(f"memory: {out['complete']} of {streams} streams were complete")
    mb = 1e6
    print(f"  memory-pcpkit    {out}", flush=True)
    return [
        "",
        f"| {streams} concurrent HTTP streams of a {size // MiB} MiB file (seeding session, "
        f"{out['seconds']:.1f} s) | MB |",
        "|---|---:|",
        f"| RSS before | {out['rss0'] / mb:.0f} |",
        f"| RSS peak | {out['rssPeak'] / mb:.0f} |",
        f"| RSS after every client went (gc, 1 s) | {out['rssAfter'] / mb:.0f} |",
        f"| Python allocations peak (tracemalloc) | {out['tracedPeak'] / mb:.0f} |",
        f"| Python allocations after | {out['tracedAfter'] / mb:.1f} |",
        f"| bytes held by all streams at once, peak (their own accounting) | "
        f"{out['heldPeak'] / mb:.0f} |",
        f"| streams at once, peak | {out['streamsPeak']} |",
    ]


if __name__ == "__main__":
    sys.exit(main())
