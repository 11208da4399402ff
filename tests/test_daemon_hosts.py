"""
The torrent daemon answers only requests whose ``Host`` names it (the guard against DNS
rebinding, :mod:`pcpkit.torrent.hosts`): a daemon in this process, seeding a file from its
save path, asked over TCP on 127.0.0.1 with hand-written ``Host`` headers on every path.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.threads import deferToThread

from pcpkit._endpoints import isIPAddress
from pcpkit.torrent.api import TOKEN_HEADER
from pcpkit.torrent.daemon import TorrentDaemon
from pcpkit.torrent.hosts import ANY_HOST, AllowedHosts, checkHostName, hostName
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.remote import RemoteDaemon
from pcpkit.torrent.web import MISDIRECTED
from tests.test_api import (  # noqa: F401 - the "stopAfter" fixture
    makeDaemon,
    started,
    stopAfterFixture,
)
from tests.torrentutil import waitUntil, withTimeout, writePayload

PIECE = 16384
Answer = tuple[int, dict[str, str], bytes]


def exchange(port: int, request: bytes) -> Answer:
    """(In a thread.) Send ``request`` as it is; ``(status, headers, body)`` of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def ask(
    daemon: TorrentDaemon,
    method: str,
    path: str,
    hosts: list[str],
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Answer:
    """One request with exactly these ``Host`` headers (none, one or several)."""
    port = int(daemon.httpPort.getHost().port)
    lines = [f"{method} {path} HTTP/1.1"] + [f"Host: {h}" for h in hosts]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    raw = "\r\n".join(lines).encode("latin-1") + body
    answer: Answer = await deferToThread(exchange, port, raw)
    return answer


def assertMisdirected(answer: Answer, host: str) -> None:
    code, headers, body = answer
    assert code == MISDIRECTED == 421, answer
    assert headers["content-type"] == "application/json", headers
    assert not [k for k in headers if k.startswith("access-control-")], headers
    error = json.loads(body)["error"]
    assert "\n" not in error
    assert f"Host {host!r} is not a name of this torrent daemon" in error, error
    assert "--allowed-host" in error, error


async def seeding(daemon: TorrentDaemon, tmp_path: Path) -> tuple[str, bytes]:
    """A torrent of a file already in the save path, added and verified: (infohash, data)."""
    data = writePayload(tmp_path / "save", "clip.mp4", 5 * PIECE + 123, seed=7)
    raw = makeTorrent(tmp_path / "save" / "clip.mp4", pieceSize=PIECE)
    infohash = infohashOf(raw)
    await daemon.addTorrent(metainfo=raw)
    session = daemon.session
    assert session is not None
    await waitUntil(
        lambda: session.status(session.torrentIdFor(infohash))["fractionDone"] == 1.0,
        20,
        "the file to be checked",
    )
    return infohash, data


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_a_foreign_host_gets_nothing_on_any_path(
    tmp_path: Path, stopAfter: list[TorrentDaemon]
) -> None:
    daemon = makeDaemon(tmp_path)
    stopAfter.append(daemon)
    await started(daemon)
    infohash, data = await seeding(daemon, tmp_path)
    port = int(daemon.httpPort.getHost().port)
    evil = f"evil.example:{port}"
    token = {TOKEN_HEADER.decode(): str(daemon.apiToken)}
    stream = f"/stream/{infohash}/0"
    reads = [
        "/",
        "/?offset=0",
        "/status.json",
        "/status.json?offset=0&limit=5",
        "/status.js",
        "/ui.css",
        "/api/torrents",
        f"/api/torrents/{infohash}",
        f"/api/torrents/{infohash}/files",
        f"/api/torrents/{infohash}/peers",
        "/api/limits",
        stream,
        "/no/such/path",
    ]
    for path in reads:
        assertMisdirected(await ask(daemon, "GET", path, [evil]), evil)
        # the same with the name a browser would send for a default port, and in capitals
        assertMisdirected(await ask(daemon, "GET", path, ["EVIL.example"]), "EVIL.example")
    code, headers, body = await ask(daemon, "HEAD", stream, [evil])
    assert code == 421 and body == b"" and "content-range" not in headers
    code, headers, body = await ask(daemon, "GET", stream, [evil], headers={"Range": "bytes=100-"})
    assert code == 421 and data[100:200] not in body and "content-range" not in headers

    # changes are refused too, even with the token, and change nothing
    for method, path, body in (
        ("POST", f"/api/torrents/{infohash}/pause", b""),
        ("POST", "/api/limits", b'{"uploadLimit": 1000}'),
        ("DELETE", f"/api/torrents/{infohash}?deleteFiles=1", b""),
        ("POST", "/api/torrents", b'{"magnet": "magnet:?xt=urn:btih:' + b"a" * 40 + b'"}'),
    ):
        sent = {**token, "Content-Type": "application/json"}
        assertMisdirected(await ask(daemon, method, path, [evil], sent, body), evil)
    assert daemon.infohashes() == [infohash]
    assert daemon.limits()["uploadLimit"] == 0
    session = daemon.session
    assert session is not None and not session.status(session.torrentIdFor(infohash))["paused"]
    assert (tmp_path / "save" / "clip.mp4").read_bytes() == data

    # two Host headers (one of them good), an empty one, malformed ones: refused
    for hosts in ([f"127.0.0.1:{port}", evil], [f"127.0.0.1:{port}"] * 2):
        code, _, body = await ask(daemon, "GET", "/status.json", hosts)
        assert code == 421 and json.loads(body) == {"error": "the request has several Host headers"}
    for bad in ("", f"::1:{port}", "127.0.0.1:port", "[::1", "a b"):
        code, _, body = await ask(daemon, "GET", "/api/torrents", [bad])
        assert code == 421, (bad, body)
        assert "--allowed-host NAME" in json.loads(body)["error"]

    # the daemon's own names: the data, whole and verified
    for host in (
        f"127.0.0.1:{port}",
        "127.0.0.1",
        f"localhost:{port}",
        "LOCALHOST.",
        f"[::1]:{port}",
        f"192.0.2.7:{port}",  # any literal address: a page cannot rebind an address
    ):
        code, _, body = await ask(daemon, "GET", stream, [host])
        assert code == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        code, _, body = await ask(daemon, "GET", "/api/torrents", [host])
        assert code == 200 and json.loads(body)["torrents"][0]["infohash"] == infohash
    # a request without Host (HTTP/1.0: not a browser's) is answered
    answer = await deferToThread(exchange, port, b"GET /status.json HTTP/1.0\r\n\r\n")
    assert answer[0] == 200 and json.loads(answer[2])[0]["infohash"] == infohash
    # a foreign Host is refused before the token is looked at
    code, _, body = await ask(daemon, "POST", f"/api/torrents/{infohash}/pause", [evil])
    assert code == 421
    # pcpkit remote's client, by name: it sends Host: localhost:PORT
    remote = RemoteDaemon(f"http://localhost:{port}", daemon.apiToken)
    assert [t["infohash"] for t in await remote.torrents()] == [infohash]
    assert (await remote.action(infohash, "pause"))["done"] == "pause"


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_allowed_names_and_any_name(tmp_path: Path, stopAfter: list[TorrentDaemon]) -> None:
    daemon = makeDaemon(tmp_path, allowedHosts=["media.lan", "Box.Example."])
    await started(daemon)
    try:
        port = int(daemon.httpPort.getHost().port)
        for host in (f"media.lan:{port}", "MEDIA.LAN", f"box.example.:{port}", f"localhost:{port}"):
            code, headers, body = await ask(daemon, "GET", "/", [host])
            assert code == 200 and headers["content-type"].startswith("text/html"), host
            code, _, body = await ask(
                daemon,
                "POST",
                "/api/limits",
                [host],
                {TOKEN_HEADER.decode(): str(daemon.apiToken), "Content-Type": "application/json"},
                b'{"downloadLimit": 4000}',
            )
            assert code == 200 and json.loads(body)["downloadLimit"] == 4000
        for host in (f"other.lan:{port}", f"media.lan.evil.example:{port}", f"xmedia.lan:{port}"):
            assertMisdirected(await ask(daemon, "GET", "/status.json", [host]), host)
    finally:
        await withTimeout(daemon.stopService(), 20)

    anyName = makeDaemon(tmp_path, allowedHosts=[ANY_HOST])
    stopAfter.append(anyName)
    await started(anyName)
    port = int(anyName.httpPort.getHost().port)
    code, _, body = await ask(anyName, "GET", "/status.json", [f"proxied.example:{port}"])
    assert code == 200 and json.loads(body) == []
    # even '*' does not answer a request that says two things
    code, _, _ = await ask(anyName, "GET", "/status.json", ["a.example", "b.example"])
    assert code == 421


def test_a_bad_allowed_host_is_refused_at_once(tmp_path: Path) -> None:
    for bad, why in (("", "is empty"), ("media.lan:8080", "without a port"), ("a/b", "not a host")):
        with pytest.raises(ValueError, match=why) as info:
            makeDaemon(tmp_path, allowedHosts=[bad])
        assert str(info.value).startswith("bad allowed host: ")
        assert "\n" not in str(info.value)


# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"localhost", "localhost"),
        (b"LocalHost.:8080", "localhost"),
        (b"127.0.0.1:1", "127.0.0.1"),
        (b"[::1]:8080", "::1"),
        (b"[::FFFF:127.0.0.1]", "::ffff:127.0.0.1"),
        (b" media.lan:80 ", "media.lan"),
        (b"my_box-2.lan:", "my_box-2.lan"),
        (b"", None),
        (b"::1", None),
        (b"[::1]80", None),
        (b"[127.0.0.1]", None),
        (b"[evil.example]", None),
        (b"a:b", None),
        (b"a:123456", None),
        (b"a..b", None),
        (b"-a.b", None),
        (b"a b", None),
        (b"caf\xc3\xa9.example", None),
        (b"x" * 254, None),
    ],
)
def test_host_name(header: bytes, name: str | None) -> None:
    assert hostName(header) == name


