"""
The embedded demo: ``pcpkit demo`` and ``twistd -n pcpkit demo``.

With no network and no arguments it shows both halves of pcpkit on 127.0.0.1:

1. it writes a payload of random bytes (64 MiB by default) into a temporary folder and makes
   a v1 torrent of it;
2. one :class:`~pcpkit.torrent.patron.TorrentPatron` seeds it, another (with other
   settings, so a second :class:`~pcpkit.torrent.service.TorrentService` and libtorrent
   session) downloads it -- finding the seed through a local ``opentracker`` when one is
   installed, else told the seed's address directly -- and the copy's SHA-256 is checked;
3. the file then goes through a pcpkit :class:`~pcpkit.internet.relay.Relay` to a local
   sink that hashes what it receives, sent by a ``Pipeline(FileReader, TCPClient)``;
4. it prints a short table (throughput of each step, pauses applied by flow control, peak
   memory), the verified hash, and removes the temporary folder.

:func:`runDemo` is the demo as a coroutine; :class:`DemoService` runs it under ``twistd``.
The helpers it is built from -- :class:`Stopper` (cooperative interruption),
:class:`PatronDriver` (a ``TorrentPatron`` behind Deferreds) and :class:`LocalTracker`
(a throw-away ``opentracker``) -- are used by the ``pcpkit`` command too.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import tempfile
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated, ReactorNotRunning
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._progress import Progress
from pcpkit._twisted import getReactor, serverEndpoint
from pcpkit.chassis import Pipeline
from pcpkit.component import Component
from pcpkit.file import FileReader
from pcpkit.internet.relay import Relay
from pcpkit.internet.tcp import TCPClient
from pcpkit.ipc import ErrorInformation, ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.torrent.ipc import (
    TIPCCreateNewTorrent,
    TIPCNewTorrentCreated,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
    formatBytes,
)
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.patron import TorrentPatron
from pcpkit.torrent.session import TorrentError, TorrentSession

__all__ = [
    "DemoFailed",
    "DemoResult",
    "DemoService",
    "Interrupted",
    "LocalTracker",
    "PatronDriver",
    "Stopper",
    "runDemo",
]

log = Logger(namespace="pcpkit.demo")

T = TypeVar("T")

MiB = 1024 * 1024

#: piece size of the demo's torrent: 256 KiB pieces keep a 64 MiB swarm quick
DEMO_PIECE_SIZE = 256 * 1024


# -- interruption ----------------------------------------------------------------------------


class Interrupted(Exception):
    """The work was asked to stop (Ctrl-C, SIGTERM, ``stopService``) before it completed."""


class DemoFailed(Exception):
    """The demo could not complete; the message says why, in one line."""


class Stopper:
    """
    Cooperative interruption for coroutines on the reactor.

    Await what might take long through :meth:`wait`; after :meth:`stop` every such wait
    (and every later one) fails with :class:`Interrupted`, so the coroutine's ``finally``
    blocks run and can still await their clean-up (which they do without :meth:`wait`).
    Unlike ``Deferred.cancel`` on a coroutine's Deferred, the coroutine decides when it is
    done, and its Deferred fires only then.
    """

    def __init__(self) -> None:
        self.stopped = False
        self._waiting: dict[Deferred[Any], Deferred[Any]] = {}

    def stop(self) -> None:
        """Interrupt every wait, now and to come. Calling it again does nothing."""
        if self.stopped:
            return
        self.stopped = True
        waiting, self._waiting = self._waiting, {}
        for out, inner in waiting.items():
            if not out.called:
                out.errback(Interrupted())
            inner.cancel()

    def wait(self, waitable: Deferred[T] | Coroutine[Any, Any, T]) -> Deferred[T]:
        """
        A Deferred with ``waitable``'s result, or failing with :class:`Interrupted` as soon
        as :meth:`stop` is called (``waitable`` is then cancelled and its result dropped).
        """
        inner: Deferred[T] = (
            waitable if isinstance(waitable, Deferred) else ensureDeferred(waitable)
        )
        out: Deferred[T] = Deferred()
        if self.stopped:
            inner.addErrback(lambda _: None)
            inner.cancel()
            out.errback(Interrupted())
            return out
        self._waiting[out] = inner

        def fire(result: object) -> None:
            self._waiting.pop(out, None)
            if out.called:
                return None
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)  # type: ignore[arg-type]
            return None

        inner.addBoth(fire)
        return out

    def sleep(self, seconds: float) -> Deferred[None]:
        """An interruptible ``deferLater``."""
        return self.wait(deferLater(getReactor(), seconds, lambda: None))


def _withTimeout(d: Deferred[T], seconds: float, what: str) -> Deferred[T]:
    """``d``, failing with :class:`DemoFailed` naming ``what`` after ``seconds``."""

    def timedOut(failure: Failure) -> Failure:
        from twisted.internet.defer import TimeoutError as DeferTimeout

        if isinstance(failure.value, DeferTimeout):
            raise DemoFailed(f"timed out after {seconds:.0f}s waiting for {what}")
        return failure

    d.addTimeout(seconds, getReactor())
    d.addErrback(timedOut)
    return d


# -- a TorrentPatron behind Deferreds --------------------------------------------------------


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


class PatronDriver:
    """
    A :class:`~pcpkit.torrent.patron.TorrentPatron` driven through Deferreds, for programs
    that are not components (the ``pcpkit`` command, the demo).

    :param tickInterval: seconds between status updates.
    :param savePath: the patron's default save folder.
    :param settings: libtorrent settings of its session. Patrons with the same
        ``tickInterval``, ``savePath`` and ``settings`` share one session.

    Set :attr:`onStatus` to follow ``TIPCTorrentStatusUpdate`` s; :attr:`statuses` keeps the
    last one of each torrent.
    """

    def __init__(
        self,
        tickInterval: float = 0.5,
        savePath: str = ".",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.patron = TorrentPatron(tickInterval=tickInterval, savePath=savePath,
                                    settings=settings)
        self._listener = _Listener(self._received)
        self.patron.link((self.patron, "outbox"), (self._listener, "inbox"))
        self.patron.link((self.patron, "signal"), (self._listener, "control"))
        self._answers: deque[Deferred[object]] = deque()
        self._finished: set[int] = set()
        self._errors: dict[int, str] = {}
        self._finishWaiters: dict[int, list[Deferred[None]]] = {}
        self.statuses: dict[int, dict[str, Any]] = {}
        self.onStatus: Callable[[int, dict[str, Any]], None] | None = None
        self._started = False
        self._left: Deferred[None] | None = None

    def start(self) -> None:
        """Activate the patron (and so the shared service and its session)."""
        if not self._started:
            self._started = True
            self._listener.activate()
            self.patron.activate()

    @property
    def session(self) -> TorrentSession | None:
        """The libtorrent engine behind the patron, once it runs."""
        service = self.patron.service
        return None if service is None else service.client.session

    @property
    def listenPort(self) -> int:
        """The port the patron's session listens on (0 before it listens)."""
        session = self.session
        return 0 if session is None else session.listenPort

    # -- requests --------------------------------------------------------------------------

    def request(self, msg: TIPCCreateNewTorrent) -> Deferred[object]:
        """Send ``msg`` to the patron; the Deferred fires with its answer message."""
        self.start()
        d: Deferred[object] = Deferred()
        self._answers.append(d)
        self.patron.inboxes["inbox"].deliver(msg)
        return d

    async def addTorrent(self, msg: TIPCCreateNewTorrent) -> int:
        """
        Start a torrent and return its id.

        :raises TorrentError: the torrent could not be started (the reason says why).
        """
        answer = await self.request(msg)
        if isinstance(answer, TIPCNewTorrentCreated):
            return answer.torrentid
        if isinstance(answer, TIPCTorrentStartFail):
            raise TorrentError(answer.reason)
        if isinstance(answer, TIPCTorrentAlreadyDownloading):
            raise TorrentError(f"that torrent is already running as torrent {answer.torrentid}")
        raise TorrentError(f"unexpected answer: {answer}")

    def whenFinished(self, torrentid: int) -> Deferred[None]:
        """
        Fires once the torrent has all its data on disk; fails with :class:`TorrentError`
        if it hits an error first.
        """
        if torrentid in self._finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if torrentid in self._errors:
            d.errback(TorrentError(self._errors[torrentid]))
            return d
        self._finishWaiters.setdefault(torrentid, []).append(d)
        return d

    async def saveResumeData(self, torrentid: int, path: str) -> str:
        """
        Write the torrent's resume data to ``path`` and return it.

        :raises TorrentError: the session has none to give.
        """
        session = self.session
        if session is None or session.stopped:
            raise TorrentError("the torrent session is not running")
        data = await _withTimeout(session.saveResumeData(torrentid), 10, "resume data")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return path

    async def leave(self, timeout: float = 30) -> None:
        """
        Make the patron leave; when it was the last patron of its service, wait for the
        service to stop its session. Calling it again waits for the same.
        """
        if self._left is None:
            self._left = ensureDeferred(self._leave(timeout))
        await _chainDeferred(self._left)

    async def _leave(self, timeout: float) -> None:
        if not self._started:
            return
        patron = self.patron
        service = patron.service
        if not patron.finished.called:
            patron.inboxes["control"].deliver(ProducerFinished(self))
        try:
            await _withTimeout(_chainDeferred(patron.finished), timeout, "the patron to leave")
            await _withTimeout(_chainDeferred(self._listener.finished), timeout,
                               "the patron's listener")
            if service is not None and not (set(service.patrons) - {patron}):
                await _withTimeout(_chainDeferred(service.finished), timeout,
                                   "the torrent session to stop")
        except Exception as e:
            log.warn("leaving the torrent service: {error}", error=e)
        for waiters in self._finishWaiters.values():
            for w in waiters:
                w.errback(TorrentError("the torrent patron left"))
        self._finishWaiters.clear()
        for d in self._answers:
            d.errback(TorrentError("the torrent patron left"))
        self._answers.clear()

    # -- answers and events ----------------------------------------------------------------

    def _received(self, msg: object) -> None:
        if isinstance(msg, TIPCTorrentStatusUpdate):
            self.statuses[msg.torrentid] = msg.statsdictionary
            if self.onStatus is not None:
                self.onStatus(msg.torrentid, msg.statsdictionary)
        elif isinstance(msg, TIPCTorrentFinished):
            self._finished.add(msg.torrentid)
            for d in self._finishWaiters.pop(msg.torrentid, []):
                d.callback(None)
        elif isinstance(msg, TIPCTorrentError):
            # always an event here: this driver sends no TIPCCloseTorrent
            self._errors[msg.torrentid] = msg.reason
            for d in self._finishWaiters.pop(msg.torrentid, []):
                d.errback(TorrentError(msg.reason))
        elif isinstance(msg, (TIPCNewTorrentCreated, TIPCTorrentStartFail,
                              TIPCTorrentAlreadyDownloading, TIPCTorrentClosed,
                              TIPCUnknownTorrent)):
            if self._answers:
                self._answers.popleft().callback(msg)


