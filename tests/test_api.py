"""
The torrent daemon's JSON control API (``pcpkit.torrent.api``), against a daemon running in
this process with real libtorrent sessions on 127.0.0.1: a seeder session feeds it, and every
request goes over TCP through ``http.client`` (in a thread, so the reactor keeps running).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libtorrent
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from pcpkit.torrent.api import TOKEN_HEADER
from pcpkit.torrent.daemon import (
    TOKEN_FILE,
    DaemonStartError,
    TorrentDaemon,
    loadOrCreateToken,
)
from pcpkit.torrent.maker import infohashOf, makeTorrent
from tests.torrentutil import (  # noqa: F401 - the "sessions" fixture
    MiB,
    Sessions,
    freePort,
    sessionsFixture,
    waitUntil,
    withTimeout,
    writePayload,
)

PIECE = 16384
Reply = tuple[int, dict[str, str], Any]


class Client:
    """Requests to the daemon's HTTP side, off the reactor thread."""

    def __init__(self, daemon: TorrentDaemon) -> None:
        self.daemon = daemon

    @property
    def port(self) -> int:
        return int(self.daemon.httpPort.getHost().port)

    async def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        port = self.port

        def call() -> tuple[int, dict[str, str], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            finally:
                conn.close()

        result: tuple[int, dict[str, str], bytes] = await deferToThread(call)
        return result

    async def call(
        self,
        method: str,
        path: str,
        value: object = None,
        *,
        body: bytes | None = None,
        contentType: str | None = None,
        token: str | None = "daemon's",
    ) -> Reply:
        headers = {}
        if token == "daemon's":
            token = self.daemon.apiToken
        if token is not None:
            headers[TOKEN_HEADER.decode()] = token
        if value is not None:
            body = json.dumps(value).encode()
            contentType = contentType or "application/json"
        if contentType is not None:
            headers["Content-Type"] = contentType
        code, head, data = await self.raw(method, path, body, headers)
        assert head["content-type"] == "application/json", (path, head, data)
        assert not [k for k in head if k.startswith("access-control-")], head
        return code, head, json.loads(data)


def makeDaemon(tmp_path: Path, **kw: Any) -> TorrentDaemon:
    kw.setdefault("peers", ())
    return TorrentDaemon(
        savePath=str(tmp_path / "save"),
        stateDir=str(tmp_path / "state"),
        httpEndpoint="tcp:0:interface=127.0.0.1",
        tickInterval=0.2,
        pollInterval=0.2,
        resumeInterval=60,
        peerInterval=0.5,
        **kw,
    )


async def started(daemon: TorrentDaemon) -> Client:
    daemon.startService()
    await waitUntil(lambda: daemon.httpPort is not None, 10, "HTTP to listen")
    return Client(daemon)


@pytest.fixture(name="stopAfter")
def stopAfterFixture() -> Iterator[list[TorrentDaemon]]:
    daemons: list[TorrentDaemon] = []
    yield daemons
    for daemon in daemons:
        pytest_twisted.blockon(withTimeout(daemon.stopService(), 20))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def seedAlbum(sessions: Sessions, folder: Path, trackers: list[str]) -> tuple[Any, bytes]:
    """A seeder session with a two-file torrent ``album/``: ``(session, metainfo)``."""
    writePayload(folder, "album/a.bin", 3 * PIECE + 100, seed=1)
    writePayload(folder, "album/b.bin", 2 * MiB, seed=2)
    raw = makeTorrent(folder / "album", trackers=trackers, pieceSize=PIECE)
    # slow enough to see it download and to list its peer
    seeder = sessions(
        settings={"upload_rate_limit": 1 * MiB, "ignore_limits_on_local_network": False}
    )
    await withTimeout(seeder.addTorrent(raw, savefolder=str(folder), seed=True), 20)
    return seeder, raw


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_control_api_end_to_end(
    sessions: Sessions, tmp_path: Path, stopAfter: list[TorrentDaemon]
) -> None:
    deadTracker = f"http://127.0.0.1:{freePort()}/announce"
    seeder, raw = await seedAlbum(sessions, tmp_path / "seed", [deadTracker])
    infohash = infohashOf(raw)
    daemon = makeDaemon(tmp_path, peers=[("127.0.0.1", seeder.listenPort)])
    stopAfter.append(daemon)
    client = await started(daemon)
    api = "/api/torrents"

    # the token: made at the first start, 256 bits, readable by its owner only
    tokenFile = tmp_path / "state" / TOKEN_FILE
    assert stat.S_IMODE(tokenFile.stat().st_mode) == 0o600
    assert tokenFile.read_text().strip() == daemon.apiToken and len(daemon.apiToken or "") >= 40

    # no token, or a wrong one: refused, nothing added
    for token in (None, "x" * 43):
        code, head, body = await client.call(
            "POST", api, body=raw, contentType="application/x-bittorrent", token=token
        )
        assert code == 401 and "token" in body["error"], body
        assert head["www-authenticate"] == "X-Pcpkit-Token"
    assert daemon.infohashes() == []
    # reads need no token; a browser's preflight gets no CORS answer
    code, _, listing = await client.call("GET", api, token=None)
    assert (code, listing["total"], listing["torrents"]) == (200, 0, [])
    for token in ("daemon's", None):  # a preflight carries no token: 405 all the same
        code, head, body = await client.call("OPTIONS", api, token=token)
        assert code == 405 and head["allow"] == "GET, POST", (token, body)

    # bad input: one line each, nothing added
    for body_, kind, why in (
        (b"garbage", "application/x-bittorrent", "bencod"),
        (b"", "application/x-bittorrent", "empty"),
        (b'{"magnet": "magnet:?xt=urn:btih:nothex"}', "application/json", "magnet"),
        (b'{"magnet": 3}', "application/json", "magnet"),
        (b"[1]", "application/json", "object"),
        (b"{", "application/json", "not JSON"),
        (b"[" * 200_000, "application/json", "nested too deep"),
        (raw, "text/plain", "application/x-bittorrent"),
    ):
        code, _, body = await client.call("POST", api, body=body_, contentType=kind)
        assert code in (400, 415) and why in body["error"], (body_, body)
        assert "\n" not in body["error"]
    assert daemon.infohashes() == []

    # add the .torrent; a second add is a conflict
    code, head, added = await client.call(
        "POST", api, body=raw, contentType="application/x-bittorrent"
    )
    assert code == 201, added
    assert added == {"infohash": infohash, "name": "album"}
    code, _, body = await client.call("POST", api, body=raw, contentType="application/x-bittorrent")
    assert code == 409 and infohash in body["error"]
    magnet = f"magnet:?xt=urn:btih:{infohash}"
    code, _, body = await client.call("POST", api, {"magnet": magnet})
    assert code == 409

    one = f"{api}/{infohash}"
    # unknown and malformed torrents
    assert (await client.call("GET", f"{api}/{'0' * 40}"))[0] == 404
    assert (await client.call("POST", f"{api}/{'0' * 40}/pause"))[0] == 404
    assert (await client.call("GET", f"{api}/nothex/files"))[0] == 400
    assert (await client.call("GET", f"{one}/nothing"))[0] == 404
    assert (await client.call("GET", "/api/nothing"))[0] == 404
    assert (await client.call("GET", f"{one}/pause"))[0] == 405

    # its peers while it downloads (the seeder is rate limited)
    async def peers() -> list[dict[str, Any]]:
        code, _, listed = await client.call("GET", f"{one}/peers")
        assert code == 200
        return list(listed)

    seen: list[dict[str, Any]] = []

    async def gotPeer() -> bool:
        seen[:] = await peers()
        return bool(seen) and seen[0]["seed"]  # a seed once its bitfield came

    await waitAsync(gotPeer, 20, "the seeder in the peer list")
    assert seen[0]["address"] == f"127.0.0.1:{seeder.listenPort}"
    assert seen[0]["progress"] == 1.0 and seen[0]["uploaded"] == 0

    # options while downloading
    code, _, options = await client.call(
        "POST",
        f"{one}/options",
        {"sequential": True, "firstLastPieces": True, "downloadLimit": 4 * MiB},
    )
    assert code == 200, options
    assert options == {
        "sequential": True,
        "firstLastPieces": True,
        "downloadLimit": 4 * MiB,
        "uploadLimit": 0,
    }
    handle = daemon.session.handle(daemon.session.torrentIdFor(infohash))  # type: ignore[union-attr]
    assert int(handle.flags()) & int(libtorrent.torrent_flags.sequential_download)
    # libtorrent applies priorities on its own thread, soon after the call
    await waitUntil(lambda: handle.piece_priority(0) == 7, 5, "a.bin's first piece first")
    for bad, why in (
        ({"sequential": "yes"}, "true or false"),
        ({"downloadLimit": -1}, "from 0 (none) to 2147483647"),
        ({"uploadLimit": 1.5}, "whole number"),
        ({"speed": 1}, "unknown option"),
        # above what libtorrent holds (a C int): refused, not wrapped or a 500 ...
        ({"downloadLimit": 2**31}, "to 2147483647, not 2147483648"),
        ({"uploadLimit": 10**23}, "to 2147483647"),
        # ... before anything changed
        ({"sequential": False, "firstLastPieces": False, "uploadLimit": 3 * 10**9}, "to 2147"),
    ):
        code, _, body = await client.call("POST", f"{one}/options", bad)
        assert code == 400 and why in body["error"], (bad, body)
        assert "\n" not in body["error"]
    assert (await client.call("GET", f"{one}/options"))[2] == options
    code, _, options = await client.call(
        "POST", f"{one}/options", {"downloadLimit": 0, "firstLastPieces": False}
    )
    assert options["downloadLimit"] == 0 and options["firstLastPieces"] is False
    await waitUntil(lambda: handle.piece_priority(0) == 4, 5, "piece priorities back")

    # global limits
    code, _, limits = await client.call("POST", "/api/limits", {"uploadLimit": 123456})
    assert (code, limits) == (200, {"downloadLimit": 0, "uploadLimit": 123456})
    assert (await client.call("GET", "/api/limits"))[2] == limits
    for bad in ("a", -1, 2**31, 5 * 10**9, 2**32):
        code, _, body = await client.call("POST", "/api/limits", {"uploadLimit": bad})
        assert code == 400 and "to 2147483647" in body["error"], (bad, body)
    assert (await client.call("GET", "/api/limits"))[2] == limits

    # the dead tracker's error shows on the torrent
    async def trackerError() -> bool:
        _, _, trackers = await client.call("GET", f"{one}/trackers")
        return bool(trackers) and trackers[0]["error"] is not None

    await waitAsync(trackerError, 30, "the dead tracker's error")
    _, _, trackers = await client.call("GET", f"{one}/trackers")
    assert trackers[0]["url"] == deadTracker and trackers[0]["fails"] >= 1
    _, _, status = await client.call("GET", one)
    assert deadTracker in (status["trackerError"] or "")

    # finish, then priorities, pause, resume, recheck
    async def finished() -> bool:
        return bool((await client.call("GET", one))[2]["isFinished"])

    await waitAsync(finished, 40, "the download to finish")
    save = tmp_path / "save" / "album"
    assert sha256(save / "a.bin") == sha256(tmp_path / "seed" / "album" / "a.bin")
    assert sha256(save / "b.bin") == sha256(tmp_path / "seed" / "album" / "b.bin")

    code, _, files = await client.call("POST", f"{one}/files", {"priorities": {"1": "skip"}})
    assert code == 200, files
    assert [(f["path"], f["priority"]) for f in files] == [
        ("album/a.bin", "normal"),
        ("album/b.bin", "skip"),
    ]
    for bad, why in (
        ({"priorities": {"5": "skip"}}, "no file 5"),
        ({"priorities": {"0": "urgent"}}, "skip, normal, high"),
        ({"priorities": {"x": "skip"}}, "whole number"),
        ({"priorities": []}, "priorities"),
        ({"priorities": {"0": ["x"]}}, "skip, normal, high"),
        ({"priorities": {"0": {}}}, "skip, normal, high"),
    ):
        code, _, body = await client.call("POST", f"{one}/files", bad)
        assert code == 400 and why in body["error"], (bad, body)
    assert (await client.call("GET", f"{one}/files"))[2] == files

    assert (await client.call("POST", f"{one}/pause"))[0] == 200

    async def paused(want: bool) -> bool:
        return bool((await client.call("GET", one))[2]["paused"]) is want

    await waitAsync(lambda: paused(True), 10, "paused")
    assert (await client.call("POST", f"{one}/resume"))[0] == 200
    await waitAsync(lambda: paused(False), 10, "resumed")
    assert (await client.call("POST", f"{one}/recheck"))[0] == 200
    await waitAsync(finished, 20, "the recheck to find the data complete")

    # remove, deleting the files
    code, _, body = await client.call("DELETE", f"{one}?deleteFiles=1")
    assert (code, body) == (200, {"removed": infohash, "filesDeleted": True})
    assert daemon.infohashes() == []
    await waitUntil(lambda: not (save / "a.bin").exists(), 10, "the files to be deleted")
    assert (await client.call("GET", one))[0] == 404
    assert (await client.call("DELETE", one))[0] == 404
    await waitUntil(
        lambda: not list((tmp_path / "state").glob(f"{infohash}.*")), 10, "the state files to go"
    )
    # the seeder's data is untouched
    assert (tmp_path / "seed" / "album" / "b.bin").stat().st_size == 2 * MiB

    # the same torrent again, by magnet link this time: its metadata comes from the seeder
    code, _, added = await client.call("POST", api, {"magnet": f"{magnet}&dn=album"})
    assert (code, added) == (201, {"infohash": infohash, "name": "album"})

    async def filesKnown() -> bool:
        code, _, files = await client.call("GET", f"{one}/files")
        return code == 200 and len(files) == 2

    await waitAsync(filesKnown, 30, "the magnet's metadata")
    await waitAsync(finished, 40, "the download by magnet to finish")
    assert sha256(save / "b.bin") == sha256(tmp_path / "seed" / "album" / "b.bin")
    assert (await client.call("DELETE", one))[0] == 200
    assert (save / "b.bin").exists()  # kept: no deleteFiles


async def waitAsync(check: Any, timeout: float, what: str) -> None:
    """Poll an async ``check`` until it is true."""
    import time

    from tests.torrentutil import sleep

    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(0.1)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_settings_survive_a_restart_and_big_bodies_are_refused(
    tmp_path: Path, stopAfter: list[TorrentDaemon]
) -> None:
    writePayload(tmp_path / "src", "clip.mp4", 5 * PIECE, seed=4)
    raw = makeTorrent(tmp_path / "src" / "clip.mp4", pieceSize=PIECE)
    infohash = infohashOf(raw)
    daemon = makeDaemon(tmp_path, httpMaxBody=len(raw) + 10)
    client = await started(daemon)
    token = daemon.apiToken
    try:
        # a body over the limit: 413, and nothing added
        code, head, body = await client.call(
            "POST", "/api/torrents", body=raw + b"x" * 100, contentType="application/x-bittorrent"
        )
        assert code == 413 and "limit" in body["error"]
        # the same without a Content-Length (chunked): counted as it comes, then refused
        port = client.port

        def chunked() -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                headers = {"Content-Type": "application/x-bittorrent"}
                assert daemon.apiToken is not None
                headers[TOKEN_HEADER.decode()] = daemon.apiToken
                chunks = iter([raw, b"x" * 100])
                conn.request("POST", "/api/torrents", body=chunks, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        code, data = await deferToThread(chunked)
        assert code == 413 and b"limit" in data
        assert daemon.infohashes() == []
        code, _, added = await client.call(
            "POST", "/api/torrents", body=raw, contentType="application/x-bittorrent"
        )
        assert code == 201
        one = f"/api/torrents/{infohash}"
        await client.call("POST", f"{one}/options", {"firstLastPieces": True, "uploadLimit": 5000})
        await client.call("POST", f"{one}/pause")
        await client.call("POST", "/api/limits", {"downloadLimit": 777000})
        # the torrent's resume data (flags, limits) is written after each change
        resume = tmp_path / "state" / f"{infohash}.resume"
        await waitUntil(resume.exists, 10, "resume data")
    finally:
        await withTimeout(daemon.stopService(), 20)

    again = makeDaemon(tmp_path)
    stopAfter.append(again)
    client = await started(again)
    assert again.apiToken == token  # the same token: made once
    await waitUntil(lambda: again.infohashes() == [infohash], 10, "the torrent restored")

    async def restored() -> bool:
        code, _, status = await client.call("GET", f"/api/torrents/{infohash}")
        return code == 200

    await waitAsync(restored, 10, "the torrent to be running")
    _, _, status = await client.call("GET", f"/api/torrents/{infohash}")
    assert status["paused"] is True
    assert status["options"]["firstLastPieces"] is True
    assert status["options"]["uploadLimit"] == 5000
    assert (await client.call("GET", "/api/limits"))[2]["downloadLimit"] == 777000


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_api_torrents_and_the_watch_folder(
    tmp_path: Path, stopAfter: list[TorrentDaemon]
) -> None:
    """A torrent added through the API stays when a watch-folder file naming it goes."""
    from tests.test_twistd_torrent import drop

    writePayload(tmp_path / "save", "notes.txt", 3 * PIECE, seed=9)
    raw = makeTorrent(tmp_path / "save" / "notes.txt", pieceSize=PIECE)
    infohash = infohashOf(raw)
    watch = tmp_path / "watch"
    daemon = makeDaemon(tmp_path, watchDir=str(watch))
    stopAfter.append(daemon)
    client = await started(daemon)
    code, _, _ = await client.call(
        "POST", "/api/torrents", body=raw, contentType="application/x-bittorrent"
    )
    assert code == 201
    torrentFile = drop(watch, "notes.torrent", raw)
    state = tmp_path / "state" / f"{infohash}.json"

    def sources() -> list[str]:
        return list(json.loads(state.read_text())["sources"]) if state.exists() else []

    await waitUntil(lambda: sources() == [str(torrentFile)], 10, "the file as a source")
    torrentFile.unlink()
    await waitUntil(lambda: sources() == [], 10, "the file to be forgotten")
    assert daemon.infohashes() == [infohash]
    assert json.loads(state.read_text())["api"] is True
    code, _, status = await client.call("GET", f"/api/torrents/{infohash}")
    assert code == 200 and status["name"] == "notes.txt"


def test_token_file(tmp_path: Path) -> None:
    token, created = loadOrCreateToken(str(tmp_path))
    assert created and len(token) >= 40
    assert stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode) == 0o600
    assert loadOrCreateToken(str(tmp_path)) == (token, False)
    # a token the user wrote is used as it is; a file that holds none is an error
    (tmp_path / TOKEN_FILE).write_text("my-own-token-0123456789\n")
    assert loadOrCreateToken(str(tmp_path)) == ("my-own-token-0123456789", False)
    (tmp_path / TOKEN_FILE).write_text("short\n")
    with pytest.raises(ValueError, match="does not hold a token"):
        loadOrCreateToken(str(tmp_path))


def test_a_daemon_with_a_bad_token_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / TOKEN_FILE).write_text("\n")
    daemon = makeDaemon(tmp_path)
    with pytest.raises(DaemonStartError) as info:
        daemon.startService()
    assert info.value.parameter == "stateDir" and "api-token" in info.value.reason
    assert daemon.session is None and daemon.httpPort is None


