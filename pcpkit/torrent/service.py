"""
``TorrentService``: one shared :class:`~pcpkit.torrent.client.TorrentClient` for any number
of :class:`~pcpkit.torrent.patron.TorrentPatron` s.

There is one service per distinct client configuration (tick interval, save path,
settings) in the process. The first patron starts it, and with it the client; it stops the
client and ends after the last patron leaves. It routes:

* each patron's requests to the client, remembering who asked;
* the answers back to the patron whose request they answer (the client answers in request
  order, so the oldest pending asker gets each answer);
* a torrent's status, completion and errors to the patron that started it, and to nobody
  else.

Patrons talk to it with ``TIPCServiceAdd``, ``TIPCServicePassOn`` and ``TIPCServiceRemove``
on its ``inbox``, as in Kamaelia.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any, ClassVar

from twisted.logger import Logger

from pcpkit.component import Box, Component
from pcpkit.ipc import ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.torrent.client import TorrentClient
from pcpkit.torrent.ipc import (
    TIPCAddPeer,
    TIPCAddPeerFail,
    TIPCCloseTorrent,
    TIPCCreateNewTorrent,
    TIPCNewTorrentCreated,
    TIPCPeerAdded,
    TIPCServiceAdd,
    TIPCServicePassOn,
    TIPCServiceRemove,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentCloseFail,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
)

__all__ = ["TorrentService"]

_log = Logger()

_ANSWERS = (
    TIPCNewTorrentCreated,
    TIPCTorrentStartFail,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentCloseFail,
    TIPCUnknownTorrent,
    TIPCPeerAdded,
    TIPCAddPeerFail,
)
_PER_TORRENT = (TIPCTorrentStatusUpdate, TIPCTorrentFinished, TIPCTorrentError)


def _settingsKey(
    tickInterval: float, savePath: str, settings: dict[str, Any] | None
) -> tuple[Any, ...]:
    return (tickInterval, savePath, tuple(sorted((settings or {}).items())))


class TorrentService(Component):
    """
    The shared torrent client behind the patrons. Get one with :meth:`forSettings` rather
    than constructing it: patrons with the same settings then share one session.

    Boxes: ``inbox`` (``TIPCServiceAdd`` / ``TIPCServicePassOn`` / ``TIPCServiceRemove``
    from patrons), ``control``, ``torrent-inbox`` (the client's answers); ``torrent-outbox``
    (requests to the client), ``torrent-signal`` (stops the client), ``outbox`` (unused),
    ``signal`` (``ProducerFinished`` when the service ends).
    """

    Inboxes = {
        "inbox": "TIPCServiceAdd, TIPCServicePassOn, TIPCServiceRemove from patrons",
        "control": "a Shutdown stops the service and its client",
        "torrent-inbox": "answers and events from the TorrentClient",
    }
    Outboxes = {
        "outbox": "unused",
        "signal": "ProducerFinished when the service has stopped",
        "torrent-outbox": "requests to the TorrentClient",
        "torrent-signal": "stops the TorrentClient",
    }

    _services: ClassVar[dict[tuple[Any, ...], TorrentService]] = {}

    @classmethod
    def forSettings(
        cls,
        tickInterval: float = 5,
        savePath: str = ".",
        settings: dict[str, Any] | None = None,
    ) -> TorrentService:
        """The running service for this configuration, started if there is none."""
        key = _settingsKey(tickInterval, savePath, settings)
        service = cls._services.get(key)
        if service is None:
            service = cls(tickInterval=tickInterval, savePath=savePath, settings=settings)
            service._key = key
            cls._services[key] = service
            service.activate()
        return service

    def __init__(
        self,
        tickInterval: float = 5,
        savePath: str = ".",
        settings: dict[str, Any] | None = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self._key: tuple[Any, ...] | None = None
        self.client = TorrentClient(tickInterval, savePath=savePath, settings=settings)
        self.addChildren(self.client)
        self.link((self, "torrent-outbox"), (self.client, "inbox"))
        self.link((self, "torrent-signal"), (self.client, "control"))
        self.link((self.client, "outbox"), (self, "torrent-inbox"))
        self.patrons: dict[Any, Box] = {}
        self._askers: deque[Any] = deque()
        self._owners: dict[int, Any] = {}
        self._everHadPatron = False

    def __str__(self) -> str:
        return f"TorrentService #{self.id}"

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                self._fromPatron(self.recv("inbox"))
            while self.dataReady("torrent-inbox"):
                self._fromClient(self.recv("torrent-inbox"))
            stop = False
            while self.dataReady("control"):
                if isinstance(self.recv("control"), Shutdown):
                    stop = True
            if stop or (self._everHadPatron and not self.patrons):
                break
            self.pause()
            yield 1
        # Leaving: no new patron may join this one; the next gets a fresh service.
        if self._key is not None and self._services.get(self._key) is self:
            del self._services[self._key]
        self.client.finished.addErrback(
            lambda f: _log.failure("{service}: its client failed", f, service=self)
        )
        self.client.finished.addBoth(lambda _: self.unpause())
        self.send(ShutdownMicroprocess(self, "last patron left"), "torrent-signal")
        while not self.client.finished.called:
            self.pause()
            yield 1
        # answers that raced the shutdown are routed before we go
        while self.dataReady("torrent-inbox"):
            self._fromClient(self.recv("torrent-inbox"))
        self.send(ProducerFinished(self), "signal")

    def _fromPatron(self, msg: object) -> None:
        if isinstance(msg, TIPCServiceAdd):
            patron, boxname = self._replyBox(msg.replyService)
            self.patrons[patron] = patron._inbox(boxname)
            self._everHadPatron = True
        elif isinstance(msg, TIPCServiceRemove):
            patron, _ = self._replyBox(msg.replyService)
            self.patrons.pop(patron, None)
            for tid in [t for t, owner in self._owners.items() if owner is patron]:
                del self._owners[tid]
        elif isinstance(msg, TIPCServicePassOn):
            patron, _ = self._replyBox(msg.replyService)
            inner = msg.message
            if isinstance(inner, (TIPCCreateNewTorrent, TIPCCloseTorrent, TIPCAddPeer)):
                self._askers.append(patron)
                self.send(inner, "torrent-outbox")
            else:
                self._deliverToPatron(
                    patron,
                    TIPCTorrentStartFail(
                        "a patron takes TIPCCreateNewTorrent, TIPCCloseTorrent and "
                        f"TIPCAddPeer, not {inner!r}"
                    ),
                )
        else:
            _log.warn("{service} ignored {msg!r}", service=self, msg=msg)

    @staticmethod
    def _replyBox(replyService: Any) -> tuple[Any, str]:
        if isinstance(replyService, tuple):
            return replyService[0], replyService[1]
        return replyService, "torrent-inbox"

    def _fromClient(self, msg: object) -> None:
        if isinstance(msg, _ANSWERS):
            asker = self._askers.popleft() if self._askers else None
            if isinstance(msg, TIPCNewTorrentCreated) and asker is not None:
                self._owners[msg.torrentid] = asker
            elif isinstance(msg, TIPCTorrentClosed):
                self._owners.pop(msg.torrentid, None)
            if asker is not None:
                self._deliverToPatron(asker, msg)
        elif isinstance(msg, _PER_TORRENT):
            owner = self._owners.get(msg.torrentid)
            if owner is not None:
                self._deliverToPatron(owner, msg)
        else:
            _log.warn("{service}: unexpected {msg!r} from the client", service=self, msg=msg)

    def _deliverToPatron(self, patron: Any, msg: object) -> None:
        box = self.patrons.get(patron)
        if box is not None:
            # an answer must reach its patron even if its inbox is bounded and full
            box.final.forceDeliver(msg)
