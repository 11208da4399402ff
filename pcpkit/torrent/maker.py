"""
Making ``.torrent`` files, reading info-hashes and magnet links, and explaining messages.

:func:`makeTorrent` hashes a file or a directory with libtorrent. Hashing reads every byte,
so it blocks: call it from a thread (``deferToThread``) for anything large — the
``TorrentMaker`` component does.

Torrent versions
----------------
BitTorrent v2 (BEP 52) hashes with SHA-256 per file in Merkle trees; v1 hashes the
concatenated data with SHA-1. libtorrent 2.x makes *hybrid* torrents (both) by default.

``version="v1"`` (the default)
    Every client understands it. aria2 1.36 computes a *different* info-hash for hybrid
    torrents than libtorrent does and never finds the swarm, so v1 is what interoperates.
``version="hybrid"``
    v1 and v2 peers join the same swarm (libtorrent 2.x, qBittorrent 4.4+, ...). Files are
    padded to piece boundaries, so the torrent lists pad files.
``version="v2"``
    SHA-256, per-file hashes (identical files share them), verified partial pieces; only
    v2-capable clients can join.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from typing import Any

import libtorrent as _libtorrent

from pcpkit._format import formatDuration
from pcpkit._twisted import currentFailure
from pcpkit.component import Component
from pcpkit.ipc import ErrorInformation
from pcpkit.torrent.ipc import (
    TIPCCloseTorrent,
    TIPCCreateNewTorrent,
    TIPCMakeTorrent,
    TIPCNewTorrentCreated,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentClosed,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
    TIPCTorrentStatusUpdate,
    TIPCUnknownTorrent,
    formatBytes,
    formatRate,
)
from pcpkit.torrent.session import (
    InvalidTorrent,
    MagnetInfo,
    hashKeys,
    parseMagnet,
    parseMetainfo,
)

__all__ = [
    "BasicTorrentExplainer",
    "TorrentMaker",
    "InvalidTorrent",
    "MagnetInfo",
    "infohashOf",
    "makeTorrent",
    "parseMagnet",
    "torrentName",
]

# see pcpkit.torrent.session: the wheel's stubs lag the binding
lt: Any = _libtorrent

_VERSION_FLAGS: dict[str, int] = {
    "v1": int(lt.create_torrent.v1_only),
    "v2": int(lt.create_torrent.v2_only),
    "hybrid": 0,
}

#: smallest piece libtorrent accepts (one block)
MIN_PIECE_SIZE = 16 * 1024


def makeTorrent(
    path: str | os.PathLike[str],
    trackers: Sequence[str | Sequence[str]] = (),
    pieceSize: int | None = None,
    comment: str | None = None,
    *,
    version: str = "v1",
    private: bool = False,
    creator: str = "pcpkit",
    webSeeds: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """
    Make a ``.torrent`` of a file or a directory and return its bytes.

    :param path: the file or directory to share; the torrent's name is its base name, and
        its data is found by adding the torrent with ``savefolder`` = the parent directory.
    :param trackers: announce URLs; each item is one tier (a URL, or a list of URLs that
        are alternatives within that tier). Tiers are tried in order.
    :param pieceSize: bytes per piece, a power of two >= 16 KiB; ``None`` lets libtorrent
        choose (about 1000-2000 pieces).
    :param comment: the torrent's comment.
    :param version: ``"v1"`` (default), ``"v2"`` or ``"hybrid"``: see the module doc.
    :param private: set the private flag (no DHT/PEX: trackers only).
    :param creator: the "created by" field.
    :param webSeeds: HTTP(S) URLs serving the same content (BEP 19).
    :param progress: called as ``progress(piecesDone, piecesTotal)`` while hashing (from
        the calling thread).
    :raises FileNotFoundError: ``path`` does not exist (the error names it).
    :raises ValueError: an empty directory, a bad ``pieceSize`` or ``version``.
    :raises OSError: a file could not be read while hashing.
    """
    src = os.path.abspath(os.fspath(path))
    if not os.path.exists(src):
        raise FileNotFoundError(errno.ENOENT, "no such file or directory to make a torrent of", src)
    try:
        flags = _VERSION_FLAGS[version]
    except KeyError:
        raise ValueError(f"version must be 'v1', 'v2' or 'hybrid', not {version!r}") from None
    if pieceSize is not None:
        if pieceSize < MIN_PIECE_SIZE or pieceSize & (pieceSize - 1):
            raise ValueError(
                f"pieceSize must be a power of two >= {MIN_PIECE_SIZE}, not {pieceSize!r}"
            )
    try:
        files = lt.list_files(src)
    except RuntimeError as e:
        raise OSError(f"cannot list {src}: {e}") from None
    if not files:
        raise ValueError(f"nothing to share: {src} holds no files")
    ct = lt.create_torrent(files, pieceSize or 0, flags)
    for tier, urls in enumerate(trackers):
        for url in [urls] if isinstance(urls, str) else urls:
            ct.add_tracker(url, tier)
    for url in webSeeds:
        ct.add_url_seed(url)
    if comment is not None:
        ct.set_comment(comment)
    if creator:
        ct.set_creator(creator)
    if private:
        ct.set_priv(True)
    total = int(ct.num_pieces())
    parent = os.path.dirname(src)
    try:
        if progress is None:
            lt.set_piece_hashes(ct, parent)
        else:
            report = progress
            lt.set_piece_hashes(ct, parent, lambda piece: report(int(piece) + 1, total))
    except RuntimeError as e:
        raise OSError(f"cannot hash {src}: {e}") from None
    return bytes(lt.bencode(ct.generate()))


def infohashOf(rawmetainfo: bytes) -> str:
    """
    The hex info-hash of ``.torrent`` bytes: the v1 (SHA-1, 40 hex digits) one when the
    torrent has v1 metadata, else the v2 (SHA-256, 64 hex digits) one — the same string
    :class:`~pcpkit.torrent.session.TorrentSession` uses.

    :raises InvalidTorrent: the bytes are not a valid torrent.
    """
    return hashKeys(parseMetainfo(rawmetainfo).info_hashes())[0]


def torrentName(rawmetainfo: bytes) -> str:
    """The name of the torrent in ``.torrent`` bytes. :raises InvalidTorrent:"""
    return str(parseMetainfo(rawmetainfo).name())


class BasicTorrentExplainer(Component):
    """
    Turns torrent messages into one line of text each, as Kamaelia's
    ``BasicTorrentExplainer`` did for its console example.

    As a component: each message arriving in ``inbox`` leaves ``outbox`` as a ``str``; a
    shutdown message on ``control`` is passed on along ``signal`` and ends it. As a plain
    object: ``explain(msg)`` (or calling it) returns the line.
    """

    Inboxes = {"inbox": "torrent messages (anything, really)", "control": "shutdown"}
    Outboxes = {"outbox": "one line of text per message", "signal": "the shutdown, passed on"}

    async def main(self) -> None:
        async for msg in self.messages("inbox"):
            await self.put(self.explain(msg), "outbox")

    def explain(self, msg: object) -> str:
        """One human readable line for ``msg`` (any object: unknown ones are ``str()``-ed)."""
        if isinstance(msg, TIPCNewTorrentCreated):
            return f"New torrent {msg.torrentid} created in {msg.savefolder}"
        if isinstance(msg, TIPCTorrentStartFail):
            return f"Torrent failed to start: {msg.reason}"
        if isinstance(msg, TIPCTorrentAlreadyDownloading):
            return f"That torrent is already downloading (torrent {msg.torrentid})"
        if isinstance(msg, TIPCTorrentFinished):
            return f"Torrent {msg.torrentid} has finished downloading"
        if isinstance(msg, TIPCTorrentClosed):
            return f"Torrent {msg.torrentid} closed"
        if isinstance(msg, TIPCUnknownTorrent):
            return f"There is no torrent {msg.torrentid}"
        if isinstance(msg, TIPCTorrentError):
            return f"Torrent {msg.torrentid} error: {msg.reason}"
        if isinstance(msg, TIPCTorrentStatusUpdate):
            s = msg.statsdictionary
            name = s.get("name") or s.get("infohash") or "?"
            line = (
                f"Torrent {msg.torrentid} ({name}): "
                f"{float(s.get('fractionDone', 0.0)) * 100:.1f}% done, "
                f"{formatRate(s.get('downRate', 0))} down, {formatRate(s.get('upRate', 0))} up, "
                f"{s.get('numPeers', 0)} peers"
            )
            eta = s.get("timeEst")
            if eta and s.get("fractionDone", 0.0) < 1.0:
                line += f", {formatDuration(float(eta))} left"
            activity = s.get("activity")
            if activity:
                line += f" [{activity}]"
            return line
        if isinstance(msg, (TIPCCreateNewTorrent, TIPCCloseTorrent, TIPCMakeTorrent)):
            return f"Request: {msg}"
        if isinstance(msg, (bytes, bytearray)):
            return f"{formatBytes(len(msg))} of data"
        # other TIPC messages and anything else: their own readable str()
        return str(msg)

    __call__ = explain


def _releaseGil(done: int, total: int) -> None:
    """A no-op progress callback: its only job is to make libtorrent drop the GIL."""


class TorrentMaker(Component):
    """
    Kamaelia's ``TorrentMaker``: answers each ``TIPCMakeTorrent`` on ``inbox`` with the
    ``.torrent`` bytes on ``outbox``, in request order. Hashing runs in the reactor's thread
    pool, so the reactor keeps serving while a large file is read.

    ``TIPCMakeTorrent(trackerurl, log2piecesizebytes, title, comment, srcfile)``: an empty
    ``trackerurl`` makes a trackerless torrent; pieces are ``2 ** log2piecesizebytes``
    bytes; the torrent's name is ``srcfile``'s base name, so ``title`` (a Kamaelia field) is
    kept in the comment as ``"title: comment"``. ``version`` picks v1 (default), v2 or
    hybrid for every torrent this maker makes (see the module doc).

    A request that cannot be served (missing file, bad piece size, not a
    ``TIPCMakeTorrent``) is answered with an ``ErrorInformation`` on ``signal``; the maker
    goes on with the next. A shutdown message on ``control`` ends it after the queued
    requests.
    """

    Inboxes = {"inbox": "TIPCMakeTorrent requests", "control": "shutdown"}
    Outboxes = {
        "outbox": ".torrent bytes, one per request",
        "signal": "ErrorInformation for failed requests; the shutdown, passed on",
    }

    def __init__(self, version: str = "v1", **argd: Any) -> None:
        super().__init__(**argd)
        if version not in _VERSION_FLAGS:
            raise ValueError(f"version must be 'v1', 'v2' or 'hybrid', not {version!r}")
        self.version = version

    async def main(self) -> None:
        from twisted.internet.threads import deferToThread

        async for request in self.messages("inbox"):
            if not isinstance(request, TIPCMakeTorrent):
                self._forceSend(
                    ErrorInformation(
                        self, message=f"TorrentMaker takes TIPCMakeTorrent, not {request!r}"
                    ),
                    "signal",
                )
                continue
            comment = request.comment
            if request.title:
                comment = f"{request.title}: {comment}" if comment else request.title
            try:
                raw = await deferToThread(
                    makeTorrent,
                    request.srcfile,
                    [request.trackerurl] if request.trackerurl else [],
                    2 ** int(request.log2piecesizebytes),
                    comment or None,
                    version=self.version,
                    # With a per-piece callback the binding releases the GIL between
                    # pieces; without one it holds it for the whole hash and the reactor
                    # thread stalls (measured: no timer ran while 96 MiB was hashed).
                    progress=_releaseGil,
                )
            except Exception as e:
                self._forceSend(
                    ErrorInformation(
                        self,
                        e,
                        f"cannot make a torrent of {request.srcfile}: {e}",
                        failure=currentFailure(),
                    ),
                    "signal",
                )
                continue
            await self.put(raw, "outbox")
