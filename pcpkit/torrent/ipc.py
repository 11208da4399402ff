"""
The torrent messages, with Kamaelia's ``TIPC*`` names and fields.

Kamaelia's ``Kamaelia.Protocol.Torrent.TorrentIPC`` defined these as the language spoken
between ``TorrentPatron``, ``TorrentService`` and ``TorrentClient``; code ported from it
keeps working with the same constructor arguments and attribute names. Each message is a
small dataclass whose ``str()`` is one readable line (status as a percentage).

This module imports neither libtorrent nor the component layer, so messages can be built
and inspected anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pcpkit._format import formatBytes, formatRate

__all__ = [
    "TIPC",
    "TIPCAddPeer",
    "TIPCAddPeerFail",
    "TIPCPeerAdded",
    "TIPCCloseTorrent",
    "TIPCCreateNewTorrent",
    "TIPCMakeTorrent",
    "TIPCNewTorrentCreated",
    "TIPCServiceAdd",
    "TIPCServicePassOn",
    "TIPCServiceRemove",
    "TIPCTorrentAlreadyDownloading",
    "TIPCTorrentCloseFail",
    "TIPCTorrentClosed",
    "TIPCTorrentError",
    "TIPCUnknownTorrent",
    "TIPCTorrentFinished",
    "TIPCTorrentStartFail",
    "TIPCTorrentStatusUpdate",
    "formatBytes",
    "formatRate",
]


class TIPC:
    """Base class of every torrent message (Kamaelia's ``TIPC``)."""


# -- in: requests to the client ------------------------------------------------------------


@dataclass
class TIPCCreateNewTorrent(TIPC):
    """
    Start a torrent: from ``.torrent`` bytes (``rawmetainfo``) or a ``magnet`` link, saving
    into ``savefolder`` (the client's save path when ``None``). Seeding is starting a
    torrent whose data is already in ``savefolder``.
    """

    rawmetainfo: bytes | None = None
    magnet: str | None = None
    savefolder: str | None = None
    #: pcpkit addition: ``(host, port)`` peers to connect to at once (no tracker needed)
    peers: tuple[tuple[str, int], ...] = ()
    #: pcpkit addition: libtorrent resume data saved earlier (skips re-checking the files)
    resumedata: bytes | None = None
    #: pcpkit addition: the data is expected complete: fail rather than download
    seed: bool = False

    def __str__(self) -> str:
        if self.magnet is not None:
            source = f"magnet {self.magnet[:60]}"
        elif self.rawmetainfo is not None:
            source = f".torrent of {len(self.rawmetainfo)} bytes"
        else:
            source = "nothing (no metainfo or magnet given)"
        where = f" into {self.savefolder}" if self.savefolder else ""
        return f"create torrent from {source}{where}"


@dataclass
class TIPCCloseTorrent(TIPC):
    """Stop torrent ``torrentid``; with ``deleteFiles`` its downloaded files are deleted."""

    torrentid: int
    deleteFiles: bool = False

    def __str__(self) -> str:
        extra = " and delete its files" if self.deleteFiles else ""
        return f"close torrent {self.torrentid}{extra}"


@dataclass
class TIPCAddPeer(TIPC):
    """
    Connect torrent ``torrentid`` to the peer at ``host`` (an IP address) and ``port``:
    a swarm without a tracker, or a peer the tracker does not know. pcpkit addition; the
    answer is ``TIPCPeerAdded``, ``TIPCAddPeerFail`` or ``TIPCUnknownTorrent``. Each one
    sent is one connection attempt, however often that peer failed before: send it again
    for a peer that was not listening yet.
    """

    torrentid: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"add peer {self.host}:{self.port} to torrent {self.torrentid}"


@dataclass
class TIPCMakeTorrent(TIPC):
    """
    Make a ``.torrent`` of ``srcfile`` announcing to ``trackerurl``, with pieces of
    ``2 ** log2piecesizebytes`` bytes (Kamaelia's fields; ``title`` is kept for
    compatibility, the torrent's name is the source's base name).
    """

    trackerurl: str
    log2piecesizebytes: int
    title: str
    comment: str
    srcfile: str

    def __str__(self) -> str:
        return (
            f"make torrent of {self.srcfile} for {self.trackerurl} "
            f"(pieces of {formatBytes(2**self.log2piecesizebytes)})"
        )


# -- out: replies and notifications --------------------------------------------------------


@dataclass
class TIPCNewTorrentCreated(TIPC):
    """The torrent asked for was started as ``torrentid``, saving into ``savefolder``."""

    torrentid: int
    savefolder: str

    def __str__(self) -> str:
        return f"torrent {self.torrentid} started, saving into {self.savefolder}"


@dataclass
class TIPCTorrentStartFail(TIPC):
    """The torrent asked for could not be started, for ``reason``."""

    reason: str = "unknown reason"

    def __str__(self) -> str:
        return f"torrent failed to start: {self.reason}"


@dataclass
class TIPCTorrentAlreadyDownloading(TIPC):
    """The torrent asked for is already running in the client as ``torrentid``."""

    torrentid: int

    def __str__(self) -> str:
        return f"torrent already downloading as torrent {self.torrentid}"


@dataclass
class TIPCTorrentStatusUpdate(TIPC):
    """
    Progress of ``torrentid``. ``statsdictionary`` holds at least ``fractionDone`` (0..1),
    ``downRate`` and ``upRate`` (payload bytes/s), ``numPeers``, ``numSeeds``,
    ``activity`` (a readable state), ``totalDone`` (bytes), ``timeEst`` (seconds or
    ``None``), ``infohash`` and ``name`` (see :class:`pcpkit.torrent.session.TorrentStatus`).
    """

    torrentid: int
    statsdictionary: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        s = self.statsdictionary
        name = s.get("name") or s.get("infohash") or "?"
        fraction = float(s.get("fractionDone", 0.0))
        parts = [
            f"{fraction * 100:.1f}% done",
            f"{formatRate(s.get('downRate', 0))} down",
            f"{formatRate(s.get('upRate', 0))} up",
            f"{s.get('numPeers', 0)} peers",
        ]
        activity = s.get("activity")
        if activity:
            parts.append(str(activity))
        return f"torrent {self.torrentid} ({name}): " + ", ".join(parts)


@dataclass
class TIPCTorrentFinished(TIPC):
    """Torrent ``torrentid`` has all its data (it goes on seeding)."""

    torrentid: int

    def __str__(self) -> str:
        return f"torrent {self.torrentid} finished"


@dataclass
class TIPCTorrentClosed(TIPC):
    """Torrent ``torrentid`` was closed as asked (``TIPCCloseTorrent``). pcpkit addition."""

    torrentid: int

    def __str__(self) -> str:
        return f"torrent {self.torrentid} closed"


@dataclass
class TIPCUnknownTorrent(TIPC):
    """A request named ``torrentid``, which the client does not have. pcpkit addition."""

    torrentid: Any

    def __str__(self) -> str:
        return f"no torrent {self.torrentid!r} in this client"


@dataclass
class TIPCTorrentError(TIPC):
    """Torrent ``torrentid`` hit an error (disk, file, unsafe metadata). pcpkit addition."""

    torrentid: int
    reason: str = "unknown error"

    def __str__(self) -> str:
        return f"torrent {self.torrentid} error: {self.reason}"


@dataclass
class TIPCTorrentCloseFail(TIPC):
    """Torrent ``torrentid`` could not be closed as asked (say, its files could not be
    deleted): ``reason``. pcpkit addition; the answer to a ``TIPCCloseTorrent``."""

    torrentid: int
    reason: str = "unknown reason"

    def __str__(self) -> str:
        return f"torrent {self.torrentid} could not be closed: {self.reason}"


@dataclass
class TIPCPeerAdded(TIPC):
    """libtorrent was asked to connect torrent ``torrentid`` to ``host:port``. pcpkit
    addition; the answer to a ``TIPCAddPeer`` (the connection itself is libtorrent's to
    make: the peer shows in the status's ``numPeers`` once it is up)."""

    torrentid: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"torrent {self.torrentid}: connecting to peer {self.host}:{self.port}"


@dataclass
class TIPCAddPeerFail(TIPC):
    """A ``TIPCAddPeer`` for torrent ``torrentid`` was refused: ``reason`` (the host is
    not an IP address, the port is out of range). pcpkit addition."""

    torrentid: int
    reason: str = "unknown reason"

    def __str__(self) -> str:
        return f"torrent {self.torrentid}: cannot add peer: {self.reason}"


# -- internal: between patrons and the service ---------------------------------------------


@dataclass
class TIPCServicePassOn(TIPC):
    """A patron's ``message`` for the client; replies go to ``replyService``."""

    replyService: Any
    message: Any

    def __str__(self) -> str:
        return f"pass on {self.message} (replies to {self.replyService!r})"


@dataclass
class TIPCServiceAdd(TIPC):
    """A patron (reached at ``replyService``) joins the service."""

    replyService: Any

    def __str__(self) -> str:
        return f"add patron {self.replyService!r}"


@dataclass
class TIPCServiceRemove(TIPC):
    """A patron (reached at ``replyService``) leaves the service."""

    replyService: Any

    def __str__(self) -> str:
        return f"remove patron {self.replyService!r}"
