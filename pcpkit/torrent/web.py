"""
The HTTP side of the torrent daemon: the web UI, ``/status.json``, and streaming.

``GET /[?offset=N&limit=M]``
    The web UI: one row per torrent (name, info-hash, progress bar, percent, rates, peers,
    ETA, state, tracker error, its files with a stream link and a priority each), a page of
    at most ``limit`` (default 100) torrents. It refreshes itself every 2 s from
    ``status.json`` (``status.js``; without JavaScript, a ``<meta>`` refresh), and drives
    the control API (``/api``, :mod:`pcpkit.torrent.api`): add a ``.torrent`` file or a
    magnet link, pause, resume, remove, file priorities. The API token is pasted once into
    the page (or opened as ``/#token=...``) and kept in the browser's ``localStorage`` for
    this origin; the daemon never puts it in a page.
``GET /status.json[?offset=N&limit=M]``
    A JSON list: per torrent, the keys of :class:`~pcpkit.torrent.session.TorrentStatus`
    plus ``files`` (``index``, ``path``, ``size``, ``done``, ``priority``). With ``offset``
    or ``limit``, that page of it, the number of torrents in ``X-Total-Count``; without,
    every torrent, written a slice at a time so that the reactor keeps serving meanwhile.
``GET /stream/<infohash>/<fileIndex>``
    The file's bytes, in order, while it downloads
    (:class:`~pcpkit.torrent.stream.TorrentFileProducer`), with ``Range`` support.

Streaming answers ``Content-Type`` (from the file name), ``Content-Length`` and
``Accept-Ranges: bytes``; a single ``Range: bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` gets
``206 Partial Content`` with ``Content-Range``; a range past the end of the file gets
``416``. A malformed path (not a hex info-hash, not a whole-number index, extra segments)
gets ``400``; an info-hash that is not in the session, or an index that is not a file of
the torrent, ``404``. The HTTP request is the producer's consumer: the client's socket
paces the stream (a slow client pauses it, and a paused stream holds at most its window of
pieces), and a client that disconnects stops it.

Security: :class:`DaemonSite` answers a request only when its ``Host`` header names the
daemon: ``localhost``, any literal IP address (``127.0.0.1``, ``[::1]``), the name it
listens on, or a name given with ``--allowed-host`` (``*``: any name, behind a reverse
proxy); see :mod:`pcpkit.hosts`. Any other request, whatever its path (the page,
``status.json``, ``/api``, ``/stream``, the static files) and method, is answered
``421 Misdirected Request`` with ``{"error": "Host '...' is not a name of this torrent
daemon ...; ... --allowed-host NAME ..."}`` before a resource sees it, and its body is
dropped. So a page that has its own name re-resolved to 127.0.0.1 (DNS rebinding) and so
reads the daemon as same-origin gets nothing: not the torrent list, the files, the peers nor
the streamed data.
"""

from __future__ import annotations

import html
import importlib.resources
import io
import json
import mimetypes
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.internet.task import cooperate
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pcpkit import hosts
from pcpkit.hosts import MISDIRECTED, HostCheckedRequest, HostCheckedSite
from pcpkit.torrent.control import fileStorage, priorityName
from pcpkit.torrent.hosts import AllowedHosts
from pcpkit.torrent.ipc import formatBytes, formatRate
from pcpkit.torrent.session import TorrentError, TorrentSession, UnknownTorrent, lt
from pcpkit.torrent.stream import StreamStopped, TorrentFileProducer, releaseFreedMemory

__all__ = [
    "INFOHASH",
    "MAX_BODY",
    "MISDIRECTED",
    "DaemonSite",
    "RangeNotSatisfiable",
    "StatusPage",
    "StreamResource",
    "TorrentSource",
    "makeRoot",
    "makeSite",
    "parseRange",
    "queryInt",
    "torrentFiles",
    "torrentList",
    "torrentPage",
]

log = Logger()

#: seconds between two refreshes of the status page
REFRESH_SECONDS = 2

_INFOHASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
#: a hex info-hash (v1 or v2)
INFOHASH = _INFOHASH
_INDEX = re.compile(r"[0-9]{1,9}")
#: the largest request body the daemon reads (a ``.torrent`` upload): larger gets 413
MAX_BODY = 16 * 1024 * 1024
#: torrents per page of the web UI, and of ``status.json`` when only ``offset`` is given
PAGE = 100
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.IGNORECASE)


class TorrentSource(Protocol):
    """What the HTTP resources read: the daemon (:class:`~pcpkit.torrent.daemon.TorrentDaemon`)."""

    @property
    def session(self) -> TorrentSession | None:
        """The running session, ``None`` while the daemon is not running."""

    def skippedFiles(self) -> list[tuple[str, str]]:
        """Watch-folder files that were skipped, as ``(file name, reason)``."""


# -- data ----------------------------------------------------------------------------------


# the stream resource's name for it
_fileStorage = fileStorage


def _isPad(files: Any, index: int) -> bool:
    return bool(int(files.file_flags(index)) & int(lt.file_storage.flag_pad_file))


def torrentFiles(session: TorrentSession, torrentid: int) -> list[dict[str, Any]]:
    """
    The files of a torrent: ``index`` (for ``/stream``), ``path`` (relative to the save
    folder), ``size`` and ``done`` (bytes downloaded). Pad files are left out; an empty list
    while a magnet's metadata is still missing.

    :raises UnknownTorrent:
    """
    handle = session.handle(torrentid)
    files = _fileStorage(handle)
    if files is None:
        return []
    progress = list(handle.file_progress())
    priorities = list(handle.get_file_priorities())
    result = []
    for index in range(int(files.num_files())):
        if _isPad(files, index):
            continue
        result.append(
            {
                "index": index,
                "path": str(files.file_path(index)),
                "size": int(files.file_size(index)),
                "done": int(progress[index]) if index < len(progress) else 0,
                "priority": priorityName(int(priorities[index]))
                if index < len(priorities)
                else "normal",
            }
        )
    return result


def _described(session: TorrentSession, torrentids: Sequence[int]) -> list[dict[str, Any]]:
    torrents = []
    for torrentid in torrentids:
        try:
            status: dict[str, Any] = dict(session.status(torrentid))
            status["files"] = torrentFiles(session, torrentid)
        except UnknownTorrent:  # pragma: no cover - removed between the two calls
            continue
        torrents.append(status)
    return torrents


def torrentList(session: TorrentSession | None) -> list[dict[str, Any]]:
    """Every torrent of ``session``: its status dictionary plus ``files``, oldest first."""
    if session is None or session.stopped:
        return []
    return _described(session, session.torrentIds())


