"""
``twistd pcpkit torrent``: a torrent daemon with a watch folder, resume data and HTTP.

:class:`TorrentDaemon` is a :class:`~twisted.application.service.MultiService` that owns a
:class:`~pcpkit.torrent.session.TorrentSession` for as long as it runs:

- **Watch folder.** The folder is polled (a ``LoopingCall``, every second by default; the
  listing and the reading in a thread) for ``*.torrent`` files and ``*.magnet`` files (a
  ``.magnet`` file holds one magnet link). A new file starts its torrent, saving into the save
  path and connecting to every ``--peer``; removing the file stops the torrent (its downloaded
  files are kept); changing the file to another torrent does both. A file that is not a valid
  torrent is logged once, with the reason, listed on the status page, and skipped until it
  changes; the daemon keeps serving. File names starting with ``.`` are ignored, so a tool can
  write ``.name.torrent`` and rename it when complete.
- **State.** For each torrent the state folder (default ``SAVE_PATH/.pcpkit-state``) holds
  ``<infohash>.json`` (how it was added: magnet link, watch-folder files),
  ``<infohash>.torrent`` (its metainfo) and ``<infohash>.resume`` (libtorrent resume data).
  Resume data is written as pieces complete while downloading (at most every
  :data:`RESUME_MIN_SECONDS` per torrent, once :data:`RESUME_PIECES` pieces more are
  verified, or on the next status after ``resumeInterval`` seconds when fewer are), when a
  torrent finishes, and for every torrent
  at :meth:`TorrentDaemon.stopService`; files are replaced atomically. After a crash (``kill
  -9``) the pieces verified since the last save are on disk but not in the resume data: when
  a torrent's data files are newer than its resume file, the torrent is re-checked on start
  (hashing keeps every verified piece) instead of trusting the resume data and
  re-downloading what it does not list. Every disk access (state and resume files, the watch
  folder, those checks) runs in the reactor's thread pool, one at a time in order, so the
  reactor never waits on a disk. Each save of resume data first syncs (``fsync``) the
  torrent's data files and then the resume file, so that not even a power loss leaves resume
  data listing a piece whose data never reached the disk; the other state files are synced
  once, at shutdown. On start the torrents are re-added with their resume data, so nothing
  is downloaded or checked again: a finished torrent comes back seeding (a clean stop pauses
  the session before the last save, so its data is never newer than its resume data).
  Unusable resume data is logged and the torrent re-checked from its data instead.
- **HTTP** (``httpEndpoint``): the web UI, ``/status.json`` and
  ``/stream/<infohash>/<fileIndex>`` of :mod:`pcpkit.torrent.web`, and the JSON control API
  ``/api/...`` of :mod:`pcpkit.torrent.api` (add, remove, pause, resume, recheck, file
  priorities, sequential and first/last-piece modes, rate limits, trackers, peers).
  State-changing requests need the token of ``STATE_DIR/api-token``, made at the first
  start (mode 0600) and logged that once. Only requests whose ``Host`` names the daemon
  (``localhost``, an IP address, its listening name, ``allowedHosts``) are answered: a
  DNS-rebinding page cannot read it (:mod:`pcpkit.torrent.hosts`).

File names inside a torrent are checked by the engine: none can leave the save path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from twisted.application.service import MultiService
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._endpoints import (
    EndpointError,
    listenDescription,
    listenInterface,
    resolveHostPort,
    serverEndpoint,
)
from pcpkit._format import printable
from pcpkit._twisted import getReactor
from pcpkit.torrent import control
from pcpkit.torrent.api import makeApi
from pcpkit.torrent.hosts import AllowedHosts
from pcpkit.torrent.maker import infohashOf
from pcpkit.torrent.session import (
    AddedTorrent,
    BaseTorrentSessionObserver,
    InvalidTorrent,
    SessionStopped,
    TorrentAlreadyDownloading,
    TorrentError,
    TorrentRemoved,
    TorrentSession,
    TorrentStatus,
    UnknownTorrent,
    parseMagnet,
)
from pcpkit.torrent.transfer import (
    atomicWrite,
    dataChangedSince,
    pathWithin,
    syncFiles,
    writeResumeData,
)
from pcpkit.torrent.web import MAX_BODY, DaemonSite, makeSite

__all__ = [
    "DEFAULT_STATE_FOLDER",
    "LIMITS_FILE",
    "TOKEN_FILE",
    "TOKEN_RULE",
    "DaemonStartError",
    "TorrentBusy",
    "TorrentDaemon",
    "isToken",
    "listenInterfacesProblem",
    "loadOrCreateToken",
]

log = Logger()

#: the state folder's name inside the save path when ``stateDir`` is not given
DEFAULT_STATE_FOLDER = ".pcpkit-state"

#: the control API's token, in the state folder (created at the first start, mode 0600)
TOKEN_FILE = "api-token"
#: the session's rate limits set through the control API, in the state folder
LIMITS_FILE = "limits.json"

#: the largest ``.torrent`` file read from the watch folder
MAX_TORRENT_FILE = 64 * 1024 * 1024
#: the largest ``.magnet`` file read from the watch folder
MAX_MAGNET_FILE = 64 * 1024

#: the fewest seconds between two piece-driven saves of one torrent's resume data
RESUME_MIN_SECONDS = 2.0
#: verified pieces more than at the last save that make a piece-driven save due
RESUME_PIECES = 16

_STATE_FILE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64})\.json")
_WATCHED_SUFFIXES = (".torrent", ".magnet")


class DaemonStartError(Exception):
    """
    The daemon cannot do its job with one of its parameters: ``parameter`` names it (as
    :class:`TorrentDaemon` spells it: ``savePath``, ``httpEndpoint``, ...), ``str()`` is one
    line saying why.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(reason)
        self.parameter = parameter
        self.reason = reason


def listenInterfacesProblem(value: str, bind: bool = False) -> str | None:
    """
    What is wrong with a libtorrent ``listen_interfaces`` value (``None``: nothing).

    Each comma-separated entry is ``ADDRESS:PORT``, ``[IPV6]:PORT`` or ``DEVICE:PORT``, the
    port optionally followed by libtorrent's flags (``s`` for SSL, ``l`` for local). With
    ``bind``, each address is also bound once (and let go), so an address this host does not
    have, or a port in use, is found now rather than as a libtorrent warning later.
    """
    entries = [e.strip() for e in value.split(",")]
    if not value.strip() or not all(entries):
        return f"{value!r} has an empty entry (expected ADDRESS:PORT[,ADDRESS:PORT...])"
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        port = port.rstrip("sl")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not (port.isascii() and port.isdigit()) or len(port) > 5:
            return f"{entry!r} is not ADDRESS:PORT"
        if int(port) > 65535:
            return f"{entry!r}: port {port} is out of range"
        family = _addressFamily(host)
        if family is None:
            try:
                socket.if_nametoindex(host)
            except OSError:
                return f"{entry!r}: {host!r} is neither an IP address nor a network device"
            continue
        if bind:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, int(port)))
                except OSError as e:
                    return f"cannot listen on {entry}: {e.strerror or e}"
    return None


