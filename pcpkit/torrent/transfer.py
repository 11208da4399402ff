"""
Download or seed one torrent: the high-level API on a :class:`TorrentSession`.

::

    session = TorrentSession()
    transfer = download(session, rawmetainfo, "/srv/downloads",
                        onStatus=lambda s: print(s["fractionDone"]),
                        resumeFile="/srv/downloads/big.bin.resume")
    result = await transfer          # a TransferResult once every wanted byte is on disk
    ...
    await transfer.close()           # stop seeding it: the torrent leaves the session

    seeding = seed(session, rawmetainfo, "/srv/data")
    await seeding                    # the data checked out: it is being seeded
    ...                              # (TorrentDataMismatch if it did not; nothing written)
    await seeding.close()

Both return a :class:`Transfer`: a ``Deferred`` with the torrent's id, status and a
:meth:`~Transfer.close` on the side.

* **Progress**: ``onStatus(status)`` gets the torrent's
  :class:`~pcpkit.torrent.session.TorrentStatus` every ``tickInterval`` of the session
  while it changes.
* **Cancellation**: ``transfer.cancel()`` fails it at once with ``CancelledError`` and
  starts the clean-up -- resume data written to ``resumeFile``, the torrent removed, its
  files kept -- which ``await transfer.close()`` waits for.
* **Resume data**: with ``resumeFile``, a download starts from what that file records
  (nothing is downloaded or checked again), saves it there when cancelled, and deletes it
  once complete. A seed never writes resume data: its data is checked in full each time,
  and nothing is ever written beside a user's files.
* **Data safety**: a download is reported complete only when every wanted piece has passed
  its hash check and been written to its files, and the files have been synced
  (``fsync``); resume data is written only after the data it lists is synced. A storage
  error (disk full, a file that cannot be written or synced) fails it with the error
  instead. A seed runs in libtorrent's upload mode: its files are only read.
* **Peers**: ``peers`` are connected to at once and again every ``peerRetry`` seconds while
  fewer peers than that are connected, for as long as the transfer runs, so a peer that was
  not listening yet is found later, however long it took. Each round is one attempt per
  peer whatever its past failures (see :meth:`TorrentSession.connectPeer
  <pcpkit.torrent.session.TorrentSession.connectPeer>`): libtorrent's own limit of
  ``max_failcount`` failures does not end the retries. libtorrent makes at most about one
  attempt a second (``min_reconnect_time``), so a shorter ``peerRetry`` does not hammer.

Disk work (reading and writing the resume file) runs in threads, never on the reactor.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._twisted import getReactor, whenFired
from pcpkit.torrent.session import (
    AddedTorrent,
    BaseTorrentSessionObserver,
    InvalidTorrent,
    TorrentError,
    TorrentRemoved,
    TorrentSession,
    TorrentStatus,
    UnknownTorrent,
    fileLayout,
    lt,
)

__all__ = [
    "Transfer",
    "TransferResult",
    "dataChangedSince",
    "download",
    "pathWithin",
    "seed",
    "syncFiles",
    "writeResumeData",
]

log = Logger()

StatusCallback = Callable[[TorrentStatus], None]


@dataclass(frozen=True)
class TransferResult:
    """What a :class:`Transfer` fires with."""

    torrentid: int
    infohash: str
    name: str
    savefolder: str
    #: bytes wanted (all files, or the ones chosen with ``files``)
    totalSize: int
    #: payload bytes fetched from peers in this run (0 for a seed; after resuming, only
    #: what was missing)
    downloaded: int
    #: seconds from the call to the result
    seconds: float


class Transfer(Deferred[TransferResult]):
    """
    One torrent's download or seed: a Deferred firing with a :class:`TransferResult`.

    Made by :func:`download` and :func:`seed`, not directly. It fails with a
    :class:`~pcpkit.torrent.session.TorrentError` (the reason says why; for a seed whose
    data does not check out, :class:`~pcpkit.torrent.session.TorrentDataMismatch`), or
    ``CancelledError`` after :meth:`cancel`.

    After the result the torrent stays in the session -- a finished download goes on
    seeding -- until :meth:`close`.
    """

    def __init__(
        self,
        session: TorrentSession,
        *,
        seeding: bool,
        peers: Sequence[tuple[str, int]],
        onStatus: StatusCallback | None,
        resumeFile: str | None,
        files: Sequence[int] | None,
        peerRetry: float,
        reactor: Any,
    ) -> None:
        if not peerRetry > 0:
            # 0 would call connectPeer on every turn of the reactor
            raise ValueError(f"peerRetry must be above 0 seconds, not {peerRetry!r}")
        super().__init__(self._cancelled)
        self.session = session
        #: the torrent's id in the session once added (``None`` before)
        self.torrentid: int | None = None
        self.added: AddedTorrent | None = None
        self.resumeFile = resumeFile
        #: after :meth:`close` of an unfinished download with a ``resumeFile``: ``None`` if
        #: its resume data was saved there, else why not (one line: a full disk, ...)
        self.resumeError: str | None = None
        self._seeding = seeding
        self._peers = list(peers)
        #: called with each status update of the torrent (may be replaced at any time)
        self.onStatus = onStatus
        self._files = None if files is None else list(files)
        self._reactor = getReactor() if reactor is None else reactor
        self._started = time.monotonic()
        self._observer = _Observer(self)
        # _finished ran: the result follows once the resume file is removed
        self._completing = False
        self._retry = LoopingCall(self._connectPeers)
        self._retry.clock = self._reactor
        self._peerRetry = peerRetry
        self._closing: Deferred[None] | None = None
        self._wantResume = False

    # -- what users call -------------------------------------------------------------------

    def status(self) -> TorrentStatus | None:
        """The torrent's status now (``None`` before it is added or after it left)."""
        if self.torrentid is None or self.session.stopped:
            return None
        try:
            return self.session.status(self.torrentid)
        except TorrentError:
            return None

    def close(self, deleteFiles: bool = False) -> Deferred[None]:
        """
        End the transfer: the torrent leaves the session (a cancelled download saves its
        resume data first). Fires once done; never fails (problems are logged). A transfer
        still running fails with ``CancelledError``, as after :meth:`cancel`.
        """
        if self._closing is None:
            self._closing = Deferred()
            self._stopRetrying()
            if not self.called:
                self.errback(CancelledError(f"the transfer of {self._label()} was cancelled"))
            self._close(deleteFiles)
        return whenFired(self._closing)

    # -- the steps -------------------------------------------------------------------------

    def _start(self, params: dict[str, Any]) -> None:
        self.session.addObserver(self._observer)
        if self.resumeFile is not None and not self._seeding:
            folder = params.get("savefolder") or self.session.savePath
            d: Deferred[bytes | None] = deferToThread(_readResume, self.resumeFile, folder)
        else:
            d = succeed(None)
        d.addCallback(lambda resume: self._add(params, resume))

    def _add(self, params: dict[str, Any], resume: bytes | None) -> Deferred[None] | None:
        if self._closing is not None:
            # closed while the resume file was being read
            self.session.removeObserver(self._observer)
            if not self._closing.called:
                self._closing.callback(None)
            return None
        if resume is None:
            added = self.session.addTorrent(seed=self._seeding, **params)
        else:
            # the resume data holds the metainfo too: a magnet link is not needed with it
            withResume = {**params, "magnet": None}
            added = self.session.addTorrent(resumedata=resume, **withResume)

            def fresh(failure: Failure) -> Deferred[AddedTorrent] | Failure:
                error = failure.value
                if not isinstance(error, InvalidTorrent):
                    return failure
                log.warn(
                    "ignoring the resume data in {path}: {why}",
                    path=self.resumeFile,
                    why=error.reason,
                )
                return self.session.addTorrent(**params)

            added.addErrback(fresh)
        return added.addCallbacks(self._onAdded, self._onAddFailed)

    def _onAdded(self, added: AddedTorrent) -> None:
        self.added = added
        self.torrentid = added.torrentid
        if self._closing is not None:
            # closed (or cancelled) while it was being added: as after, save its resume data
            self._wantResume = self.resumeFile is not None and not self._seeding
            self._removeTorrent(False).chainDeferred(self._closing)
            return
        if self._files is not None:
            self._chooseFiles(self._files)
        if self._peers:
            self._retry.start(self._peerRetry, now=True)
        if self._seeding:
            # addTorrent(seed=True) fired: the data checked out in full
            self._succeed()
        else:
            self._wantResume = self.resumeFile is not None

    def _onAddFailed(self, failure: Failure) -> None:
        self.session.removeObserver(self._observer)
        self._stopRetrying()
        if not self.called:
            self.errback(failure)
        if self._closing is not None and not self._closing.called:
            self._closing.callback(None)

    def _chooseFiles(self, wanted: Sequence[int]) -> None:
        assert self.torrentid is not None
        handle = self.session.handle(self.torrentid)
        count = int(handle.torrent_file().num_files())
        handle.prioritize_files([4 if i in wanted else 0 for i in range(count)])

    def _connectPeers(self) -> None:
        if self.torrentid is None or self.session.stopped:
            self._stopRetrying()
            return
        try:
            connected = int(self.session.status(self.torrentid)["numPeers"])
            if connected >= len(self._peers):
                return
            for host, port in self._peers:
                self.session.connectPeer(self.torrentid, host, port)
        except TorrentError:
            self._stopRetrying()

    def _stopRetrying(self) -> None:
        if self._retry.running:
            self._retry.stop()

    def _succeed(self) -> None:
        if self.called or self.added is None:
            return
        status = self.status()
        total = int(status["totalSize"]) if status else 0
        fetched = int(status["totalDownloaded"]) if status else 0
        added = self.added
        self.callback(
            TransferResult(
                added.torrentid,
                added.infohash,
                str(status["name"]) if status else added.name,
                added.savefolder,
                total,
                0 if self._seeding else fetched,
                time.monotonic() - self._started,
            )
        )

    # -- session events (through _Observer) ------------------------------------------------

    def _status(self, status: TorrentStatus) -> None:
        if self.onStatus is not None:
            try:
                self.onStatus(status)
            except Exception:
                log.failure("the status callback of torrent {tid} failed", tid=self.torrentid)

    def _finished(self) -> None:
        if self._seeding or self.called or self._completing:
            return
        self._wantResume = False
        self._completing = True
        assert self.torrentid is not None
        try:
            files = self.session.dataFiles(self.torrentid)
        except TorrentError:
            return  # removed meanwhile: _removed fails it
        # Complete: the data is synced before the result is given, so that a download
        # reported complete survives a power loss. The files themselves are then the state,
        # and the resume file goes before the result (whoever awaits it may look at once).

        def synced(_: object) -> Deferred[None] | None:
            if self.resumeFile is None:
                return None
            return deferToThread(_removeFile, self.resumeFile).addErrback(
                lambda f: log.failure("cannot remove {path}", f, path=self.resumeFile)
            )

        def notSynced(reason: Failure) -> None:
            error = reason.value
            why = error.strerror if isinstance(error, OSError) and error.strerror else error
            if not self.called:
                self.errback(
                    TorrentError(f"cannot sync the data of {self._label()} to disk: {why}")
                )

        deferToThread(syncFiles, files).addCallbacks(synced, notSynced).addCallback(
            lambda _: self._succeed()
        )

    def _error(self, reason: str) -> None:
        # the torrent stopped on an error (storage error: it stays stopped); its resume
        # data would claim pieces that may not be on disk, so none is saved
        self._wantResume = False
        if not self.called:
            self.errback(TorrentError(reason))

    def _removed(self) -> None:
        self._stopRetrying()
        self.session.removeObserver(self._observer)
        self._wantResume = False
        if not self.called:
            self.errback(TorrentRemoved(f"torrent {self.torrentid} was removed"))

    # -- cancelling and closing ------------------------------------------------------------

    @staticmethod
    def _cancelled(d: Deferred[TransferResult]) -> None:
        # fails it with CancelledError at once; the clean-up runs on, close() waits for it
        assert isinstance(d, Transfer)
        d.close()

    def _label(self) -> str:
        return self.added.name if self.added is not None else "a torrent"

    def _close(self, deleteFiles: bool) -> None:
        closing = self._closing
        assert closing is not None
        if self.torrentid is None:
            # not added yet: _onAdded or _onAddFailed finishes the closing
            return
        self._removeTorrent(deleteFiles).chainDeferred(closing)

    def _removeTorrent(self, deleteFiles: bool) -> Deferred[None]:
        return ensureDeferred(self._removeSteps(deleteFiles))

    async def _removeSteps(self, deleteFiles: bool) -> None:
        session, tid = self.session, self.torrentid
        assert tid is not None
        try:
            if self._wantResume and self.resumeFile is not None and not session.stopped:
                self._wantResume = False
                try:
                    # paused first: nothing is written to the data after its resume data
                    # (data newer than its resume data is checked again at the next start)
                    session.handle(tid).pause()
                    data = await session.saveResumeData(tid, flush=True)
                    files = session.dataFiles(tid)
                    await deferToThread(writeResumeData, self.resumeFile, data, files)
                except (TorrentError, OSError) as e:
                    why = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
                    self.resumeError = why
                    log.warn(
                        "resume data not saved to {path}: {why}", path=self.resumeFile, why=why
                    )
            if not session.stopped:
                try:
                    await session.removeTorrent(tid, deleteFiles)
                except UnknownTorrent:
                    pass
                except TorrentError as e:
                    log.warn("removing torrent {tid}: {why}", tid=tid, why=e.reason)
        finally:
            session.removeObserver(self._observer)


