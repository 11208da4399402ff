"""
The HTTP side of the torrent daemon: a status page, ``/status.json``, and streaming.

``GET /``
    An HTML status page: one row per torrent (name, info-hash, progress bar, percent,
    rates, peers, state, links to its files). It refreshes itself every 2 s from
    ``status.json`` (``status.js``; without JavaScript, a ``<meta>`` refresh).
``GET /status.json``
    A JSON list: per torrent, the keys of :class:`~pcpkit.torrent.session.TorrentStatus`
    plus ``files`` (``index``, ``path``, ``size``, ``done``).
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
"""

from __future__ import annotations

import html
import json
import mimetypes
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from pcpkit.torrent.ipc import formatBytes, formatRate
from pcpkit.torrent.session import TorrentError, TorrentSession, UnknownTorrent, lt
from pcpkit.torrent.stream import StreamStopped, TorrentFileProducer, releaseFreedMemory

__all__ = [
    "DaemonSite",
    "RangeNotSatisfiable",
    "StatusPage",
    "StreamResource",
    "TorrentSource",
    "makeRoot",
    "makeSite",
    "parseRange",
    "torrentFiles",
    "torrentList",
]

log = Logger()

#: seconds between two refreshes of the status page
REFRESH_SECONDS = 2

_INFOHASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_INDEX = re.compile(r"[0-9]{1,9}")
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.IGNORECASE)


class TorrentSource(Protocol):
    """What the HTTP resources read: the daemon (:class:`~pcpkit.torrent.daemon.TorrentDaemon`)."""

    @property
    def session(self) -> TorrentSession | None:
        """The running session, ``None`` while the daemon is not running."""

    def skippedFiles(self) -> list[tuple[str, str]]:
        """Watch-folder files that were skipped, as ``(file name, reason)``."""


# -- data ----------------------------------------------------------------------------------


def _fileStorage(handle: Any) -> Any:
    """The torrent's file layout, ``None`` while a magnet's metadata is still missing."""
    ti = handle.torrent_file()
    if ti is None:
        return None
    return ti.layout() if hasattr(ti, "layout") else ti.files()


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
            }
        )
    return result


def torrentList(session: TorrentSession | None) -> list[dict[str, Any]]:
    """Every torrent of ``session``: its status dictionary plus ``files``, oldest first."""
    if session is None or session.stopped:
        return []
    torrents = []
    for torrentid in session.torrentIds():
        try:
            status: dict[str, Any] = dict(session.status(torrentid))
            status["files"] = torrentFiles(session, torrentid)
        except UnknownTorrent:  # pragma: no cover - removed between the two calls
            continue
        torrents.append(status)
    return torrents


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


class StatusJSON(Resource):
    """``/status.json``: :func:`torrentList` of the daemon's session."""

    isLeaf = True

    def __init__(self, source: TorrentSource) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.source = source

    def render_GET(self, request: Any) -> bytes:
        body = json.dumps(torrentList(self.source.session), indent=1).encode("utf-8")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return body


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f4f4f4; }
td.infohash code { font-size: .8em; }
progress { width: 12em; }
.files { font-size: .85em; margin-top: .2em; }
.files a { display: block; }
#skipped { color: #a40; }
.note { color: #777; font-size: .85em; }
"""

_COLUMNS = ("Name", "Info-hash", "Progress", "Done", "Down", "Up", "Peers", "State")


def _percent(status: dict[str, Any]) -> str:
    return f"{float(status['fractionDone']) * 100:.1f}%"


def _peers(status: dict[str, Any]) -> str:
    return f"{status['numPeers']} ({status['numSeeds']} seeds)"


def _row(t: dict[str, Any]) -> str:
    ih = html.escape(str(t["infohash"]))
    links = "".join(
        f'<a href="stream/{ih}/{int(f["index"])}">{html.escape(str(f["path"]))} '
        f"({html.escape(formatBytes(int(f['size'])))})</a>"
        for f in t["files"]
    )
    fraction = float(t["fractionDone"])
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
        f'<td class="state">{html.escape(str(t["activity"]))}</td>'
        "</tr>"
    )


def renderStatusPage(
    torrents: Sequence[dict[str, Any]], skipped: Sequence[tuple[str, str]] = ()
) -> bytes:
    """The status page's HTML for ``torrents`` (:func:`torrentList`); names are escaped."""
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
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
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pcpkit torrents</title>
<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>
<style>{_STYLE}</style>
</head>
<body>
<h1>pcpkit torrents</h1>
<table id="torrents">
<thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody>
</table>
{skippedHtml}
<p class="note">Refreshes every {REFRESH_SECONDS} s <span id="updated"></span>.
Also: <a href="status.json">status.json</a>.</p>
<script src="status.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")


