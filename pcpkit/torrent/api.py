"""
The torrent daemon's JSON control API (``/api/...``), as a twisted.web resource.

Every answer is JSON; an error is ``{"error": "one line"}`` with its status: ``400`` bad
input, ``401`` no or wrong token, ``404`` unknown torrent or path, ``405`` method not
allowed, ``409`` duplicate torrent (or one still being added), ``413`` request body too large
and ``421`` a ``Host`` that is not the daemon's (:class:`~pcpkit.torrent.web.DaemonSite`
checks both before this resource sees the request), ``503`` daemon not running.

``GET /api/torrents?offset=N&limit=M``
    ``{"total", "offset", "limit", "torrents": [...]}``: a page of torrents, oldest first
    (``limit`` 1..1000, default 100), each the status of :func:`~pcpkit.torrent.web.torrentList`.
``POST /api/torrents``
    Add a torrent: the body is the ``.torrent`` file (``Content-Type:
    application/x-bittorrent``) or ``{"magnet": "magnet:?..."}`` (``application/json``).
    ``201`` with ``{"infohash", "name"}``.
``GET /api/torrents/<infohash>``
    One torrent: its status, ``files`` (with ``priority``) and ``options``.
``DELETE /api/torrents/<infohash>[?deleteFiles=1]``
    Remove it (its files are kept unless ``deleteFiles``).
``POST /api/torrents/<infohash>/pause``, ``/resume``, ``/recheck``
    Pause, resume, or check the data on disk again.
``GET|POST /api/torrents/<infohash>/files``
    The files; POST ``{"priorities": {"<index>": "skip"|"normal"|"high"}}``.
``GET|POST /api/torrents/<infohash>/options``
    ``{"sequential", "firstLastPieces", "downloadLimit", "uploadLimit"}`` (bytes/s, 0: no
    limit); POST any of them.
``GET /api/torrents/<infohash>/trackers``, ``GET /api/torrents/<infohash>/peers``
    Its trackers (with their last error) and its connected peers.
``GET|POST /api/limits``
    The session's ``{"downloadLimit", "uploadLimit"}``.

Security: every request but ``GET`` and ``HEAD`` needs the daemon's token in the
``X-Pcpkit-Token`` header. A web page of another origin cannot send that header without a
CORS preflight, which gets no permissive answer (no ``Access-Control-*`` header is ever
sent), and it cannot read the token: it is not in any page the daemon serves. A page that
makes itself same-origin with the daemon by DNS rebinding sends its own name as ``Host``,
and every request of it, ``GET`` included, is answered ``421`` by the site before reaching
the API (:mod:`pcpkit.torrent.hosts`; ``--allowed-host`` adds names). See
docs/daemon-api.rst for the reasoning.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pcpkit.torrent import control
from pcpkit.torrent.session import (
    AddedTorrent,
    InvalidTorrent,
    SessionStopped,
    TorrentAlreadyDownloading,
    TorrentError,
    TorrentSession,
    UnknownTorrent,
)
from pcpkit.torrent.web import INFOHASH, PAGE, TorrentSource, queryInt, torrentFiles, torrentPage

__all__ = ["TOKEN_HEADER", "MAX_PAGE", "ApiResource", "TorrentControl", "makeApi"]

log = Logger()

#: the request header carrying the token
TOKEN_HEADER = b"x-pcpkit-token"
#: the largest page of ``GET /api/torrents``
MAX_PAGE = 1000
_ACTIONS = ("pause", "resume", "recheck")


class TorrentControl(TorrentSource, Protocol):
    """What the API drives: the daemon (:class:`~pcpkit.torrent.daemon.TorrentDaemon`)."""

    @property
    def apiToken(self) -> str | None:
        """The token state-changing requests must carry (``None``: none accepted yet)."""

    def addTorrent(
        self, metainfo: bytes | None = None, magnet: str | None = None
    ) -> Deferred[AddedTorrent]: ...

    def removeTorrent(self, infohash: str, deleteFiles: bool = False) -> Deferred[None]: ...

    def controlled(self, infohash: str) -> tuple[TorrentSession, int]: ...

    def torrentChanged(self, infohash: str) -> None: ...

    def firstLastPieces(self, infohash: str) -> bool: ...

    def setFirstLastPieces(
        self, infohash: str, on: bool, filePriorities: Sequence[str] | None = None
    ) -> None: ...

    def limits(self) -> dict[str, int]: ...

    def setLimits(
        self, downloadLimit: object = None, uploadLimit: object = None
    ) -> dict[str, int]: ...


class ApiError(Exception):
    """An answer other than 2xx: ``code`` and a one-line ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _errorFor(error: BaseException) -> ApiError:
    """The HTTP status and message of an exception from the daemon or the session."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, TorrentAlreadyDownloading):
        return ApiError(http.CONFLICT, f"torrent {error.infohash} is already in the daemon")
    if isinstance(error, UnknownTorrent):
        return ApiError(http.NOT_FOUND, f"no torrent {error.torrentid} here")
    if isinstance(error, SessionStopped):
        return ApiError(http.SERVICE_UNAVAILABLE, "the torrent daemon is not running")
    if isinstance(error, InvalidTorrent) or isinstance(error, ValueError):
        return ApiError(http.BAD_REQUEST, getattr(error, "reason", None) or str(error))
    if isinstance(error, TorrentError):
        # TorrentBusy (still being added) and other states that forbid the change now
        return ApiError(http.CONFLICT, error.reason)
    log.failure("control API request failed", Failure(error))  # type: ignore[no-untyped-call]
    return ApiError(http.INTERNAL_SERVER_ERROR, f"internal error: {type(error).__name__}")


def _send(request: Any, code: int, value: object) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(value).encode("utf-8")


def _finish(request: Any, code: int, value: object) -> None:
    """Answer a request rendered with NOT_DONE_YET (unless the client went)."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.write(_send(request, code, value))
    request.finish()