def test_check_host_name() -> None:
    assert checkHostName(" Media.LAN. ") == "media.lan"
    assert checkHostName("*") == ANY_HOST
    assert checkHostName("[::1]") == "::1"
    for bad in ("", " ", "a:80", "a b", "*.example", "http://a", "a/b"):
        with pytest.raises(ValueError):
            checkHostName(bad)


def test_listening_name_is_answered() -> None:
    rule = AllowedHosts((), listenName="box.lan")
    assert rule.allows([b"box.lan:8080"]) and not rule.allows([b"other.lan:8080"])
    # an address as the listening name adds nothing (every address is answered)
    assert AllowedHosts((), listenName="::1").names == AllowedHosts().names


_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)


@given(
    name=_names,
    port=st.none() | st.integers(0, 65535),
    upper=st.booleans(),
    dot=st.booleans(),
    other=_names,
)
def test_a_name_matches_in_any_spelling_and_nothing_else_does(
    name: str, port: int | None, upper: bool, dot: bool, other: str
) -> None:
    rule = AllowedHosts([name])
    spelled = (name.upper() if upper else name) + ("." if dot else "")
    header = (spelled if port is None else f"{spelled}:{port}").encode()
    assert rule.allows([header])
    assert not AllowedHosts().allows([header]) or name == "localhost" or isIPAddress(name)
    if other not in (name, "localhost") and not isIPAddress(other):
        assert not rule.allows([other.encode()])