def torrentPage(
    session: TorrentSession | None, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """
    ``(how many torrents, torrents offset..offset+limit of torrentList)``: the cost is
    that of the page, not of every torrent.
    """
    if session is None or session.stopped:
        return 0, []
    ids = session.torrentIds()
    return len(ids), _described(session, ids[offset : offset + limit])


class RangeNotSatisfiable(ValueError):
    """The ``Range`` asked for lies outside the file (HTTP 416)."""


def parseRange(header: bytes | str | None, size: int) -> tuple[int, int] | None:
    """
    The byte range a ``Range`` header asks of a ``size``-byte file, as ``(start, end)``
    with ``end`` exclusive.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last ``n`` bytes) are understood;
    ``b`` past the end is cut to the end (RFC 9110). ``None`` means "send the whole file":
    no header, a header that is not a single byte range (several ranges, another unit,
    ``b < a``, garbage) is ignored as RFC 9110 allows.

    :raises RangeNotSatisfiable: the range starts at or after the end of the file, or is
        ``bytes=-0``.
    """
    if header is None:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last n bytes
        n = _offset(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{_short(last)} of a {size}-byte file")
        return max(size - n, 0), size
    start = _offset(first)
    if last and _below(last, first):
        return None
    if start >= size:
        raise RangeNotSatisfiable(f"bytes={_short(first)}- of a {size}-byte file")
    end = size if not last else min(_offset(last) + 1, size)
    return start, end


#: Offsets longer than this are past the end of any file (2**64 has 20 digits); ``int()`` is
#: not even tried on them: thousands of digits hit Python's int-string conversion limit.
_MAX_DIGITS = 20


def _offset(digits: str) -> int:
    """A byte offset from ASCII digits; an absurdly long one is 2**64 (past any file)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 1 << 64


def _below(a: str, b: str) -> bool:
    """Whether the number in digits ``a`` is below that in ``b`` (any length, no int())."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def _short(digits: str) -> str:
    """Digits for a message, cut short."""
    return digits if len(digits) <= _MAX_DIGITS else digits[:_MAX_DIGITS] + "..."


# -- resources -----------------------------------------------------------------------------


def _plain(request: Any, code: int, message: str) -> bytes:
    """A short text/plain answer (errors)."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"cache-control", b"no-store")
    return (message + "\n").encode("utf-8")


def _json(request: Any) -> None:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")


def queryInt(request: Any, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query argument. :raises ValueError: (one line)"""
    raw = request.args.get(name.encode())
    if not raw:
        return default
    text = raw[-1].decode("latin-1")
    if not text.isascii() or not text.isdigit() or len(text) > 9 or not low <= int(text) <= high:
        raise ValueError(f"{name} must be a whole number {low}..{high}")
    return int(text)


#: torrents described per step while the whole list is written
_SLICE = 50


class StatusJSON(Resource):
    """
    ``/status.json``: :func:`torrentList` of the daemon's session, or a page of it
    (``?offset=&limit=``, the count in ``X-Total-Count``).
    """

    isLeaf = True

    def __init__(self, source: TorrentSource) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.source = source

    def render_GET(self, request: Any) -> bytes | int:
        session = self.source.session
        if b"offset" in request.args or b"limit" in request.args:
            try:
                offset = queryInt(request, "offset", 0, 0, 10**9)
                limit = queryInt(request, "limit", PAGE, 1, 10**9)
            except ValueError as e:
                return _plain(request, http.BAD_REQUEST, str(e))
            total, page = torrentPage(session, offset, limit)
            _json(request)
            request.setHeader(b"x-total-count", b"%d" % total)
            return json.dumps(page, indent=1).encode("utf-8")
        _json(request)
        if session is None or session.stopped:
            return b"[]"
        ids = session.torrentIds()
        request.setHeader(b"x-total-count", b"%d" % len(ids))
        if len(ids) <= _SLICE:
            return json.dumps(_described(session, ids), indent=1).encode("utf-8")
        # Many torrents: a slice per cooperator step, so that the reactor serves other
        # requests (and the alert pump) between two slices.
        task = cooperate(self._write(request, session, ids))
        request.notifyFinish().addErrback(lambda _: task.stop())
        task.whenDone().addErrback(lambda _: None)  # stopped: the client went
        return NOT_DONE_YET

    @staticmethod
    def _write(request: Any, session: TorrentSession, ids: list[int]) -> Iterator[None]:
        request.write(b"[")
        separator = b""
        for start in range(0, len(ids), _SLICE):
            if session.stopped:
                break
            items = _described(session, ids[start : start + _SLICE])
            if items:
                request.write(separator + ",\n".join(json.dumps(t) for t in items).encode())
                separator = b",\n"
            yield None
        request.write(b"]\n")
        request.finish()


_COLUMNS = (
    "Name",
    "Info-hash",
    "Progress",
    "Done",
    "Down",
    "Up",
    "Peers",
    "ETA",
    "State",
    "Tracker",
    "",
)


def _percent(status: dict[str, Any]) -> str:
    return f"{float(status['fractionDone']) * 100:.1f}%"


def _peers(status: dict[str, Any]) -> str:
    return f"{status['numPeers']} ({status['numSeeds']} seeds)"


def formatEta(status: dict[str, Any]) -> str:
    """The time left of a torrent as the web UI shows it (``""``: none to show)."""
    if status.get("isFinished") or status.get("paused") or status.get("error"):
        return ""
    if "timeEst" not in status:
        return ""
    eta = status["timeEst"]
    if eta is None:
        return "∞"
    seconds = int(eta)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 100 * 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d"


def _row(t: dict[str, Any]) -> str:
    ih = html.escape(str(t["infohash"]))
    links = "".join(
        f'<div class="file"><a href="stream/{ih}/{int(f["index"])}">'
        f"{html.escape(str(f['path']))} ({html.escape(formatBytes(int(f['size'])))})</a></div>"
        for f in t["files"]
    )
    fraction = float(t["fractionDone"])
    tracker = t.get("trackerError") or ""
    return (
        f'<tr id="t-{ih}" class="torrent" data-infohash="{ih}">'
        f'<td class="name"><span class="title">{html.escape(str(t["name"]))}</span>'
        f'<div class="files">{links}</div></td>'
        f'<td class="infohash"><code>{ih}</code></td>'
        f'<td class="progress"><progress max="1" value="{fraction:.4f}">'
        f"{_percent(t)}</progress></td>"
        f'<td class="percent">{_percent(t)}</td>'
        f'<td class="down">{html.escape(formatRate(int(t["downRate"])))}</td>'
        f'<td class="up">{html.escape(formatRate(int(t["upRate"])))}</td>'
        f'<td class="peers">{html.escape(_peers(t))}</td>'
        f'<td class="eta">{html.escape(formatEta(t))}</td>'
        f'<td class="state">{html.escape(str(t["activity"]))}</td>'
        f'<td class="tracker">{html.escape(str(tracker))}</td>'
        '<td class="actions"></td>'
        "</tr>"
    )


def renderStatusPage(
    torrents: Sequence[dict[str, Any]],
    skipped: Sequence[tuple[str, str]] = (),
    total: int | None = None,
    offset: int = 0,
) -> bytes:
    """
    The web UI's HTML for ``torrents`` (a page of :func:`torrentList` from ``offset``, of
    ``total`` torrents); names are escaped.
    """
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    if total is None:
        total = len(torrents)
    if torrents:
        rows = "".join(_row(t) for t in torrents)
    else:
        rows = f'<tr class="empty"><td colspan="{len(_COLUMNS)}">no torrents</td></tr>'
    skippedHtml = ""
    if skipped:
        items = "".join(
            f"<li><code>{html.escape(name)}</code>: {html.escape(reason)}</li>"
            for name, reason in skipped
        )
        skippedHtml = f'<h2>Skipped watch-folder files</h2><ul id="skipped">{items}</ul>'
    shown = f"{offset + 1}-{offset + len(torrents)} of {total}" if torrents else f"0 of {total}"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pcpkit torrents</title>
<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>
<link rel="stylesheet" href="ui.css">
</head>
<body data-offset="{offset}" data-page="{PAGE}" data-period="{REFRESH_SECONDS}">
<h1>pcpkit torrents</h1>
<section id="controls">
<form id="token-form" autocomplete="off">
<label for="token">API token</label>
<input id="token" type="password" placeholder="paste the daemon's api-token">
<button id="token-save" type="submit">Use token</button>
<button id="token-forget" type="button">Forget</button>
<span id="token-state" class="note">no token: this page can only watch</span>
</form>
<form id="add-form" autocomplete="off">
<label for="add-file">Add a .torrent</label>
<input id="add-file" type="file" accept=".torrent,application/x-bittorrent">
<label for="add-magnet">or a magnet link</label>
<input id="add-magnet" type="text" placeholder="magnet:?xt=urn:btih:...">
<button id="add-submit" type="submit">Add</button>
</form>
<p id="message" role="status"></p>
</section>
<table id="torrents">
<thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody>
</table>
<p id="pager"><button id="page-prev" type="button">&larr;</button>
<span id="page-shown">{shown}</span>
<button id="page-next" type="button">&rarr;</button></p>
{skippedHtml}
<p class="note">Refreshes every {REFRESH_SECONDS} s <span id="updated"></span>.
Also: <a href="status.json">status.json</a>, the control API under <code>/api</code>.</p>
<script src="status.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")


# Scripts and styles only from the daemon, none inline (an injected name could not run),
# connections only to it, no framing (clickjacking), no form posts anywhere.
_CSP = (
    b"default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    b"img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class StatusPage(Resource):
    """``/``: the web UI (see :func:`renderStatusPage`), ``PAGE`` torrents at a time."""

    isLeaf = True

    def __init__(self, source: TorrentSource) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.source = source

    def render_GET(self, request: Any) -> bytes:
        if request.postpath not in ([], [b""]):
            return _plain(request, http.NOT_FOUND, "not found")
        try:
            offset = queryInt(request, "offset", 0, 0, 10**9)
        except ValueError as e:
            return _plain(request, http.BAD_REQUEST, str(e))
        total, torrents = torrentPage(self.source.session, offset, PAGE)
        body = renderStatusPage(torrents, self.source.skippedFiles(), total, offset)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", _CSP)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return body


_STATIC = importlib.resources.files("pcpkit.torrent") / "static"


class StaticFile(Resource):
    """A file of ``pcpkit/torrent/static`` (read once, when the site is made)."""

    isLeaf = True

    def __init__(self, name: str, contentType: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.body = (_STATIC / name).read_bytes()
        self.contentType = contentType

    def render_GET(self, request: Any) -> bytes:
        if request.postpath not in ([], [b""]):
            return _plain(request, http.NOT_FOUND, "not found")
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return self.body


class StreamResource(Resource):
    """
    ``/stream/<infohash>/<fileIndex>``: a file of a torrent, as it downloads, with Range.

    :param source: gives the session (:class:`TorrentSource`).
    :param window: the most pieces a stream asks libtorrent for ahead of the one it
        delivers (``None``: the stream's byte bound); within it each stream sizes its window
        from its client's drain rate and the swarm's (:mod:`pcpkit.torrent.stream`).

    A new ``Range`` request (a player's seek) is a new stream; the old request's stream
    stops, and resets its pieces' deadlines, as soon as its connection goes.
    """

    isLeaf = True

    def __init__(self, source: TorrentSource, window: int | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.source = source
        self.window = window
        #: the streams running now
        self.producers: set[TorrentFileProducer] = set()
        #: called with each stream's producer as it starts (monitoring, tests)
        self.streamStarted: Callable[[TorrentFileProducer], None] | None = None

    def _prepare(self, request: Any) -> tuple[TorrentSession, int, str, int, int, int] | bytes:
        """
        Check the path, the torrent, the file and the range; set the headers.

        :return: ``(session, torrentid, infohash, fileIndex, start, end)`` to stream, or the
            body of an answer that is complete already (an error, an empty file).
        """
        segments = request.postpath
        if len(segments) != 2:
            return _plain(request, http.BAD_REQUEST, "expected /stream/<infohash>/<fileIndex>")
        rawHash, rawIndex = (s.decode("latin-1") for s in segments)
        if not _INFOHASH.fullmatch(rawHash):
            return _plain(
                request, http.BAD_REQUEST, "the info-hash must be 40 or 64 hexadecimal digits"
            )
        if not _INDEX.fullmatch(rawIndex):
            return _plain(request, http.BAD_REQUEST, "the file index must be a whole number")
        infohash, fileIndex = rawHash.lower(), int(rawIndex)
        session = self.source.session
        if session is None or session.stopped:
            request.setHeader(b"retry-after", b"5")
            return _plain(request, http.SERVICE_UNAVAILABLE, "the torrent daemon is not running")
        try:
            torrentid = session.torrentIdFor(infohash)
            files = _fileStorage(session.handle(torrentid))
        except UnknownTorrent:
            return _plain(request, http.NOT_FOUND, f"no torrent {infohash} here")
        if files is None:
            request.setHeader(b"retry-after", b"5")
            return _plain(
                request,
                http.SERVICE_UNAVAILABLE,
                f"torrent {infohash} is still fetching its metadata (its files are not known)",
            )
        if fileIndex >= int(files.num_files()) or _isPad(files, fileIndex):
            return _plain(request, http.NOT_FOUND, f"torrent {infohash} has no file {fileIndex}")
        size = int(files.file_size(fileIndex))
        path = str(files.file_path(fileIndex))

        try:
            wanted = parseRange(request.getHeader(b"range"), size)
        except RangeNotSatisfiable:
            request.setHeader(b"content-range", f"bytes */{size}".encode())
            return _plain(
                request,
                http.REQUESTED_RANGE_NOT_SATISFIABLE,
                f"range not satisfiable: the file has {size} bytes",
            )
        contentType, _ = mimetypes.guess_type(path)
        request.setHeader(b"content-type", (contentType or "application/octet-stream").encode())
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if wanted is None:
            start, end = 0, size
        else:
            start, end = wanted
            request.setResponseCode(http.PARTIAL_CONTENT)
            request.setHeader(b"content-range", f"bytes {start}-{end - 1}/{size}".encode())
        request.setHeader(b"content-length", b"%d" % (end - start))
        if end == start:
            return b""
        return session, torrentid, infohash, fileIndex, start, end

    def render_HEAD(self, request: Any) -> bytes:
        prepared = self._prepare(request)
        return prepared if isinstance(prepared, bytes) else b""

    def render_GET(self, request: Any) -> bytes | int:
        prepared = self._prepare(request)
        if isinstance(prepared, bytes):
            return prepared
        session, torrentid, infohash, fileIndex, start, end = prepared
        producer = TorrentFileProducer(
            session, torrentid, fileIndex, request, start, end, window=self.window
        )
        self.producers.add(producer)
        if self.streamStarted is not None:
            self.streamStarted(producer)
        gone: list[Failure] = []

        def clientGone(reason: Failure) -> None:
            # the client disconnected before the end: stop asking libtorrent for pieces
            gone.append(reason)
            producer.stopProducing()

        def done(result: None) -> None:
            self._ended(producer)
            if not gone:
                request.finish()

        def failed(reason: Failure) -> None:
            self._ended(producer)
            if gone:
                return
            if isinstance(reason.value, StreamStopped):
                # stopped from our side (the daemon is stopping) or by the channel as the
                # connection went: either way, no more bytes come
                request.loseConnection()
                return
            error = reason.value
            why = error.reason if isinstance(error, TorrentError) else str(error)
            log.warn(
                "stream of torrent {infohash} file {index} failed after {written} bytes: {why}",
                infohash=infohash,
                index=fileIndex,
                written=producer.bytesWritten,
                why=why,
            )
            if not request.startedWriting:
                body = _plain(request, http.SERVICE_UNAVAILABLE, f"stream failed: {why}")
                request.responseHeaders.removeHeader(b"content-range")
                request.setHeader(b"content-length", b"%d" % len(body))
                request.write(body)
                request.finish()
            else:
                # the headers promised more bytes: a cut connection tells the client
                request.loseConnection()

        request.notifyFinish().addErrback(clientGone)
        stream: Deferred[None] = producer.beginProducing()
        stream.addCallbacks(done, failed)
        return NOT_DONE_YET

    def _ended(self, producer: TorrentFileProducer) -> None:
        self.producers.discard(producer)
        if not self.producers:
            # the last stream of a burst: hand what they freed back to the system
            releaseFreedMemory()

    def stopStreams(self) -> None:
        """Stop every running stream (the daemon is stopping)."""
        for producer in list(self.producers):
            producer.stopProducing()


class _TrackedChannel(HTTPChannel):
    """An ``HTTPChannel`` its :class:`DaemonSite` knows about while it is connected."""

    site: DaemonSite

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call,unused-ignore]
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call,unused-ignore]


class _DaemonRequest(HostCheckedRequest):
    """
    A request to a :class:`DaemonSite`, checked before any resource sees it: one whose
    ``Host`` the site does not answer (:mod:`pcpkit.hosts`) is answered ``421``, and a body
    over the site's ``maxBody`` ``413`` (closing the connection). The body of either is read
    and dropped as it comes (memory stays bounded); a body within the limit is kept in memory.
    """

    tooLarge = False
    _received = 0

    def _limit(self) -> int:
        site = self.hostCheckedSite()
        return site.maxBody if isinstance(site, DaemonSite) else MAX_BODY

    def gotLength(self, length: int | None) -> None:
        self.checkHost()
        self.content = io.BytesIO()
        if length is not None and length > self._limit():
            self.tooLarge = True

    def handleContentChunk(self, data: bytes) -> None:
        if self.tooLarge or self.misdirected is not None:
            return
        self._received += len(data)
        if self._received > self._limit():
            self.tooLarge = True
            self.content = io.BytesIO()
            return
        content: Any = self.content
        content.write(data)

    def answer(self) -> None:
        if self.tooLarge and self.misdirected is None:
            limit = self._limit()
            message = f"the request body is over the limit of {limit} bytes"
            self.answerError(http.REQUEST_ENTITY_TOO_LARGE, None, message, close=True)
        else:
            super().answer()


class DaemonSite(HostCheckedSite):
    """
    The daemon's :class:`~twisted.web.server.Site`: it answers only requests whose ``Host``
    ``allowedHosts`` allows (``421`` otherwise, for every path: the guard against DNS
    rebinding of :class:`~pcpkit.hosts.HostCheckedSite`), shows no tracebacks, limits request
    bodies to ``maxBody`` bytes (``413`` beyond), and can close its connections (idle
    keep-alive ones included) when the daemon stops.
    """

    protocol = _TrackedChannel  # type: ignore[assignment]
    requestFactory = _DaemonRequest

    #: requests not written to the access log: the status page asks for these every
    #: few seconds for as long as it is open
    quietPaths = frozenset({b"/status.json", b"/status.js", b"/ui.css"})

    def __init__(
        self,
        root: Resource,
        streams: StreamResource,
        maxBody: int = MAX_BODY,
        allowedHosts: hosts.AllowedHosts | None = None,
    ) -> None:
        super().__init__(root, AllowedHosts() if allowedHosts is None else allowedHosts)
        self.streams = streams
        self.maxBody = maxBody
        #: the HTTP connections open now
        self.channels: set[HTTPChannel] = set()

    def log(self, request: Any) -> None:
        """Write the access log line, except for the status page's own refreshes."""
        if request.path not in self.quietPaths:
            super().log(request)  # type: ignore[no-untyped-call,unused-ignore]

    def stopStreams(self) -> None:
        """Stop every running stream."""
        self.streams.stopStreams()

    def abortConnections(self) -> None:
        """Close every connection at once."""
        for channel in list(self.channels):
            if channel.transport is not None:
                channel.transport.abortConnection()


def makeRoot(
    source: TorrentSource, window: int | None = None, api: Resource | None = None
) -> Resource:
    """
    The resource tree: ``/``, ``/status.json``, ``/status.js``, ``/ui.css``,
    ``/stream/...``, and ``api`` (:func:`pcpkit.torrent.api.makeApi`) as ``/api``.
    """
    # Any: zope interfaces are opaque to mypy (Resource subclasses are not IResource to it)
    root: Any = Resource()  # type: ignore[no-untyped-call,unused-ignore]
    root.putChild(b"", StatusPage(source))
    root.putChild(b"status.json", StatusJSON(source))
    root.putChild(b"status.js", StaticFile("status.js", b"text/javascript; charset=utf-8"))
    root.putChild(b"ui.css", StaticFile("ui.css", b"text/css; charset=utf-8"))
    root.putChild(b"stream", StreamResource(source, window))
    if api is not None:
        root.putChild(b"api", api)
    return cast(Resource, root)


def makeSite(
    source: TorrentSource,
    window: int | None = None,
    api: Resource | None = None,
    maxBody: int = MAX_BODY,
    allowedHosts: hosts.AllowedHosts | None = None,
) -> DaemonSite:
    """
    A :class:`DaemonSite` serving :func:`makeRoot` for ``source``, answering the ``Host``
    names ``allowedHosts`` allows (default: ``localhost`` and IP addresses).
    """
    root = makeRoot(source, window, api)
    streams = root.children[b"stream"]
    assert isinstance(streams, StreamResource)
    return DaemonSite(root, streams, maxBody, allowedHosts)