def _jsonBody(request: Any) -> dict[str, Any]:
    request.content.seek(0)
    raw = request.content.read()
    try:
        value = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(http.BAD_REQUEST, f"the body is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(http.BAD_REQUEST, "the body is not JSON we take: nested too deep") from None
    if not isinstance(value, dict):
        raise ApiError(http.BAD_REQUEST, "the body must be a JSON object")
    return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ApiError(http.BAD_REQUEST, f"{name} must be true or false, not {value!r}")
    return value


def _truthy(request: Any, name: str) -> bool:
    raw = request.args.get(name.encode())
    if not raw:
        return False
    text = raw[-1].decode("latin-1").lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", ""):
        return False
    raise ApiError(http.BAD_REQUEST, f"{name} must be true or false")


class ApiResource(Resource):
    """``/api/...``: the control API of ``daemon`` (see the module's documentation)."""

    isLeaf = True

    def __init__(self, daemon: TorrentControl) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.daemon = daemon

    # -- dispatch ----------------------------------------------------------------------

    def render(self, request: Any) -> bytes | int:
        try:
            method = request.method.decode("ascii")
            # (the route first: a method no route takes, OPTIONS among them, is 405 with
            # or without a token; building the route changes nothing)
            result = self._dispatch(method, [s.decode("latin-1") for s in request.postpath])
            if method not in ("GET", "HEAD"):
                self._checkToken(request)
            answer = result(request)
        except Exception as e:
            error = _errorFor(e)
            if error.code == http.UNAUTHORIZED:
                request.setHeader(b"www-authenticate", b"X-Pcpkit-Token")
            if error.code == http.NOT_ALLOWED:
                request.setHeader(b"allow", getattr(e, "allow", b"GET"))
            return _send(request, error.code, {"error": error.message})
        if isinstance(answer, Deferred):

            def failed(reason: Failure) -> None:
                error = _errorFor(reason.value or Exception("unknown failure"))
                _finish(request, error.code, {"error": error.message})

            answer.addCallbacks(lambda r: _finish(request, r[0], r[1]), failed)
            return NOT_DONE_YET
        code, value = answer
        body = _send(request, code, value)
        return b"" if method == "HEAD" else body

    def _checkToken(self, request: Any) -> None:
        expected = self.daemon.apiToken
        given = request.getHeader(TOKEN_HEADER)
        if expected is None:
            raise ApiError(http.SERVICE_UNAVAILABLE, "the API token is not loaded yet")
        if given is None:
            raise ApiError(
                http.UNAUTHORIZED, "this request needs the API token in the X-Pcpkit-Token header"
            )
        if not hmac.compare_digest(given, expected.encode("ascii")):
            raise ApiError(http.UNAUTHORIZED, "wrong API token (X-Pcpkit-Token)")

    def _dispatch(self, method: str, path: list[str]) -> Callable[[Any], Any]:
        """The handler of ``method`` on ``path`` (the segments after ``/api``)."""
        while path and path[-1] == "":
            path = path[:-1]
        routes: dict[str, Callable[[Any], Any]]
        if path == ["torrents"]:
            routes = {"GET": self._list, "POST": self._add}
        elif path == ["limits"]:
            routes = {"GET": self._limits, "POST": self._setLimits}
        elif len(path) in (2, 3) and path[0] == "torrents":
            infohash = path[1].lower()
            if not INFOHASH.fullmatch(infohash):
                raise ApiError(
                    http.BAD_REQUEST, "the info-hash must be 40 or 64 hexadecimal digits"
                )
            routes = self._torrentRoutes(infohash, path[2] if len(path) == 3 else None)
        else:
            raise ApiError(http.NOT_FOUND, f"no such API path: /api/{'/'.join(path)}")
        if method == "HEAD" and "GET" in routes:
            method = "GET"
        handler = routes.get(method)
        if handler is None:
            error = ApiError(http.NOT_ALLOWED, f"{method} is not allowed here")
            error.allow = ", ".join(sorted(routes)).encode()  # type: ignore[attr-defined]
            raise error
        return handler

    def _torrentRoutes(self, infohash: str, what: str | None) -> dict[str, Callable[[Any], Any]]:
        if what is None:
            return {
                "GET": lambda r: self._one(infohash),
                "DELETE": lambda r: self._remove(r, infohash),
            }
        if what in _ACTIONS:
            return {"POST": lambda r: self._action(infohash, what)}
        if what == "files":
            return {
                "GET": lambda r: (http.OK, self._files(infohash)),
                "POST": lambda r: self._setPriorities(r, infohash),
            }
        if what == "options":
            return {
                "GET": lambda r: (http.OK, self._options(infohash)),
                "POST": lambda r: self._setOptions(r, infohash),
            }
        if what == "trackers":
            return {"GET": lambda r: (http.OK, control.trackers(*self._controlled(infohash)))}
        if what == "peers":
            return {"GET": lambda r: (http.OK, control.peers(*self._controlled(infohash)))}
        raise ApiError(http.NOT_FOUND, f"no such API path: /api/torrents/{infohash}/{what}")

    def _controlled(self, infohash: str) -> tuple[TorrentSession, int]:
        return self.daemon.controlled(infohash)

    # -- handlers ----------------------------------------------------------------------

    def _list(self, request: Any) -> tuple[int, object]:
        offset = queryInt(request, "offset", 0, 0, 10**9)
        limit = queryInt(request, "limit", PAGE, 1, MAX_PAGE)
        session = self.daemon.session
        if session is None or session.stopped:
            raise SessionStopped()
        total, torrents = torrentPage(session, offset, limit)
        return http.OK, {"total": total, "offset": offset, "limit": limit, "torrents": torrents}

    def _add(self, request: Any) -> Deferred[tuple[int, object]]:
        kind = (request.getHeader(b"content-type") or b"").decode("latin-1")
        kind = kind.split(";")[0].strip().lower()
        request.content.seek(0)
        if kind == "application/json":
            body = _jsonBody(request)
            magnet = body.get("magnet")
            if not isinstance(magnet, str):
                raise ApiError(http.BAD_REQUEST, 'expected {"magnet": "magnet:?xt=..."}')
            d = self.daemon.addTorrent(magnet=magnet.strip())
        elif kind in ("application/x-bittorrent", "application/octet-stream"):
            metainfo = request.content.read()
            if not metainfo:
                raise ApiError(http.BAD_REQUEST, "the body is empty: send the .torrent file")
            d = self.daemon.addTorrent(metainfo=metainfo)
        else:
            raise ApiError(
                http.UNSUPPORTED_MEDIA_TYPE if kind else http.BAD_REQUEST,
                "send a .torrent file as application/x-bittorrent, or "
                '{"magnet": "..."} as application/json',
            )

        def added(result: AddedTorrent) -> tuple[int, object]:
            log.info("added {name} ({infohash}) through the API", **result._asdict())
            return http.CREATED, {"infohash": result.infohash, "name": result.name}

        return d.addCallback(added)

    def _one(self, infohash: str) -> tuple[int, object]:
        session, torrentid = self._controlled(infohash)
        status: dict[str, Any] = dict(session.status(torrentid))
        status["files"] = torrentFiles(session, torrentid)
        status["options"] = self._options(infohash)
        return http.OK, status

    def _remove(self, request: Any, infohash: str) -> Deferred[tuple[int, object]]:
        deleteFiles = _truthy(request, "deleteFiles")
        d = self.daemon.removeTorrent(infohash, deleteFiles)
        return d.addCallback(
            lambda _: (http.OK, {"removed": infohash, "filesDeleted": deleteFiles})
        )

    def _action(self, infohash: str, action: str) -> tuple[int, object]:
        session, torrentid = self._controlled(infohash)
        {"pause": control.pause, "resume": control.resume, "recheck": control.recheck}[action](
            session, torrentid
        )
        self.daemon.torrentChanged(infohash)
        return http.OK, {"infohash": infohash, "done": action}

    def _files(self, infohash: str) -> list[dict[str, Any]]:
        return torrentFiles(*self._controlled(infohash))

    def _setPriorities(self, request: Any, infohash: str) -> tuple[int, object]:
        body = _jsonBody(request)
        priorities = body.get("priorities")
        if not isinstance(priorities, dict) or not priorities:
            raise ApiError(
                http.BAD_REQUEST, 'expected {"priorities": {"<file index>": "skip|normal|high"}}'
            )
        wanted: dict[int, str] = {}
        for key, value in priorities.items():
            if not (key.isascii() and key.isdigit() and len(key) <= 9):
                raise ApiError(http.BAD_REQUEST, f"file index must be a whole number, not {key!r}")
            wanted[int(key)] = value
        session, torrentid = self._controlled(infohash)
        names = control.setFilePriorities(session, torrentid, wanted)
        if self.daemon.firstLastPieces(infohash):
            # the file priorities reset the piece priorities
            self.daemon.setFirstLastPieces(infohash, True, names)
        self.daemon.torrentChanged(infohash)
        # libtorrent applies the change after returning: answer with what was asked
        files = torrentFiles(session, torrentid)
        for f in files:
            f["priority"] = names[f["index"]]
        return http.OK, files

    def _options(self, infohash: str) -> dict[str, Any]:
        options = control.torrentOptions(*self._controlled(infohash))
        options["firstLastPieces"] = self.daemon.firstLastPieces(infohash)
        return options

    def _setOptions(self, request: Any, infohash: str) -> tuple[int, object]:
        body = _jsonBody(request)
        known = {"sequential", "firstLastPieces", "downloadLimit", "uploadLimit"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ApiError(
                http.BAD_REQUEST,
                f"unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})",
            )
        session, torrentid = self._controlled(infohash)
        # check every value before changing anything
        sequential = body.get("sequential")
        firstLast = body.get("firstLastPieces")
        if sequential is not None:
            _flag(sequential, "sequential")
        if firstLast is not None:
            _flag(firstLast, "firstLastPieces")
        for name in ("downloadLimit", "uploadLimit"):
            if body.get(name) is not None:
                control.checkLimit(name, body[name])
        if sequential is not None:
            control.setSequential(session, torrentid, sequential)
        if firstLast is not None:
            self.daemon.setFirstLastPieces(infohash, firstLast)
        control.setLimits(session, torrentid, body.get("downloadLimit"), body.get("uploadLimit"))
        self.daemon.torrentChanged(infohash)
        return http.OK, self._options(infohash)

    def _limits(self, request: Any) -> tuple[int, object]:
        return http.OK, self.daemon.limits()

    def _setLimits(self, request: Any) -> tuple[int, object]:
        body = _jsonBody(request)
        unknown = sorted(set(body) - {"downloadLimit", "uploadLimit"})
        if unknown:
            raise ApiError(http.BAD_REQUEST, f"unknown limit {unknown[0]!r}")
        return http.OK, self.daemon.setLimits(body.get("downloadLimit"), body.get("uploadLimit"))


def makeApi(daemon: TorrentControl) -> ApiResource:
    """The ``/api`` resource for ``daemon``."""
    return ApiResource(daemon)