def _chainDeferred(d: Deferred[Any]) -> Deferred[None]:
    """A new Deferred firing (with ``None``) when ``d`` does, leaving ``d`` alone."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if isinstance(result, Failure):
            out.errback(result)
            # the original keeps its failure for its other consumers; we have reported it
            return None
        out.callback(None)
        return result

    d.addBoth(fire)
    return out


# -- a local opentracker ---------------------------------------------------------------------


def freePort() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: Deferred[int] = Deferred()
        self.running = True

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if len(self.output) < 65536:
            self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        if isinstance(reason.value, ProcessDone):
            code = 0
        else:
            value: Any = reason.value
            if isinstance(value, ProcessTerminated) and value.exitCode is not None:
                code = int(value.exitCode)
            else:
                code = -int(getattr(value, "signal", 0) or 1)
        self.ended.callback(code)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace").strip()


class LocalTracker:
    """
    A throw-away ``opentracker`` on 127.0.0.1 for a few info-hashes.

    Debian's opentracker tracks only the info-hashes of its whitelist (``-w``), and when run
    as root it chroots into its folder (``-d``) and drops to ``nobody``: so the whitelist is
    named relative to that folder, which must be world-readable.

    :param folder: a folder of its own (created).
    :param binary: the opentracker program (found on ``PATH`` by default).
    """

    def __init__(self, folder: str, binary: str | None = None) -> None:
        found = binary or shutil.which("opentracker")
        if found is None:
            raise FileNotFoundError("opentracker is not installed")
        self.binary = found
        self.folder = folder
        self.port = freePort()
        self.announceURL = f"http://127.0.0.1:{self.port}/announce"
        self._process: _Process | None = None
        self._transport: Any = None

    @staticmethod
    def available() -> bool:
        """Whether ``opentracker`` is installed."""
        return shutil.which("opentracker") is not None

    async def start(self, infohashes: list[str], timeout: float = 10) -> None:
        """Start tracking ``infohashes`` (hex); fires once the tracker accepts connections."""
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, "whitelist"), "w") as f:
            f.write("".join(h + "\n" for h in infohashes))
        os.chmod(self.folder, 0o755)
        os.chmod(os.path.join(self.folder, "whitelist"), 0o644)
        proc = self._process = _Process()
        argv = [self.binary, "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port),
                "-w", "whitelist", "-d", self.folder]
        self._transport = getReactor().spawnProcess(
            proc, self.binary, argv, env=dict(os.environ), path=self.folder,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        deadline = time.monotonic() + timeout
        while True:
            if not proc.running:
                raise DemoFailed(f"opentracker exited at once: {proc.text() or 'no output'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise DemoFailed(f"opentracker did not listen on port {self.port}") from None
                await deferLater(getReactor(), 0.05, lambda: None)
        await deferLater(getReactor(), 0.1, lambda: None)
        if "Can't open accesslist" in proc.text():
            raise DemoFailed(f"opentracker cannot read its whitelist: {proc.text()}")

    def _scrape(self, infohash: str) -> int:
        query = urllib.parse.quote_from_bytes(bytes.fromhex(infohash))
        url = f"http://127.0.0.1:{self.port}/scrape?info_hash={query}"
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
        # "d5:filesd20:<hash>d8:completei<N>e..." -- read the complete count
        marker = b"8:completei"
        at = body.find(marker)
        if at < 0:
            return 0
        end = body.index(b"e", at + len(marker))
        return int(body[at + len(marker):end])

    async def waitForSeed(self, infohash: str, timeout: float = 15) -> bool:
        """Whether a seed announced ``infohash`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await deferToThread(self._scrape, infohash) >= 1:
                    return True
            except (OSError, ValueError):
                pass
            await deferLater(getReactor(), 0.1, lambda: None)
        return False

    async def stop(self, timeout: float = 5) -> None:
        """Stop the tracker (SIGTERM, then SIGKILL after ``timeout``) and wait for it."""
        proc, transport = self._process, self._transport
        if proc is None or not proc.running:
            return
        transport.signalProcess("TERM")
        killer = getReactor().callLater(
            timeout, lambda: transport.signalProcess("KILL") if proc.running else None
        )
        await _chainDeferred(proc.ended)
        if killer.active():
            killer.cancel()


# -- the relay's sink ------------------------------------------------------------------------


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


# -- the demo --------------------------------------------------------------------------------


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
            (f"swarm ({self.swarmVia})", f"{self.swarmSeconds:.2f} s",
             _mbps(self.swarmRate), "-"),
            (f"relay ({self.relayPath})", f"{self.relaySeconds:.2f} s",
             _mbps(self.relayRate),
             f"{self.relayPauses + self.clientPauses} "
             f"(relay {self.relayPauses}, client {self.clientPauses})"),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"relay peak buffered: {formatBytes(self.relayPeakBuffered)}")
        lines.append(f"peak memory (max RSS): {self.peakMemory / MiB:.1f} MiB")
        lines.append(f"total: {self.totalSeconds:.2f} s")
        return lines


def _mbps(rate: float) -> str:
    return f"{rate / 1e6:.1f} MB/s"


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
    drivers: list[PatronDriver] = []
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
        raw = await stopper.wait(inThread(
            makeTorrent, source, trackers, DEMO_PIECE_SIZE, None, version="v1",
            progress=lambda done, total: _checkStop(stopper),
        ))
        infohash = infohashOf(raw)
        write(f"torrent: v1, {size // DEMO_PIECE_SIZE} pieces of "
              f"{DEMO_PIECE_SIZE // 1024} KiB, infohash {infohash}")
        if tracker is not None:
            try:
                await stopper.wait(tracker.start([infohash]))
            except DemoFailed as e:
                write(f"no tracker ({e}): the peers will connect directly")
                await tracker.stop()
                tracker = None
            else:
                write(f"tracker: opentracker at {tracker.announceURL}")

        # -- the swarm: two patrons, two services, two sessions -----------------------------
        seeder = PatronDriver(tickInterval=0.5, savePath=seedDir)
        getter = PatronDriver(tickInterval=0.25, savePath=getDir)
        drivers += [seeder, getter]
        seedId = await stopper.wait(seeder.addTorrent(
            TIPCCreateNewTorrent(rawmetainfo=raw, savefolder=seedDir)))
        await stopper.wait(_withTimeout(seeder.whenFinished(seedId), 60, "the seed's check"))
        seedPort = seeder.listenPort
        write(f"seeding with TorrentPatron #{seeder.patron.id} on 127.0.0.1:{seedPort}")
        via = "direct peers"
        peers: tuple[tuple[str, int], ...] = (("127.0.0.1", seedPort),)
        if tracker is not None:
            if await stopper.wait(tracker.waitForSeed(infohash)):
                via, peers = "opentracker", ()
            else:
                write("the tracker did not list the seed in time: connecting directly")
        bar = progress(f"downloading ({via})", size)
        getter.onStatus = lambda tid, s: bar.update(
            int(s.get("totalDone", 0)), float(s.get("downRate") or 0) or None,
            f"{s.get('numPeers', 0)} peers")
        started = time.monotonic()
        try:
            getId = await stopper.wait(getter.addTorrent(
                TIPCCreateNewTorrent(rawmetainfo=raw, savefolder=getDir, peers=peers)))
            await stopper.wait(_withTimeout(
                getter.whenFinished(getId), 60 + sizeMiB, "the download"))
        finally:
            bar.finish()
        swarmSeconds = time.monotonic() - started
        write(f"downloaded by TorrentPatron #{getter.patron.id} in {swarmSeconds:.2f} s "
              f"({_mbps(size / swarmSeconds)})")
        for driver in drivers:
            await driver.leave()
        got = await stopper.wait(inThread(sha256File, copy, stopper))
        if got != digest:
            raise DemoFailed(f"the downloaded copy is corrupt: sha256 {got}, expected {digest}")
        write(f"swarm copy verified: sha256 {got}")

        # -- the relay ----------------------------------------------------------------------
        relayed = await _relayStep(source, size, stopper, progress)
        if relayed[1] != size or relayed[2] != digest:
            raise DemoFailed(
                f"the relay delivered {relayed[1]} bytes with sha256 {relayed[2]}, expected "
                f"{size} bytes with sha256 {digest}")
        relay, client, relaySeconds = relayed[0], relayed[3], relayed[4]
        stats = relay.stats
        write(f"relayed through {relay.listenDescription} in {relaySeconds:.2f} s "
              f"({_mbps(size / relaySeconds)}), sink got sha256 {relayed[2]}")
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
        for driver in drivers:
            await driver.leave()
        if tracker is not None:
            await tracker.stop()
        for returned in threads:
            # each stops within one chunk once the stopper is stopped
            await returned
        shutil.rmtree(top, ignore_errors=True)


def _checkStop(stopper: Stopper) -> None:
    if stopper.stopped:
        raise Interrupted()


async def _relayStep(
    source: str, size: int, stopper: Stopper, progress: ProgressFactory
) -> tuple[Relay, int, str, TCPClient, float]:
    """
    Send ``source`` through a Relay to a hashing sink.

    :return: (the relay, bytes the sink got, their sha256, the TCP client, seconds).
    """
    sinkFactory = _SinkFactory()
    sinkPort: Any = await stopper.wait(
        serverEndpoint("tcp:0:interface=127.0.0.1").listen(sinkFactory))
    relay: Relay | None = None
    pipeline: Pipeline | None = None
    errors: list[str] = []
    errorBox = _Listener(
        lambda m: errors.append(str(m)) if isinstance(m, ErrorInformation) else None)
    errorBox.activate()
    try:
        relay = Relay("tcp:0:interface=127.0.0.1", f"tcp:127.0.0.1:{sinkPort.getHost().port}",
                      bufferSize=262144)
        port: Any = await stopper.wait(relay.start())
        client = TCPClient("127.0.0.1", port.getHost().port)
        pipeline = Pipeline(FileReader(source, chunksize=65536), client)
        pipeline.link((pipeline, "signal"), (errorBox, "inbox"))
        bar = progress(f"relaying ({'splice' if relay.usesSplice else 'portable'})", size)
        meter = _RelayMeter(relay, bar)
        started = time.monotonic()
        pipeline.activate()
        try:
            received, digest = await stopper.wait(_withTimeout(
                _firstOf(sinkFactory.done, client.finished, errors), 60 + size / MiB,
                "the relay"))
        finally:
            meter.stop()
            bar.finish()
        seconds = time.monotonic() - started
        await _withTimeout(_chainDeferred(pipeline.finished), 10, "the sender to finish")
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

        d = ensureDeferred(runDemo(self.sizeMiB, write=write, stopper=stopper,
                                   useTracker=self.useTracker))
        done: Deferred[None] = Deferred()
        self._done = done

        def succeeded(result: DemoResult) -> None:
            self.result = result
            log.info("demo finished: {size} verified, sha256 {sha256}",
                     size=formatBytes(result.size), sha256=result.sha256)

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
        return _chainDeferred(self._done)

