"""
The libtorrent engine: one ``libtorrent.session`` driven from the Twisted reactor.

:class:`TorrentSession` owns the session, pumps its alerts on the reactor thread, and turns
them into Deferred results and observer calls. It knows nothing of mailbox components: the
torrent components (``TorrentClient``, ``TorrentService``, ...) are thin wrappers over it.

The alert pump
--------------
libtorrent queues alerts internally and can tell us when the queue goes from empty to
non-empty. ``session.set_alert_notify(callable)`` would call Python from libtorrent's own
thread, which must take the GIL and deadlocks against a reactor thread blocked in a
synchronous libtorrent call. The Python binding's ``set_alert_fd(fd)`` instead writes one
byte to a file descriptor, touching no Python. We give it the write end of a non-blocking
``socketpair`` and register the read end as a reactor reader: the reactor wakes up exactly
when alerts are waiting, and sleeps otherwise. No polling thread, no timer, no busy loop.

On a wake-up we first drain the socket and *then* call ``pop_alerts()``: a byte written
after the drain is for alerts we have not popped yet, so no notification is ever lost.
libtorrent frees the alerts on the next ``pop_alerts()``, so every alert is copied into
plain Python values before any of our code (or the owner's) runs.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypedDict, runtime_checkable

import libtorrent as _libtorrent
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._fifo import asBytes
from pcpkit._format import printable

__all__ = [
    "DEFAULT_SETTINGS",
    "AddedTorrent",
    "BaseTorrentSessionObserver",
    "InvalidTorrent",
    "MagnetInfo",
    "PieceListener",
    "SessionStopped",
    "TorrentAlreadyDownloading",
    "TorrentDataMismatch",
    "TorrentError",
    "TorrentRemoved",
    "TorrentSession",
    "TorrentSessionObserver",
    "TorrentStartError",
    "TorrentStatus",
    "UnknownTorrent",
    "UnsafeTorrentPath",
    "parseMagnet",
    "fileLayout",
    "parseMetainfo",
]

log = Logger()

# The wheel ships stubs that lag the 2.1 binding (settings dicts, bdecode results, flags):
# treat the module as untyped rather than fight them.
lt: Any = _libtorrent


# -- errors --------------------------------------------------------------------------------


class TorrentError(Exception):
    """Base of every torrent error; ``reason`` is a one-line human readable explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TorrentStartError(TorrentError):
    """A torrent could not be started (the component layer's ``TIPCTorrentStartFail``)."""


class InvalidTorrent(TorrentStartError):
    """The metainfo, magnet link or resume data given is not valid."""


class UnsafeTorrentPath(InvalidTorrent):
    """A file name in the torrent tries to leave the save folder (``..``, ``/``, ...)."""


class TorrentAlreadyDownloading(TorrentStartError):
    """A torrent with the same info-hash already runs in this session as ``torrentid``."""

    def __init__(self, torrentid: int, infohash: str) -> None:
        super().__init__(f"torrent {infohash} is already downloading as torrent {torrentid}")
        self.torrentid = torrentid
        self.infohash = infohash


class TorrentDataMismatch(TorrentStartError):
    """
    Seeding was asked for (``addTorrent(..., seed=True)``) but the data in the save folder
    is missing or wrong: only ``piecesDone`` of ``piecesTotal`` pieces passed the check.
    """

    def __init__(self, reason: str, piecesDone: int, piecesTotal: int) -> None:
        super().__init__(reason)
        self.piecesDone = piecesDone
        self.piecesTotal = piecesTotal


class UnknownTorrent(TorrentError):
    """No torrent ``torrentid`` runs in this session."""

    def __init__(self, torrentid: object) -> None:
        super().__init__(f"no torrent with id {torrentid!r} in this session")
        self.torrentid = torrentid


class TorrentRemoved(TorrentError):
    """The torrent was removed while something (a stream, a request) still waited on it."""


class SessionStopped(TorrentError):
    """The session was stopped (or is stopping) before the operation could complete."""

    def __init__(self, reason: str = "the torrent session is stopped") -> None:
        super().__init__(reason)


# -- values --------------------------------------------------------------------------------


class AddedTorrent(NamedTuple):
    """What :meth:`TorrentSession.addTorrent` fires with."""

    torrentid: int
    infohash: str
    savefolder: str
    name: str


class MagnetInfo(NamedTuple):
    """A parsed magnet link: see :func:`parseMagnet`."""

    infohash: str
    name: str
    trackers: list[str]


class TorrentStatus(TypedDict):
    """
    One torrent's status, as given to :meth:`TorrentSessionObserver.torrentStatus` and
    returned by :meth:`TorrentSession.status`. The first ten keys are Kamaelia's
    ``statsdictionary`` keys.
    """

    #: 0.0 .. 1.0 of the wanted data present and verified
    fractionDone: float
    #: payload download rate, bytes/s
    downRate: int
    #: payload upload rate, bytes/s
    upRate: int
    #: connected peers (seeds included)
    numPeers: int
    #: connected seeds
    numSeeds: int
    #: a readable state: "downloading", "seeding", "checking files", "paused", "error: ..."
    activity: str
    #: bytes of wanted data present and verified
    totalDone: int
    #: estimated seconds to completion (0.0 when complete, ``None`` when not moving)
    timeEst: float | None
    #: hex info-hash (v1 when the torrent has one, else v2)
    infohash: str
    name: str
    torrentid: int
    #: libtorrent's state name ("downloading", "seeding", "checking_files", ...)
    state: str
    #: bytes wanted in total
    totalSize: int
    totalUploaded: int
    piecesDone: int
    #: 0 while a magnet's metadata is still being fetched
    piecesTotal: int
    isSeeding: bool
    isFinished: bool
    paused: bool
    #: the torrent's error, ``None`` when it has none; a storage error (disk full, a file
    #: that cannot be written) stays here until the torrent is removed
    error: str | None
    savePath: str
    #: payload bytes downloaded since the torrent was added to this session (this run)
    totalDownloaded: int
    #: the last tracker's error ("not authorized", "connection refused"), ``None`` once a
    #: tracker answers
    trackerError: str | None


@runtime_checkable
class TorrentSessionObserver(Protocol):
    """
    What a :class:`TorrentSession` tells its owner (register with
    :meth:`TorrentSession.addObserver`). Every method is called on the reactor thread,
    from the alert pump; an exception raised by one is logged and does not stop the pump.
    Torrents are only reported once :meth:`TorrentSession.addTorrent` has fired for them.
    """

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        """Progress of a torrent that changed since the last tick (every tickInterval)."""

    def torrentFinished(self, torrentid: int) -> None:
        """
        The torrent has all its wanted data, verified and written to disk (the files can be
        read now). Also reported once for a torrent added with its data already complete.
        """

    def torrentError(self, torrentid: int, reason: str) -> None:
        """The torrent hit an error (disk, file, unsafe metadata); libtorrent paused it."""

    def torrentRemoved(self, torrentid: int) -> None:
        """The torrent left the session (removeTorrent, or removed after an error)."""


