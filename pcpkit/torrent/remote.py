"""
A client of the torrent daemon's JSON control API (:mod:`pcpkit.torrent.api`), on
``twisted.web.client.Agent``: what ``pcpkit remote`` uses, and what a Twisted program can use
to drive a daemon::

    remote = RemoteDaemon("http://127.0.0.1:8080", token)
    added = await remote.add(metainfo=open("x.torrent", "rb").read())
    for t in await remote.torrents():
        print(t["name"], t["fractionDone"])

Every method returns a Deferred (use it with ``await``) failing with :class:`RemoteError`
(``code``: the HTTP status, ``0`` when the daemon could not be reached; ``message``: one line).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from pcpkit._twisted import getReactor
from pcpkit.torrent.api import MAX_PAGE, TOKEN_HEADER
from pcpkit.torrent.daemon import TOKEN_FILE

__all__ = ["RemoteDaemon", "RemoteError", "daemonURL", "readToken"]


class RemoteError(Exception):
    """The daemon refused a request (``code``: HTTP status) or could not be reached (``0``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def daemonURL(value: str) -> str:
    """
    The base URL of a daemon from ``http://HOST:PORT``, ``HOST:PORT`` or ``PORT`` (on
    127.0.0.1). :raises ValueError:
    """
    text = value.strip().rstrip("/")
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        raise ValueError(f"expected http://HOST:PORT, HOST:PORT or PORT, not {value!r}")
    if parsed.path or parsed.query or parsed.fragment:
        raise ValueError(f"expected the daemon's address without a path, not {value!r}")
    return text


def readToken(stateDir: str) -> str:
    """The token in a daemon's state folder. :raises ValueError: (one line)"""
    path = os.path.join(stateDir, TOKEN_FILE)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            token = f.read().strip()
    except OSError as e:
        raise ValueError(f"cannot read the token {path}: {e.strerror or e}") from None
    if not token:
        raise ValueError(f"{path} is empty")
    return token


class RemoteDaemon:
    """
    The control API of the daemon at ``url`` (``http://HOST:PORT``), sending ``token``
    with every state-changing request.
    """

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 30.0, reactor: Any = None
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.reactor = getReactor() if reactor is None else reactor
        self.agent: Any = Agent(self.reactor)  # type: ignore[no-untyped-call]

    async def request(
        self, method: str, path: str, body: bytes | None = None, contentType: str | None = None
    ) -> Any:
        """One API request; its decoded JSON answer. :raises RemoteError:"""
        headers = Headers()
        if self.token is not None and method not in ("GET", "HEAD"):
            headers.addRawHeader(TOKEN_HEADER, self.token.encode("ascii"))
        if contentType is not None:
            headers.addRawHeader(b"content-type", contentType.encode("ascii"))
        producer: Any = None
        if body is not None:
            producer = FileBodyProducer(BytesIO(body))  # type: ignore[no-untyped-call]
        url = f"{self.url}{path}"
        d: Deferred[Any] = self.agent.request(method.encode(), url.encode(), headers, producer)
        d.addTimeout(self.timeout, self.reactor)
        try:
            response = await d
            data = await readBody(response)
        except Exception as e:
            why = Failure(e).getErrorMessage()  # type: ignore[no-untyped-call]
            raise RemoteError(0, f"cannot reach the daemon at {self.url}: {why}") from None
        try:
            value = json.loads(data)
        except ValueError:
            raise RemoteError(
                response.code, f"the daemon at {self.url} answered {response.code} without JSON"
            ) from None
        if response.code >= 400:
            message = value.get("error") if isinstance(value, dict) else None
            raise RemoteError(response.code, str(message or f"HTTP {response.code}"))
        return value

    async def torrents(self) -> list[dict[str, Any]]:
        """Every torrent's status (oldest first), a page at a time."""
        result: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", f"/api/torrents?offset={len(result)}&limit={MAX_PAGE}")
            result += page["torrents"]
            if not page["torrents"] or len(result) >= page["total"]:
                return result

    async def add(self, metainfo: bytes | None = None, magnet: str | None = None) -> Any:
        """Add a torrent; ``{"infohash", "name"}``."""
        if metainfo is not None:
            return await self.request("POST", "/api/torrents", metainfo, "application/x-bittorrent")
        body = json.dumps({"magnet": magnet}).encode()
        return await self.request("POST", "/api/torrents", body, "application/json")

    async def remove(self, infohash: str, deleteFiles: bool = False) -> Any:
        query = "?deleteFiles=1" if deleteFiles else ""
        return await self.request("DELETE", f"/api/torrents/{infohash}{query}")

    async def action(self, infohash: str, action: str) -> Any:
        """``pause``, ``resume`` or ``recheck`` a torrent."""
        return await self.request("POST", f"/api/torrents/{infohash}/{action}")

    async def resolve(self, key: str) -> str:
        """
        The info-hash of the torrent that ``key`` names: its info-hash, a unique prefix of
        it (at least 4 hex digits), or its exact name. :raises RemoteError: (404)
        """
        key = key.strip()
        lowered = key.lower()
        torrents = await self.torrents()
        if len(lowered) in (40, 64) and all(c in "0123456789abcdef" for c in lowered):
            return lowered
        matches = [t for t in torrents if t["name"] == key]
        if not matches and len(lowered) >= 4:
            matches = [t for t in torrents if str(t["infohash"]).startswith(lowered)]
        if len(matches) == 1:
            return str(matches[0]["infohash"])
        if not matches:
            raise RemoteError(404, f"no torrent {key!r} in the daemon")
        raise RemoteError(409, f"{key!r} names {len(matches)} torrents: give more of the info-hash")