class _Observer(BaseTorrentSessionObserver):
    """Routes one torrent's session events to its :class:`Transfer`."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        if torrentid == self.transfer.torrentid:
            self.transfer._status(status)

    def torrentFinished(self, torrentid: int) -> None:
        if torrentid == self.transfer.torrentid:
            self.transfer._finished()

    def torrentError(self, torrentid: int, reason: str) -> None:
        if torrentid == self.transfer.torrentid:
            self.transfer._error(reason)

    def torrentRemoved(self, torrentid: int) -> None:
        if torrentid == self.transfer.torrentid:
            self.transfer._removed()


# -- disk work, in threads -------------------------------------------------------------------


def _readResume(path: str, savefolder: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warn("cannot read the resume data in {path}: {why}", path=path, why=e.strerror or e)
        return None
    if data and dataChangedSince(path, savefolder, None, data):
        # written to (or edited) after the save: what the resume data lists may be gone
        log.warn(
            "the data in {folder} changed after its resume data {path} was saved: "
            "checking it instead",
            folder=savefolder,
            path=path,
        )
        return None
    return data or None


def dataChangedSince(
    resumePath: str, savefolder: str, metainfo: bytes | None, resume: bytes
) -> bool:
    """
    Whether a data file of the torrent (``metainfo``, else the one inside ``resume``) in
    ``savefolder`` was modified after ``resumePath`` was written: the resume data then
    lists pieces as they were, not as they are (pieces verified after the save, after a
    crash; or data edited since). Blocking: call it in a thread.
    """
    try:
        saved = os.stat(resumePath).st_mtime_ns
        ti = lt.torrent_info(metainfo) if metainfo else lt.read_resume_data(resume).ti
    except (OSError, RuntimeError):
        return False
    if ti is None:
        return False
    files = fileLayout(ti)
    for i in range(files.num_files()):
        try:
            if os.stat(os.path.join(savefolder, files.file_path(i))).st_mtime_ns > saved:
                return True
        except OSError:
            continue  # not written yet (or a pad file)
    return False


def atomicWrite(path: str, data: bytes, sync: bool = False) -> None:
    """
    Replace ``path`` with ``data``: readers see the old or the new file, never a part. A
    failed write leaves no ``.tmp`` behind. ``sync``: the new file and its folder are synced
    (``fsync``) before this returns, so that a power loss too leaves the old file or the new;
    else the caller decides when. Blocking: call it in a thread.
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a full disk leaves an empty or partial .tmp: never leave it behind
        _removeFile(tmp)
        raise
    if sync:
        syncFiles([os.path.dirname(os.path.abspath(path))])