def fakeTorrent(i: int) -> bytes:
    """A small, distinct torrent whose data exists nowhere (it only waits for peers)."""
    name = f"t{i:05d}".encode()
    info = {b"name": name, b"length": 1000 + i, b"piece length": PIECE}
    info[b"pieces"] = hashlib.sha1(name).digest()
    return bytes(libtorrent.bencode({b"info": info}))


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_pagination_of_200_torrents(tmp_path: Path, stopAfter: list[TorrentDaemon]) -> None:
    daemon = makeDaemon(tmp_path)
    stopAfter.append(daemon)
    client = await started(daemon)
    raws = [fakeTorrent(i) for i in range(200)]
    for raw in raws:
        await withTimeout(daemon.addTorrent(metainfo=raw), 10)
    names = [f"t{i:05d}" for i in range(200)]

    # the API's pages: every torrent once, oldest first
    got: list[str] = []
    offset = 0
    while True:
        code, _, page = await client.call("GET", f"/api/torrents?offset={offset}&limit=64")
        assert code == 200 and page["total"] == 200 and page["offset"] == offset
        got += [t["name"] for t in page["torrents"]]
        if len(page["torrents"]) < 64:
            break
        offset += 64
    assert got == names
    for bad in ("limit=0", "limit=1001", "offset=-1", "offset=x"):
        code, _, body = await client.call("GET", f"/api/torrents?{bad}")
        assert code == 400, bad
    _, _, past = await client.call("GET", "/api/torrents?offset=500")
    assert past["total"] == 200 and past["torrents"] == []

    # status.json: pages with the count in a header, and the whole list written in slices
    code, head, body = await client.raw("GET", "/status.json?offset=190&limit=20")
    assert code == 200 and head["x-total-count"] == "200"
    assert [t["name"] for t in json.loads(body)] == names[190:]
    code, head, body = await client.raw("GET", "/status.json")
    assert code == 200 and head["x-total-count"] == "200"
    whole = json.loads(body)
    assert [t["name"] for t in whole] == names
    assert [t["files"][0]["size"] for t in whole] == [1000 + i for i in range(200)]
    # the web UI shows a page at a time
    code, _, page = await client.raw("GET", "/?offset=100")
    text = page.decode()
    assert text.count('class="torrent"') == 100 and "101-200 of 200" in text
    assert names[100] in text and names[99] not in text


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_state_file_that_cannot_be_read_is_skipped_and_the_rest_restored(
    tmp_path: Path, stopAfter: list[TorrentDaemon]
) -> None:
    watch = tmp_path / "watch"
    daemon = makeDaemon(tmp_path, watchDir=str(watch))
    await started(daemon)
    kept = infohashOf(fakeTorrent(1))
    await withTimeout(daemon.addTorrent(metainfo=fakeTorrent(1)), 10)
    await withTimeout(daemon.stopService(), 20)
    # nested too deep for the JSON parser (RecursionError, not ValueError), and limits too
    state = tmp_path / "state"
    (state / f"{'0' * 38}aa.json").write_bytes(b"[" * 100_000)
    (state / "limits.json").write_bytes(b"[" * 100_000)

    again = makeDaemon(tmp_path, watchDir=str(watch))
    stopAfter.append(again)
    await started(again)
    await waitUntil(lambda: kept in again.infohashes(), 10, "the good torrent to be restored")
    # the watch folder is looked at: the restore went on past the bad file
    from tests.test_twistd_torrent import drop

    drop(watch, "t2.torrent", fakeTorrent(2))
    await waitUntil(
        lambda: infohashOf(fakeTorrent(2)) in again.infohashes(), 10, "the watch folder's torrent"
    )
    assert again.limits() == {"downloadLimit": 0, "uploadLimit": 0}
