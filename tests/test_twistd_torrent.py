"""
``twistd -n pcpkit torrent`` as a user runs it: a child process with a watch folder, a
state folder and HTTP on 127.0.0.1, fed by a seeding TorrentSession in the test process.

Also the pure parts of :mod:`pcpkit.torrent.web` (Range parsing, the page's escaping).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import libtorrent
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

import pcpkit
from pcpkit.torrent.daemon import TorrentDaemon
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.session import AddedTorrent, TorrentSession
from pcpkit.torrent.web import RangeNotSatisfiable, makeSite, parseRange, renderStatusPage
from tests.procutil import ProcessRunner, exitCode
from tests.torrentutil import (
    MAX_FAILCOUNT,
    PLAINTEXT,
    FailingPeer,
    MiB,
    Sessions,
    payload,
    reactor,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    sleep,
    waitUntil,
    withTimeout,
    writePayload,
)

PIECE = 256 * 1024

# -- spawning twistd -----------------------------------------------------------------------


def checkoutRoot() -> str | None:
    """
    The source checkout pcpkit runs from, when it holds ``twisted/plugins/pcpkit_plugin.py``.

    An editable install (setuptools' finder) puts ``pcpkit`` on the path but not the
    checkout's ``twisted/plugins`` folder, so twistd would not know the ``pcpkit`` plugin:
    the child gets the checkout on its ``PYTHONPATH``.
    """
    root = Path(pcpkit.__file__).resolve().parent.parent
    if (root / "twisted" / "plugins" / "pcpkit_plugin.py").exists():
        return str(root)
    return None


def twistdArgv(*args: str) -> list[str]:
    """``twistd -n pcpkit ARGS`` in the foreground, logging to stdout, no pid file."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [sys.executable, twistd, "-n", "--pidfile=", "--logfile=-", "pcpkit", *args]


class TwistdDaemon:
    """One ``twistd -n pcpkit torrent ...`` child process and an HTTP client for it."""

    HTTP_LINE = re.compile(r"HTTP status page on http://127\.0\.0\.1:(\d+)/")

    def __init__(
        self,
        savePath: Path,
        watchDir: Path | None = None,
        stateDir: Path | None = None,
        peers: Sequence[tuple[str, int]] = (),
        extra: Sequence[str] = (),
    ) -> None:
        args = [
            "torrent",
            "--save-path",
            str(savePath),
            "--http",
            "tcp:0:interface=127.0.0.1",
            "--tick",
            "0.25",
        ]
        if watchDir is not None:
            args += ["--watch", str(watchDir)]
        if stateDir is not None:
            args += ["--state-dir", str(stateDir)]
        for host, port in peers:
            args += ["--peer", f"{host}:{port}"]
        self.argv = twistdArgv(*args, *extra)
        self.process: ProcessRunner | None = None
        self.port = 0

    def text(self) -> str:
        return self.process.text() if self.process is not None else ""

    async def start(self, timeout: float = 20) -> TwistdDaemon:
        """Spawn it and wait until its HTTP side listens."""
        self.process = ProcessRunner(self.argv)
        deadline = time.monotonic() + timeout
        while True:
            match = self.HTTP_LINE.search(self.text())
            if match:
                self.port = int(match.group(1))
                return self
            if not self.process.running:
                raise AssertionError(f"twistd exited at start:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"twistd did not serve HTTP in {timeout}s:\n{self.text()}")
            await sleep(0.05)

    async def stop(self) -> int:
        """SIGTERM it (SIGKILL after 10 s); its return code (``-N``: killed by signal N)."""
        assert self.process is not None
        return await self.process.stop(timeout=10)

    async def request(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers (lower-case names), body)`` of one request, off the reactor."""

        def call() -> tuple[int, dict[str, str], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request(method, path, headers=headers or {})
                response = conn.getresponse()
                body = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, body
            finally:
                conn.close()

        result: tuple[int, dict[str, str], bytes] = await deferToThread(call)
        return result

    async def status(self) -> list[dict[str, Any]]:
        code, _, body = await self.request("/status.json")
        assert code == 200, body
        torrents: list[dict[str, Any]] = json.loads(body)
        return torrents

    async def torrent(self, infohash: str) -> dict[str, Any] | None:
        for t in await self.status():
            if t["infohash"] == infohash:
                return t
        return None

    async def waitFor(
        self, infohash: str, predicate: Any, timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll ``/status.json`` until the torrent's status satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            last = await self.torrent(infohash)
            if last is not None and predicate(last):
                return last
            if self.process is None or not self.process.running:
                raise AssertionError(f"twistd exited while waiting for {what}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; last status {last}\n"
                    f"{self.text()}"
                )
            await sleep(0.1)

    async def waitForLog(self, text: str, timeout: float = 10) -> None:
        await waitUntil(lambda: text in self.text(), timeout, f"{text!r} in the log", step=0.1)


class Daemons:
    """Makes :class:`TwistdDaemon` s with the plugin path set, and stops them at teardown."""

    def __init__(self) -> None:
        self.made: list[TwistdDaemon] = []

    def __call__(self, *args: Any, **kw: Any) -> TwistdDaemon:
        daemon = TwistdDaemon(*args, **kw)
        self.made.append(daemon)
        return daemon

    async def stopAll(self) -> None:
        for daemon in self.made:
            if daemon.process is not None and daemon.process.running:
                await daemon.stop()


def pluginEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes find the checkout's twistd plugin and write their log unbuffered."""
    root = checkoutRoot()
    if root is not None:
        old = os.environ.get("PYTHONPATH")
        monkeypatch.setenv("PYTHONPATH", root + (os.pathsep + old if old else ""))
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")


@pytest.fixture(name="daemons")
def daemonsFixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemons]:
    pluginEnvironment(monkeypatch)
    made = Daemons()
    yield made
    pytest_twisted.blockon(defer.ensureDeferred(made.stopAll()))


# -- helpers -------------------------------------------------------------------------------


async def seeder(
    sessions: Sessions,
    folder: Path,
    name: str,
    size: int,
    seed: int = 3,
    rateLimit: int | None = None,
) -> tuple[TorrentSession, AddedTorrent, bytes, bytes]:
    """A TorrentSession seeding a payload: ``(session, added, data, rawmetainfo)``."""
    data = writePayload(folder, name, size, seed)
    raw = makeTorrent(folder / name, pieceSize=PIECE)
    settings: dict[str, Any] = {}
    if rateLimit is not None:
        # loopback peers count as local: make the limit apply to them too
        settings = {"upload_rate_limit": rateLimit, "ignore_limits_on_local_network": False}
    session = sessions(settings=settings)
    added = await withTimeout(session.addTorrent(raw, savefolder=str(folder), seed=True), 20)
    return session, added, data, raw


def drop(folder: Path, name: str, data: bytes) -> Path:
    """Put a file into the watch folder as tools should: write a dot-file, then rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.part"
    tmp.write_bytes(data)
    final = folder / name
    os.replace(tmp, final)
    return final


def craftedTorrent(info: dict[bytes, object]) -> bytes:
    """A v1 .torrent with a hand-made info dictionary (pieces of 40 kB of 'A')."""
    data, pieceLength = b"A" * 40000, 16384
    pieces = b"".join(
        hashlib.sha1(data[i : i + pieceLength]).digest() for i in range(0, len(data), pieceLength)
    )
    return bytes(
        libtorrent.bencode({b"info": {b"piece length": pieceLength, b"pieces": pieces, **info}})
    )


def stateFiles(stateDir: Path, infohash: str) -> set[str]:
    return {p.name for p in stateDir.glob(f"{infohash}.*")}


def assertCleanStop(code: int, log: str) -> None:
    # twistd re-raises the signal that stopped it once the reactor is down (so systemd
    # sees "killed by SIGTERM", a clean stop for it); 0 is fine too. SIGKILL is not.
    assert code in (0, -signal.SIGTERM), f"twistd ended with {code}:\n{log}"
    assert "torrent daemon stopped" in log, log
    assert "Main loop terminated." in log, log
    assert "Traceback" not in log, log


# -- usage errors --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_missing_save_path_is_a_usage_error(daemons: Daemons, tmp_path: Path) -> None:
    runner = ProcessRunner(twistdArgv("torrent", "--watch", str(tmp_path)))
    code = await exitCode(runner, 30)
    assert code != 0
    assert "--save-path is required" in runner.text(), runner.text()
    assert "Traceback" not in runner.text()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_bad_peer_and_http_are_usage_errors(daemons: Daemons, tmp_path: Path) -> None:
    for args, expected in (
        (["--peer", "nonsense"], "--peer: bad address 'nonsense': expected HOST:PORT"),
        (["--http", "tcp:notaport"], "--http"),
    ):
        runner = ProcessRunner(twistdArgv("torrent", "--save-path", str(tmp_path), *args))
        code = await exitCode(runner, 30)
        assert code != 0, runner.text()
        assert expected in runner.text(), runner.text()
        assert "Traceback" not in runner.text()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_bad_allowed_host_is_a_usage_error(daemons: Daemons, tmp_path: Path) -> None:
    for value, expected in (
        ("", "--allowed-host: the host name is empty (give a name, or '*' for any)"),
        ("media.lan:8080", "--allowed-host: 'media.lan:8080' is not a host name"),
    ):
        runner = ProcessRunner(
            twistdArgv("torrent", "--save-path", str(tmp_path / "save"), "--allowed-host", value)
        )
        code = await withTimeout(runner.ended, 30)
        text = runner.text()
        assert code != 0, text
        lines = [line for line in text.splitlines() if "--allowed-host:" in line]
        assert len(lines) == 1 and expected in lines[0], text
        assert "Traceback" not in text
    assert not (tmp_path / "save").exists()  # refused before anything was made


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_allowed_host_option(daemons: Daemons, tmp_path: Path) -> None:
    """twistd takes --allowed-host: that name is answered, another one is refused (421)."""
    daemon = await daemons(
        tmp_path / "save", extra=["--allowed-host", "media.lan", "--allowed-host", "nas"]
    ).start()
    for host in (f"media.lan:{daemon.port}", "nas", f"127.0.0.1:{daemon.port}", "localhost"):
        code, _, body = await daemon.request("/status.json", {"Host": host})
        assert code == 200 and json.loads(body) == [], (host, body)
    evil = f"evil.example:{daemon.port}"
    for path in ("/status.json", "/api/torrents", "/"):
        code, head, body = await daemon.request(path, {"Host": evil})
        assert code == 421 and head["content-type"] == "application/json", body
        assert json.loads(body)["error"].startswith(f"Host {evil!r} is not a name of this")
    # logged once for that name, however often it comes back
    await daemon.waitForLog(f"refused HTTP requests: Host {evil!r}")
    assert daemon.text().count(f"refused HTTP requests: Host {evil!r}") == 1
    assertCleanStop(await daemon.stop(), daemon.text())


# -- the daemon ----------------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_watch_download_stream_stop_resume_and_remove(
    daemons: Daemons, sessions: Sessions, tmp_path: Path
) -> None:
    size = 6 * MiB + 1234
    seed, _, data, raw = await seeder(
        sessions, tmp_path / "seed", "clip.mp4", size, rateLimit=int(1.5 * MiB)
    )
    infohash = infohashOf(raw)
    save, watch, state = tmp_path / "save", tmp_path / "watch", tmp_path / "state"
    daemon = await daemons(save, watch, state, peers=[("127.0.0.1", seed.listenPort)]).start()
    assert await daemon.status() == []

    # a .torrent dropped into the watch folder starts downloading from the --peer
    torrentFile = drop(watch, "clip.torrent", raw)
    first = await daemon.waitFor(infohash, lambda t: True, 15, "the torrent in status.json")
    assert first["name"] == "clip.mp4"
    assert first["totalSize"] == size
    assert first["files"] == [
        {
            "index": 0,
            "path": "clip.mp4",
            "size": size,
            "done": first["files"][0]["done"],
            "priority": "normal",
        }
    ]

    # streamed while it downloads: the whole file, in order, and a range of it
    stream = f"/stream/{infohash}/0"
    downloading = await daemon.torrent(infohash)
    assert downloading is not None and downloading["fractionDone"] < 1.0, downloading
    code, headers, body = await daemon.request(stream)
    assert code == 200
    assert headers["content-type"] == "video/mp4"
    assert headers["content-length"] == str(size)
    assert headers["accept-ranges"] == "bytes"
    assert body == data

    code, headers, body = await daemon.request(stream, {"Range": "bytes=1000-1999"})
    assert code == 206
    assert headers["content-range"] == f"bytes 1000-1999/{size}"
    assert headers["content-length"] == "1000"
    assert body == data[1000:2000]

    code, headers, body = await daemon.request(stream, {"Range": "bytes=-500"})
    assert (code, headers["content-range"], body) == (
        206,
        f"bytes {size - 500}-{size - 1}/{size}",
        data[-500:],
    )
    code, headers, body = await daemon.request(stream, {"Range": f"bytes={size - 10}-"})
    assert (code, body) == (206, data[-10:])

    code, headers, _ = await daemon.request(stream, method="HEAD")
    assert (code, headers["content-length"]) == (200, str(size))

    # errors: past the end, unknown torrent or file, malformed paths, other methods
    code, headers, _ = await daemon.request(stream, {"Range": f"bytes={size}-"})
    assert (code, headers["content-range"]) == (416, f"bytes */{size}")
    # an absurd number (past Python's int-string limit) is a 416 too, not a 500
    code, headers, body = await daemon.request(stream, {"Range": f"bytes={'9' * 5000}-"})
    assert (code, headers["content-range"]) == (416, f"bytes */{size}"), body[:200]
    assert (await daemon.request(f"/stream/{'0' * 40}/0"))[0] == 404
    assert (await daemon.request(f"/stream/{infohash}/1"))[0] == 404
    for bad in (
        f"/stream/{infohash[:-1]}/0",
        f"/stream/{infohash}/x",
        f"/stream/{infohash}/-1",
        f"/stream/{infohash}/0/extra",
        "/stream/",
        f"/stream/{infohash}",
        f"/stream/..%2f{infohash}/0",
    ):
        code, _, body = await daemon.request(bad)
        assert code == 400, (bad, code, body)
    assert (await daemon.request(stream, method="POST"))[0] == 405
    assert (await daemon.request("/nothing-here"))[0] == 404

    finished = await daemon.waitFor(
        infohash, lambda t: t["isFinished"] and t["isSeeding"], 30, "the download to finish"
    )
    assert finished["totalDone"] == size
    assert (save / "clip.mp4").read_bytes() == data

    # the status page: one row with its progress bar, and its refresh script
    code, headers, page = await daemon.request("/")
    assert code == 200 and headers["content-type"].startswith("text/html")
    html = page.decode()
    assert f'id="t-{infohash}"' in html and '<progress max="1" value="1.0000">' in html
    assert "100.0%" in html and "seeding" in html and 'src="status.js"' in html
    code, headers, script = await daemon.request("/status.js")
    assert code == 200 and b"status.json" in script

    # garbage in the watch folder is reported once and skipped; the daemon keeps serving
    drop(watch, "garbage.torrent", payload(3000, seed=9))
    drop(watch, "nonsense.magnet", b"this is not a magnet link\n")
    # a torrent whose file names would leave the save path is refused outright
    drop(
        watch,
        "escape.torrent",
        craftedTorrent(
            {b"name": b"dir", b"files": [{b"length": 40000, b"path": [b"..", b"..", b"evil"]}]}
        ),
    )
    await daemon.waitForLog(f"skipping {watch / 'escape.torrent'}: unsafe file name")
    await daemon.waitForLog(f"skipping {watch / 'garbage.torrent'}: not a .torrent")
    await daemon.waitForLog(f"skipping {watch / 'nonsense.magnet'}: invalid magnet link")
    # two more looks at the folder: each reports a marker dropped after the one before
    for n in (1, 2):
        marker = drop(watch, f"marker{n}.torrent", b"not a torrent")
        await daemon.waitForLog(f"skipping {marker}: not a .torrent")
        marker.unlink()
    assert daemon.text().count(f"skipping {watch / 'garbage.torrent'}") == 1
    assert daemon.text().count(f"skipping {watch / 'nonsense.magnet'}") == 1
    assert daemon.text().count(f"skipping {watch / 'escape.torrent'}") == 1
    assert not list(tmp_path.rglob("evil"))
    assert [t["infohash"] for t in await daemon.status()] == [infohash]
    page = (await daemon.request("/"))[2].decode()
    assert "garbage.torrent" in page and "nonsense.magnet" in page

    # SIGTERM: a clean stop, with the resume data written
    mtime = (save / "clip.mp4").stat().st_mtime_ns
    assertCleanStop(await daemon.stop(), daemon.text())
    assert "saved the resume data of 1 torrent(s)" in daemon.text()
    assert stateFiles(state, infohash) == {
        f"{infohash}.json",
        f"{infohash}.torrent",
        f"{infohash}.resume",
    }

    # a restart without any peer resumes it as a seed: nothing downloaded or re-hashed
    await seed.stop()
    again = await daemons(save, watch, state).start()
    resumed = await again.waitFor(
        infohash, lambda t: t["isSeeding"], 10, "the resumed torrent to seed"
    )
    assert resumed["totalDone"] == size and resumed["fractionDone"] == 1.0
    assert f"resumed clip.mp4 ({infohash})" in again.text()
    assert "checking its data from scratch" not in again.text()
    assert (save / "clip.mp4").stat().st_mtime_ns == mtime
    code, _, body = await again.request(stream, {"Range": "bytes=5000-5999"})
    assert (code, body) == (206, data[5000:6000])
    # the garbage is still skipped (and said so once in this run)
    await again.waitForLog(f"skipping {watch / 'garbage.torrent'}")

    # removing the .torrent stops the torrent; its files stay, its state goes
    torrentFile.unlink()
    await waitUntil(
        lambda: f"stopped clip.mp4 ({infohash})" in again.text(), 10, "the torrent to stop"
    )
    assert await again.status() == []
    assert (await again.request(stream))[0] == 404
    assert (save / "clip.mp4").read_bytes() == data
    assert stateFiles(state, infohash) == set()
    assertCleanStop(await again.stop(), again.text())


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_magnet_file_and_a_file_removed_while_down(
    daemons: Daemons, sessions: Sessions, tmp_path: Path
) -> None:
    size = 2 * MiB + 77
    seed, _, data, raw = await seeder(sessions, tmp_path / "seed", "song.ogg", size, seed=4)
    infohash = infohashOf(raw)
    save, watch = tmp_path / "save", tmp_path / "watch"
    daemon = await daemons(save, watch, peers=[("127.0.0.1", seed.listenPort)]).start()

    # a .magnet file: the metadata comes from the peer, then the data
    drop(watch, "song.magnet", f"magnet:?xt=urn:btih:{infohash}&dn=song.ogg\n".encode())
    done = await daemon.waitFor(infohash, lambda t: t["isFinished"], 30, "the magnet download")
    assert done["name"] == "song.ogg" and done["totalDone"] == size
    assert done["files"][0]["path"] == "song.ogg"
    assert (save / "song.ogg").read_bytes() == data
    code, headers, body = await daemon.request(f"/stream/{infohash}/0", {"Range": "bytes=0-9"})
    assert (code, headers["content-type"], body) == (206, "audio/ogg", data[:10])
    assertCleanStop(await daemon.stop(), daemon.text())
    # the default state folder, inside the save path
    state = save / ".pcpkit-state"
    assert stateFiles(state, infohash) == {f"{infohash}.json", f"{infohash}.resume"}

    # the .magnet goes while the daemon is down: the restart stops the torrent
    (watch / "song.magnet").unlink()
    again = await daemons(save, watch).start()
    await again.waitForLog(f"stopped song.ogg ({infohash}): song.magnet left the watch folder")
    assert await again.status() == []
    assert stateFiles(state, infohash) == set()
    assert (save / "song.ogg").read_bytes() == data
    assertCleanStop(await again.stop(), again.text())


# -- the pure parts of the web side --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=100-199", (100, 200)),
        ("bytes=900-5000", (900, 1000)),  # cut to the end
        ("bytes=990-", (990, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=-5000", (0, 1000)),
        (b"Bytes = 5 - 6", (5, 7)),
        ("bytes=0-0", (0, 1)),
        # not a single byte range: ignored, the whole file is sent
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=5-4", None),
        ("bytes=-", None),
        ("nonsense", None),
    ],
)
def test_parse_range(header: str | bytes | None, expected: tuple[int, int] | None) -> None:
    assert parseRange(header, 1000) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=-0", 1000),
        ("bytes=-1", 0),
        ("bytes=0-", 0),
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parseRange(header, size)


def test_status_page_escapes_names() -> None:
    evil = '<script>alert("x")</script>&.bin'
    torrent = {
        "infohash": "ab" * 20,
        "name": evil,
        "fractionDone": 0.5,
        "downRate": 1500,
        "upRate": 0,
        "numPeers": 1,
        "numSeeds": 1,
        "activity": "downloading",
        "files": [{"index": 0, "path": evil, "size": 10, "done": 5}],
    }
    page = renderStatusPage([torrent], [("<b>.torrent", "not <valid>")]).decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;.bin" in page
    assert "&lt;b&gt;.torrent" in page and "not &lt;valid&gt;" in page
    assert '<progress max="1" value="0.5000">' in page and "50.0%" in page
    assert "1.5 kB/s" in page


# -- in process: the service's own contract ------------------------------------------------


class _Source:
    """A :class:`~pcpkit.torrent.web.TorrentSource` over a bare session."""

    def __init__(self, session: TorrentSession) -> None:
        self.session = session

    def skippedFiles(self) -> list[tuple[str, str]]:
        return []


class _RawClient(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def _connect(port: int) -> _RawClient:
    client = _RawClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await defer.ensureDeferred(connectProtocol(endpoint, client))
    return client


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_client_that_goes_away_stops_its_stream(sessions: Sessions, tmp_path: Path) -> None:
    # a torrent nobody seeds: the stream waits for its first piece until the client goes
    folder = tmp_path / "src"
    writePayload(folder, "video.webm", 2 * MiB)
    raw = makeTorrent(folder / "video.webm", pieceSize=PIECE)
    session = sessions()
    added = await withTimeout(session.addTorrent(raw, savefolder=str(tmp_path / "empty")), 10)
    site = makeSite(_Source(session))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        client = await _connect(port.getHost().port)
        assert client.transport is not None
        client.transport.write(
            f"GET /stream/{added.infohash}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Range: bytes=300000-\r\n\r\n".encode()
        )
        await waitUntil(lambda: len(site.streams.producers) == 1, 5, "the stream to start")
        (producer,) = site.streams.producers
        assert producer.start == 300000 and not producer.bytesWritten
        client.transport.abortConnection()  # type: ignore[attr-defined,unused-ignore]
        await waitUntil(lambda: not site.streams.producers, 5, "the stream to stop")
        # its piece requests were withdrawn and it let go of the session
        assert not producer._requested
        assert producer.deferred.called and producer.bytesWritten == 0
        await withTimeout(client.lost, 5)
    finally:
        site.abortConnections()
        await port.stopListening()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_daemon_in_process_saves_resume_data_and_stops_clean(tmp_path: Path) -> None:
    save, watch = tmp_path / "save", tmp_path / "watch"
    data = writePayload(save, "doc.pdf", 1 * MiB + 5)
    raw = makeTorrent(save / "doc.pdf", pieceSize=PIECE)
    infohash = infohashOf(raw)
    daemon = TorrentDaemon(
        savePath=str(save),
        watchDir=str(watch),
        stateDir=None,
        httpEndpoint="tcp:0:interface=127.0.0.1",
        listenInterfaces="127.0.0.1:0",
        peers=(),
        tickInterval=0.2,
        pollInterval=0.1,
        resumeInterval=0.2,
    )
    daemon.startService()
    try:
        drop(watch, "doc.torrent", raw)
        await waitUntil(lambda: daemon.httpPort is not None, 5, "HTTP to listen")
        session = daemon.session
        assert session is not None

        def seeding() -> bool:
            ids = session.torrentIds()
            return bool(ids) and session.status(ids[0])["isSeeding"]

        await waitUntil(seeding, 10, "the torrent to seed from the data in the save path")
        assert daemon.infohashes() == [infohash]
        # the timer writes resume data (the torrent changed since it was added)
        resume = save / ".pcpkit-state" / f"{infohash}.resume"
        await waitUntil(resume.exists, 5, "the timer to save resume data")
        # an idle keep-alive HTTP connection does not hold the stop up
        idle = await _connect(daemon.httpPort.getHost().port)
        assert idle.transport is not None
        idle.transport.write(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await waitUntil(lambda: b"doc.pdf" in idle.received, 5, "the status")
    finally:
        await withTimeout(daemon.stopService(), 20)
    assert daemon.session is None and session.stopped
    await withTimeout(idle.lost, 5)
    assert (save / "doc.pdf").read_bytes() == data
    # stopping twice is fine
    await daemon.stopService()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_daemon_log_lines_escape_torrent_names(tmp_path: Path) -> None:
    """A torrent's name cannot clear the screen of ``twistd -n`` or forge a log line."""
    save, watch = tmp_path / "save", tmp_path / "watch"
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        lines.append(formatEvent(event) or "")

    # no HTTP, no peers: the log lines are what is looked at
    daemon = TorrentDaemon(savePath=str(save), watchDir=str(watch), pollInterval=0.1)
    globalLogPublisher.addObserver(observe)
    daemon.startService()
    try:
        # a magnet link's name is the torrent's name until its metadata comes: as sent
        magnet = "magnet:?xt=urn:btih:" + "c" * 40 + "&dn=evil%1B%5B2J%E2%80%AE%0Aforged"
        drop(watch, "evil.magnet", magnet.encode() + b"\n")
        await waitUntil(
            lambda: any("evil" in line and "saving to" in line for line in lines),
            10,
            "the torrent's 'added' line",
        )
        assert daemon.session is not None
        [tid] = daemon.session.torrentIds()
        assert daemon.session.status(tid)["name"] == "evil\x1b[2J\u202e\nforged"
    finally:
        globalLogPublisher.removeObserver(observe)
        await withTimeout(daemon.stopService(), 20)
    named = [line for line in lines if "evil" in line]
    assert named and all("evil\\x1b[2J\\u202e\\nforged" in line for line in named)
    assert not any(c in line for line in named for c in "\x1b\u202e\n")


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_watch_folder_files_sharing_and_changing_a_torrent(tmp_path: Path) -> None:
    save, watch = tmp_path / "save", tmp_path / "watch"
    writePayload(save, "data.bin", 512 * 1024)
    raw = makeTorrent(save / "data.bin", pieceSize=PIECE)
    infohash = infohashOf(raw)
    daemon = TorrentDaemon(
        savePath=str(save), watchDir=str(watch), tickInterval=0.2, pollInterval=0.05
    )
    daemon.startService()
    try:
        session = daemon.session
        assert session is not None

        async def running(ids: list[str], what: str) -> None:
            def check() -> bool:
                return (
                    daemon.infohashes() == ids
                    and len(session.torrentIds()) == len(ids)
                    and all(not record.adding for record in daemon._torrents.values())
                )

            await waitUntil(check, 10, what)

        markers = 0

        async def scanned() -> None:
            # A scan that began after now: it lists a marker file created now (and with it
            # every change made before), then another scan sees the marker gone.
            nonlocal markers
            markers += 1
            marker = drop(watch, f"marker{markers}.torrent", b"not a torrent")

            def listed() -> bool:
                return any(name == marker.name for name, _ in daemon.skippedFiles())

            await waitUntil(listed, 10, f"a scan to list {marker.name}")
            marker.unlink()
            await waitUntil(lambda: not listed(), 10, f"a scan to see {marker.name} gone")

        # two files naming one torrent: it runs once, and until both are gone
        drop(watch, "a.torrent", raw)
        drop(watch, "b.torrent", raw)
        await running([infohash], "the torrent to run")
        (watch / "a.torrent").unlink()
        await scanned()
        await running([infohash], "the torrent to keep running")
        # b now holds garbage: the torrent stops, b is listed as skipped
        (watch / "b.torrent").write_bytes(b"d4:infoi3ee")
        await running([], "the torrent to stop")
        ((name, reason),) = daemon.skippedFiles()
        assert name == "b.torrent" and "not a .torrent" in reason, reason
        # fixed: it runs again, and nothing is skipped any more
        (watch / "b.torrent").write_bytes(raw)
        await running([infohash], "the torrent to run again")
        assert daemon.skippedFiles() == []
        # a magnet naming the same torrent shares it too
        drop(watch, "c.magnet", f"magnet:?xt=urn:btih:{infohash}".encode())
        await scanned()
        (watch / "b.torrent").unlink()
        await scanned()
        await running([infohash], "the torrent to stay for c.magnet")
        (watch / "c.magnet").unlink()
        await running([], "the torrent to stop with its last file")
    finally:
        await withTimeout(daemon.stopService(), 20)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_daemon_retries_its_peers_after_more_failures_than_max_failcount(
    sessions: Sessions, tmp_path: Path
) -> None:
    source, save, watch = tmp_path / "source", tmp_path / "save", tmp_path / "watch"
    data = writePayload(source, "f.bin", 1 * MiB, seed=29)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    fake = FailingPeer()
    daemon = TorrentDaemon(
        savePath=str(save),
        watchDir=str(watch),
        peers=[("127.0.0.1", fake.port)],
        tickInterval=0.2,
        pollInterval=0.1,
        peerInterval=0.2,
        settings=PLAINTEXT,
    )
    daemon.startService()
    try:
        drop(watch, "f.torrent", raw)
        failures = MAX_FAILCOUNT + 1
        try:
            await waitUntil(lambda: fake.attempts >= failures, 30, f"{failures} failed attempts")
        finally:
            await fake.stop()
        # the real peer takes the port over: the daemon's next round finds it
        seeder = sessions(settings={"listen_interfaces": f"127.0.0.1:{fake.port}"})
        assert await withTimeout(seeder.whenListening(), 10) == fake.port
        await withTimeout(seeder.addTorrent(raw, savefolder=str(source), seed=True), 15)
        session = daemon.session
        assert session is not None

        def complete() -> bool:
            ids = session.torrentIds()
            return bool(ids) and session.status(ids[0])["isFinished"]

        await waitUntil(complete, 30, "the download to complete")
    finally:
        await withTimeout(daemon.stopService(), 20)
    assert (save / "f.bin").read_bytes() == data


# -- a daemon that cannot do its job -------------------------------------------------------


def _busyPort() -> socket.socket:
    """A port taken by a listening socket (a plain one: the reactor never sees it)."""
    return socket.create_server(("127.0.0.1", 0))


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "problem", ["http-busy", "unwritable-save-path", "listen-busy", "listen-foreign-address"]
)
@pytest_twisted.ensureDeferred
async def test_a_daemon_that_cannot_work_exits_naming_the_option(
    daemons: Daemons, tmp_path: Path, problem: str
) -> None:
    """A supervisor sees the failure: exit status 1 and one line naming the option."""
    busy = _busyPort()
    port = busy.getsockname()[1]
    savePath = tmp_path / "save"
    try:
        if problem == "http-busy":
            args = ["--http", str(port)]
            expected = (
                f"twistd pcpkit torrent: --http: cannot serve HTTP on "
                f"tcp:{port}:interface=127.0.0.1: Couldn't listen on 127.0.0.1:{port}"
            )
        elif problem == "unwritable-save-path":
            (tmp_path / "afile").write_bytes(b"not a folder")
            savePath = tmp_path / "afile" / "downloads"
            args = []
            expected = (
                f"twistd pcpkit torrent: --save-path: {savePath} is not a writable "
                "folder: Not a directory"
            )
        elif problem == "listen-busy":
            args = ["--listen-interfaces", f"127.0.0.1:{port}"]
            expected = (
                f"twistd pcpkit torrent: --listen-interfaces: cannot listen on "
                f"127.0.0.1:{port}: Address already in use"
            )
        else:
            args = ["--listen-interfaces", "192.0.2.1:0"]  # TEST-NET-1: not this host's
            expected = (
                "twistd pcpkit torrent: --listen-interfaces: cannot listen on "
                "192.0.2.1:0: Cannot assign requested address"
            )
        runner = ProcessRunner(twistdArgv("torrent", "--save-path", str(savePath), *args))
        code = await exitCode(runner, 60)
    finally:
        busy.close()
    text = runner.text()
    assert code == 1, text
    assert expected in text, text
    assert "Traceback" not in text, text
    assert "Main loop terminated" not in text, text  # it never ran


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_bad_listen_interfaces_are_usage_errors(daemons: Daemons, tmp_path: Path) -> None:
    for value, expected in (
        ("nonsense", "--listen-interfaces: 'nonsense' is not ADDRESS:PORT"),
        ("127.0.0.1:0,", "--listen-interfaces: '127.0.0.1:0,' has an empty entry"),
        ("127.0.0.1:70000", "--listen-interfaces: '127.0.0.1:70000': port 70000 is out of range"),
        ("nosuchdevice0:6881", "'nosuchdevice0' is neither an IP address nor a network device"),
    ):
        runner = ProcessRunner(
            twistdArgv("torrent", "--save-path", str(tmp_path), "--listen-interfaces", value)
        )
        code = await exitCode(runner, 30)
        assert code != 0, runner.text()
        assert expected in runner.text(), runner.text()
        assert "Traceback" not in runner.text()