def _addressFamily(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _checkFolder(parameter: str, folder: str) -> None:
    """Create ``folder`` if needed and write a file in it. :raises DaemonStartError:"""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pcpkit-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise DaemonStartError(
            parameter, f"{folder} is not a writable folder: {e.strerror or e}"
        ) from None


#: what an API token is, in words
TOKEN_RULE = "16 to 4096 printable ASCII characters"


def isToken(text: str) -> bool:
    """Whether ``text`` can be an API token (:data:`TOKEN_RULE`)."""
    return 16 <= len(text) <= 4096 and all(33 <= ord(c) < 127 for c in text)


def loadOrCreateToken(stateDir: str) -> tuple[str, bool]:
    """
    The control API's token from ``stateDir/api-token``, created (mode 0600, 256 random
    bits) when there is none: ``(token, created)``. A file written by the user is used as
    it is.

    :raises ValueError: the file does not hold a usable token (one line says why).
    :raises OSError: it cannot be read or created.
    """
    path = os.path.join(stateDir, TOKEN_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            token = f.read(4097).decode("ascii", "replace").strip()
        if not isToken(token):
            raise ValueError(
                f"{path} does not hold a token ({TOKEN_RULE}); delete it to have a new one made"
            ) from None
        if os.stat(path).st_mode & 0o077:
            log.warn("{path} can be read by other users: chmod 600 it", path=path)
        return token, False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token, True


class TorrentBusy(TorrentError):
    """The torrent cannot be changed yet: it is still being added."""


class _BadFile(Exception):
    """A watch-folder file that is not a torrent; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Torrent:
    """A torrent the daemon runs (or is adding)."""

    infohash: str
    metainfo: bytes | None
    magnet: str | None
    name: str
    #: the watch-folder files naming it; removing the last one stops it
    sources: set[str] = field(default_factory=set)
    torrentid: int | None = None
    #: added through the control API: it stays until removed through it, whatever
    #: happens to watch-folder files naming it
    api: bool = False
    #: the first and last piece of each wanted file first (not a libtorrent flag: kept here)
    firstLastPieces: bool = False
    adding: bool = False
    #: why the last add failed (the API reports it)
    failure: BaseException | None = None
    #: stopped (by us or by the engine): late events about it are ignored
    dropped: bool = False
    #: verified pieces and the reactor time at the last resume save (or since start)
    savedPieces: int = -1
    savedAt: float = 0.0
    saving: bool = False

    @property
    def label(self) -> str:
        # for log lines: the name comes from the torrent, and could move a terminal's cursor
        return printable(f"{self.name} ({self.infohash})")


@dataclass(eq=False)
class _WatchedFile:
    #: (mtime in ns, size): a change means "read it again"
    signature: tuple[int, int]
    infohash: str | None
    #: why it was skipped (``None``: it names a torrent)
    reason: str | None = None


class _Observer(BaseTorrentSessionObserver):
    def __init__(self, daemon: TorrentDaemon) -> None:
        self.daemon = daemon

    def torrentFinished(self, torrentid: int) -> None:
        self.daemon._torrentFinished(torrentid)

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        self.daemon._torrentProgress(torrentid, status)

    def torrentError(self, torrentid: int, reason: str) -> None:
        self.daemon._torrentError(torrentid, reason)

    def torrentRemoved(self, torrentid: int) -> None:
        self.daemon._torrentRemoved(torrentid)


def _removeFiles(paths: Iterable[str]) -> list[str]:
    """Remove what exists of ``paths``; returns the errors (one line each)."""
    errors = []
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(f"cannot remove {path}: {e.strerror or e}")
    return errors


def _readFile(path: str) -> bytes | None:
    """The bytes of ``path``, ``None`` if there is no such file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


_T = TypeVar("_T")


def _readWatchFile(path: str) -> tuple[bytes | None, str | None, str]:
    """``(metainfo, magnet, infohash)`` of a watch-folder file. :raises _BadFile:"""
    isMagnet = path.lower().endswith(".magnet")
    limit = MAX_MAGNET_FILE if isMagnet else MAX_TORRENT_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _BadFile(f"cannot read it: {e.strerror or e}") from None
    if len(data) > limit:
        raise _BadFile(
            f"too large for a {'.magnet' if isMagnet else '.torrent'} file (over {limit} bytes)"
        )
    if not isMagnet:
        try:
            return data, None, infohashOf(data)
        except InvalidTorrent as e:
            raise _BadFile(e.reason) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _BadFile("not a magnet link: the file is not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise _BadFile("not a magnet link: the file is empty")
    if len(lines) > 1:
        raise _BadFile(f"a .magnet file holds one magnet link, not {len(lines)} lines")
    try:
        return None, lines[0], parseMagnet(lines[0]).infohash
    except InvalidTorrent as e:
        raise _BadFile(e.reason) from None


#: A watch-folder scan: ``(signature of each watched file, what each new or changed one
#: holds (or why it was skipped), the problem reading the folder)``.
_Scan = tuple[
    dict[str, tuple[int, int]],
    dict[str, "tuple[bytes | None, str | None, str] | _BadFile"],
    str | None,
]


def _scanFolder(folder: str, known: dict[str, tuple[int, int]]) -> _Scan:
    """(In a thread.) List ``folder``; read the files not in ``known`` or changed since."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        return {}, {}, e.strerror or str(e)
    seen: dict[str, tuple[int, int]] = {}
    reads: dict[str, tuple[bytes | None, str | None, str] | _BadFile] = {}
    for entry in entries:
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(_WATCHED_SUFFIXES):
            continue
        try:
            if not entry.is_file():
                continue
            st = entry.stat()
        except OSError:
            continue  # gone since the listing
        signature = (st.st_mtime_ns, st.st_size)
        seen[entry.path] = signature
        if known.get(entry.path) != signature:
            try:
                reads[entry.path] = _readWatchFile(entry.path)
            except _BadFile as e:
                reads[entry.path] = e
    return seen, reads, None


class _Disk:
    """
    The daemon's disk work, off the reactor thread (the reactor's thread pool), one job at a
    time in the order asked: a state file written and then deleted ends deleted. Files
    written by :meth:`write` are not synced (``fsync``) there: :meth:`flush` syncs the ones
    written since the last flush (the daemon does at shutdown). Resume data is written and
    synced by its own job (:func:`~pcpkit.torrent.transfer.writeResumeData`).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._tail: Deferred[None] = succeed(None)
        self._written: set[str] = set()  # touched only by jobs, which run one at a time

    def run(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run ``f(*args)`` in a thread after the jobs before it; fires with its result."""
        result: Deferred[_T] = Deferred()

        def start(_: object) -> Deferred[None]:
            work = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

            def done(outcome: object) -> None:
                if isinstance(outcome, Failure):
                    result.errback(outcome)
                else:
                    result.callback(cast(_T, outcome))

            return work.addBoth(done)

        self._tail.addCallback(start)
        return result

    def write(self, path: str, data: bytes) -> Deferred[None]:
        """:func:`~pcpkit.torrent.transfer.atomicWrite` as a job."""

        def job() -> None:
            atomicWrite(path, data)
            self._written.add(path)

        return self.run(job)

    def flush(self) -> Deferred[int]:
        """``fsync`` every file written since the last flush, and their folders."""

        def job() -> int:
            written = sorted(self._written)
            synced = syncFiles(written)
            syncFiles(sorted({os.path.dirname(path) for path in written}))
            self._written.clear()
            return synced

        return self.run(job)


class TorrentDaemon(MultiService):
    """
    A torrent daemon: watch folder in, resume data kept, status and streams over HTTP.

    :param savePath: where torrents save their files (created if missing).
    :param watchDir: the folder of ``.torrent`` / ``.magnet`` files to follow (created if
        missing); ``None``: no watch folder, only the torrents of the state folder run.
    :param stateDir: the folder for resume data (default ``SAVE_PATH/.pcpkit-state``).
    :param httpEndpoint: a server endpoint string for the HTTP side, e.g.
        ``"tcp:8080:interface=127.0.0.1"``; a bare port number means 127.0.0.1 only;
        ``None``: no HTTP.
    :param listenInterfaces: libtorrent's ``listen_interfaces`` (default: loopback, any
        port).
    :param peers: ``(host, port)`` peers every torrent connects to (host names are
        resolved once at start); they are connected again every ``peerInterval`` seconds
        while a torrent is not complete.
    :param tickInterval: seconds between status updates of the session.
    :param pollInterval: seconds between two looks at the watch folder.
    :param resumeInterval: seconds between two saves of the resume data that changed.
    :param peerInterval: seconds between two connection attempts to ``peers``.
    :param settings: more libtorrent settings; DHT, local peer discovery, UPnP and NAT-PMP
        are off unless these turn them on.
    :param httpMaxBody: the largest HTTP request body (a ``.torrent`` upload to the
        control API) in bytes; larger ones are answered ``413``.
    :param allowedHosts: ``Host`` names the HTTP side answers besides ``localhost``, IP
        addresses and the name ``httpEndpoint`` listens on; ``"*"``: any name (behind a
        reverse proxy). Any other ``Host`` is answered ``421`` (:mod:`pcpkit.torrent.hosts`,
        the guard against DNS rebinding).
    :param reactor: the reactor (the global one by default).
    :raises ValueError: a bad ``httpEndpoint``, interval or allowed host name.
    """

    def __init__(
        self,
        savePath: str,
        watchDir: str | None = None,
        stateDir: str | None = None,
        httpEndpoint: str | None = None,
        listenInterfaces: str = "127.0.0.1:0",
        peers: Sequence[tuple[str, int]] = (),
        tickInterval: float = 1.0,
        *,
        pollInterval: float = 1.0,
        resumeInterval: float = 30.0,
        peerInterval: float = 10.0,
        settings: dict[str, Any] | None = None,
        httpMaxBody: int = MAX_BODY,
        allowedHosts: Sequence[str] = (),
        reactor: Any = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        for name, value in (
            ("tickInterval", tickInterval),
            ("pollInterval", pollInterval),
            ("resumeInterval", resumeInterval),
            ("peerInterval", peerInterval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        self.reactor: Any = getReactor() if reactor is None else reactor
        self.savePath = os.path.abspath(savePath)
        self.watchDir = os.path.abspath(watchDir) if watchDir else None
        self.stateDir = os.path.abspath(
            stateDir if stateDir else os.path.join(self.savePath, DEFAULT_STATE_FOLDER)
        )
        self._httpServerEndpoint: Any = None
        if httpEndpoint is not None:
            try:
                httpEndpoint = listenDescription(httpEndpoint)
                self._httpServerEndpoint = serverEndpoint(httpEndpoint, self.reactor)
            except EndpointError as e:
                raise ValueError(f"bad HTTP endpoint: {e}") from None
        self.httpEndpoint = httpEndpoint
        self.httpMaxBody = httpMaxBody
        #: the Host names the HTTP side answers
        try:
            self.allowedHosts = AllowedHosts(
                allowedHosts, listenInterface(httpEndpoint) if httpEndpoint else None
            )
        except ValueError as e:
            raise ValueError(f"bad allowed host: {e}") from None
        self.peers = tuple((str(h), int(p)) for h, p in peers)
        self.tickInterval = tickInterval
        self.pollInterval = pollInterval
        self.resumeInterval = resumeInterval
        self.peerInterval = peerInterval
        self.settings: dict[str, Any] = {
            "listen_interfaces": listenInterfaces,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            **(settings or {}),
        }
        #: the control API's token (read or made at start when there is HTTP)
        self.apiToken: str | None = None
        #: the HTTP port once listening (``None`` before, after, or without HTTP)
        self.httpPort: Any = None
        self.site: DaemonSite | None = None

        self._session: TorrentSession | None = None
        self._observer = _Observer(self)
        self._torrents: dict[str, _Torrent] = {}
        self._byId: dict[int, _Torrent] = {}
        self._removals: dict[str, Deferred[None]] = {}
        self._watched: dict[str, _WatchedFile] = {}
        self._peerAddresses: list[tuple[str, int]] = []
        self._firstScan = True
        self._watchProblem: str | None = None
        self._listening: Deferred[Any] | None = None
        self._stopping: Deferred[None] | None = None
        self._disk = _Disk(self.reactor)
        self._pollLoop = self._loop(self._poll)
        self._resumeLoop = self._loop(self._saveChangedResumeData)
        self._peerLoop = self._loop(self._reconnectPeers)

    def _loop(self, f: Any) -> LoopingCall:
        call = LoopingCall(f)
        call.clock = self.reactor
        return call

    # -- public ------------------------------------------------------------------------

    @property
    def session(self) -> TorrentSession | None:
        """The running session (``None`` before :meth:`startService` and after stopping)."""
        return self._session

    def skippedFiles(self) -> list[tuple[str, str]]:
        """The watch-folder files skipped as not being torrents: ``(file name, reason)``."""
        return [
            (os.path.basename(path), w.reason)
            for path, w in sorted(self._watched.items())
            if w.reason is not None
        ]

    def infohashes(self) -> list[str]:
        """The info-hashes of the torrents the daemon runs or is adding."""
        return sorted(self._torrents)

    # -- control (the JSON API of pcpkit.torrent.api) ----------------------------------

    def addTorrent(
        self, metainfo: bytes | None = None, magnet: str | None = None
    ) -> Deferred[AddedTorrent]:
        """
        Add a torrent from ``.torrent`` bytes or a magnet link, saving into the save path.
        It runs until :meth:`removeTorrent` (watch-folder files naming it do not stop it).

        :return: a Deferred firing with :class:`~pcpkit.torrent.session.AddedTorrent`, or
            failing with :class:`~pcpkit.torrent.session.InvalidTorrent` (not a torrent),
            :class:`~pcpkit.torrent.session.TorrentAlreadyDownloading`,
            :class:`~pcpkit.torrent.session.SessionStopped`, ``ValueError`` (both or
            neither given) or another :class:`~pcpkit.torrent.session.TorrentError`.
        """
        session = self._session
        if session is None or session.stopped:
            return fail(SessionStopped("the torrent daemon is not running"))
        if (metainfo is None) == (magnet is None):
            return fail(ValueError("give either a .torrent file or a magnet link"))
        try:
            if metainfo is not None:
                infohash, name = infohashOf(metainfo), ""
            else:
                assert magnet is not None
                parsed = parseMagnet(magnet)
                infohash, name = parsed.infohash, parsed.name
        except InvalidTorrent as e:
            return fail(e)
        existing = self._torrents.get(infohash)
        if existing is not None:
            return fail(TorrentAlreadyDownloading(existing.torrentid or 0, infohash))
        record = _Torrent(infohash, metainfo, magnet, name or infohash, set(), api=True)

        def started(added: bool) -> AddedTorrent:
            if not added or record.torrentid is None:
                error = record.failure
                if isinstance(error, BaseException):
                    raise error
                raise TorrentError(f"torrent {infohash} was not added")
            return AddedTorrent(record.torrentid, infohash, self.savePath, record.name)

        return self._start(record).addCallback(started)

    def removeTorrent(self, infohash: str, deleteFiles: bool = False) -> Deferred[None]:
        """
        Stop a torrent for good and forget it; with ``deleteFiles``, delete its downloaded
        files too. Fires once libtorrent has removed it (and deleted them).

        :return: a Deferred failing with :class:`~pcpkit.torrent.session.UnknownTorrent`,
            :class:`TorrentBusy` (still being added) or
            :class:`~pcpkit.torrent.session.TorrentError` (files not deleted).
        """
        try:
            _, record = self._running(infohash)
        except TorrentError as e:
            return fail(e)
        return self._stopTorrent(record, "removed through the control API", deleteFiles)

    def controlled(self, infohash: str) -> tuple[TorrentSession, int]:
        """
        The session and the torrent id of a running torrent, for the functions of
        :mod:`pcpkit.torrent.control`; call :meth:`torrentChanged` after a change.

        :raises UnknownTorrent: no such torrent.
        :raises TorrentBusy: it is still being added.
        :raises SessionStopped: the daemon is not running.
        """
        session, record = self._running(infohash)
        assert record.torrentid is not None
        return session, record.torrentid

    def torrentChanged(self, infohash: str) -> None:
        """Save a torrent's resume data now (it holds flags, priorities and limits)."""
        record = self._torrents.get(infohash.lower())
        session = self._session
        if record is not None and session is not None and not session.stopped:
            self._saveOne(session, record)

    def firstLastPieces(self, infohash: str) -> bool:
        """Whether the first and last piece of each file come first. :raises UnknownTorrent:"""
        return self._running(infohash)[1].firstLastPieces

    def setFirstLastPieces(
        self, infohash: str, on: bool, filePriorities: Sequence[str] | None = None
    ) -> None:
        """
        Download the first and last piece of each wanted file first (kept in the state
        folder and applied again at every start); ``filePriorities`` as for
        :func:`pcpkit.torrent.control.setFirstLastPiecesFirst`.

        :raises UnknownTorrent:
        :raises TorrentBusy:
        """
        session, record = self._running(infohash)
        assert record.torrentid is not None
        control.setFirstLastPiecesFirst(session, record.torrentid, on, filePriorities)
        if record.firstLastPieces != on:
            record.firstLastPieces = on
            self._writeState(record)

    def limits(self) -> dict[str, int]:
        """The session's rate limits: ``downloadLimit``, ``uploadLimit`` (bytes/s, 0: none)."""
        if self._session is None or self._session.stopped:
            raise SessionStopped("the torrent daemon is not running")
        settings = self._session.libtorrentSession.get_settings()
        return {
            "downloadLimit": int(settings["download_rate_limit"]),
            "uploadLimit": int(settings["upload_rate_limit"]),
        }

    def setLimits(self, downloadLimit: object = None, uploadLimit: object = None) -> dict[str, int]:
        """
        Set the session's rate limits in bytes/s (``0``: none, ``None``: unchanged); they
        are kept in the state folder. Returns the limits now.

        :raises ValueError: not a whole number >= 0.
        """
        if self._session is None or self._session.stopped:
            raise SessionStopped("the torrent daemon is not running")
        changes = {}
        if downloadLimit is not None:
            changes["download_rate_limit"] = control.checkLimit("downloadLimit", downloadLimit)
        if uploadLimit is not None:
            changes["upload_rate_limit"] = control.checkLimit("uploadLimit", uploadLimit)
        if changes:
            self._session.libtorrentSession.apply_settings(changes)
        limits = self.limits()
        self._disk.write(
            os.path.join(self.stateDir, LIMITS_FILE), json.dumps(limits).encode()
        ).addErrback(
            lambda reason: log.error(
                "cannot save the rate limits in {stateDir}: {why}",
                stateDir=self.stateDir,
                why=reason.getErrorMessage(),
            )
        )
        return limits

    def _running(self, infohash: str) -> tuple[TorrentSession, _Torrent]:
        session = self._session
        if session is None or session.stopped:
            raise SessionStopped("the torrent daemon is not running")
        record = self._torrents.get(infohash.lower())
        if record is None or record.dropped:
            raise UnknownTorrent(infohash)
        if record.adding or record.torrentid is None:
            raise TorrentBusy(f"torrent {infohash} is still being added")
        return session, record

    # -- service -----------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Listen on the HTTP endpoint now, before twistd gives up its privileges.

        :raises DaemonStartError: (``httpEndpoint``) the port cannot be had.
        """
        super().privilegedStartService()  # type: ignore[no-untyped-call,unused-ignore]
        self._listenHttp()

    def startService(self) -> None:
        """
        Create the folders and the session, restore the torrents, start watching.

        :raises DaemonStartError: a folder is not writable, the listen interfaces cannot be
            listened on, or the HTTP port cannot be had: the daemon could not do its job.
        """
        self._stopping = None
        try:
            for parameter, folder in (
                ("savePath", self.savePath),
                ("stateDir", self.stateDir),
                ("watchDir", self.watchDir),
            ):
                if folder is not None:
                    _checkFolder(parameter, folder)
            if pathWithin(self.savePath, self.stateDir):
                raise DaemonStartError(
                    "stateDir",
                    f"{self.stateDir} is the save path or holds it, so a torrent could "
                    "overwrite the daemon's own files; give it a folder of its own",
                )
            if self._httpServerEndpoint is not None and self.apiToken is None:
                self._loadToken()
            problem = listenInterfacesProblem(self.settings["listen_interfaces"], bind=True)
            if problem is not None:
                raise DaemonStartError("listenInterfaces", problem)
            self._listenHttp()
        except DaemonStartError:
            self._stopHttp()
            raise
        super().startService()  # type: ignore[no-untyped-call,unused-ignore]
        session = TorrentSession(
            self.tickInterval,
            savePath=self.savePath,
            settings=self.settings,
            observers=[self._observer],
            reactor=self.reactor,
            # stopService saves resume data first, then stops the session itself
            stopAtShutdown=False,
            reservedFolders=self._reservedFolders(),
        )
        self._session = session
        log.info(
            "torrent daemon: saving to {savePath}, state in {stateDir}, watching {watchDir}",
            savePath=self.savePath,
            stateDir=self.stateDir,
            watchDir=self.watchDir or "nothing",
        )
        self._resolvePeers()
        self._disk.run(_readFile, os.path.join(self.stateDir, LIMITS_FILE)).addCallbacks(
            self._restoreLimits,
            lambda reason: log.error(
                "cannot read the saved rate limits: {why}", why=reason.getErrorMessage()
            ),
        )
        self._resumeLoop.start(self.resumeInterval, now=False)
        if self.peers:
            self._peerLoop.start(self.peerInterval, now=False)

        def restored(count: int) -> None:
            if count:
                log.info(
                    "restored {count} torrent(s) from {stateDir}",
                    count=count,
                    stateDir=self.stateDir,
                )
            if self.running and self._session is session and self.watchDir is not None:
                self._firstScan = True
                self._pollLoop.start(self.pollInterval, now=True)

        self._restore(session).addCallback(restored)

    def _reservedFolders(self) -> list[str]:
        """
        Where no torrent may put a file: the state folder (a torrent named
        ``.pcpkit-state`` would otherwise write the API token and the state files the daemon
        restores from), and the watch folder when it lies inside the save path (a torrent
        could drop ``.torrent`` files there). A watch folder that is the save path, or holds
        it, is not reserved: every torrent would be refused.
        """
        reserved = [self.stateDir]
        if self.watchDir is not None and not pathWithin(self.savePath, self.watchDir):
            reserved.append(self.watchDir)
        return reserved

    def stopService(self) -> Deferred[None]:
        """
        Stop watching, stop the HTTP side, save every torrent's resume data, then stop the
        session. The Deferred fires when all of it is done; nothing is left on the reactor.
        """
        if self._stopping is not None:
            return self._stopping
        children = maybeDeferred(super().stopService)
        for loop in (self._pollLoop, self._resumeLoop, self._peerLoop):
            if loop.running:
                loop.stop()
        http = self._stopHttp()
        session = self._session

        def saveAll(_: object) -> Deferred[int]:
            if session is None or session.stopped:
                return succeed(0)
            # nothing is written to the data after its resume data: the next start would
            # take newer data for a crash and check it again
            session.libtorrentSession.pause()
            return self._saveResumeData(session, onlyChanged=False)

        def flush(saved: int) -> Deferred[int]:
            # Every write queued so far (state, resume data) is done, then synced once.
            def failed(reason: Failure) -> int:
                log.error(
                    "cannot sync the state folder {stateDir}: {why}",
                    stateDir=self.stateDir,
                    why=reason.getErrorMessage(),
                )
                return saved

            return self._disk.flush().addCallbacks(lambda _: saved, failed)

        def stopSession(saved: int) -> Deferred[None]:
            if session is not None:
                log.info(
                    "saved the resume data of {saved} torrent(s) in {stateDir}",
                    saved=saved,
                    stateDir=self.stateDir,
                )
                return session.stop()
            return succeed(None)

        def stopped(_: object) -> None:
            self._session = None
            self._torrents.clear()
            self._byId.clear()
            self._removals.clear()
            self._watched.clear()
            log.info("torrent daemon stopped")

        d: Deferred[Any] = gatherResults([children, http], consumeErrors=True)
        d.addBoth(saveAll)
        d.addCallback(flush)
        d.addCallback(stopSession)
        d.addCallback(stopped)
        self._stopping = d
        return d

    def _restoreLimits(self, data: bytes | None) -> None:
        session = self._session
        if data is None or session is None or session.stopped:
            return
        try:
            saved = json.loads(data)
            limits = {
                "download_rate_limit": control.checkLimit("downloadLimit", saved["downloadLimit"]),
                "upload_rate_limit": control.checkLimit("uploadLimit", saved["uploadLimit"]),
            }
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            log.error(
                "ignoring the saved rate limits in {stateDir}/{name}: {why}",
                stateDir=self.stateDir,
                name=LIMITS_FILE,
                why=e,
            )
            return
        session.libtorrentSession.apply_settings(limits)

    # -- HTTP --------------------------------------------------------------------------

    def _loadToken(self) -> None:
        """Read or make the API token. :raises DaemonStartError: (``stateDir``)"""
        try:
            token, created = loadOrCreateToken(self.stateDir)
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise DaemonStartError("stateDir", f"cannot use the API token: {why}") from None
        self.apiToken = token
        path = os.path.join(self.stateDir, TOKEN_FILE)
        if created:
            # shown this once: later starts name only the file
            log.info(
                "control API token (kept in {path}, mode 0600; shown only now): {token}",
                path=path,
                token=token,
            )
        else:
            log.info("control API token in {path}", path=path)

    def _listenHttp(self) -> None:
        """Listen for HTTP. :raises DaemonStartError: when that failed at once (port taken)."""
        if self._httpServerEndpoint is None or self._listening is not None:
            return
        self.site = makeSite(
            self, api=makeApi(self), maxBody=self.httpMaxBody, allowedHosts=self.allowedHosts
        )
        d: Deferred[Any] = self._httpServerEndpoint.listen(self.site)
        self._listening = d

        def listening(port: Any) -> Any:
            if self._listening is not d:
                # the service stopped while the port was being bound
                return port.stopListening()
            self.httpPort = port
            address = port.getHost()
            host = getattr(address, "host", "?")
            if ":" in host:
                host = f"[{host}]"
            log.info(
                "HTTP status page on http://{host}:{port}/",
                host=host,
                port=getattr(address, "port", "?"),
            )
            return port

        failures: list[Failure] | None = []  # a failure while listen() runs: the port is taken

        def failed(reason: Failure) -> None:
            self._listening = None
            if failures is not None:
                failures.append(reason)
                return
            log.critical(
                "cannot serve HTTP on {endpoint}: {reason}",
                endpoint=self.httpEndpoint,
                reason=reason.getErrorMessage(),
            )

        d.addCallbacks(listening, failed)
        if failures:
            raise DaemonStartError(
                "httpEndpoint",
                f"cannot serve HTTP on {self.httpEndpoint}: {failures[0].getErrorMessage()}",
            )
        failures = None  # from now on a failure is logged

    def _stopHttp(self) -> Deferred[Any]:
        listening, self._listening = self._listening, None
        site, port = self.site, self.httpPort
        self.httpPort = None
        if site is not None:
            site.stopStreams()
            site.abortConnections()
        if port is not None:
            return maybeDeferred(port.stopListening)
        if listening is not None and not listening.called:
            # still binding: listening() stops the port as soon as it is there
            return listening
        return succeed(None)

    # -- restoring ---------------------------------------------------------------------

    def _statePath(self, infohash: str, suffix: str) -> str:
        return os.path.join(self.stateDir, infohash + suffix)

    def _restore(self, session: TorrentSession) -> Deferred[int]:
        """Re-add the torrents of the state folder; fires with how many were added."""
        return self._disk.run(self._readStateFolder).addCallback(self._restoreFrom)

    def _readStateFolder(self) -> tuple[list[tuple[_Torrent, bytes | None, bool]], list[str]]:
        """
        (In a thread.) The torrents of the state folder (with their resume data and whether
        their data files are newer than it), and what could not be read.
        """
        try:
            names = sorted(os.listdir(self.stateDir))
        except OSError as e:
            return [], [f"cannot read the state folder {self.stateDir}: {e.strerror or e}"]
        found: list[tuple[_Torrent, bytes | None, bool]] = []
        problems: list[str] = []
        for name in names:
            match = _STATE_FILE.fullmatch(name)
            if match is None:
                continue
            infohash = match.group(1)
            try:
                record = self._loadState(infohash)
            except (OSError, ValueError, KeyError, TypeError, RecursionError, TorrentError) as e:
                reason = e.reason if isinstance(e, TorrentError) else str(e)
                problems.append(f"cannot restore torrent {infohash} from {self.stateDir}: {reason}")
                continue
            try:
                resume = _readFile(self._statePath(infohash, ".resume"))
            except OSError as e:
                problems.append(
                    f"cannot read the resume data of {infohash}: {e.strerror or e}; "
                    "checking its data instead"
                )
                resume = None
            stale = resume is not None and dataChangedSince(
                self._statePath(infohash, ".resume"), self.savePath, record.metainfo, resume
            )
            found.append((record, resume, stale))
        return found, problems

    def _restoreFrom(
        self, result: tuple[list[tuple[_Torrent, bytes | None, bool]], list[str]]
    ) -> Deferred[int]:
        found, problems = result
        for problem in problems:
            log.error("{problem}", problem=problem)
        adds = [self._start(record, resume, stale) for record, resume, stale in found]
        results = DeferredList(adds)
        return results.addCallback(lambda rs: sum(1 for ok, added in rs if ok and added))

    def _loadState(self, infohash: str) -> _Torrent:
        """(In a thread.) One torrent's record from its state files."""
        with open(self._statePath(infohash, ".json"), "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
        if not isinstance(state, dict):
            raise ValueError("the state file does not hold a JSON object")
        magnet = state.get("magnet")
        metainfo: bytes | None = None
        if magnet is None:
            with open(self._statePath(infohash, ".torrent"), "rb") as f:
                metainfo = f.read()
            if infohashOf(metainfo) != infohash:
                raise ValueError(f"{infohash}.torrent holds another torrent")
        elif not isinstance(magnet, str) or parseMagnet(magnet).infohash != infohash:
            raise ValueError("the state file's magnet link names another torrent")
        sources = state.get("sources", [])
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ValueError("'sources' must be a list of paths")
        name = state.get("name")
        return _Torrent(
            infohash,
            metainfo,
            magnet,
            name if isinstance(name, str) else infohash,
            set(sources),
            api=state.get("api") is True,
            firstLastPieces=state.get("firstLastPieces") is True,
        )

    def _writeState(self, record: _Torrent) -> None:
        """Write ``record``'s state files (in a thread, after earlier disk work)."""
        if record.dropped:
            return
        state = {
            "infohash": record.infohash,
            "name": record.name,
            "magnet": record.magnet,
            "sources": sorted(record.sources),
            "api": record.api,
            "firstLastPieces": record.firstLastPieces,
        }
        statePath = self._statePath(record.infohash, ".json")
        torrentPath = self._statePath(record.infohash, ".torrent")
        metainfo = record.metainfo
        disk = self._disk

        def job() -> None:
            if metainfo is not None and not os.path.exists(torrentPath):
                atomicWrite(torrentPath, metainfo)
                disk._written.add(torrentPath)
            atomicWrite(statePath, json.dumps(state, indent=1).encode("utf-8"))
            disk._written.add(statePath)

        def failed(reason: Failure) -> None:
            error = reason.value
            log.error(
                "cannot write the state of {torrent} in {stateDir}: {error}",
                torrent=record.label,
                stateDir=self.stateDir,
                error=error.strerror if isinstance(error, OSError) else error,
            )

        disk.run(job).addErrback(failed)

    def _removeState(self, infohash: str, suffixes: Sequence[str]) -> None:
        """Remove state files (in a thread, after earlier disk work)."""
        paths = [self._statePath(infohash, suffix) for suffix in suffixes]

        def logged(errors: list[str]) -> None:
            for error in errors:
                log.warn("{error}", error=error)

        self._disk.run(_removeFiles, paths).addCallback(logged)

    def _deleteState(self, infohash: str) -> None:
        self._removeState(infohash, (".json", ".torrent", ".resume"))

    # -- adding and stopping torrents --------------------------------------------------

    def _start(
        self, record: _Torrent, resumedata: bytes | None = None, recheck: bool = False
    ) -> Deferred[bool]:
        """
        Add ``record`` to the session; fires with whether it was added (never fails).
        ``recheck``: its data is newer than ``resumedata``, hash it again once added.
        """
        session = self._session
        if session is None or session.stopped:
            return succeed(False)
        self._torrents[record.infohash] = record
        record.adding = True
        pending = self._removals.get(record.infohash)
        if pending is not None:
            # the same torrent is still leaving the session: add it once it has left
            waited: Deferred[None] = Deferred()

            def left(result: object) -> object:
                waited.callback(None)
                return result

            pending.addBoth(left)
            return waited.addCallback(lambda _: self._add(session, record, resumedata, recheck))
        return self._add(session, record, resumedata, recheck)

    def _add(
        self,
        session: TorrentSession,
        record: _Torrent,
        resumedata: bytes | None,
        recheck: bool = False,
    ) -> Deferred[bool]:
        if session.stopped:
            return succeed(False)
        if resumedata is not None:
            d = session.addTorrent(
                rawmetainfo=record.metainfo, savefolder=self.savePath, resumedata=resumedata
            )
        elif record.metainfo is not None:
            d = session.addTorrent(rawmetainfo=record.metainfo, savefolder=self.savePath)
        else:
            d = session.addTorrent(magnet=record.magnet, savefolder=self.savePath)

        def added(result: AddedTorrent) -> bool:
            record.adding = False
            record.torrentid = result.torrentid
            record.name = result.name
            self._byId[result.torrentid] = record
            if record.dropped:
                # its watch file went while it was being added
                self._removeFromSession(record)
                return False
            self._writeState(record)
            if recheck:
                log.info(
                    "the data of {torrent} is newer than its resume data (a crash after the "
                    "last save?): checking it again rather than downloading it again",
                    torrent=record.label,
                )
                control.recheck(session, result.torrentid, self.reactor)
            how = "resumed" if resumedata is not None else "added"
            log.info(
                "{how} {torrent}, saving to {savePath}",
                how=how,
                torrent=record.label,
                savePath=self.savePath,
            )
            self._connectPeers(record)
            if record.firstLastPieces:
                control.setFirstLastPiecesFirst(session, result.torrentid, True)
            return True

        def failed(reason: Failure) -> Deferred[bool] | bool:
            record.adding = False
            if isinstance(reason.value, SessionStopped) or session.stopped:
                return False
            error = reason.value
            why = printable(error.reason if isinstance(error, TorrentError) else str(error))
            if resumedata is not None and isinstance(error, InvalidTorrent) and not record.dropped:
                log.warn(
                    "the resume data of {torrent} is unusable ({why}): checking its "
                    "data from scratch instead",
                    torrent=record.label,
                    why=why,
                )
                self._removeState(record.infohash, (".resume",))
                return self._add(session, record, None)
            if self._torrents.get(record.infohash) is record:
                del self._torrents[record.infohash]
            record.dropped = True
            record.failure = error
            if record.sources:
                for source in sorted(record.sources):
                    self._skip(source, why)
            elif record.api and resumedata is None:
                log.warn("cannot add {torrent}: {why}", torrent=record.label, why=why)
            else:
                log.error("cannot restore {torrent}: {why}", torrent=record.label, why=why)
            return False

        return d.addCallbacks(added, failed)

    def _removeFromSession(self, record: _Torrent, deleteFiles: bool = False) -> Deferred[None]:
        """Remove the torrent from the session; fires when it is gone (fails: files kept)."""
        session, torrentid = self._session, record.torrentid
        if torrentid is None:
            return succeed(None)
        self._byId.pop(torrentid, None)
        if session is None or session.stopped:
            return succeed(None)
        d = session.removeTorrent(torrentid, deleteFiles)
        self._removals[record.infohash] = d
        outcome: Deferred[None] = Deferred()

        def removed(result: object) -> None:
            if self._removals.get(record.infohash) is d:
                del self._removals[record.infohash]
            if isinstance(result, Failure) and not isinstance(
                result.value, (SessionStopped, UnknownTorrent)
            ):
                log.warn(
                    "removing {torrent} failed: {why}",
                    torrent=record.label,
                    why=result.getErrorMessage(),
                )
                outcome.errback(result)
            else:
                outcome.callback(None)

        d.addBoth(removed)
        return outcome

    def _stopTorrent(self, record: _Torrent, why: str, deleteFiles: bool = False) -> Deferred[None]:
        """Stop a torrent for good (files kept unless ``deleteFiles``) and forget its state."""
        if record.dropped:
            return succeed(None)
        record.dropped = True
        if self._torrents.get(record.infohash) is record:
            del self._torrents[record.infohash]
        self._deleteState(record.infohash)
        log.info(
            "stopped {torrent}: {why}; {files}",
            torrent=record.label,
            why=why,
            files="deleting its files" if deleteFiles else f"its files stay in {self.savePath}",
        )
        if not record.adding:
            return self._removeFromSession(record, deleteFiles)
        # else: added() removes it when the add completes
        return succeed(None)

    # -- engine events -----------------------------------------------------------------

    def _torrentFinished(self, torrentid: int) -> None:
        record = self._byId.get(torrentid)
        if record is None or record.dropped or self._session is None:
            return
        try:
            name = self._session.status(torrentid)["name"]
        except TorrentError:  # pragma: no cover - it is in the session
            name = record.name
        if name != record.name:
            # a magnet link's name is a guess until its metadata arrives
            record.name = name
            self._writeState(record)
        log.info("finished {torrent}", torrent=record.label)
        self._saveOne(self._session, record)

    def _torrentError(self, torrentid: int, reason: str) -> None:
        record = self._byId.get(torrentid)
        log.error(
            "torrent {torrent}: {reason}",
            torrent=record.label if record is not None else torrentid,
            reason=reason,
        )

    def _torrentRemoved(self, torrentid: int) -> None:
        record = self._byId.pop(torrentid, None)
        if record is None or record.dropped:
            return
        # not our doing: the engine removed it (unsafe metadata of a magnet, ...)
        record.dropped = True
        if self._torrents.get(record.infohash) is record:
            del self._torrents[record.infohash]
        self._deleteState(record.infohash)
        for source in sorted(record.sources):
            self._skip(source, "the torrent was removed by the engine (see the log above)")

    # -- peers -------------------------------------------------------------------------

    def _resolvePeers(self) -> None:
        self._peerAddresses = []
        for host, port in self.peers:
            d = resolveHostPort(self.reactor, host, port)
            if d.called:
                d.addCallback(self._peerAddresses.append)
                continue

            def resolved(address: tuple[str, int], host: str = host) -> None:
                log.info("peer {host} is {ip}", host=host, ip=address[0])
                self._peerAddresses.append(address)
                self._reconnectPeers()

            def unresolved(reason: Failure) -> None:
                log.warn("{why}; that peer is left out", why=reason.getErrorMessage())

            d.addCallbacks(resolved, unresolved)

    def _connectPeers(self, record: _Torrent) -> None:
        session = self._session
        if session is None or session.stopped or record.torrentid is None:
            return
        for host, port in self._peerAddresses:
            try:
                session.connectPeer(record.torrentid, host, port)
            except (ValueError, TorrentError) as e:
                log.debug(
                    "cannot connect {torrent} to {host}:{port}: {e}",
                    torrent=record.label,
                    host=host,
                    port=port,
                    e=e,
                )

    def _reconnectPeers(self) -> None:
        session = self._session
        if session is None or session.stopped or not self.running:
            return
        for record in list(self._byId.values()):
            try:
                complete = session.status(record.torrentid or 0)["isFinished"]
            except TorrentError:
                continue
            if not complete:
                self._connectPeers(record)

    # -- resume data -------------------------------------------------------------------

    def _torrentProgress(self, torrentid: int, status: TorrentStatus) -> None:
        """A status update: save the resume data when enough pieces came since the last."""
        record = self._byId.get(torrentid)
        session = self._session
        if record is None or record.dropped or record.saving or session is None:
            return
        if status["isFinished"] or status["paused"] or status["state"] != "downloading":
            # (checking: the counts are not final; finished: its own save covers it)
            return
        pieces, now = int(status["piecesDone"]), self.reactor.seconds()
        if record.savedPieces < 0:
            record.savedPieces, record.savedAt = pieces, now  # what the start knew
            return
        since = now - record.savedAt
        if pieces <= record.savedPieces or since < RESUME_MIN_SECONDS:
            return
        if pieces - record.savedPieces < RESUME_PIECES and since < self.resumeInterval:
            return
        record.saving = True

        def saved(ok: bool) -> None:
            record.saving = False
            if ok:
                record.savedPieces, record.savedAt = pieces, now

        self._saveOne(session, record).addCallback(saved)

    def _saveOne(self, session: TorrentSession, record: _Torrent) -> Deferred[bool]:
        """
        Ask for and write one torrent's resume data; fires with success (never fails).
        libtorrent writes out what it holds of the data first, and the data files are
        synced before the resume file is written (:func:`~pcpkit.torrent.transfer.
        writeResumeData`): the resume data on disk never lists a piece that is not.
        """
        if record.torrentid is None or session.stopped:
            return succeed(False)
        torrentid = record.torrentid

        def write(data: bytes) -> Deferred[bool] | bool:
            if record.dropped or session.stopped:
                return False

            def failed(reason: Failure) -> bool:
                error = reason.value
                log.error(
                    "cannot write the resume data of {torrent}: {error}",
                    torrent=record.label,
                    error=error.strerror if isinstance(error, OSError) else error,
                )
                return False

            try:
                dataFiles = session.dataFiles(torrentid)
            except TorrentError:
                return False  # removed meanwhile
            path = self._statePath(record.infohash, ".resume")
            written = self._disk.run(writeResumeData, path, data, dataFiles)
            return written.addCallbacks(lambda _: True, failed)

        def failed(reason: Failure) -> bool:
            if not isinstance(reason.value, (SessionStopped, TorrentRemoved, UnknownTorrent)):
                log.warn(
                    "saving the resume data of {torrent} failed: {why}",
                    torrent=record.label,
                    why=reason.getErrorMessage(),
                )
            return False

        return session.saveResumeData(torrentid, flush=True).addCallbacks(write, failed)

    def _saveResumeData(
        self, session: TorrentSession, onlyChanged: bool, timeout: float = 15.0
    ) -> Deferred[int]:
        """Save the resume data of every torrent (or of those that changed)."""
        saves: list[Deferred[bool]] = []
        for record in list(self._byId.values()):
            if record.dropped or record.torrentid is None:
                continue
            if onlyChanged:
                try:
                    if not session.handle(record.torrentid).need_save_resume_data():
                        continue
                except (TorrentError, RuntimeError):
                    continue
            saves.append(self._saveOne(session, record))
        if not saves:
            return succeed(0)
        d: Deferred[Any] = DeferredList(saves)
        d.addTimeout(timeout, self.reactor)

        def counted(results: Iterable[tuple[bool, bool]]) -> int:
            return sum(1 for ok, saved in results if ok and saved)

        def timedOut(reason: Failure) -> int:
            log.error("saving resume data took over {timeout} s; giving up on it", timeout=timeout)
            return 0

        return d.addCallbacks(counted, timedOut)

    def _saveChangedResumeData(self) -> None:
        session = self._session
        if session is not None and not session.stopped:
            self._saveResumeData(session, onlyChanged=True)

    # -- the watch folder --------------------------------------------------------------

    def _poll(self) -> Deferred[None]:
        """Look at the watch folder: listed and read in a thread, applied on the reactor."""
        assert self.watchDir is not None
        known = {path: watched.signature for path, watched in self._watched.items()}
        d = self._disk.run(_scanFolder, self.watchDir, known)

        def apply(result: _Scan) -> None:
            if self.running and self._session is not None:
                self._applyScan(result)

        def failed(reason: Failure) -> None:
            log.failure(
                "looking at the watch folder {watchDir} failed", reason, watchDir=self.watchDir
            )

        # The LoopingCall waits for this Deferred: scans never overlap.
        return d.addCallback(apply).addErrback(failed)

    def _applyScan(self, result: _Scan) -> None:
        seen, reads, problem = result
        if problem is not None:
            if problem != self._watchProblem:
                log.error(
                    "cannot read the watch folder {watchDir}: {problem}; the torrents keep running",
                    watchDir=self.watchDir,
                    problem=problem,
                )
                self._watchProblem = problem
            return
        if self._watchProblem is not None:
            log.info("the watch folder {watchDir} is readable again", watchDir=self.watchDir)
            self._watchProblem = None
        for path in [p for p in self._watched if p not in seen]:
            self._fileRemoved(path)
        for path, signature in sorted(seen.items()):
            old = self._watched.get(path)
            if path in reads and (old is None or old.signature != signature):
                self._fileChanged(path, signature, old, reads[path])
        if self._firstScan:
            self._firstScan = False
            self._forgetMissingSources(seen)

    def _forgetMissingSources(self, seen: dict[str, tuple[int, int]]) -> None:
        """After a restart: stop the torrents whose watch files went while we were down."""
        for record in list(self._torrents.values()):
            missing = {
                s for s in record.sources if os.path.dirname(s) == self.watchDir and s not in seen
            }
            if not missing:
                continue
            record.sources -= missing
            if record.sources or record.api:
                self._writeState(record)
            else:
                names = ", ".join(sorted(os.path.basename(s) for s in missing))
                self._stopTorrent(record, f"{names} left the watch folder")

    def _skip(self, path: str, reason: str) -> None:
        """Log (once) that a watch-folder file is skipped, and remember why."""
        watched = self._watched.get(path)
        if watched is None:
            return
        watched.infohash = None
        if watched.reason != reason:
            watched.reason = reason
            log.warn("skipping {file}: {reason}", file=path, reason=printable(reason))

    def _fileChanged(
        self,
        path: str,
        signature: tuple[int, int],
        old: _WatchedFile | None,
        read: tuple[bytes | None, str | None, str] | _BadFile,
    ) -> None:
        if isinstance(read, _BadFile):
            self._watched[path] = _WatchedFile(signature, None)
            if old is not None and old.infohash is not None:
                self._dropSource(old.infohash, path, f"{os.path.basename(path)} changed")
            self._skip(path, read.reason)
            return
        metainfo, magnet, infohash = read
        if old is not None and old.infohash is not None and old.infohash != infohash:
            self._dropSource(
                old.infohash, path, f"{os.path.basename(path)} now names another torrent"
            )
        self._watched[path] = _WatchedFile(signature, infohash)
        record = self._torrents.get(infohash)
        if record is not None:
            if path not in record.sources:
                record.sources.add(path)
                if record.torrentid is not None:
                    self._writeState(record)
            return
        name = os.path.basename(path)
        if magnet is not None:
            name = parseMagnet(magnet).name
        self._start(_Torrent(infohash, metainfo, magnet, name, {path}))

    def _fileRemoved(self, path: str) -> None:
        watched = self._watched.pop(path)
        if watched.infohash is not None:
            self._dropSource(
                watched.infohash,
                path,
                f"{os.path.basename(path)} was removed from the watch folder",
            )

    def _dropSource(self, infohash: str, path: str, why: str) -> None:
        record = self._torrents.get(infohash)
        if record is None or path not in record.sources:
            return
        record.sources.discard(path)
        if record.sources or record.api:
            self._writeState(record)
        else:
            self._stopTorrent(record, why)