class BaseTorrentSessionObserver:
    """A :class:`TorrentSessionObserver` that ignores everything: subclass what you need."""

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        pass

    def torrentFinished(self, torrentid: int) -> None:
        pass

    def torrentError(self, torrentid: int, reason: str) -> None:
        pass

    def torrentRemoved(self, torrentid: int) -> None:
        pass


class PieceListener(Protocol):
    """
    Per-torrent piece events, for streaming (:mod:`pcpkit.torrent.stream`); register with
    :meth:`TorrentSession.addPieceListener`. Called on the reactor thread.
    """

    def pieceRead(self, piece: int, data: bytes | None, error: str | None) -> None:
        """A ``read_piece_alert``: the piece's bytes, or ``error`` when the read failed."""

    def pieceReadCancelled(self, piece: int) -> None:
        """
        A ``read_piece_alert`` with ``operation_canceled``: someone (another stream) reset
        the piece's deadline, or the torrent was paused. Ask again if still wanted.
        """

    def pieceFinished(self, piece: int) -> None:
        """A ``piece_finished_alert``: the piece was downloaded and passed its hash check."""

    def metadataReceived(self) -> None:
        """A magnet's metadata arrived: the torrent's files are known now."""

    def torrentFailed(self, error: TorrentError) -> None:
        """The torrent errored, was removed, or the session stopped; no more events follow."""


# -- metainfo parsing ----------------------------------------------------------------------

_FORBIDDEN_IN_NAME = (b"/", b"\\", b"\x00")


def _unsafeElement(element: object) -> bool:
    if not isinstance(element, bytes):
        return False
    if element in (b".", b".."):
        return True
    if any(c in element for c in _FORBIDDEN_IN_NAME):
        return True
    # a Windows drive ("C:") would make the path absolute there
    return len(element) >= 2 and element[1:2] == b":" and element[:1].isalpha()


def _unsafeNames(info: Mapping[bytes, Any]) -> list[str]:
    """Every file name element of a raw ``info`` dictionary that could escape the folder."""
    bad: list[bytes] = []
    for key in (b"name", b"name.utf-8"):
        if _unsafeElement(info.get(key)):
            bad.append(info[key])
    files = info.get(b"files")
    if isinstance(files, list):
        for entry in files:
            if not isinstance(entry, dict):
                continue
            for key in (b"path", b"path.utf-8"):
                path = entry.get(key)
                if isinstance(path, list):
                    if any(_unsafeElement(e) for e in path):
                        bad.append(b"/".join(e for e in path if isinstance(e, bytes)))
    # v2 torrents: a nested "file tree" whose keys are path elements
    stack = [info.get(b"file tree")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key != b"" and _unsafeElement(key):
                    bad.append(key)
                stack.append(child)
    return [b.decode("utf-8", "replace") for b in bad]


def fileLayout(ti: Any) -> Any:
    """
    The ``file_storage`` of a ``libtorrent.torrent_info``: ``layout()`` where the binding
    has it, else ``files()`` (deprecated in libtorrent 2.1's binding, and warned about).
    """
    return ti.layout() if hasattr(ti, "layout") else ti.files()


def parseMetainfo(rawmetainfo: object) -> Any:
    """
    Check ``.torrent`` bytes and return a ``libtorrent.torrent_info`` for them.

    :raises InvalidTorrent: not bytes, empty, not bencoded, no ``info`` dictionary, or
        rejected by libtorrent; the reason says which.
    :raises UnsafeTorrentPath: a file name contains ``..``, ``/``, ``\\`` or a drive letter.
        libtorrent would sanitise such names (``../x`` becomes ``_/x`` or ``..x``) so they
        could not escape anyway, but a torrent crafted that way is refused outright.
    """
    try:
        data = asBytes(rawmetainfo, "rawmetainfo")
    except TypeError as e:
        raise InvalidTorrent(str(e)) from None
    if not data:
        raise InvalidTorrent("not a .torrent: it is empty (0 bytes)")
    try:
        decoded = lt.bdecode(data)
    except RuntimeError as e:
        raise InvalidTorrent(f"not a .torrent ({len(data)} bytes): {e}") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get(b"info"), dict):
        raise InvalidTorrent(
            f"not a .torrent ({len(data)} bytes): no 'info' dictionary in the bencoded data"
        )
    unsafe = _unsafeNames(decoded[b"info"])
    if unsafe:
        raise UnsafeTorrentPath(
            f"unsafe file name in torrent: {unsafe[0]!r} (names may not contain "
            f"'..', '/', '\\\\' or a drive letter; they could escape the save folder)"
        )
    try:
        return lt.torrent_info(data)
    except RuntimeError as e:
        raise InvalidTorrent(f"invalid .torrent: {e}") from None


def _parseMagnetParams(magnet: object) -> Any:
    if not isinstance(magnet, str):
        raise InvalidTorrent(f"a magnet link must be a str, not {type(magnet).__name__}")
    try:
        return lt.parse_magnet_uri(magnet.strip())
    except RuntimeError as e:
        shown = magnet if len(magnet) <= 80 else magnet[:77] + "..."
        raise InvalidTorrent(f"invalid magnet link {shown!r}: {e}") from None


def hashKeys(infoHashes: Any) -> tuple[str, ...]:
    """The hex strings that name a torrent: its v1 and/or v2 info-hash."""
    keys = []
    if infoHashes.has_v1():
        keys.append(str(infoHashes.v1))
    if infoHashes.has_v2():
        keys.append(str(infoHashes.v2))
    return tuple(keys)


def parseMagnet(magnet: str) -> MagnetInfo:
    """
    Validate a magnet link and return its info-hash (hex), display name and trackers.

    :raises InvalidTorrent: not a magnet link, or no valid info-hash in it.
    """
    params = _parseMagnetParams(magnet)
    keys = hashKeys(params.info_hashes)
    if not keys:
        raise InvalidTorrent(f"invalid magnet link {magnet[:80]!r}: no info-hash in it")
    return MagnetInfo(keys[0], params.name or keys[0], list(params.trackers))


# -- settings ------------------------------------------------------------------------------

#: What a :class:`TorrentSession` sets unless its ``settings`` say otherwise.
DEFAULT_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    # nothing reaches out to the network by itself; turn these on for a public client
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    # several sessions (or aria2) on 127.0.0.1 must be able to talk to each other
    "allow_multiple_connections_per_ip": True,
    # TCP only by default: uTP on loopback adds a second connection per peer for nothing
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    # local peers are never rate limited (libtorrent's default, stated here)
    "ignore_limits_on_local_network": True,
    # every added torrent runs: no auto-managed queue keeping the 4th download waiting
    "active_downloads": -1,
    "active_seeds": -1,
    "active_limit": -1,
    # a large queue so that a burst (many adds, a long check) never drops an alert
    "alert_queue_size": 100000,
    # bound the time a session's destruction may wait for "stopped" tracker announces
    "stop_tracker_timeout": 1,
    # a peer that failed is tried again after (failures + 1) times this: libtorrent's 60 s
    # would make connectPeer's retries of a peer that was not listening yet wait minutes
    "min_reconnect_time": 1,
}

