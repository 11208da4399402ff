"""
libtorrent on the Twisted reactor.

- :mod:`pcpkit.torrent.ipc`: the Kamaelia ``TIPC*`` messages;
- :mod:`pcpkit.torrent.session`: :class:`TorrentSession`, the engine owning one
  ``libtorrent.session`` (alerts pumped through a socketpair, no thread, no polling);
- :mod:`pcpkit.torrent.maker`: :func:`makeTorrent`, info-hash and magnet helpers,
  :class:`BasicTorrentExplainer`;
- :mod:`pcpkit.torrent.stream`: :func:`streamFile`, a torrent's file as an in-order
  ``IPushProducer`` while it downloads;
- :mod:`pcpkit.torrent.transfer`: :func:`download` and :func:`seed`, Deferreds with
  progress, cancellation and resume data;
- :mod:`pcpkit.torrent.tracker`: ``LocalTracker``, a throw-away local opentracker.
"""

from __future__ import annotations

from pcpkit.torrent.ipc import (
    TIPC,
    TIPCAddPeer,
    TIPCAddPeerFail,
    TIPCCloseTorrent,
    TIPCCreateNewTorrent,
    TIPCMakeTorrent,
    TIPCNewTorrentCreated,
    TIPCPeerAdded,
    TIPCServiceAdd,
    TIPCServicePassOn,
    TIPCServiceRemove,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
)
from pcpkit.torrent.maker import BasicTorrentExplainer, infohashOf, makeTorrent, torrentName
from pcpkit.torrent.session import (
    AddedTorrent,
    BaseTorrentSessionObserver,
    InvalidTorrent,
    MagnetInfo,
    SessionStopped,
    TorrentAlreadyDownloading,
    TorrentDataMismatch,
    TorrentError,
    TorrentRemoved,
    TorrentSession,
    TorrentSessionObserver,
    TorrentStartError,
    TorrentStatus,
    UnknownTorrent,
    UnsafeTorrentPath,
    parseMagnet,
)
from pcpkit.torrent.stream import StreamStopped, TorrentFileProducer, streamFile
from pcpkit.torrent.transfer import Transfer, TransferResult, download, seed

__all__ = [
    "TIPC",
    "AddedTorrent",
    "BaseTorrentSessionObserver",
    "BasicTorrentExplainer",
    "InvalidTorrent",
    "MagnetInfo",
    "SessionStopped",
    "StreamStopped",
    "TIPCAddPeer",
    "TIPCAddPeerFail",
    "TIPCCloseTorrent",
    "TIPCCreateNewTorrent",
    "TIPCMakeTorrent",
    "TIPCNewTorrentCreated",
    "TIPCPeerAdded",
    "TIPCServiceAdd",
    "TIPCServicePassOn",
    "TIPCServiceRemove",
    "TIPCTorrentAlreadyDownloading",
    "TIPCTorrentClosed",
    "TIPCTorrentError",
    "TIPCTorrentFinished",
    "TIPCTorrentStartFail",
    "TIPCTorrentStatusUpdate",
    "TIPCUnknownTorrent",
    "TorrentAlreadyDownloading",
    "TorrentDataMismatch",
    "TorrentError",
    "TorrentFileProducer",
    "TorrentRemoved",
    "TorrentSession",
    "TorrentSessionObserver",
    "TorrentStartError",
    "TorrentStatus",
    "Transfer",
    "TransferResult",
    "UnknownTorrent",
    "UnsafeTorrentPath",
    "download",
    "infohashOf",
    "makeTorrent",
    "parseMagnet",
    "seed",
    "streamFile",
    "torrentName",
]
