"""
The embedded demo: ``pcpkit demo`` and ``twistd -n pcpkit demo``.

With no network and no arguments it shows both halves of pcpkit on 127.0.0.1:

1. it writes a payload of random bytes (64 MiB by default) into a temporary folder and makes
   a v1 torrent of it;
2. one :class:`~pcpkit.torrent.session.TorrentSession` seeds it
   (:func:`~pcpkit.torrent.transfer.seed`), another downloads it
   (:func:`~pcpkit.torrent.transfer.download`) -- finding the seed through a local
   :class:`~pcpkit.torrent.tracker.LocalTracker` when opentracker is installed, else told
   the seed's address -- and the copy's SHA-256 is checked;
3. the file then goes through a pcpkit :class:`~pcpkit.internet.relay.Relay` to a local
   sink that hashes what it receives, sent by a ``Pipeline(FileReader, TCPClient)``;
4. it prints a short table (throughput of each step, pauses applied by flow control, peak
   memory), the verified hash, and removes the temporary folder.

:func:`runDemo` is the demo as a coroutine; :class:`DemoService` runs it under ``twistd``.
It is a composition of library parts and holds nothing reusable.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._endpoints import serverEndpoint
from pcpkit._format import formatBytes, formatRate
from pcpkit._progress import Progress
from pcpkit._twisted import (
    Interrupted,
    Stopper,
    getReactor,
    whenFired,
    withTimeout,
)
from pcpkit.chassis import Pipeline
from pcpkit.component import Component
from pcpkit.file import FileReader
from pcpkit.internet.relay import Relay
from pcpkit.internet.tcp import TCPClient
from pcpkit.ipc import ErrorInformation, ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.session import TorrentError, TorrentSession
from pcpkit.torrent.tracker import LocalTracker, TrackerFailed
from pcpkit.torrent.transfer import Transfer, download, seed

__all__ = [
    "DemoFailed",
    "DemoResult",
    "DemoService",
    "Interrupted",
    "Stopper",
    "runDemo",
]

log = Logger(namespace="pcpkit.demo")

T = TypeVar("T")

MiB = 1024 * 1024

#: piece size of the demo's torrent: 256 KiB pieces keep a 64 MiB swarm quick
DEMO_PIECE_SIZE = 256 * 1024


class DemoFailed(Exception):
    """The demo could not complete; the message says why, in one line."""


@dataclass
class DemoResult:
    """What :func:`runDemo` measured."""

    #: payload size, bytes
    size: int
    #: the payload's SHA-256 (hex), verified after the swarm and after the relay
    sha256: str
    #: how the downloader found the seed: ``"opentracker"`` or ``"direct peers"``
    swarmVia: str
    #: seconds from asking for the torrent to having it all on disk
    swarmSeconds: float
    #: seconds to send the file through the relay to the sink
    relaySeconds: float
    #: ``"splice"`` or ``"portable"``
    relayPath: str
    #: times the relay paused a reading side because the writing side was full
    relayPauses: int
    #: times the TCP client's full socket buffer paused it
    clientPauses: int
    #: the most bytes the relay held for the file's direction
    relayPeakBuffered: int
    #: peak resident memory of the process, bytes (``ru_maxrss``)
    peakMemory: int
    #: seconds the whole demo took
    totalSeconds: float = 0.0

    @property
    def swarmRate(self) -> float:
        """Swarm throughput, bytes/s."""
        return self.size / self.swarmSeconds if self.swarmSeconds > 0 else 0.0

    @property
    def relayRate(self) -> float:
        """Relay throughput, bytes/s."""
        return self.size / self.relaySeconds if self.relaySeconds > 0 else 0.0

    def table(self) -> list[str]:
        """The summary table, one string per line."""
        rows = [
            ("step", "time", "throughput", "pauses applied"),
            (
                f"swarm ({self.swarmVia})",
                f"{self.swarmSeconds:.2f} s",
                formatRate(self.swarmRate),
                "-",
            ),
            (
                f"relay ({self.relayPath})",
                f"{self.relaySeconds:.2f} s",
                formatRate(self.relayRate),
                f"{self.relayPauses + self.clientPauses} "
                f"(relay {self.relayPauses}, client {self.clientPauses})",
            ),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"relay peak buffered: {formatBytes(self.relayPeakBuffered)}")
        lines.append(f"peak memory (max RSS): {self.peakMemory / MiB:.1f} MiB")
        lines.append(f"total: {self.totalSeconds:.2f} s")
        return lines


def peakMemory() -> int:
    """Peak resident memory of this process, bytes (``ru_maxrss`` is KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _writePayload(path: str, size: int, stopper: Stopper) -> str:
    """Write ``size`` random bytes to ``path`` (in a thread); return their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            if stopper.stopped:
                raise Interrupted()
            chunk = os.urandom(min(MiB, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256File(path: str, stopper: Stopper | None = None) -> str:
    """The SHA-256 (hex) of a file, read in 1 MiB chunks (blocking: call from a thread)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            if stopper is not None and stopper.stopped:
                raise Interrupted()
            chunk = f.read(MiB)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


ProgressFactory = Callable[[str, int], Progress]


async def runDemo(
    sizeMiB: int = 64,
    *,
    write: Callable[[str], None] = print,
    progress: ProgressFactory | None = None,
    stopper: Stopper | None = None,
    useTracker: bool | None = None,
    tempParent: str | None = None,
) -> DemoResult:
    """
    Run the demo on the running reactor and return what it measured.

    :param sizeMiB: payload size in MiB.
    :param write: where the demo's lines go (one call per line).
    :param progress: makes a progress display for a step: ``progress(label, totalBytes)``
        (by default plain lines through ``write`` every few seconds).
    :param stopper: interrupts the demo (it then cleans up and raises :class:`Interrupted`).
    :param useTracker: find the seed through a local opentracker (``None``: when installed).
    :param tempParent: where the temporary folder is made (the system's default).
    :raises DemoFailed: a step failed; the message says which and why.
    :raises Interrupted: ``stopper`` was stopped.
    """
    if sizeMiB < 1:
        raise ValueError(f"sizeMiB must be at least 1, not {sizeMiB!r}")
    stopper = stopper or Stopper()
    if progress is None:
        progress = lambda label, total: Progress(label, total, write=write)  # noqa: E731
    if useTracker is None:
        useTracker = LocalTracker.available()
    size = sizeMiB * MiB
    t0 = time.monotonic()
    top = tempfile.mkdtemp(prefix="pcpkit-demo-", dir=tempParent)
    seedDir, getDir = os.path.join(top, "seed"), os.path.join(top, "get")
    os.mkdir(seedDir)
    os.mkdir(getDir)
    name = "pcpkit-demo.bin"
    source, copy = os.path.join(seedDir, name), os.path.join(getDir, name)
    tracker: LocalTracker | None = None
    sessions: list[TorrentSession] = []
    transfers: list[Transfer] = []
    threads: list[Deferred[None]] = []

    def inThread(f: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        # The result may be cancelled (interrupted); the thread is still waited for by the
        # clean-up, which must not remove the files under its feet.
        result: Deferred[T] = Deferred()
        returned: Deferred[None] = Deferred()
        threads.append(returned)

        def fire(outcome: object) -> None:
            returned.callback(None)
            if not result.called:
                if isinstance(outcome, Failure):
                    result.errback(outcome)
                else:
                    result.callback(outcome)  # type: ignore[arg-type]

        deferToThread(f, *args, **kw).addBoth(fire)
        return result

    try:
        write(f"pcpkit demo: {sizeMiB} MiB over 127.0.0.1 (temporary folder {top})")
        digest = await stopper.wait(inThread(_writePayload, source, size, stopper))
        write(f"payload: {sizeMiB} MiB of random bytes, sha256 {digest}")

        # -- the torrent, and the tracker it names ------------------------------------------
        trackers: list[str] = []
        if useTracker:
            tracker = LocalTracker(os.path.join(top, "opentracker"))
            trackers = [tracker.announceURL]
        raw = await stopper.wait(
            inThread(
                makeTorrent,
                source,
                trackers,
                DEMO_PIECE_SIZE,
                None,
                version="v1",
                progress=lambda done, total: _checkStop(stopper),
            )
        )
        infohash = infohashOf(raw)
        write(
            f"torrent: v1, {size // DEMO_PIECE_SIZE} pieces of "
            f"{DEMO_PIECE_SIZE // 1024} KiB, infohash {infohash}"
        )
        if tracker is not None:
            try:
                await stopper.wait(tracker.start([infohash]))
            except TrackerFailed as e:
                write(f"no tracker ({e}): the peers will connect directly")
                await tracker.stop()
                tracker = None
            else:
                write(f"tracker: opentracker at {tracker.announceURL}")

        # -- the swarm: two sessions, one seeding, one downloading --------------------------
        seeder = TorrentSession(0.5, savePath=seedDir)
        getter = TorrentSession(0.25, savePath=getDir)
        sessions += [seeder, getter]
        transfers.append(seed(seeder, raw, seedDir))
        try:
            await stopper.wait(withTimeout(transfers[-1], 60, "the seed's check"))
        except TimeoutError as e:
            raise DemoFailed(str(e)) from None
        write(f"seeding with a TorrentSession on 127.0.0.1:{seeder.listenPort}")
        via = "direct peers"
        peers: list[tuple[str, int]] = [("127.0.0.1", seeder.listenPort)]
        if tracker is not None:
            if await stopper.wait(tracker.waitForSeeds(infohash)):
                via, peers = "opentracker", []
            else:
                write("the tracker did not list the seed in time: connecting directly")
        bar = progress(f"downloading ({via})", size)
        started = time.monotonic()
        try:
            transfers.append(
                download(
                    getter,
                    raw,
                    getDir,
                    peers=peers,
                    onStatus=lambda s: bar.update(
                        int(s["totalDone"]), float(s["downRate"]) or None, f"{s['numPeers']} peers"
                    ),
                )
            )
            await stopper.wait(withTimeout(transfers[-1], 60 + sizeMiB, "the download"))
        except TimeoutError as e:
            raise DemoFailed(str(e)) from None
        except TorrentError as e:
            raise DemoFailed(f"the download failed: {e.reason}") from None
        finally:
            bar.finish()
        swarmSeconds = time.monotonic() - started
        write(
            f"downloaded by a second TorrentSession in {swarmSeconds:.2f} s "
            f"({formatRate(size / swarmSeconds)})"
        )
        await _stopAll(transfers, sessions)
        got = await stopper.wait(inThread(sha256File, copy, stopper))
        if got != digest:
            raise DemoFailed(f"the downloaded copy is corrupt: sha256 {got}, expected {digest}")
        write(f"swarm copy verified: sha256 {got}")

        # -- the relay ----------------------------------------------------------------------
        relayed = await _relayStep(source, size, stopper, progress)
        if relayed[1] != size or relayed[2] != digest:
            raise DemoFailed(
                f"the relay delivered {relayed[1]} bytes with sha256 {relayed[2]}, expected "
                f"{size} bytes with sha256 {digest}"
            )
        relay, client, relaySeconds = relayed[0], relayed[3], relayed[4]
        stats = relay.stats
        write(
            f"relayed through {relay.listenDescription} in {relaySeconds:.2f} s "
            f"({formatRate(size / relaySeconds)}), sink got sha256 {relayed[2]}"
        )
        result = DemoResult(
            size=size,
            sha256=digest,
            swarmVia=via,
            swarmSeconds=swarmSeconds,
            relaySeconds=relaySeconds,
            relayPath="splice" if relay.usesSplice else "portable",
            relayPauses=stats.toTarget.pauses + stats.toClient.pauses,
            clientPauses=client.writePauses + client.readPauses,
            relayPeakBuffered=stats.toTarget.peakBuffered,
            peakMemory=peakMemory(),
            totalSeconds=time.monotonic() - t0,
        )
        for line in result.table():
            write(line)
        write(f"sha256 verified: {digest}")
        return result
    finally:
        await _stopAll(transfers, sessions)
        if tracker is not None:
            await tracker.stop()
        for returned in threads:
            # each stops within one chunk once the stopper is stopped
            await returned
        shutil.rmtree(top, ignore_errors=True)


async def _stopAll(transfers: list[Transfer], sessions: list[TorrentSession]) -> None:
    for transfer in transfers:
        await transfer.close()
    for session in sessions:
        await session.stop()


def _checkStop(stopper: Stopper) -> None:
    if stopper.stopped:
        raise Interrupted()


# -- the relay step: a hashing sink, and errors from the sender --------------------------------


class _HashingSink(Protocol):
    def __init__(self, done: Deferred[tuple[int, str]]) -> None:
        self.done = done
        self.hash = hashlib.sha256()
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)
        self.received += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback((self.received, self.hash.hexdigest()))


class _SinkFactory(Factory):
    noisy = False

    def __init__(self) -> None:
        self.done: Deferred[tuple[int, str]] = Deferred()

    def buildProtocol(self, addr: Any) -> Protocol:
        return _HashingSink(self.done)


class _Listener(Component):
    """Hands every message on its ``inbox`` to a callable; ends on a shutdown on control."""

    Inboxes = {"inbox": "messages to hand on", "control": "a Shutdown ends it"}
    Outboxes = {"outbox": "unused", "signal": "unused"}

    def __init__(self, onMessage: Callable[[object], None], **argd: Any) -> None:
        super().__init__(**argd)
        self._onMessage = onMessage

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                self._handOn(self.recv("inbox"))
            while self.dataReady("control"):
                if isinstance(self.recv("control"), Shutdown):
                    while self.dataReady("inbox"):
                        self._handOn(self.recv("inbox"))
                    return
            self.pause()
            yield 1

    def _handOn(self, msg: object) -> None:
        try:
            self._onMessage(msg)
        except Exception:
            log.failure("handling {msg} failed", msg=msg)


async def _relayStep(
    source: str, size: int, stopper: Stopper, progress: ProgressFactory
) -> tuple[Relay, int, str, TCPClient, float]:
    """
    Send ``source`` through a Relay to a hashing sink.

    :return: (the relay, bytes the sink got, their sha256, the TCP client, seconds).
    """
    sinkFactory = _SinkFactory()
    sinkPort: Any = await stopper.wait(
        serverEndpoint("tcp:0:interface=127.0.0.1").listen(sinkFactory)
    )
    relay: Relay | None = None
    pipeline: Pipeline | None = None
    errors: list[str] = []
    errorBox = _Listener(
        lambda m: errors.append(str(m)) if isinstance(m, ErrorInformation) else None
    )
    errorBox.activate()
    try:
        relay = Relay(
            "tcp:0:interface=127.0.0.1",
            f"tcp:127.0.0.1:{sinkPort.getHost().port}",
            bufferSize=262144,
        )
        port: Any = await stopper.wait(relay.start())
        client = TCPClient("127.0.0.1", port.getHost().port)
        pipeline = Pipeline(FileReader(source, chunksize=65536), client)
        pipeline.link((pipeline, "signal"), (errorBox, "inbox"))
        bar = progress(f"relaying ({'splice' if relay.usesSplice else 'portable'})", size)
        meter = _RelayMeter(relay, bar)
        started = time.monotonic()
        pipeline.activate()
        try:
            received, digest = await stopper.wait(
                withTimeout(
                    _firstOf(sinkFactory.done, client.finished, errors),
                    60 + size / MiB,
                    "the relay",
                )
            )
        finally:
            meter.stop()
            bar.finish()
        seconds = time.monotonic() - started
        await withTimeout(whenFired(pipeline.finished), 10, "the sender to finish")
        return relay, received, digest, client, seconds
    finally:
        if pipeline is not None and not pipeline.finished.called:
            for child in pipeline.childComponents():
                child.inboxes["control"].deliver(ShutdownMicroprocess())
            pipeline.finished.addErrback(lambda _: None)
        errorBox.inboxes["control"].deliver(ProducerFinished())
        if relay is not None:
            await relay.stop()
        await sinkPort.stopListening()


def _firstOf(
    sinkDone: Deferred[tuple[int, str]], clientDone: Deferred[Any], errors: list[str]
) -> Deferred[tuple[int, str]]:
    """The sink's result; or a DemoFailed if the client ends with errors before it."""
    out: Deferred[tuple[int, str]] = Deferred()

    def sunk(result: tuple[int, str]) -> tuple[int, str]:
        if not out.called:
            out.callback(result)
        return result

    def clientEnded(result: object) -> object:
        if errors and not out.called:
            out.errback(DemoFailed(f"sending through the relay failed: {errors[0]}"))
        return None

    sinkDone.addCallback(sunk)
    clientDone.addBoth(clientEnded)
    return out


class _RelayMeter:
    """Feeds a progress display from the relay's byte counter every 0.2 s."""

    def __init__(self, relay: Relay, bar: Progress) -> None:
        from twisted.internet.task import LoopingCall

        self._relay = relay
        self._bar = bar
        self._loop = LoopingCall(self._tick)
        self._loop.clock = getReactor()
        self._loop.start(0.2, now=False)

    def _tick(self) -> None:
        self._bar.update(self._relay.stats.toTarget.bytes)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


# -- twistd ----------------------------------------------------------------------------------


class DemoService(Service):
    """
    The demo as a twistd service (``twistd -n pcpkit demo [--size MIB]``): it runs the
    demo once the reactor runs, logs every line (with ``sha256 verified: <hex>`` on
    success, ``demo failed: <reason>`` otherwise), and then stops the reactor. twistd
    cannot report an exit status for it: read the log. Stopping the service early (Ctrl-C,
    SIGTERM) interrupts the demo, which cleans up before the reactor stops.

    :param sizeMiB: payload size in MiB.
    """

    def __init__(self, sizeMiB: int = 64, *, useTracker: bool | None = None) -> None:
        self.sizeMiB = sizeMiB
        self.useTracker = useTracker
        self.result: DemoResult | None = None
        self.failure: Failure | None = None
        self._stopper: Stopper | None = None
        self._done: Deferred[None] | None = None

    def startService(self) -> None:
        self.running = 1
        getReactor().callWhenRunning(self._begin)

    def _begin(self) -> None:
        if not self.running or self._done is not None:
            return
        stopper = self._stopper = Stopper()

        def write(line: str) -> None:
            log.info("{line}", line=line)

        d = ensureDeferred(
            runDemo(self.sizeMiB, write=write, stopper=stopper, useTracker=self.useTracker)
        )
        done: Deferred[None] = Deferred()
        self._done = done

        def succeeded(result: DemoResult) -> None:
            self.result = result
            log.info(
                "demo finished: {size} verified, sha256 {sha256}",
                size=formatBytes(result.size),
                sha256=result.sha256,
            )

        def failed(failure: Failure) -> None:
            self.failure = failure
            if isinstance(failure.value, Interrupted):
                log.warn("demo interrupted")
            elif isinstance(failure.value, DemoFailed):
                log.error("demo failed: {reason}", reason=str(failure.value))
            else:
                log.failure("demo failed", failure)

        def end(_: object) -> None:
            done.callback(None)
            if self.running:
                reactor = getReactor()
                try:
                    reactor.stop()
                except ReactorNotRunning:
                    pass

        d.addCallbacks(succeeded, failed).addBoth(end)

    def stopService(self) -> Deferred[None] | None:
        self.running = 0
        if self._done is None or self._done.called:
            return None
        assert self._stopper is not None
        self._stopper.stop()
        return whenFired(self._done)
