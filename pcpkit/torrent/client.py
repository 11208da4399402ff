"""
``TorrentClient``: one libtorrent session as a component.

The session itself -- the alert pump on the reactor, adding, removing, status -- is
:class:`~pcpkit.torrent.session.TorrentSession`; this module puts Kamaelia's message
interface on it. Send ``TIPCCreateNewTorrent`` / ``TIPCCloseTorrent`` to its ``inbox``; the
answers come out of ``outbox`` in the order the requests came in, and each torrent's status
updates, completion and errors follow its ``TIPCNewTorrentCreated``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit.component import Component
from pcpkit.ipc import ErrorInformation
from pcpkit.torrent.ipc import (
    TIPCAddPeer,
    TIPCAddPeerFail,
    TIPCCloseTorrent,
    TIPCCreateNewTorrent,
    TIPCNewTorrentCreated,
    TIPCPeerAdded,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentCloseFail,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
)
from pcpkit.torrent.session import (
    AddedTorrent,
    TorrentAlreadyDownloading,
    TorrentError,
    TorrentSession,
    TorrentStatus,
    UnknownTorrent,
)

__all__ = ["TorrentClient"]

_log = Logger()


class _Reply:
    """A request's answer, which may not be known yet; replies leave in request order."""

    __slots__ = ("message", "torrentid")

    def __init__(self) -> None:
        self.message: object = None
        self.torrentid: int | None = None