def test_parse_range_absurd_numbers() -> None:
    """5,000 digits: 416 for a start past the end, cut to the end for a last byte, no 500."""
    huge = "9" * 5000
    with pytest.raises(RangeNotSatisfiable) as info:
        parseRange(f"bytes={huge}-", 1000)
    assert len(str(info.value)) < 100
    assert parseRange(f"bytes=0-{huge}", 1000) == (0, 1000)
    assert parseRange(f"bytes=-{huge}", 1000) == (0, 1000)
    assert parseRange(f"bytes={'0' * 5000}5-6", 1000) == (5, 7)
    assert parseRange(f"bytes={huge}-5", 1000) is None  # last < first: ignored


def _rangeModel(first: int | None, last: int | None, size: int) -> tuple[int, int] | None | str:
    """RFC 9110's single byte range, as plain integers: the oracle for parseRange."""
    if first is None and last is None:
        return None
    if first is None:
        assert last is not None
        return "416" if last == 0 or size == 0 else (max(size - last, 0), size)
    if last is not None and last < first:
        return None
    if first >= size:
        return "416"
    return first, size if last is None else min(last + 1, size)


@given(
    first=st.none() | st.integers(0, 10**30),
    last=st.none() | st.integers(0, 10**30),
    size=st.integers(0, 2**40),
    zeros=st.integers(0, 3),
    spaces=st.sampled_from(["", " ", "\t"]),
)
def test_parse_range_matches_the_model(
    first: int | None, last: int | None, size: int, zeros: int, spaces: str
) -> None:
    def digits(n: int | None) -> str:
        return "" if n is None else "0" * zeros + str(n)

    header = f"bytes{spaces}={spaces}{digits(first)}{spaces}-{spaces}{digits(last)}"
    expected = _rangeModel(first, last, size)
    if expected == "416":
        with pytest.raises(RangeNotSatisfiable):
            parseRange(header, size)
    else:
        assert parseRange(header, size) == expected