# Updates the rows in place from status.json; only textContent and attributes are set, so a
# torrent's name can never become markup.
_SCRIPT = """\
"use strict";
(function () {
  var PERIOD = %(period)d;
  var COLUMNS = %(columns)d;
  function bytes(n) {
    if (Math.abs(n) < 1000) { return Math.floor(n) + " B"; }
    var units = ["kB", "MB", "GB", "TB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1000;
      if (Math.abs(n) < 1000 || i === units.length - 1) { return n.toFixed(1) + " " + units[i]; }
    }
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function newRow(t) {
    var tr = el("tr", "torrent");
    tr.id = "t-" + t.infohash;
    tr.setAttribute("data-infohash", t.infohash);
    var name = el("td", "name");
    name.appendChild(el("span", "title"));
    name.appendChild(el("div", "files"));
    tr.appendChild(name);
    var ih = el("td", "infohash");
    ih.appendChild(el("code", null, t.infohash));
    tr.appendChild(ih);
    var progress = el("td", "progress");
    var bar = el("progress");
    bar.max = 1;
    progress.appendChild(bar);
    tr.appendChild(progress);
    ["percent", "down", "up", "peers", "state"].forEach(function (c) {
      tr.appendChild(el("td", c));
    });
    return tr;
  }
  function update(tr, t) {
    var percent = (t.fractionDone * 100).toFixed(1) + "%";
    tr.querySelector(".title").textContent = t.name;
    var files = tr.querySelector(".files");
    if (files.childNodes.length !== t.files.length) {
      while (files.firstChild) { files.removeChild(files.firstChild); }
      t.files.forEach(function (f) {
        var a = el("a", null, f.path + " (" + bytes(f.size) + ")");
        a.href = "stream/" + t.infohash + "/" + f.index;
        files.appendChild(a);
      });
    }
    var bar = tr.querySelector("progress");
    bar.value = t.fractionDone;
    bar.textContent = percent;
    tr.querySelector(".percent").textContent = percent;
    tr.querySelector(".down").textContent = bytes(t.downRate) + "/s";
    tr.querySelector(".up").textContent = bytes(t.upRate) + "/s";
    tr.querySelector(".peers").textContent = t.numPeers + " (" + t.numSeeds + " seeds)";
    tr.querySelector(".state").textContent = t.activity;
  }
  function render(torrents) {
    var tbody = document.querySelector("#torrents tbody");
    var keep = {};
    torrents.forEach(function (t) {
      if (!/^[0-9a-f]+$/.test(t.infohash)) { return; }
      keep["t-" + t.infohash] = true;
      var tr = document.getElementById("t-" + t.infohash);
      if (!tr) { tr = newRow(t); tbody.appendChild(tr); }
      update(tr, t);
    });
    Array.prototype.slice.call(tbody.rows).forEach(function (tr) {
      if (!keep[tr.id]) { tbody.removeChild(tr); }
    });
    if (!torrents.length) {
      var empty = el("tr", "empty");
      var td = el("td", null, "no torrents");
      td.colSpan = COLUMNS;
      empty.appendChild(td);
      tbody.appendChild(empty);
    }
    document.getElementById("updated").textContent =
      "(updated " + new Date().toLocaleTimeString() + ")";
  }
  function refresh() {
    fetch("status.json", {cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(render)
      .catch(function () {
        document.getElementById("updated").textContent = "(daemon unreachable)";
      })
      .then(function () { window.setTimeout(refresh, PERIOD * 1000); });
  }
  window.setTimeout(refresh, PERIOD * 1000);
})();
""".replace("%(period)d", str(REFRESH_SECONDS)).replace("%(columns)d", str(len(_COLUMNS)))

_CSP = (
    b"default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    b"img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class StatusPage(Resource):
    """``/``: the HTML status page (see :func:`renderStatusPage`)."""

    isLeaf = True

    def __init__(self, source: TorrentSource) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.source = source

    def render_GET(self, request: Any) -> bytes:
        if request.postpath not in ([], [b""]):
            return _plain(request, http.NOT_FOUND, "not found")
        body = renderStatusPage(torrentList(self.source.session), self.source.skippedFiles())
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", _CSP)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return body


class StatusScript(Resource):
    """``/status.js``: the script that refreshes the status page in place."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return _SCRIPT.encode("utf-8")


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


class DaemonSite(Site):
    """
    The daemon's :class:`~twisted.web.server.Site`: no tracebacks shown, and it can close
    its connections (idle keep-alive ones included) when the daemon stops.
    """

    protocol = _TrackedChannel  # type: ignore[assignment]
    displayTracebacks = False
    noisy = False

    #: requests not written to the access log: the status page asks for these every
    #: few seconds for as long as it is open
    quietPaths = frozenset({b"/status.json", b"/status.js"})

    def __init__(self, root: Resource, streams: StreamResource) -> None:
        super().__init__(root)  # type: ignore[no-untyped-call,unused-ignore]
        self.streams = streams
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


def makeRoot(source: TorrentSource, window: int | None = None) -> Resource:
    """The resource tree: ``/``, ``/status.json``, ``/status.js``, ``/stream/...``."""
    # Any: zope interfaces are opaque to mypy (Resource subclasses are not IResource to it)
    root: Any = Resource()  # type: ignore[no-untyped-call,unused-ignore]
    root.putChild(b"", StatusPage(source))
    root.putChild(b"status.json", StatusJSON(source))
    root.putChild(b"status.js", StatusScript())
    root.putChild(b"stream", StreamResource(source, window))
    return cast(Resource, root)


def makeSite(source: TorrentSource, window: int | None = None) -> DaemonSite:
    """A :class:`DaemonSite` serving :func:`makeRoot` for ``source``."""
    root = makeRoot(source, window)
    streams = root.children[b"stream"]
    assert isinstance(streams, StreamResource)
    return DaemonSite(root, streams)