class TorrentClient(Component):
    """
    A component owning one ``libtorrent.session``.

    :param tickInterval: seconds between status updates.
    :param savePath: where torrents are saved when a request names no ``savefolder``.
    :param settings: libtorrent settings over pcpkit's defaults (DHT, LSD, UPnP and NAT-PMP
        are off unless turned on here; ``"listen_interfaces"`` defaults to
        ``"127.0.0.1:0"``).

    Messages:

    * ``inbox``: ``TIPCCreateNewTorrent(rawmetainfo=..., magnet=..., savefolder=...)``,
      ``TIPCCloseTorrent(torrentid, deleteFiles=False)``,
      ``TIPCAddPeer(torrentid, host, port)``. Anything else is answered with an
      ``ErrorInformation`` on ``signal``.
    * ``control``: ``ShutdownMicroprocess`` or ``ProducerFinished`` stops the session (it is
      paused and released, nothing left on the reactor) and ends the component.
    * ``outbox``, answers in request order: ``TIPCNewTorrentCreated(torrentid, savefolder)``,
      ``TIPCTorrentStartFail(reason)``, ``TIPCTorrentAlreadyDownloading(torrentid)``,
      ``TIPCTorrentClosed(torrentid)``, ``TIPCTorrentCloseFail(torrentid, reason)``,
      ``TIPCUnknownTorrent(torrentid)``, ``TIPCPeerAdded(torrentid, host, port)``,
      ``TIPCAddPeerFail(torrentid, reason)``; and per torrent,
      after its ``TIPCNewTorrentCreated``: ``TIPCTorrentStatusUpdate(torrentid,
      statsdictionary)`` every ``tickInterval`` while it changes,
      ``TIPCTorrentFinished(torrentid)``, ``TIPCTorrentError(torrentid, reason)``.
    * ``signal``: the shutdown message, passed on when the component ends.

    Messages out of ``outbox`` are never refused: replies and status must not be lost, so a
    bounded inbox downstream may briefly hold more than its bound.
    """

    Inboxes = {
        "inbox": "TIPCCreateNewTorrent, TIPCCloseTorrent, TIPCAddPeer",
        "control": "ShutdownMicroprocess or ProducerFinished stops the session",
    }
    Outboxes = {
        "outbox": "answers in request order, then status, finished and error messages",
        "signal": "the shutdown message, passed on",
    }

    def __init__(
        self,
        tickInterval: float = 5,
        *,
        savePath: str = ".",
        settings: dict[str, Any] | None = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.tickInterval = tickInterval
        self.savePath = savePath
        self.settings = dict(settings or {})
        self.session: TorrentSession | None = None
        self._replies: deque[_Reply] = deque()
        # torrent ids whose TIPCNewTorrentCreated has gone out; events for others wait
        self._announced: set[int] = set()
        self._held: dict[int, list[object]] = {}
        #: fires with the :class:`TorrentSession` once the component has started it (what
        #: ``streamFile(client, ...)`` needs); ``session`` is ``None`` until then
        self.ready: Deferred[TorrentSession] = Deferred()

    def __str__(self) -> str:
        return f"TorrentClient #{self.id}"

    async def main(self) -> None:
        self.session = TorrentSession(
            self.tickInterval, savePath=self.savePath, settings=self.settings, observers=[self]
        )
        self.ready.callback(self.session)
        try:
            async for msg in self.messages("inbox"):
                self._handle(msg)
        finally:
            await self.session.stop()

    # -- requests ---------------------------------------------------------------------------

    def _handle(self, msg: object) -> None:
        session = self.session
        assert session is not None
        if isinstance(msg, TIPCCreateNewTorrent):
            reply = _Reply()
            self._replies.append(reply)
            added = session.addTorrent(
                rawmetainfo=msg.rawmetainfo,
                magnet=msg.magnet,
                savefolder=msg.savefolder,
                resumedata=msg.resumedata,
                seed=msg.seed,
            )
            added.addCallback(self._added, reply, msg.peers)
            added.addErrback(self._addFailed, reply)
        elif isinstance(msg, TIPCCloseTorrent):
            reply = _Reply()
            self._replies.append(reply)
            tid = msg.torrentid
            try:
                d = session.removeTorrent(tid, msg.deleteFiles)
            except UnknownTorrent:
                self._answer(reply, TIPCUnknownTorrent(tid))
                return
            d.addCallbacks(
                lambda _: self._answer(reply, TIPCTorrentClosed(tid)),
                lambda f: self._answer(reply, self._closeFailed(tid, f)),
            )
        elif isinstance(msg, TIPCAddPeer):
            reply = _Reply()
            self._replies.append(reply)
            self._answer(reply, self._addPeer(session, msg))
        else:
            self._forceSend(
                ErrorInformation(
                    self,
                    message=f"TorrentClient does not understand {msg!r}; send "
                    "TIPCCreateNewTorrent, TIPCCloseTorrent or TIPCAddPeer",
                ),
                "signal",
            )

    @staticmethod
    def _addPeer(session: TorrentSession, msg: TIPCAddPeer) -> object:
        try:
            session.connectPeer(msg.torrentid, msg.host, msg.port)
        except UnknownTorrent:
            return TIPCUnknownTorrent(msg.torrentid)
        except (ValueError, TypeError) as e:
            return TIPCAddPeerFail(msg.torrentid, str(e))
        return TIPCPeerAdded(msg.torrentid, msg.host, int(msg.port))

    def _added(self, added: AddedTorrent, reply: _Reply, peers: Any = ()) -> None:
        reply.torrentid = added.torrentid
        assert self.session is not None
        for host, port in peers:
            self.session.connectPeer(added.torrentid, host, int(port))
        self._answer(reply, TIPCNewTorrentCreated(added.torrentid, added.savefolder))

    def _addFailed(self, failure: Failure, reply: _Reply) -> None:
        err = failure.value
        if isinstance(err, TorrentAlreadyDownloading):
            self._answer(reply, TIPCTorrentAlreadyDownloading(err.torrentid))
        elif isinstance(err, TorrentError):
            self._answer(reply, TIPCTorrentStartFail(err.reason))
        else:
            _log.failure("adding a torrent failed unexpectedly", failure)
            self._answer(reply, TIPCTorrentStartFail(f"{type(err).__name__}: {err}"))

    @staticmethod
    def _closeFailed(tid: int, failure: Failure) -> object:
        if isinstance(failure.value, UnknownTorrent):
            return TIPCUnknownTorrent(tid)
        return TIPCTorrentCloseFail(tid, getattr(failure.value, "reason", str(failure.value)))

    def _answer(self, reply: _Reply, message: object) -> None:
        reply.message = message
        while self._replies and self._replies[0].message is not None:
            head = self._replies.popleft()
            self._forceSend(head.message, "outbox")
            if head.torrentid is not None:
                self._announced.add(head.torrentid)
                for held in self._held.pop(head.torrentid, []):
                    self._forceSend(held, "outbox")

    def _event(self, torrentid: int, message: object) -> None:
        if torrentid in self._announced:
            self._forceSend(message, "outbox")
        else:
            self._held.setdefault(torrentid, []).append(message)

    # -- TorrentSessionObserver -------------------------------------------------------------

    def torrentStatus(self, torrentid: int, status: TorrentStatus) -> None:
        self._event(torrentid, TIPCTorrentStatusUpdate(torrentid, dict(status)))

    def torrentFinished(self, torrentid: int) -> None:
        self._event(torrentid, TIPCTorrentFinished(torrentid))

    def torrentError(self, torrentid: int, reason: str) -> None:
        self._event(torrentid, TIPCTorrentError(torrentid, reason))

    def torrentRemoved(self, torrentid: int) -> None:
        self._announced.discard(torrentid)
        self._held.pop(torrentid, None)