def pathWithin(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symbolic links followed)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def syncFiles(paths: Iterable[str]) -> int:
    """
    ``fsync`` each of ``paths`` that is a regular file or a folder, and return how many
    were. One that does not exist is left out (a torrent's file nothing was written to yet);
    anything else (a FIFO, a device) is never opened for more than a look, so it cannot
    block. Opened read-only: nothing is written to the files. Blocking: call it in a thread.

    :raises OSError: a file that exists could not be synced.
    """
    synced = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            continue
        try:
            if stat.S_ISREG(mode := os.fstat(fd).st_mode) or stat.S_ISDIR(mode):
                os.fsync(fd)
                synced += 1
        finally:
            os.close(fd)
    return synced


def writeResumeData(path: str, data: bytes, dataFiles: Iterable[str]) -> None:
    """
    Write a torrent's resume data so that it never lists more than the disk holds: the
    torrent's data files (:meth:`TorrentSession.dataFiles
    <pcpkit.torrent.session.TorrentSession.dataFiles>`) are synced first, then ``path`` is
    replaced and synced with its folder. A crash or a power loss at any point leaves the old
    resume data or the new, and either lists only pieces whose data reached the disk. Ask
    for ``data`` with ``saveResumeData(..., flush=True)``, so that libtorrent has handed
    every piece it lists to the system before the sync. Blocking: call it in a thread.

    :raises OSError: a data file could not be synced (the old resume data is left as it
        was) or the resume data could not be written.
    """
    syncFiles(dataFiles)
    atomicWrite(path, data, sync=True)


