"""
A throw-away local BitTorrent tracker: Debian's ``opentracker`` on 127.0.0.1.

For demos and tests of swarms that must find each other the way real ones do (announce,
get peers) without any network::

    tracker = LocalTracker("/tmp/my-tracker")
    await tracker.start([infohash])          # the hex info-hashes it may track
    raw = makeTorrent(path, trackers=[tracker.announceURL])
    ...
    await tracker.waitForSeeds(infohash)     # a seed has announced
    await tracker.stop()

Debian's opentracker tracks only the info-hashes of its whitelist (``-w``), and when run as
root it chroots into its folder (``-d``) and drops to ``nobody``: so the whitelist is named
relative to that folder, which must be world-readable.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import libtorrent as _libtorrent
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from pcpkit._twisted import connectProtocol, getReactor, whenFired

__all__ = ["LocalTracker", "TrackerFailed", "freePort"]

# bdecode's stubs type its result as a union of every bencoded type
lt: Any = _libtorrent


class TrackerFailed(Exception):
    """The tracker could not start (or stopped answering); the message says why."""


def freePort() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Process(ProcessProtocol):
    """The tracker process: its output kept (bounded), ``ended`` fires with its status."""

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
        value: Any = reason.value
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated) and value.exitCode is not None:
            code = int(value.exitCode)
        else:
            code = -int(getattr(value, "signal", 0) or 1)
        self.ended.callback(code)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace").strip()


class LocalTracker:
    """
    An ``opentracker`` on 127.0.0.1 for a few info-hashes.

    :param folder: a folder of its own (created).
    :param binary: the opentracker program (found on ``PATH`` by default).
    :param reactor: the reactor (the global one by default).
    :raises FileNotFoundError: opentracker is not installed (``apt-get install opentracker``).
    """

    def __init__(self, folder: str, binary: str | None = None, reactor: Any = None) -> None:
        found = binary or shutil.which("opentracker")
        if found is None:
            raise FileNotFoundError("opentracker is not installed (apt-get install opentracker)")
        self.binary = found
        self.folder = os.fspath(folder)
        self.port = freePort()
        self.announceURL = f"http://127.0.0.1:{self.port}/announce"
        self._reactor = getReactor() if reactor is None else reactor
        self._process: _Process | None = None
        self._transport: Any = None

    @staticmethod
    def available() -> bool:
        """Whether ``opentracker`` is installed."""
        return shutil.which("opentracker") is not None

    @property
    def output(self) -> str:
        """What the tracker printed so far."""
        return self._process.text() if self._process is not None else ""

    async def start(self, infohashes: Sequence[str], timeout: float = 10) -> None:
        """
        Start tracking ``infohashes`` (hex); returns once the tracker accepts connections.

        :raises TrackerFailed: it exited, did not listen within ``timeout`` seconds, or
            cannot read its whitelist.
        """
        os.makedirs(self.folder, exist_ok=True)
        whitelist = os.path.join(self.folder, "whitelist")
        with open(whitelist, "w") as f:
            f.write("".join(h + "\n" for h in infohashes))
        os.chmod(self.folder, 0o755)
        os.chmod(whitelist, 0o644)
        proc = self._process = _Process()
        argv = [
            self.binary,
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-P",
            str(self.port),
            "-w",
            "whitelist",
            "-d",
            self.folder,
        ]
        self._transport = self._reactor.spawnProcess(
            proc,
            self.binary,
            argv,
            env=dict(os.environ),
            path=self.folder,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        from pcpkit._endpoints import clientEndpoint

        endpoint = clientEndpoint(f"tcp:127.0.0.1:{self.port}", self._reactor)
        deadline = time.monotonic() + timeout
        while True:
            if not proc.running:
                raise TrackerFailed(f"opentracker exited at once: {proc.text() or 'no output'}")
            try:
                probe = await connectProtocol(endpoint, Protocol())
            except Exception:
                if time.monotonic() > deadline:
                    raise TrackerFailed(f"opentracker did not listen on port {self.port}") from None
                await deferLater(self._reactor, 0.05, lambda: None)
            else:
                probe.transport.loseConnection()
                break
        # a complaint here means the whitelist could not be read: every announce would fail
        await deferLater(self._reactor, 0.1, lambda: None)
        if "Can't open accesslist" in proc.text():
            raise TrackerFailed(f"opentracker cannot read its whitelist: {proc.text()}")

    def scrape(self, infohash: str) -> tuple[int, int]:
        """
        ``(seeds, leechers)`` the tracker knows for ``infohash``: a quick local HTTP
        request that blocks, so call it in a thread (as :meth:`waitForSeeds` does).
        """
        query = urllib.parse.quote_from_bytes(bytes.fromhex(infohash))
        url = f"http://127.0.0.1:{self.port}/scrape?info_hash={query}"
        with urllib.request.urlopen(url, timeout=2) as response:
            answer = lt.bdecode(response.read())
        stats = answer.get(b"files", {}).get(bytes.fromhex(infohash), {})
        return int(stats.get(b"complete", 0)), int(stats.get(b"incomplete", 0))

    async def waitForSeeds(self, infohash: str, seeds: int = 1, timeout: float = 15) -> bool:
        """Whether ``seeds`` seeders announced ``infohash`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (await deferToThread(self.scrape, infohash))[0] >= seeds:
                    return True
            except (OSError, ValueError, RuntimeError):
                pass
            await deferLater(self._reactor, 0.1, lambda: None)
        return False

    async def stop(self, timeout: float = 5) -> int | None:
        """
        Stop the tracker (SIGTERM, then SIGKILL after ``timeout``) and wait for it; its
        exit status (``None`` when it was not running).
        """
        proc, transport = self._process, self._transport
        if proc is None or not proc.running:
            return None
        transport.signalProcess("TERM")
        killer = self._reactor.callLater(
            timeout, lambda: transport.signalProcess("KILL") if proc.running else None
        )
        code: list[int] = []

        def record(status: int) -> int:
            code.append(status)
            return status

        proc.ended.addCallback(record)
        await whenFired(proc.ended)
        if killer.active():
            killer.cancel()
        return code[0] if code else None