#: the peer source that makes libtorrent forgive a peer one failed connection
_TRACKER_SOURCE = lt.peer_info.tracker

_CAT = lt.alert.category_t
_BASE_ALERT_MASK = int(
    _CAT.error_notification
    | _CAT.status_notification
    | _CAT.storage_notification
    | _CAT.tracker_notification
)
_PIECE_ALERT_MASK = int(_CAT.piece_progress_notification)

_ACTIVITY = {
    "queued_for_checking": "queued for checking",
    "checking_files": "checking files",
    "downloading_metadata": "downloading metadata",
    "downloading": "downloading",
    "finished": "finished",
    "seeding": "seeding",
    "allocating": "allocating",
    "checking_resume_data": "checking resume data",
}


# -- the alert reader ----------------------------------------------------------------------


@implementer(IReadDescriptor)
class _AlertReader:
    """The read end of the alert socketpair, as a reactor reader."""

    def __init__(self, sock: socket.socket, onAlerts: Callable[[], None]) -> None:
        self._sock = sock
        self._onAlerts = onAlerts

    def fileno(self) -> int:
        return self._sock.fileno()

    def doRead(self) -> None:
        # drain first, pop after: a byte written after the drain announces alerts that the
        # pop below (or the next wake-up) will see, so no notification can be lost
        while True:
            try:
                if not self._sock.recv(4096):
                    break
            except BlockingIOError:
                break
            except InterruptedError:
                continue
        self._onAlerts()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return "TorrentSession"


# -- per-torrent bookkeeping ---------------------------------------------------------------


@dataclass(eq=False)
class _Removal:
    deferred: Deferred[None]
    deleteFiles: bool
    removed: bool = False
    deleted: bool = False
    failure: TorrentError | None = None


@dataclass(eq=False)
class _Torrent:
    torrentid: int
    keys: tuple[str, ...]
    savefolder: str
    name: str
    seed: bool
    addDeferred: Deferred[AddedTorrent] | None
    handle: Any = None
    added: bool = False
    confirmed: bool = False
    piecesTotal: int = 0
    resumeWaiters: list[Deferred[bytes]] = field(default_factory=list)
    listeners: list[PieceListener] = field(default_factory=list)
    removal: _Removal | None = None
    lastError: str | None = None
    finishing: bool = False
    #: a storage error (disk full, unwritable file): the torrent is paused for good, never
    #: reported finished, and its pieces are not served
    storageError: str | None = None
    trackerError: str | None = None
    #: a magnet link's torrent held in upload mode until its metadata is checked (see
    #: ``reservedFolders``), and whether it is to be auto-managed then
    heldForMetadata: bool = False
    autoManaged: bool = False

    @property
    def infohash(self) -> str:
        return self.keys[0]

    def added_(self) -> AddedTorrent:
        return AddedTorrent(self.torrentid, self.infohash, self.savefolder, self.name)


def _errorMessage(ec: Any) -> str | None:
    """An ``error_code``'s message, or ``None`` when it is not an error."""
    try:
        if ec.value() == 0:
            return None
        return str(ec.message())
    except AttributeError:  # pragma: no cover - older bindings
        return str(ec) or None


def _rawStatus(st: Any) -> dict[str, Any]:
    """Copy what we need out of a ``torrent_status`` (alerts die on the next pop)."""
    state = str(st.state)
    total = int(st.total_wanted)
    done = int(st.total_wanted_done)
    down = int(st.download_payload_rate)
    finished = bool(st.is_finished)
    if finished or (total and done >= total):
        eta: float | None = 0.0
    elif down > 0:
        eta = (total - done) / down
    else:
        eta = None
    error = _errorMessage(st.errc)
    if error and st.error_file >= 0:
        error = f"{error} (file {st.error_file})"
    paused = bool(int(st.flags) & int(lt.torrent_flags.paused))
    if error:
        activity = f"error: {error}"
    elif paused:
        activity = "paused"
    else:
        activity = _ACTIVITY.get(state, state.replace("_", " "))
    return {
        "keys": hashKeys(st.info_hashes),
        "fractionDone": float(st.progress),
        "downRate": down,
        "upRate": int(st.upload_payload_rate),
        "numPeers": int(st.num_peers),
        "numSeeds": int(st.num_seeds),
        "activity": activity,
        "totalDone": done,
        "timeEst": eta,
        "state": state,
        "totalSize": total,
        "totalUploaded": int(st.all_time_upload),
        "piecesDone": int(st.num_pieces),
        "isSeeding": bool(st.is_seeding),
        "isFinished": finished,
        "paused": paused,
        "error": error,
        "totalDownloaded": int(st.total_payload_download),
    }


# -- the engine ----------------------------------------------------------------------------