def _removeFile(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# -- the API ---------------------------------------------------------------------------------


def download(
    session: TorrentSession,
    rawmetainfo: bytes | None = None,
    savefolder: str | None = None,
    *,
    magnet: str | None = None,
    resumeFile: str | None = None,
    peers: Iterable[tuple[str, int]] = (),
    onStatus: StatusCallback | None = None,
    files: Sequence[int] | None = None,
    peerRetry: float = 2.0,
    reactor: Any = None,
) -> Transfer:
    """
    Download a torrent into ``savefolder`` (the session's ``savePath`` by default).

    :param rawmetainfo: the ``.torrent`` bytes; or give ``magnet``.
    :param resumeFile: where resume data is read from at the start, written when the
        transfer is cancelled, and deleted once complete (see the module's docs).
    :param peers: ``(IP address, port)`` pairs to connect to (and retry).
    :param onStatus: called with each status update of the torrent.
    :param files: indexes of the files to download (the others are skipped); needs
        ``rawmetainfo``. Pieces shared with a skipped file are kept in libtorrent's part file.
    :param peerRetry: seconds between connection attempts to ``peers`` (retried for as long
        as the transfer runs, while fewer of them are connected).
    :return: a :class:`Transfer` firing with a :class:`TransferResult` once every wanted
        byte has passed its hash check and is on disk; it fails with
        :class:`~pcpkit.torrent.session.TorrentError` (invalid torrent, storage error, ...).
    :raises ValueError: ``files`` without ``rawmetainfo``, or an index out of range;
        ``peerRetry`` not above 0.
    """
    if files is not None:
        _checkFiles(rawmetainfo, files)
    transfer = Transfer(
        session,
        seeding=False,
        peers=list(peers),
        onStatus=onStatus,
        resumeFile=resumeFile,
        files=files,
        peerRetry=peerRetry,
        reactor=reactor,
    )
    transfer._start({"rawmetainfo": rawmetainfo, "magnet": magnet, "savefolder": savefolder})
    return transfer


def seed(
    session: TorrentSession,
    rawmetainfo: bytes,
    savefolder: str | None = None,
    *,
    peers: Iterable[tuple[str, int]] = (),
    onStatus: StatusCallback | None = None,
    peerRetry: float = 2.0,
    reactor: Any = None,
) -> Transfer:
    """
    Seed a torrent whose data is in ``savefolder``.

    The data is checked first with downloading impossible (libtorrent's upload mode), so
    whatever the peers offer, the files are only read.

    :param peers: ``(IP address, port)`` pairs to connect to (and retry, as for
        :func:`download`): the peers that should download from this seed.
    :param peerRetry: seconds between connection attempts to ``peers``.
    :return: a :class:`Transfer` firing with a :class:`TransferResult` once the data has
        checked out in full (it is being seeded from then on, until :meth:`Transfer.close`),
        or failing with :class:`~pcpkit.torrent.session.TorrentDataMismatch` (its
        ``piecesDone`` of ``piecesTotal`` say how much is present; the torrent is removed,
        the files untouched) or another :class:`~pcpkit.torrent.session.TorrentError`.
    :raises ValueError: ``peerRetry`` is not above 0.
    """
    transfer = Transfer(
        session,
        seeding=True,
        peers=list(peers),
        onStatus=onStatus,
        resumeFile=None,
        files=None,
        peerRetry=peerRetry,
        reactor=reactor,
    )
    transfer._start({"rawmetainfo": rawmetainfo, "magnet": None, "savefolder": savefolder})
    return transfer


def _checkFiles(rawmetainfo: bytes | None, files: Sequence[int]) -> None:
    from pcpkit.torrent.session import parseMetainfo

    if rawmetainfo is None:
        raise ValueError("choosing files needs the .torrent (rawmetainfo), not a magnet link")
    count = int(parseMetainfo(rawmetainfo).num_files())
    bad = [i for i in files if not 0 <= i < count]
    if bad:
        raise ValueError(f"no file {bad[0]} in the torrent (it has files 0..{count - 1})")
    if not files:
        raise ValueError("no file chosen")
