"""
``TorrentPatron``: a torrent client of your own, sharing one session with every other patron.

As in Kamaelia: send ``TIPCCreateNewTorrent`` / ``TIPCCloseTorrent`` to its ``inbox`` and
read the answers, and the status of the torrents *it* started, from its ``outbox``. Behind
it, a :class:`~pcpkit.torrent.service.TorrentService` runs one
:class:`~pcpkit.torrent.client.TorrentClient` for all patrons with the same settings.
Patrons run on the reactor; feeding one from another thread through a
:class:`~pcpkit.threaded.ThreadedComponent` is safe, as its sends are marshalled to the
reactor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from pcpkit.component import BoxFull, Component
from pcpkit.ipc import ProducerFinished, Shutdown
from pcpkit.torrent.ipc import TIPCServiceAdd, TIPCServicePassOn, TIPCServiceRemove
from pcpkit.torrent.service import TorrentService
from pcpkit.torrent.session import TorrentSession

__all__ = ["TorrentPatron"]


class TorrentPatron(Component):
    """
    ``TorrentPatron()`` -- a patron of the shared torrent service.

    :param tickInterval: seconds between status updates (patrons with the same
        ``tickInterval``, ``savePath`` and ``settings`` share one session).
    :param savePath: where torrents go when a request names no ``savefolder``.
    :param settings: libtorrent settings for the shared session.

    Messages:

    * ``inbox``: ``TIPCCreateNewTorrent``, ``TIPCCloseTorrent``, ``TIPCAddPeer``.
    * ``outbox``: the answers to this patron's requests, oldest first
      (``TIPCNewTorrentCreated``, ``TIPCTorrentStartFail``,
      ``TIPCTorrentAlreadyDownloading``, ``TIPCTorrentClosed``, ``TIPCUnknownTorrent``,
      ``TIPCPeerAdded``, ``TIPCAddPeerFail``),
      and ``TIPCTorrentStatusUpdate`` / ``TIPCTorrentFinished`` / ``TIPCTorrentError`` for
      the torrents it started.
    * ``control``: a ``Shutdown`` (``ProducerFinished``, ``ShutdownMicroprocess``) makes it
      leave the service and send ``ProducerFinished`` on ``signal``.
    * ``torrent-inbox`` / ``torrent-outbox``: its private line to the service.
    """

    Inboxes = {
        "inbox": "TIPCCreateNewTorrent, TIPCCloseTorrent, TIPCAddPeer",
        "control": "a Shutdown makes the patron leave",
        "torrent-inbox": "answers and events from the TorrentService",
    }
    Outboxes = {
        "outbox": "answers to this patron's requests and its torrents' events",
        "signal": "ProducerFinished when the patron has left",
        "torrent-outbox": "requests to the TorrentService",
    }

    def __init__(
        self,
        tickInterval: float = 5,
        savePath: str = ".",
        settings: dict[str, Any] | None = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.tickInterval = tickInterval
        self.savePath = savePath
        self.settings = settings
        self.service: TorrentService | None = None

    def __str__(self) -> str:
        return f"TorrentPatron #{self.id}"

    @property
    def session(self) -> TorrentSession | None:
        """
        The :class:`~pcpkit.torrent.session.TorrentSession` this patron shares (for
        :func:`~pcpkit.torrent.stream.streamFile`, ``listenPort``, ``status``), or ``None``
        before the shared client has started it. It is there once the patron has had its
        first answer (such as ``TIPCNewTorrentCreated``).
        """
        service = self.service
        return None if service is None else service.client.session

    def main(self) -> Generator[int, None, None]:
        service = self.service = TorrentService.forSettings(
            self.tickInterval, self.savePath, self.settings
        )
        linkage = self.link((self, "torrent-outbox"), (service, "inbox"))
        self.send(TIPCServiceAdd((self, "torrent-inbox")), "torrent-outbox")
        held: deque[object] = deque()  # answers waiting for room in a bounded inbox
        leaving: Shutdown | None = None
        while leaving is None:
            while self.dataReady("inbox"):
                msg = self.recv("inbox")
                self.send(TIPCServicePassOn((self, "torrent-inbox"), msg), "torrent-outbox")
            while self.dataReady("torrent-inbox"):
                held.append(self.recv("torrent-inbox"))
            while held:
                try:
                    self.send(held[0], "outbox")
                except BoxFull:
                    break
                held.popleft()
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, Shutdown):
                    leaving = msg
            if leaving is None:
                self.pause()
                yield 1
        self.send(TIPCServiceRemove((self, "torrent-inbox")), "torrent-outbox")
        self.unlink(thelinkage=linkage)
        for msg in held:
            self._forceSend(msg, "outbox")
        self.send(ProducerFinished(self), "signal")