@given(header=st.text(max_size=60) | st.binary(max_size=60), size=st.integers(0, 2**40))
def test_parse_range_any_header(header: str | bytes, size: int) -> None:
    """Whatever the header: the whole file, a range inside it, or 416; nothing else."""
    try:
        got = parseRange(header, size)
    except RangeNotSatisfiable:
        return
    if got is not None:
        start, end = got
        assert 0 <= start < end <= size


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_daemon_disk_work_runs_off_the_reactor_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    State and resume writes, state-folder reads and watch-folder scans run in threads, one at
    a time. Resume data is synced as it is written (after the torrent's data); the other state
    files are synced at shutdown only, not on every write.
    """
    from twisted.python import threadable

    from pcpkit.torrent import daemon as daemonmod

    calls: list[tuple[str, bool]] = []  # (what, on the reactor thread)
    running = [0]
    overlapped = [False]

    def spy(name: str, f: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            calls.append((name, threadable.isInIOThread()))
            running[0] += 1
            overlapped[0] = overlapped[0] or running[0] > 1
            try:
                return f(*args, **kw)
            finally:
                running[0] -= 1

        return wrapper

    monkeypatch.setattr(daemonmod, "atomicWrite", spy("write", daemonmod.atomicWrite))
    monkeypatch.setattr(daemonmod, "writeResumeData", spy("resume", daemonmod.writeResumeData))
    monkeypatch.setattr(daemonmod, "_scanFolder", spy("scan", daemonmod._scanFolder))
    monkeypatch.setattr(daemonmod, "_removeFiles", spy("remove", daemonmod._removeFiles))
    monkeypatch.setattr(
        TorrentDaemon, "_readStateFolder", spy("restore", TorrentDaemon._readStateFolder)
    )
    synced: list[str] = []
    fsync = os.fsync

    def recordedFsync(fd: int) -> None:
        # (not a spy: it runs inside the jobs above, which the spies count)
        calls.append(("fsync", threadable.isInIOThread()))
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recordedFsync)

    save, watch = tmp_path / "save", tmp_path / "watch"
    writePayload(save, "doc.pdf", 512 * 1024 + 3)
    raw = makeTorrent(save / "doc.pdf", pieceSize=PIECE)
    infohash = infohashOf(raw)
    stateDir = save / ".pcpkit-state"
    daemon = TorrentDaemon(
        savePath=str(save),
        watchDir=str(watch),
        tickInterval=0.2,
        pollInterval=0.05,
        resumeInterval=0.2,
    )
    daemon.startService()
    try:
        drop(watch, "doc.torrent", raw)
        await waitUntil(
            lambda: (stateDir / f"{infohash}.resume").exists(), 10, "resume data to be saved"
        )
        await waitUntil(lambda: (stateDir / f"{infohash}.json").exists(), 10, "the state")
        (watch / "doc.torrent").unlink()
        await waitUntil(
            lambda: not (stateDir / f"{infohash}.json").exists(),
            10,
            "the state to be removed with the watch file",
        )
        drop(watch, "again.torrent", raw)
        await waitUntil(lambda: (stateDir / f"{infohash}.json").exists(), 10, "the state again")
        # so far only resume data and what it needs: no state file written by "write"
        resume = str(stateDir / f"{infohash}.resume")
        assert set(synced) <= {str(save / "doc.pdf"), f"{resume}.tmp", str(stateDir)}, synced
        assert f"{resume}.tmp" in synced, synced
    finally:
        await withTimeout(daemon.stopService(), 20)
    names = {name for name, _ in calls}
    assert {"write", "resume", "scan", "remove", "restore", "fsync"} <= names, names
    assert str(stateDir / f"{infohash}.json") in synced, synced  # at shutdown
    onReactor = [name for name, inReactor in calls if inReactor]
    assert onReactor == [], onReactor
    assert not overlapped[0]