class TorrentSession:
    """
    One ``libtorrent.session`` on the Twisted reactor.

    :param tickInterval: seconds between status updates (``post_torrent_updates``); each
        torrent that changed is reported to the observers' ``torrentStatus``.
    :param savePath: where torrents are saved when ``addTorrent`` gets no ``savefolder``.
    :param settings: libtorrent settings (``settings_pack`` names) applied over
        :data:`DEFAULT_SETTINGS`; e.g. ``{"enable_dht": True, "listen_interfaces":
        "0.0.0.0:6881"}``. An ``alert_mask`` given here is added to the alerts the engine
        needs, never replaces them. Unknown names or wrong types raise ``ValueError``.
    :param observers: initial :class:`TorrentSessionObserver` objects.
    :param reactor: the reactor (the global one by default).
    :param stopAtShutdown: stop the session in a "before shutdown" trigger (default); pass
        ``False`` when the owner stops it itself at shutdown, after saving resume data.
    :param reservedFolders: folders no torrent may put a file in (the torrent daemon's
        state and watch folders, which may lie inside its save path): a torrent whose
        files would land there is refused with :class:`UnsafeTorrentPath`, and a magnet
        link's torrent is removed (files kept) when its metadata says so. Until then a
        magnet link runs in libtorrent's upload mode, out of its queue, so that nothing
        is written before the metadata has been checked.

    Every method that waits returns a ``Deferred`` that always fires: with its result, or
    with a :class:`TorrentError` subclass whose ``reason`` says what went wrong. After
    :meth:`stop`, they fail with :class:`SessionStopped`.
    """

    def __init__(
        self,
        tickInterval: float = 5.0,
        *,
        savePath: str = ".",
        settings: Mapping[str, Any] | None = None,
        observers: Iterable[TorrentSessionObserver] = (),
        reactor: Any = None,
        stopAtShutdown: bool = True,
        reservedFolders: Iterable[str] = (),
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reservedFolders = tuple(os.path.realpath(os.fspath(f)) for f in reservedFolders)
        if tickInterval <= 0:
            raise ValueError(f"tickInterval must be > 0, not {tickInterval!r}")
        self._reactor = reactor
        self.tickInterval = tickInterval
        self.savePath = os.path.abspath(os.fspath(savePath))
        self._observers: list[TorrentSessionObserver] = list(observers)
        self._torrents: dict[int, _Torrent] = {}
        self._byHash: dict[str, _Torrent] = {}
        self._removing: dict[str, _Torrent] = {}
        self._nextId = 1
        self._stopped = False
        self._pieceListeners = 0
        #: the TCP listen outcome: a port, or why listening failed (None: not known yet)
        self._listenPort: int | None = None
        self._listenError: str | None = None
        self._listenWaiters: list[Deferred[int]] = []

        merged = dict(DEFAULT_SETTINGS)
        merged.update(settings or {})
        self._alertMask = _BASE_ALERT_MASK | int(merged.get("alert_mask", 0))
        merged["alert_mask"] = self._alertMask
        try:
            self._session: Any = lt.session(merged)
        except (KeyError, TypeError, RuntimeError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ValueError(f"invalid libtorrent settings: {message}") from None

        self._recvSock, self._sendSock = socket.socketpair()
        self._recvSock.setblocking(False)
        # libtorrent's thread writes here; if it could block, that thread would stall
        self._sendSock.setblocking(False)
        self._reader = _AlertReader(self._recvSock, self._pumpAlerts)
        reactor.addReader(self._reader)
        # writes a byte at once when alerts are already queued (listen_succeeded, ...)
        self._session.set_alert_fd(self._sendSock.fileno())

        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = reactor
        self._ticker.start(tickInterval, now=False)
        # An owner that must do more before the session goes (save resume data, as the
        # twistd daemon does in stopService) passes stopAtShutdown=False and stops it itself.
        self._shutdownTrigger: Any = (
            reactor.addSystemEventTrigger("before", "shutdown", self.stop)
            if stopAtShutdown
            else None
        )

    # -- observers ---------------------------------------------------------------------

    def addObserver(self, observer: TorrentSessionObserver) -> None:
        """Report torrent events to ``observer`` too."""
        self._observers.append(observer)

    def removeObserver(self, observer: TorrentSessionObserver) -> None:
        """Stop reporting to ``observer`` (no error when it was not registered)."""
        try:
            self._observers.remove(observer)
        except ValueError:
            pass

    def _notify(self, method: str, *args: Any) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                log.failure(
                    "torrent observer {observer!r}.{method} failed",
                    observer=observer,
                    method=method,
                )

    # -- properties --------------------------------------------------------------------

    @property
    def listenPort(self) -> int:
        """The TCP port the session listens on (``0`` before it listens or when stopped)."""
        if self._stopped:
            return 0
        return int(self._session.listen_port())

    @property
    def stopped(self) -> bool:
        return self._stopped

    def whenListening(self) -> Deferred[int]:
        """
        Fires with the TCP port once the session listens, or fails with
        :class:`TorrentError` naming the interface when it could not listen (a port in use:
        pass ``{"max_retry_port_bind": 0, "listen_system_port_fallback": False}`` in the
        settings so that libtorrent does not quietly take another port).
        """
        if self._stopped:
            return fail(SessionStopped())
        if self._listenPort is not None:
            return succeed(self._listenPort)
        if self._listenError is not None:
            return fail(TorrentError(self._listenError))
        d: Deferred[int] = Deferred()
        self._listenWaiters.append(d)
        return d

    @property
    def libtorrentSession(self) -> Any:
        """The underlying ``libtorrent.session`` (for what this class does not wrap)."""
        self._checkRunning()
        return self._session

    def torrentIds(self) -> list[int]:
        """The ids of the torrents in the session, oldest first."""
        return sorted(self._torrents)

    # -- adding ------------------------------------------------------------------------

    def addTorrent(
        self,
        rawmetainfo: bytes | None = None,
        magnet: str | None = None,
        savefolder: str | None = None,
        *,
        resumedata: bytes | None = None,
        seed: bool = False,
        paused: bool = False,
    ) -> Deferred[AddedTorrent]:
        """
        Start a torrent from ``.torrent`` bytes, a magnet link, or resume data.

        :param rawmetainfo: the ``.torrent`` file's bytes.
        :param magnet: a ``magnet:?xt=urn:btih:...`` link (metadata comes from peers).
        :param savefolder: where its files go (default: the session's ``savePath``).
            Existing data there is checked first, so adding a torrent whose data is
            present makes a seed.
        :param resumedata: bytes from :meth:`saveResumeData`; alone (it holds the
            metainfo) or with ``rawmetainfo``. The data is not re-checked from scratch.
        :param seed: insist on seeding: fire only once the data in ``savefolder`` has
            been checked and is complete; otherwise remove the torrent (files kept) and
            fail with :class:`TorrentDataMismatch`. The torrent runs in libtorrent's upload
            mode: it never downloads, so the files in ``savefolder`` are only read, never
            written, whatever the peers offer.
        :param paused: add it paused and not auto-managed (``handle(id).resume()`` starts
            it); a paused torrent's data is not checked, so not with ``seed``.
        :return: a Deferred firing with :class:`AddedTorrent` once libtorrent has added
            it, or failing with :class:`InvalidTorrent`, :class:`UnsafeTorrentPath`,
            :class:`TorrentAlreadyDownloading`, :class:`TorrentDataMismatch`,
            :class:`TorrentStartError`, :class:`SessionStopped` (or ``ValueError`` for
            ``seed`` with ``paused``).
        """
        if self._stopped:
            return fail(SessionStopped())
        if seed and paused:
            # libtorrent does not check a paused torrent's files: the add would never fire
            return fail(ValueError("seed=True needs the data checked, which paused=True prevents"))
        try:
            params = self._buildParams(rawmetainfo, magnet, resumedata)
        except TorrentError as e:
            return fail(e)
        ti = params.ti
        keys = hashKeys(ti.info_hashes() if ti is not None else params.info_hashes)
        if not keys:
            return fail(InvalidTorrent("no info-hash: the metainfo names no torrent"))
        for key in keys:
            existing = self._byHash.get(key)
            if existing is not None:
                return fail(TorrentAlreadyDownloading(existing.torrentid, existing.infohash))
        if savefolder is None:
            savefolder = params.save_path or self.savePath
        folder = os.path.abspath(os.fspath(savefolder))
        params.save_path = folder
        if ti is not None:
            refused = self._inReservedFolder(folder, ti)
            if refused is not None:
                return fail(UnsafeTorrentPath(f"{refused}; refused"))
        flags = int(params.flags) | int(lt.torrent_flags.duplicate_is_error)
        if paused:
            flags |= int(lt.torrent_flags.paused)
            flags &= ~int(lt.torrent_flags.auto_managed)
        if seed:
            # Never download into the data being seeded: in upload mode libtorrent checks
            # the files and serves what passed, but requests no piece, so wrong data stays
            # as it is. Not auto-managed: libtorrent takes auto-managed torrents out of
            # upload mode by itself (the default flags hold "paused" for the auto-manager
            # to lift: lift it here).
            flags |= int(lt.torrent_flags.upload_mode)
            flags &= ~(int(lt.torrent_flags.auto_managed) | int(lt.torrent_flags.paused))
            if ti is not None:
                # libtorrent creates a torrent's empty files when it adds it, even in upload
                # mode, unless they are not wanted: a seed writes nothing (they hold no piece)
                files = fileLayout(ti)
                params.file_priorities = [
                    0 if files.file_size(i) == 0 else 4 for i in range(files.num_files())
                ]
        held = ti is None and bool(self.reservedFolders) and not seed
        autoManaged = bool(flags & int(lt.torrent_flags.auto_managed))
        if held:
            # Its files are not known yet: download nothing (and stay out of the queue,
            # which would lift upload mode after a while) until _onMetadata checked them.
            # Out of the queue, the "paused" it holds for the queue to lift is lifted here
            # (as for a seed), unless the caller wants it paused.
            flags |= int(lt.torrent_flags.upload_mode)
            flags &= ~int(lt.torrent_flags.auto_managed)
            if not paused:
                flags &= ~int(lt.torrent_flags.paused)
        params.flags = flags
        name = ti.name() if ti is not None else (params.name or keys[0])

        d: Deferred[AddedTorrent] = Deferred()
        record = _Torrent(self._nextId, keys, folder, name, seed, d)
        record.piecesTotal = ti.num_pieces() if ti is not None else 0
        record.heldForMetadata = held
        record.autoManaged = autoManaged
        self._nextId += 1
        for key in keys:
            self._byHash[key] = record
        self._session.async_add_torrent(params)
        return d

    def _inReservedFolder(self, folder: str, ti: Any) -> str | None:
        """Why a torrent saved in ``folder`` would put a file in a reserved folder, or None."""
        if not self.reservedFolders:
            return None
        base = os.path.realpath(folder)
        files = fileLayout(ti)
        for i in range(files.num_files()):
            path = os.path.normpath(os.path.join(base, str(files.file_path(i))))
            for reserved in self.reservedFolders:
                if os.path.commonpath([path, reserved]) == reserved:
                    return (
                        f"torrent {ti.name()!r} would write {files.file_path(i)!r} into "
                        f"{reserved}, a folder reserved for the session's owner (its "
                        "state or watch folder)"
                    )
        return None

    def _buildParams(self, rawmetainfo: object, magnet: object, resumedata: object) -> Any:
        if rawmetainfo is not None and magnet is not None:
            raise InvalidTorrent("give either rawmetainfo or a magnet link, not both")
        if resumedata is not None:
            if magnet is not None:
                raise InvalidTorrent(
                    "give resume data alone or with rawmetainfo, not with a magnet link"
                )
            try:
                params = lt.read_resume_data(asBytes(resumedata, "resumedata"))
            except TypeError as e:
                raise InvalidTorrent(str(e)) from None
            except RuntimeError as e:
                raise InvalidTorrent(f"invalid resume data: {e}") from None
            if rawmetainfo is not None:
                params.ti = parseMetainfo(rawmetainfo)
            return params
        if rawmetainfo is not None:
            params = lt.add_torrent_params()
            params.ti = parseMetainfo(rawmetainfo)
            return params
        if magnet is not None:
            return _parseMagnetParams(magnet)
        raise InvalidTorrent("nothing to start: give rawmetainfo, a magnet link or resume data")

    # -- queries -----------------------------------------------------------------------

    def _record(self, torrentid: int) -> _Torrent:
        self._checkRunning()
        try:
            return self._torrents[torrentid]
        except (KeyError, TypeError):
            raise UnknownTorrent(torrentid) from None

    def handle(self, torrentid: int) -> Any:
        """The ``libtorrent.torrent_handle`` of a torrent. :raises UnknownTorrent:"""
        return self._record(torrentid).handle

    def dataFiles(self, torrentid: int) -> list[str]:
        """
        Where a torrent's data lives: the absolute paths of its files in its save folder
        (pad files left out) and of libtorrent's part file for it (pieces that overlap
        unwanted files), whether or not they exist yet. Empty while a magnet link still
        waits for its metainfo. :raises UnknownTorrent:
        """
        record = self._record(torrentid)
        ti = record.handle.torrent_file()
        if ti is None:
            return []
        files = fileLayout(ti)
        pad = int(lt.file_storage.flag_pad_file)
        paths = [
            os.path.join(record.savefolder, str(files.file_path(i)))
            for i in range(files.num_files())
            if not int(files.file_flags(i)) & pad
        ]
        # ("." + the hex of libtorrent's storage hash + ".parts": a v2 hash is cut to 20 bytes)
        paths += [os.path.join(record.savefolder, f".{key[:40]}.parts") for key in record.keys]
        return paths

    def infohash(self, torrentid: int) -> str:
        """The hex info-hash (v1 when it has one, else v2). :raises UnknownTorrent:"""
        return self._record(torrentid).infohash

    def torrentIdFor(self, infohash: str) -> int:
        """The id of the torrent with this hex info-hash. :raises UnknownTorrent:"""
        record = self._byHash.get(infohash.lower())
        if record is None or not record.added:
            raise UnknownTorrent(infohash)
        return record.torrentid

    def status(self, torrentid: int) -> TorrentStatus:
        """The torrent's status now (a synchronous query). :raises UnknownTorrent:"""
        record = self._record(torrentid)
        return self._status(record, _rawStatus(record.handle.status(0)))

    def _status(self, record: _Torrent, raw: dict[str, Any]) -> TorrentStatus:
        broken = record.storageError
        error = broken or raw["error"]
        return {
            "fractionDone": raw["fractionDone"],
            "downRate": raw["downRate"],
            "upRate": raw["upRate"],
            "numPeers": raw["numPeers"],
            "numSeeds": raw["numSeeds"],
            "activity": f"error: {error}" if error else raw["activity"],
            "totalDone": raw["totalDone"],
            "timeEst": None if broken else raw["timeEst"],
            "infohash": record.infohash,
            "name": record.name,
            "torrentid": record.torrentid,
            # what is on disk is not known to match what was verified: never "seeding"
            "state": "error" if broken else raw["state"],
            "totalSize": raw["totalSize"],
            "totalUploaded": raw["totalUploaded"],
            "piecesDone": raw["piecesDone"],
            "piecesTotal": record.piecesTotal,
            "isSeeding": raw["isSeeding"] and not broken,
            "isFinished": raw["isFinished"] and not broken,
            "paused": raw["paused"],
            "error": error,
            "savePath": record.savefolder,
            "totalDownloaded": raw["totalDownloaded"],
            "trackerError": record.trackerError,
        }

    # -- actions -----------------------------------------------------------------------

    def connectPeer(self, torrentid: int, host: str, port: int) -> None:
        """
        Ask libtorrent to connect to a peer (an IP address, not a host name).

        Each call is one more attempt, however often the peer failed before: call it again
        (every few seconds, say) for a peer that may not be listening yet. libtorrent makes
        the attempt at its next connection round (about once a second), not sooner than
        ``min_reconnect_time`` seconds (1 by default here) after the last one; a peer
        already connected, or banned for sending bad data, is left as it is.

        :raises UnknownTorrent:
        :raises ValueError: ``host`` is not an IP address or ``port`` is out of range.
        """
        record = self._record(torrentid)
        if not 0 < int(port) < 65536:
            raise ValueError(f"port must be 1..65535, not {port!r}")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except (OSError, TypeError):
            raise ValueError(f"peer host must be an IP address, not {host!r}") from None
        # libtorrent gives up on a peer after max_failcount (3) failed connections and
        # ignores it when added again, unless a tracker names it: that takes one failure
        # back, so each call here earns the peer one more attempt
        record.handle.connect_peer((host, int(port)), _TRACKER_SOURCE)

    def removeTorrent(self, torrentid: int, deleteFiles: bool = False) -> Deferred[None]:
        """
        Remove a torrent from the session, optionally deleting its downloaded files.

        Its streams fail with :class:`TorrentRemoved`; observers get ``torrentRemoved``.

        :return: a Deferred firing once libtorrent has removed it (and deleted the files),
            failing with :class:`UnknownTorrent`, or :class:`TorrentError` when the files
            could not be deleted.
        """
        try:
            record = self._record(torrentid)
        except TorrentError as e:
            return fail(e)
        return self._remove(record, deleteFiles, TorrentRemoved(f"torrent {torrentid} was removed"))

    def _remove(self, record: _Torrent, deleteFiles: bool, why: TorrentError) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        record.removal = _Removal(d, deleteFiles)
        self._torrents.pop(record.torrentid, None)
        for key in record.keys:
            if self._byHash.get(key) is record:
                del self._byHash[key]
            self._removing[key] = record
        self._failTorrentWaiters(record, why)
        flags = int(lt.options_t.delete_files) if deleteFiles else 0
        self._session.remove_torrent(record.handle, flags)
        return d

    def _failTorrentWaiters(self, record: _Torrent, why: TorrentError) -> None:
        waiters, record.resumeWaiters = record.resumeWaiters, []
        for w in waiters:
            w.errback(why)
        listeners, record.listeners = record.listeners, []
        for listener in listeners:
            self._dropPieceListener()
            try:
                listener.torrentFailed(why)
            except Exception:
                log.failure("piece listener {listener!r} failed", listener=listener)

    def saveResumeData(self, torrentid: int, flush: bool = False) -> Deferred[bytes]:
        """
        Ask for the torrent's resume data (it includes the metainfo), for
        ``addTorrent(resumedata=...)`` after a restart. ``flush``: libtorrent writes the
        torrent's cached data to its files first (``flush_disk_cache``).

        :return: a Deferred firing with the bencoded resume data, or failing with
            :class:`UnknownTorrent` or :class:`TorrentError`.
        """
        try:
            record = self._record(torrentid)
        except TorrentError as e:
            return fail(e)
        d: Deferred[bytes] = Deferred()
        record.resumeWaiters.append(d)
        if len(record.resumeWaiters) == 1 or flush:
            # one request answers every caller waiting at the time (a flush asks again:
            # a request already out may not flush)
            flags = int(lt.torrent_handle.save_info_dict)
            if flush:
                flags |= int(lt.torrent_handle.flush_disk_cache)
            record.handle.save_resume_data(flags)
        return d

    # -- piece listeners (streaming) ---------------------------------------------------

    def addPieceListener(self, torrentid: int, listener: PieceListener) -> None:
        """
        Route the torrent's piece events to ``listener``. Piece-finished alerts are only
        asked of libtorrent while at least one listener is registered.

        :raises UnknownTorrent:
        :raises TorrentError: the torrent has a storage error: what is on disk cannot be
            trusted, so nothing of it is streamed.
        """
        record = self._record(torrentid)
        if record.storageError is not None:
            raise TorrentError(f"torrent {torrentid}: {record.storageError}")
        record.listeners.append(listener)
        self._pieceListeners += 1
        if self._pieceListeners == 1:
            self._session.apply_settings({"alert_mask": self._alertMask | _PIECE_ALERT_MASK})

    def removePieceListener(self, torrentid: int, listener: PieceListener) -> None:
        """Stop routing to ``listener`` (no error when it is not registered)."""
        record = self._torrents.get(torrentid)
        if record is None or listener not in record.listeners:
            return
        record.listeners.remove(listener)
        self._dropPieceListener()

    def _dropPieceListener(self) -> None:
        self._pieceListeners -= 1
        if self._pieceListeners == 0 and not self._stopped:
            self._session.apply_settings({"alert_mask": self._alertMask})

    # -- stopping ----------------------------------------------------------------------

    def stop(self) -> Deferred[None]:
        """
        Stop the session: pause it, fail everything still waiting with
        :class:`SessionStopped`, remove the alert reader, cancel the timer, close the
        socketpair and release libtorrent's session. Leaves nothing on the reactor.
        Calling it again does nothing.

        Releasing the session joins libtorrent's threads; with the default
        ``stop_tracker_timeout`` of 1 s this takes milliseconds (at most about a second
        when a tracker does not answer the final "stopped" announce).
        """
        if self._stopped:
            return succeed(None)
        self._stopped = True
        if self._ticker.running:
            self._ticker.stop()
        self._reactor.removeReader(self._reader)
        if self._shutdownTrigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
            except ValueError:  # pragma: no cover - already run (we are the trigger)
                pass
            self._shutdownTrigger = None
        self._session.pause()

        stopped = SessionStopped()
        listenWaiters, self._listenWaiters = self._listenWaiters, []
        for w in listenWaiters:
            w.errback(SessionStopped())
        records = {id(r): r for r in [*self._byHash.values(), *self._removing.values()]}
        for record in records.values():
            if record.addDeferred is not None:
                d, record.addDeferred = record.addDeferred, None
                d.errback(SessionStopped("the session stopped before the torrent was added"))
            self._failTorrentWaiters(record, stopped)
            if record.removal is not None and not record.removal.deferred.called:
                # the session's destruction finishes the removal
                record.removal.deferred.callback(None)
        self._torrents.clear()
        self._byHash.clear()
        self._removing.clear()

        # after this returns libtorrent no longer touches the socket: the notify function
        # is swapped under the alert queue's lock
        self._session.set_alert_fd(-1)
        self._recvSock.close()
        self._sendSock.close()
        # the last reference: ~session joins libtorrent's threads
        self._session = None
        return succeed(None)

    def _checkRunning(self) -> None:
        if self._stopped:
            raise SessionStopped()

    # -- the pump ----------------------------------------------------------------------

    def _tick(self) -> None:
        # flags 0: no piece bitfields or file lists copied; names and paths are ours
        self._session.post_torrent_updates(0)

    def _pumpAlerts(self) -> None:
        if self._stopped:
            return
        alerts = self._session.pop_alerts()
        # copy everything first: libtorrent frees these alerts on the next pop, and an
        # observer below may call back into the session
        events: list[Callable[[], None]] = []
        for alert in alerts:
            copier = self._copiers.get(type(alert))
            if copier is None:
                if int(alert.category()) & int(_CAT.error_notification):
                    log.warn("libtorrent: {message}", message=printable(str(alert.message())))
                continue
            try:
                event = copier(self, alert)
            except Exception:
                log.failure("could not read libtorrent alert {alert}", alert=type(alert).__name__)
                continue
            if event is not None:
                events.append(event)
        del alerts
        for event in events:
            if self._stopped:
                return
            try:
                event()
            except Exception:
                log.failure("handling a libtorrent alert failed")

    def _lookup(self, keys: Iterable[str]) -> _Torrent | None:
        for key in keys:
            record = self._byHash.get(key)
            if record is not None:
                return record
        return None

    @staticmethod
    def _handleKeys(alert: Any) -> tuple[str, ...]:
        return hashKeys(alert.handle.info_hashes())

    # copiers: alert -> closure over plain values (or None to ignore)

    def _copyAdd(self, alert: Any) -> Callable[[], None]:
        params = alert.params
        ti = params.ti
        keys = hashKeys(ti.info_hashes() if ti is not None else params.info_hashes)
        error = _errorMessage(alert.error)
        handle = alert.handle
        return lambda: self._onAdded(keys, handle, error)

    def _copyStatus(self, alert: Any) -> Callable[[], None]:
        raws = [_rawStatus(st) for st in alert.status]
        return lambda: self._onStatuses(raws)

    def _copyFinished(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        return lambda: self._onTorrentEvent(keys, self._onFinished)

    def _copyFlushed(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        return lambda: self._onTorrentEvent(keys, self._onFlushed)

    def _copyChecked(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        return lambda: self._onTorrentEvent(keys, self._onChecked)

    def _copyMetadata(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        return lambda: self._onTorrentEvent(keys, self._onMetadata)

    def _copyError(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        message = str(alert.message())
        return lambda: self._onError(keys, message)

    def _copyRemoved(self, alert: Any) -> Callable[[], None]:
        keys = hashKeys(alert.info_hashes)
        return lambda: self._onRemoved(keys)

    def _copyDeleted(self, alert: Any) -> Callable[[], None]:
        keys = hashKeys(alert.info_hashes)
        return lambda: self._onDeleted(keys, None)

    def _copyDeleteFailed(self, alert: Any) -> Callable[[], None]:
        keys = hashKeys(alert.info_hashes)
        message = str(alert.message())
        return lambda: self._onDeleted(keys, message)

    def _copyResume(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        data = bytes(lt.write_resume_data_buf(alert.params))
        return lambda: self._onResume(keys, data, None)

    def _copyResumeFailed(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        message = str(alert.message())
        return lambda: self._onResume(keys, None, message)

    def _copyReadPiece(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        piece = int(alert.piece)
        if int(alert.error.value()) == errno.ECANCELED:
            # reset_piece_deadline (maybe by another stream) cancels a flagged deadline
            # with this; it is not a failure of the piece
            return lambda: self._onPiece(keys, lambda lsn: lsn.pieceReadCancelled(piece))
        error = _errorMessage(alert.error)
        data = None if error else bytes(alert.buffer)
        return lambda: self._onPiece(keys, lambda lsn: lsn.pieceRead(piece, data, error))

    def _copyPieceFinished(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        piece = int(alert.piece_index)
        return lambda: self._onPiece(keys, lambda listener: listener.pieceFinished(piece))

    def _copyLog(self, alert: Any) -> None:
        log.warn("libtorrent: {message}", message=printable(str(alert.message())))
        return None

    def _copyFileError(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        why = _errorMessage(alert.error) or str(alert.message())
        message = f"storage error on {alert.filename()}: {why}"
        return lambda: self._onError(keys, message, storage=True)

    def _copyTrackerError(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        reason = str(alert.failure_reason() or alert.error_message() or "").strip()
        message = f"{alert.tracker_url()}: {reason or alert.message()}"
        return lambda: self._onTorrentEvent(keys, lambda r: self._onTracker(r, message))

    def _copyTrackerReply(self, alert: Any) -> Callable[[], None]:
        keys = self._handleKeys(alert)
        return lambda: self._onTorrentEvent(keys, lambda r: self._onTracker(r, None))

    def _copyListen(self, alert: Any) -> Callable[[], None] | None:
        if str(alert.socket_type) != "tcp":
            return None
        if isinstance(alert, lt.listen_failed_alert):
            log.warn("libtorrent: {message}", message=printable(str(alert.message())))
            address = f"{alert.address}:{alert.port}"
            why = _errorMessage(alert.error) or "failed"
            message = f"cannot listen on {address}: {why}"
            return lambda: self._onListen(None, message)
        port = int(alert.port)
        return lambda: self._onListen(port, None)

    _copiers: dict[type, Callable[[TorrentSession, Any], Callable[[], None] | None]] = {
        lt.add_torrent_alert: _copyAdd,
        lt.state_update_alert: _copyStatus,
        lt.torrent_finished_alert: _copyFinished,
        lt.torrent_checked_alert: _copyChecked,
        lt.cache_flushed_alert: _copyFlushed,
        lt.metadata_received_alert: _copyMetadata,
        lt.torrent_error_alert: _copyError,
        lt.file_error_alert: _copyFileError,
        lt.tracker_error_alert: _copyTrackerError,
        lt.tracker_reply_alert: _copyTrackerReply,
        lt.listen_succeeded_alert: _copyListen,
        lt.torrent_removed_alert: _copyRemoved,
        lt.torrent_deleted_alert: _copyDeleted,
        lt.torrent_delete_failed_alert: _copyDeleteFailed,
        lt.save_resume_data_alert: _copyResume,
        lt.save_resume_data_failed_alert: _copyResumeFailed,
        lt.read_piece_alert: _copyReadPiece,
        lt.piece_finished_alert: _copyPieceFinished,
        lt.listen_failed_alert: _copyListen,
        lt.alerts_dropped_alert: _copyLog,
    }

    # handlers: run after the whole batch was copied

    def _onAdded(self, keys: tuple[str, ...], handle: Any, error: str | None) -> None:
        record = self._lookup(keys)
        if record is None or record.added:
            log.debug("add_torrent_alert for an unknown torrent {keys}", keys=keys)
            return
        if error is not None:
            for key in record.keys:
                if self._byHash.get(key) is record:
                    del self._byHash[key]
            d, record.addDeferred = record.addDeferred, None
            if d is not None:
                d.errback(TorrentStartError(f"libtorrent could not add {record.name}: {error}"))
            return
        record.handle = handle
        record.added = True
        self._torrents[record.torrentid] = record
        if not record.seed:
            self._confirm(record)

    def _confirm(self, record: _Torrent) -> None:
        record.confirmed = True
        d, record.addDeferred = record.addDeferred, None
        if d is not None:
            d.callback(record.added_())

    def _failUnconfirmed(self, record: _Torrent, error: TorrentStartError) -> None:
        """A seed=True torrent that did not check out: remove it (files kept), fail the add."""
        d, record.addDeferred = record.addDeferred, None
        self._remove(record, False, error)
        if d is not None:
            d.errback(error)

    def _onStatuses(self, raws: list[dict[str, Any]]) -> None:
        for raw in raws:
            record = self._lookup(raw["keys"])
            if record is None or not record.confirmed or record.removal is not None:
                continue
            self._notify("torrentStatus", record.torrentid, self._status(record, raw))

    def _onTorrentEvent(self, keys: tuple[str, ...], method: Callable[[_Torrent], None]) -> None:
        record = self._lookup(keys)
        if record is not None and record.added and record.removal is None:
            method(record)

    def _onFinished(self, record: _Torrent) -> None:
        # All pieces passed their hash check, but libtorrent 2.x may still hold some in
        # its write buffer: a reader opening the file now can see holes. Report the
        # torrent finished once its files are flushed (libtorrent flushes them on
        # finishing; asking again makes sure a cache_flushed_alert follows).
        if record.storageError is not None:
            return
        record.finishing = True
        record.handle.flush_cache()

    def _onFlushed(self, record: _Torrent) -> None:
        if record.finishing and record.storageError is None:
            record.finishing = False
            if record.confirmed:
                self._notify("torrentFinished", record.torrentid)

    def _onChecked(self, record: _Torrent) -> None:
        if record.confirmed or not record.seed:
            return
        st = record.handle.status(0)
        if st.is_seeding:
            self._confirm(record)
            return
        done, total = int(st.num_pieces), record.piecesTotal
        percent = 100.0 * done / total if total else 0.0
        reason = (
            f"cannot seed {record.name}: the data in {record.savefolder} is missing or "
            f"wrong ({done} of {total} pieces check out, {percent:.1f}%)"
        )
        self._failUnconfirmed(record, TorrentDataMismatch(reason, done, total))

    def _onMetadata(self, record: _Torrent) -> None:
        ti = record.handle.torrent_file()
        if ti is None:  # pragma: no cover - libtorrent says it has it
            return
        try:
            info = lt.bdecode(bytes(ti.info_section()))
        except RuntimeError:  # pragma: no cover - libtorrent just parsed it
            info = {}
        unsafe = _unsafeNames(info) if isinstance(info, dict) else []
        if unsafe:
            # libtorrent has sanitised the names already; we still refuse such a torrent
            reason = f"unsafe file name in torrent metadata: {unsafe[0]!r}; torrent removed"
            self._notify("torrentError", record.torrentid, reason)
            self._remove(record, False, UnsafeTorrentPath(reason))
            return
        refused = self._inReservedFolder(record.savefolder, ti)
        if refused is not None:
            # held in upload mode since its add: nothing of it was written
            reason = f"{refused}; torrent removed"
            self._notify("torrentError", record.torrentid, reason)
            self._remove(record, False, UnsafeTorrentPath(reason))
            return
        if record.heldForMetadata:
            record.heldForMetadata = False
            record.handle.unset_flags(lt.torrent_flags.upload_mode)
            if record.autoManaged:
                record.handle.set_flags(lt.torrent_flags.auto_managed)
        record.name = str(ti.name())
        record.piecesTotal = int(ti.num_pieces())
        for listener in list(record.listeners):
            listener.metadataReceived()

    def _onListen(self, port: int | None, error: str | None) -> None:
        if self._listenPort is not None:
            return
        if port is not None:
            self._listenPort = port
        elif self._listenError is None:
            self._listenError = error
        waiters, self._listenWaiters = self._listenWaiters, []
        for d in waiters:
            if port is not None:
                d.callback(port)
            else:
                d.errback(TorrentError(error or "cannot listen"))

    def _onTracker(self, record: _Torrent, error: str | None) -> None:
        if error == record.trackerError:
            return
        if error is not None:
            log.warn("torrent {tid}: tracker {error}", tid=record.torrentid, error=printable(error))
        record.trackerError = error
        if record.confirmed:
            # a change of status libtorrent does not report as one: report it now
            raw = _rawStatus(record.handle.status(0))
            self._notify("torrentStatus", record.torrentid, self._status(record, raw))

    def _onError(self, keys: tuple[str, ...], message: str, storage: bool = False) -> None:
        record = self._lookup(keys)
        if record is None or not record.added or record.removal is not None:
            log.warn("libtorrent: {message}", message=printable(message))
            return
        if not record.confirmed:
            self._failUnconfirmed(record, TorrentStartError(message))
            return
        if storage and record.storageError is None:
            # Disk full or a file that cannot be written: libtorrent would only switch to
            # upload mode and, auto-managed, retry later, its status showing no error and
            # pieces whose writes failed counted. Stop it for good and say why: it is never
            # reported finished and its pieces are not served (re-add it to check again).
            record.storageError = message
            record.finishing = False
            record.handle.unset_flags(lt.torrent_flags.auto_managed)
            record.handle.pause()
        log.warn("torrent {tid}: {message}", tid=record.torrentid, message=printable(message))
        # libtorrent often reports one failure as both a file and a torrent error
        if message != record.lastError:
            record.lastError = message
            self._notify("torrentError", record.torrentid, message)
        listeners, record.listeners = record.listeners, []
        for listener in listeners:
            self._dropPieceListener()
            listener.torrentFailed(TorrentError(f"torrent {record.torrentid}: {message}"))

    def _onRemoved(self, keys: tuple[str, ...]) -> None:
        record = self._removingRecord(keys)
        if record is None or record.removal is None:
            return
        record.removal.removed = True
        if record.confirmed:
            self._notify("torrentRemoved", record.torrentid)
        self._maybeRemoved(record)

    def _onDeleted(self, keys: tuple[str, ...], error: str | None) -> None:
        record = self._removingRecord(keys)
        if record is None or record.removal is None:
            return
        record.removal.deleted = True
        if error is not None:
            record.removal.failure = TorrentError(error)
        self._maybeRemoved(record)

    def _removingRecord(self, keys: tuple[str, ...]) -> _Torrent | None:
        for key in keys:
            record = self._removing.get(key)
            if record is not None:
                return record
        return None

    def _maybeRemoved(self, record: _Torrent) -> None:
        removal = record.removal
        assert removal is not None
        if not removal.removed or (removal.deleteFiles and not removal.deleted):
            return
        for key in record.keys:
            if self._removing.get(key) is record:
                del self._removing[key]
        if removal.deferred.called:
            return
        if removal.failure is not None:
            removal.deferred.errback(removal.failure)
        else:
            removal.deferred.callback(None)

    def _onResume(self, keys: tuple[str, ...], data: bytes | None, error: str | None) -> None:
        record = self._lookup(keys)
        if record is None:
            return
        waiters, record.resumeWaiters = record.resumeWaiters, []
        for d in waiters:
            if data is not None:
                d.callback(data)
            else:
                d.errback(TorrentError(error or "saving resume data failed"))

    def _onPiece(self, keys: tuple[str, ...], call: Callable[[PieceListener], None]) -> None:
        record = self._lookup(keys)
        if record is None:
            return
        for listener in list(record.listeners):
            call(listener)
