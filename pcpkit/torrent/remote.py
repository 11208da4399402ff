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
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from pcpkit._twisted import getReactor
from pcpkit.torrent.api import MAX_PAGE, TOKEN_HEADER
from pcpkit.torrent.daemon import TOKEN_FILE, TOKEN_RULE, isToken

__all__ = ["MAX_ANSWER", "RemoteDaemon", "RemoteError", "daemonURL", "readToken"]

#: the most bytes :class:`RemoteDaemon` takes of one answer (the daemon's answers are paged
#: and far smaller): anything on the port that sends more is cut off, not held in memory
MAX_ANSWER = 64 * 1024 * 1024


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
    if not isToken(token):
        raise ValueError(f"{path} does not hold a token ({TOKEN_RULE})")
    return token


def _why(e: Exception) -> str:
    """One line for a failed exchange (the client's errors hold a list of failures)."""
    reasons = getattr(e, "reasons", None)
    failures = reasons if isinstance(reasons, list) and reasons else [e]
    words = [str(f.value if isinstance(f, Failure) else f) for f in failures]
    return "; ".join(dict.fromkeys(w for w in words if w)) or type(e).__name__


class _TooLong(ConnectionError):
    pass


class _Body(Protocol):
    """
    Collects a response's body, up to ``limit`` bytes, into ``done``; a longer one fails it
    with :class:`_TooLong`. Cancelling ``done`` (or a body too long) drops the connection.
    (``readBody`` does the same, unbounded, but warns on every call with the Twisted of
    today: the body's transport has no ``abortConnection``, and ``stopProducing`` is what
    it has.)
    """

    def __init__(self, limit: int) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return  # too long already: dropped
        self.size += len(data)
        if self.size > self.limit:
            self.parts = []
            self.done.errback(_TooLong(f"the answer is over {self.limit} bytes"))
            self._cancel(self.done)
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return  # cancelled or too long: the error is given already
        if reason.check(ResponseDone, PotentialDataLoss):  # type: ignore[no-untyped-call,unused-ignore]
            self.done.callback(b"".join(self.parts))
        else:
            # (the client's own error reads as an empty message and a private class)
            self.done.errback(ConnectionError("the answer was cut short"))

    def _cancel(self, d: Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined,unused-ignore]


class RemoteDaemon:
    """
    The control API of the daemon at ``url`` (``http://HOST:PORT``), sending ``token``
    with every state-changing request. A request fails with :class:`RemoteError` (code
    ``0``) when its whole answer, headers and body, has not come within ``timeout``
    seconds, or when its body is over ``maxAnswer`` bytes; the connection is then dropped.

    :raises ValueError: ``token`` cannot be a token (see
        :data:`~pcpkit.torrent.daemon.TOKEN_RULE`).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        maxAnswer: int = MAX_ANSWER,
        reactor: Any = None,
    ) -> None:
        if token is not None and not isToken(token):
            raise ValueError(f"not an API token: a token is {TOKEN_RULE}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.maxAnswer = maxAnswer
        self.reactor = getReactor() if reactor is None else reactor
        self.agent: Any = Agent(self.reactor)  # type: ignore[no-untyped-call]

    async def request(
        self, method: str, path: str, body: bytes | None = None, contentType: str | None = None
    ) -> Any:
        """
        One API request; its decoded JSON answer. :raises RemoteError: also when the whole
        answer has not come within ``timeout`` seconds (headers and body).
        """
        exchange = Deferred.fromCoroutine(self._exchange(method, path, body, contentType))
        # (not addTimeout: the cancel comes back wrapped in the client's ResponseFailed)
        timer = self.reactor.callLater(self.timeout, exchange.cancel)
        try:
            response, data = await exchange
        except _TooLong as e:
            raise RemoteError(0, f"the daemon at {self.url} sent too much: {e}") from None
        except Exception as e:
            if not timer.active():
                raise RemoteError(
                    0, f"no whole answer from the daemon at {self.url} within {self.timeout:g} s"
                ) from None
            raise RemoteError(0, f"cannot reach the daemon at {self.url}: {_why(e)}") from None
        finally:
            if timer.active():
                timer.cancel()
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

    async def _exchange(
        self, method: str, path: str, body: bytes | None, contentType: str | None
    ) -> tuple[Any, bytes]:
        """The request and its whole answer: the response and its body."""
        headers = Headers()
        if self.token is not None and method not in ("GET", "HEAD"):
            headers.addRawHeader(TOKEN_HEADER, self.token.encode("ascii"))
        if contentType is not None:
            headers.addRawHeader(b"content-type", contentType.encode("ascii"))
        producer: Any = None
        if body is not None:
            producer = FileBodyProducer(BytesIO(body))  # type: ignore[no-untyped-call]
        url = f"{self.url}{path}"
        response = await self.agent.request(method.encode(), url.encode(), headers, producer)
        reader = _Body(self.maxAnswer)
        response.deliverBody(reader)
        return response, await reader.done

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
