"""
``twistd pcpkit torrent``: a torrent daemon with a watch folder, resume data and HTTP.

:class:`TorrentDaemon` is a :class:`~twisted.application.service.MultiService` that owns a
:class:`~pcpkit.torrent.session.TorrentSession` for as long as it runs:

- **Watch folder.** The folder is polled (a ``LoopingCall``, every second by default; no
  thread) for ``*.torrent`` files and ``*.magnet`` files (a ``.magnet`` file holds one
  magnet link). A new file starts its torrent, saving into the save path and connecting to
  every ``--peer``; removing the file stops the torrent (its downloaded files are kept);
  changing the file to another torrent does both. A file that is not a valid torrent is
  logged once, with the reason, listed on the status page, and skipped until it changes;
  the daemon keeps serving. File names starting with ``.`` are ignored, so a tool can write
  ``.name.torrent`` and rename it when complete.
- **State.** For each torrent the state folder (default ``SAVE_PATH/.pcpkit-state``) holds
  ``<infohash>.json`` (how it was added: magnet link, watch-folder files),
  ``<infohash>.torrent`` (its metainfo) and ``<infohash>.resume`` (libtorrent resume data).
  Resume data is written when a torrent finishes, every ``resumeInterval`` seconds for the
  torrents that changed, and for every torrent at :meth:`TorrentDaemon.stopService`; files
  are replaced atomically. On start the torrents are re-added with their resume data, so
  nothing is downloaded or checked again: a finished torrent comes back seeding. Unusable
  resume data is logged and the torrent re-checked from its data instead.
- **HTTP** (``httpEndpoint``): the status page, ``/status.json`` and
  ``/stream/<infohash>/<fileIndex>`` of :mod:`pcpkit.torrent.web`.

File names inside a torrent are checked by the engine: none can leave the save path.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._twisted import getReactor, serverEndpoint
from pcpkit.torrent.maker import infohashOf
from pcpkit.torrent.session import (
    AddedTorrent,
    BaseTorrentSessionObserver,
    InvalidTorrent,
    SessionStopped,
    TorrentError,
    TorrentRemoved,
    TorrentSession,
    UnknownTorrent,
    parseMagnet,
)
from pcpkit.torrent.web import DaemonSite, makeSite

__all__ = ["TorrentDaemon", "DEFAULT_STATE_FOLDER"]

log = Logger()

#: the state folder's name inside the save path when ``stateDir`` is not given
DEFAULT_STATE_FOLDER = ".pcpkit-state"

#: the largest ``.torrent`` file read from the watch folder
MAX_TORRENT_FILE = 64 * 1024 * 1024
#: the largest ``.magnet`` file read from the watch folder
MAX_MAGNET_FILE = 64 * 1024

_STATE_FILE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64})\.json")
_WATCHED_SUFFIXES = (".torrent", ".magnet")


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
    adding: bool = False
    #: stopped (by us or by the engine): late events about it are ignored
    dropped: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.infohash})"


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

    def torrentError(self, torrentid: int, reason: str) -> None:
        self.daemon._torrentError(torrentid, reason)

    def torrentRemoved(self, torrentid: int) -> None:
        self.daemon._torrentRemoved(torrentid)


def _isIPAddress(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def _atomicWrite(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new file, never a part."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        # a full disk leaves an empty or partial .tmp behind: remove it
        _removeQuietly(tmp)
        raise


def _removeQuietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("cannot remove {path}: {error}", path=path, error=e.strerror or e)


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
    :param reactor: the reactor (the global one by default).
    :raises ValueError: a bad ``httpEndpoint`` or interval.
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
        reactor: Any = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        for name, value in (
            ("tickInterval", tickInterval), ("pollInterval", pollInterval),
            ("resumeInterval", resumeInterval), ("peerInterval", peerInterval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        self.reactor: Any = getReactor() if reactor is None else reactor
        self.savePath = os.path.abspath(savePath)
        self.watchDir = os.path.abspath(watchDir) if watchDir else None
        self.stateDir = os.path.abspath(
            stateDir if stateDir else os.path.join(self.savePath, DEFAULT_STATE_FOLDER)
        )
        if httpEndpoint is not None and httpEndpoint.isdigit():
            httpEndpoint = f"tcp:{int(httpEndpoint)}:interface=127.0.0.1"
        self.httpEndpoint = httpEndpoint
        self._httpServerEndpoint: Any = None
        if httpEndpoint is not None:
            try:
                self._httpServerEndpoint = serverEndpoint(httpEndpoint)
            except Exception as e:
                raise ValueError(f"bad HTTP endpoint {httpEndpoint!r}: {e}") from None
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

    # -- service -----------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Listen on the HTTP endpoint now, before twistd gives up its privileges."""
        super().privilegedStartService()  # type: ignore[no-untyped-call,unused-ignore]
        self._listenHttp()

    def startService(self) -> None:
        """Create the folders and the session, restore the torrents, start watching."""
        super().startService()  # type: ignore[no-untyped-call,unused-ignore]
        self._stopping = None
        for folder in (self.savePath, self.stateDir, self.watchDir):
            if folder is not None:
                os.makedirs(folder, exist_ok=True)
        session = TorrentSession(
            self.tickInterval,
            savePath=self.savePath,
            settings=self.settings,
            observers=[self._observer],
            reactor=self.reactor,
            # stopService saves resume data first, then stops the session itself
            stopAtShutdown=False,
        )
        self._session = session
        log.info(
            "torrent daemon: saving to {savePath}, state in {stateDir}, watching {watchDir}",
            savePath=self.savePath, stateDir=self.stateDir, watchDir=self.watchDir or "nothing",
        )
        self._resolvePeers()
        self._listenHttp()
        self._resumeLoop.start(self.resumeInterval, now=False)
        if self.peers:
            self._peerLoop.start(self.peerInterval, now=False)

        def restored(count: int) -> None:
            if count:
                log.info("restored {count} torrent(s) from {stateDir}", count=count,
                         stateDir=self.stateDir)
            if self.running and self._session is session and self.watchDir is not None:
                self._firstScan = True
                self._pollLoop.start(self.pollInterval, now=True)

        self._restore(session).addCallback(restored)

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
            return self._saveResumeData(session, onlyChanged=False)

        def stopSession(saved: int) -> Deferred[None]:
            if session is not None:
                log.info("saved the resume data of {saved} torrent(s) in {stateDir}",
                         saved=saved, stateDir=self.stateDir)
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
        d.addCallback(stopSession)
        d.addCallback(stopped)
        self._stopping = d
        return d

    # -- HTTP --------------------------------------------------------------------------

    def _listenHttp(self) -> None:
        if self._httpServerEndpoint is None or self._listening is not None:
            return
        self.site = makeSite(self)
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
            log.info("HTTP status page on http://{host}:{port}/", host=host,
                     port=getattr(address, "port", "?"))
            return port

        def failed(reason: Failure) -> None:
            self._listening = None
            log.critical(
                "cannot serve HTTP on {endpoint}: {reason}; the daemon runs without HTTP",
                endpoint=self.httpEndpoint, reason=reason.getErrorMessage(),
            )

        d.addCallbacks(listening, failed)

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
        try:
            names = sorted(os.listdir(self.stateDir))
        except OSError as e:
            log.error("cannot read the state folder {stateDir}: {error}",
                      stateDir=self.stateDir, error=e.strerror or e)
            return succeed(0)
        adds: list[Deferred[bool]] = []
        for name in names:
            match = _STATE_FILE.fullmatch(name)
            if match is None:
                continue
            infohash = match.group(1)
            try:
                record = self._loadState(infohash)
            except (OSError, ValueError, KeyError, TypeError, TorrentError) as e:
                reason = e.reason if isinstance(e, TorrentError) else str(e)
                log.error("cannot restore torrent {infohash} from {stateDir}: {reason}",
                          infohash=infohash, stateDir=self.stateDir, reason=reason)
                continue
            try:
                with open(self._statePath(infohash, ".resume"), "rb") as f:
                    resume: bytes | None = f.read()
            except FileNotFoundError:
                resume = None
            except OSError as e:
                log.warn("cannot read the resume data of {infohash}: {error}",
                         infohash=infohash, error=e.strerror or e)
                resume = None
            adds.append(self._start(record, resume))
        results = DeferredList(adds)
        return results.addCallback(lambda rs: sum(1 for ok, added in rs if ok and added))

    def _loadState(self, infohash: str) -> _Torrent:
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
            infohash, metainfo, magnet, name if isinstance(name, str) else infohash,
            set(sources),
        )

    def _writeState(self, record: _Torrent) -> None:
        if record.dropped:
            return
        try:
            if record.metainfo is not None:
                path = self._statePath(record.infohash, ".torrent")
                if not os.path.exists(path):
                    _atomicWrite(path, record.metainfo)
            state = {
                "infohash": record.infohash,
                "name": record.name,
                "magnet": record.magnet,
                "sources": sorted(record.sources),
            }
            _atomicWrite(self._statePath(record.infohash, ".json"),
                         json.dumps(state, indent=1).encode("utf-8"))
        except OSError as e:
            log.error("cannot write the state of {torrent} in {stateDir}: {error}",
                      torrent=record.label, stateDir=self.stateDir, error=e.strerror or e)

    def _deleteState(self, infohash: str) -> None:
        for suffix in (".json", ".torrent", ".resume"):
            _removeQuietly(self._statePath(infohash, suffix))

    # -- adding and stopping torrents --------------------------------------------------

    def _start(self, record: _Torrent, resumedata: bytes | None = None) -> Deferred[bool]:
        """Add ``record`` to the session; fires with whether it was added (never fails)."""
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
            return waited.addCallback(lambda _: self._add(session, record, resumedata))
        return self._add(session, record, resumedata)

    def _add(
        self, session: TorrentSession, record: _Torrent, resumedata: bytes | None
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
            how = "resumed" if resumedata is not None else "added"
            log.info("{how} {torrent}, saving to {savePath}", how=how, torrent=record.label,
                     savePath=self.savePath)
            self._connectPeers(record)
            return True

        def failed(reason: Failure) -> Deferred[bool] | bool:
            record.adding = False
            if isinstance(reason.value, SessionStopped) or session.stopped:
                return False
            error = reason.value
            why = error.reason if isinstance(error, TorrentError) else str(error)
            if resumedata is not None and isinstance(error, InvalidTorrent) and not record.dropped:
                log.warn("the resume data of {torrent} is unusable ({why}): checking its "
                         "data from scratch instead", torrent=record.label, why=why)
                _removeQuietly(self._statePath(record.infohash, ".resume"))
                return self._add(session, record, None)
            if self._torrents.get(record.infohash) is record:
                del self._torrents[record.infohash]
            record.dropped = True
            if record.sources:
                for source in sorted(record.sources):
                    self._skip(source, why)
            else:
                log.error("cannot restore {torrent}: {why}", torrent=record.label, why=why)
            return False

        return d.addCallbacks(added, failed)

    def _removeFromSession(self, record: _Torrent) -> None:
        session, torrentid = self._session, record.torrentid
        if torrentid is None:
            return
        self._byId.pop(torrentid, None)
        if session is None or session.stopped:
            return
        d = session.removeTorrent(torrentid)
        self._removals[record.infohash] = d

        def removed(result: object) -> None:
            if self._removals.get(record.infohash) is d:
                del self._removals[record.infohash]
            if isinstance(result, Failure) and not isinstance(
                result.value, (SessionStopped, UnknownTorrent)
            ):
                log.warn("removing {torrent} failed: {why}", torrent=record.label,
                         why=result.getErrorMessage())

        d.addBoth(removed)

    def _stopTorrent(self, record: _Torrent, why: str) -> None:
        """Stop a torrent for good (files kept) and forget its state."""
        if record.dropped:
            return
        record.dropped = True
        if self._torrents.get(record.infohash) is record:
            del self._torrents[record.infohash]
        self._deleteState(record.infohash)
        log.info("stopped {torrent}: {why}; its files stay in {savePath}",
                 torrent=record.label, why=why, savePath=self.savePath)
        if not record.adding:
            self._removeFromSession(record)
        # else: added() removes it when the add completes

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
        log.error("torrent {torrent}: {reason}",
                  torrent=record.label if record is not None else torrentid, reason=reason)

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
            if _isIPAddress(host):
                self._peerAddresses.append((host, port))
                continue

            def resolved(ip: str, host: str = host, port: int = port) -> None:
                log.info("peer {host} is {ip}", host=host, ip=ip)
                self._peerAddresses.append((ip, port))
                self._reconnectPeers()

            def unresolved(reason: Failure, host: str = host) -> None:
                log.warn("cannot resolve peer {host}: {why}; it is left out", host=host,
                         why=reason.getErrorMessage())

            self.reactor.resolve(host).addCallbacks(resolved, unresolved)

    def _connectPeers(self, record: _Torrent) -> None:
        session = self._session
        if session is None or session.stopped or record.torrentid is None:
            return
        for host, port in self._peerAddresses:
            try:
                session.connectPeer(record.torrentid, host, port)
            except (ValueError, TorrentError) as e:
                log.debug("cannot connect {torrent} to {host}:{port}: {e}",
                          torrent=record.label, host=host, port=port, e=e)

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

    def _saveOne(self, session: TorrentSession, record: _Torrent) -> Deferred[bool]:
        """Ask for and write one torrent's resume data; fires with success (never fails)."""
        if record.torrentid is None or session.stopped:
            return succeed(False)

        def write(data: bytes) -> bool:
            if record.dropped:
                return False
            try:
                _atomicWrite(self._statePath(record.infohash, ".resume"), data)
            except OSError as e:
                log.error("cannot write the resume data of {torrent}: {error}",
                          torrent=record.label, error=e.strerror or e)
                return False
            return True

        def failed(reason: Failure) -> bool:
            if not isinstance(reason.value, (SessionStopped, TorrentRemoved, UnknownTorrent)):
                log.warn("saving the resume data of {torrent} failed: {why}",
                         torrent=record.label, why=reason.getErrorMessage())
            return False

        return session.saveResumeData(record.torrentid).addCallbacks(write, failed)

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
            log.error("saving resume data took over {timeout} s; giving up on it",
                      timeout=timeout)
            return 0

        return d.addCallbacks(counted, timedOut)

    def _saveChangedResumeData(self) -> None:
        session = self._session
        if session is not None and not session.stopped:
            self._saveResumeData(session, onlyChanged=True)

    # -- the watch folder --------------------------------------------------------------

    def _poll(self) -> None:
        try:
            self._scan()
        except Exception:
            log.failure("looking at the watch folder {watchDir} failed", watchDir=self.watchDir)

    def _scan(self) -> None:
        assert self.watchDir is not None
        try:
            entries = list(os.scandir(self.watchDir))
        except OSError as e:
            problem = e.strerror or str(e)
            if problem != self._watchProblem:
                log.error("cannot read the watch folder {watchDir}: {problem}; the torrents "
                          "keep running", watchDir=self.watchDir, problem=problem)
                self._watchProblem = problem
            return
        if self._watchProblem is not None:
            log.info("the watch folder {watchDir} is readable again", watchDir=self.watchDir)
            self._watchProblem = None
        seen: dict[str, tuple[int, int]] = {}
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
            seen[entry.path] = (st.st_mtime_ns, st.st_size)
        for path in [p for p in self._watched if p not in seen]:
            self._fileRemoved(path)
        for path, signature in sorted(seen.items()):
            old = self._watched.get(path)
            if old is None or old.signature != signature:
                self._fileChanged(path, signature, old)
        if self._firstScan:
            self._firstScan = False
            self._forgetMissingSources(seen)

    def _forgetMissingSources(self, seen: dict[str, tuple[int, int]]) -> None:
        """After a restart: stop the torrents whose watch files went while we were down."""
        for record in list(self._torrents.values()):
            missing = {
                s for s in record.sources
                if os.path.dirname(s) == self.watchDir and s not in seen
            }
            if not missing:
                continue
            record.sources -= missing
            if record.sources:
                self._writeState(record)
            else:
                names = ", ".join(sorted(os.path.basename(s) for s in missing))
                self._stopTorrent(record, f"{names} left the watch folder")

    def _readWatchFile(self, path: str) -> tuple[bytes | None, str | None, str]:
        """``(metainfo, magnet, infohash)`` of a watch-folder file. :raises _BadFile:"""
        isMagnet = path.lower().endswith(".magnet")
        limit = MAX_MAGNET_FILE if isMagnet else MAX_TORRENT_FILE
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise _BadFile(f"cannot read it: {e.strerror or e}") from None
        if len(data) > limit:
            raise _BadFile(f"too large for a {'.magnet' if isMagnet else '.torrent'} file "
                           f"(over {limit} bytes)")
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

    def _skip(self, path: str, reason: str) -> None:
        """Log (once) that a watch-folder file is skipped, and remember why."""
        watched = self._watched.get(path)
        if watched is None:
            return
        watched.infohash = None
        if watched.reason != reason:
            watched.reason = reason
            log.warn("skipping {file}: {reason}", file=path, reason=reason)

    def _fileChanged(
        self, path: str, signature: tuple[int, int], old: _WatchedFile | None
    ) -> None:
        try:
            metainfo, magnet, infohash = self._readWatchFile(path)
        except _BadFile as e:
            self._watched[path] = _WatchedFile(signature, None)
            if old is not None and old.infohash is not None:
                self._dropSource(old.infohash, path, f"{os.path.basename(path)} changed")
            self._skip(path, e.reason)
            return
        if old is not None and old.infohash is not None and old.infohash != infohash:
            self._dropSource(old.infohash, path,
                             f"{os.path.basename(path)} now names another torrent")
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
                watched.infohash, path,
                f"{os.path.basename(path)} was removed from the watch folder",
            )

    def _dropSource(self, infohash: str, path: str, why: str) -> None:
        record = self._torrents.get(infohash)
        if record is None or path not in record.sources:
            return
        record.sources.discard(path)
        if record.sources:
            self._writeState(record)
        else:
            self._stopTorrent(record, why)
