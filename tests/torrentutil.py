"""
Shared helpers for the torrent tests: payloads, sessions that clean up after themselves,
an observer that records, a process runner, and an opentracker fixture.

Import the fixtures (registered as ``sessions`` and ``tracker``) into a test module::

    from tests.torrentutil import sessionsFixture, trackerFixture  # noqa: F401
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from pcpkit.torrent.session import BaseTorrentSessionObserver, TorrentSession, TorrentStatus
from pcpkit.torrent.tracker import LocalTracker, TrackerFailed
from tests.procutil import ProcessRunner
from tests.waitutil import waitUntil  # noqa: F401 (the torrent tests import it from here)

reactor: Any = _reactor

MiB = 1024 * 1024


# -- data ----------------------------------------------------------------------------------


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic pseudo-random bytes (fast: one randbytes call)."""
    return random.Random(seed).randbytes(size)


def writePayload(folder: Path, name: str, size: int, seed: int = 1) -> bytes:
    """Write ``payload(size, seed)`` to ``folder/name`` (creating folders); return it."""
    data = payload(size, seed)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def freePort() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def requireBinary(name: str, package: str) -> str:
    """The path of ``name``; fail (never skip) the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: apt-get install {package} (.ci/run installs it)",
            pytrace=False,
        )
    return path


# -- waiting -------------------------------------------------------------------------------


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def withTimeout(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """``d``, failing with ``defer.TimeoutError`` (and cancelled) after ``seconds``."""
    return d.addTimeout(seconds, reactor)


# -- an observer that records --------------------------------------------------------------


class Recorder(BaseTorrentSessionObserver):
    """Records every observer call; ``finished(tid)`` waits for torrentFinished."""

    def __init__(self) -> None:
        self.statuses: dict[int, list[TorrentStatus]] = {}
        self.finishedIds: list[int] = []
        self.errors: list[tuple[int, str]] = []
        self.removed: list[int] = []
        self._finishWaiters: dict[int, list[Deferred[None]]] = {}

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        self.statuses.setdefault(torrentid, []).append(status)

    def torrentFinished(self, torrentid: int) -> None:
        self.finishedIds.append(torrentid)
        for d in self._finishWaiters.pop(torrentid, []):
            d.callback(None)

    def torrentError(self, torrentid: int, reason: str) -> None:
        self.errors.append((torrentid, reason))

    def torrentRemoved(self, torrentid: int) -> None:
        self.removed.append(torrentid)

    def finished(self, torrentid: int, timeout: float = 30) -> Deferred[None]:
        if torrentid in self.finishedIds:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._finishWaiters.setdefault(torrentid, []).append(d)
        return withTimeout(d, timeout)


@pytest.fixture(name="smallDisk")
def smallDiskFixture(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs (needs root, as in CI); unmounted afterwards."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- a peer that fails ---------------------------------------------------------------------

#: settings for a session connecting to a :class:`FailingPeer`: plaintext handshakes, so each
#: attempt fails at once (an encrypted one would wait for the handshake timeout first)
PLAINTEXT = {"out_enc_policy": int(lt.enc_policy.pe_disabled)}

#: failed connections after which libtorrent stops trying a peer by itself
MAX_FAILCOUNT = int(lt.default_settings()["max_failcount"])


class _FailingConnection(protocol.Protocol):
    factory: FailingPeer

    def connectionMade(self) -> None:
        self.factory.attempts += 1
        self.factory.open.add(self)
        assert self.transport is not None
        self.transport.write(
            b"\x13BitTorrent protocol" + bytes(8) + b"\x01" * 20 + b"-XX0000-" + b"0" * 12
        )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.open.discard(self)


class FailingPeer(protocol.Factory):
    """
    A peer of another torrent, listening on 127.0.0.1 (:attr:`port`): it answers each
    connection with a handshake for another info-hash, which libtorrent counts as a failed
    connection to that peer (from a session with :data:`PLAINTEXT` settings). ``attempts``
    counts the connections.
    """

    protocol = _FailingConnection

    def __init__(self) -> None:
        self.attempts = 0
        self.open: set[_FailingConnection] = set()
        self._listening = reactor.listenTCP(0, self, interface="127.0.0.1")
        self.port: int = self._listening.getHost().port

    async def stop(self) -> None:
        """Stop listening and drop the connections still open: the port is free."""
        await self._listening.stopListening()
        for connection in list(self.open):
            assert connection.transport is not None
            connection.transport.abortConnection()


# -- sessions ------------------------------------------------------------------------------


class Sessions:
    """Makes loopback TorrentSessions and stops them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[TorrentSession] = []

    def __call__(self, tickInterval: float = 0.2, **kw: Any) -> TorrentSession:
        kw.setdefault("savePath", str(self.root))
        s = TorrentSession(tickInterval, **kw)
        self.made.append(s)
        return s

    def stopAll(self) -> Deferred[Any]:
        return defer.gatherResults([s.stop() for s in self.made])


@pytest.fixture(name="sessions")
def sessionsFixture(tmp_path: Path) -> Iterator[Sessions]:
    made = Sessions(tmp_path)
    yield made
    pytest_twisted.blockon(made.stopAll())


# -- opentracker ---------------------------------------------------------------------------


class OpenTracker(LocalTracker):
    """
    :class:`~pcpkit.torrent.tracker.LocalTracker` for tests: it fails (never skips) when
    opentracker is missing, and its waits fail the test when they time out.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root / "opentracker"), requireBinary("opentracker", "opentracker"))
        self.dir = Path(self.folder)

    async def start(self, infohashes: Sequence[str], timeout: float = 10) -> None:
        try:
            await super().start(infohashes, timeout)
        except TrackerFailed as e:
            raise AssertionError(str(e)) from None

    async def waitForSeeds(  # type: ignore[override]
        self, infohash: str, seeds: int = 1, timeout: float = 20
    ) -> None:
        """Wait until ``seeds`` seeders have announced ``infohash``."""
        if not await super().waitForSeeds(infohash, seeds, timeout):
            raise AssertionError(f"timed out after {timeout}s waiting for {seeds} seed(s)")

    def stop(self) -> Deferred[Any]:  # type: ignore[override]
        return defer.ensureDeferred(super().stop())


@pytest.fixture(name="tracker")
def trackerFixture(tmp_path: Path) -> Iterator[OpenTracker]:
    t = OpenTracker(tmp_path)
    yield t
    pytest_twisted.blockon(t.stop())


# -- aria2c --------------------------------------------------------------------------------


def aria2c(torrentFile: Path, folder: Path, *extra: str) -> ProcessRunner:
    """
    aria2c on ``torrentFile`` saving into ``folder``: no DHT, LPD or PEX (peers only from
    the tracker), IPv4 only, a free listen port, announcing every second, and stopping by
    itself if this process dies.
    """
    binary = requireBinary("aria2c", "aria2")
    argv = [
        binary,
        "--no-conf",
        f"--dir={folder}",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        f"--listen-port={freePort()}",
        "--bt-tracker-interval=1",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        f"--stop-with-process={os.getpid()}",
        *extra,
        str(torrentFile),
    ]
    return ProcessRunner(argv, cwd=str(folder))
