"""
Controls of one torrent of a :class:`~pcpkit.torrent.session.TorrentSession`, in plain values.

What a remote control (the daemon's JSON API, :mod:`pcpkit.torrent.api`) asks of a torrent
beyond adding and removing it: pause, resume, recheck, file priorities (``"skip"``,
``"normal"``, ``"high"``), sequential download, first-and-last-piece priority, rate limits,
and its trackers and peers as JSON-ready dictionaries. Every function takes the session and
the torrent's id and raises :class:`~pcpkit.torrent.session.UnknownTorrent` when it is not
there, ``ValueError`` (one line) for a bad argument.

These are synchronous libtorrent calls (microseconds each): they run on the reactor thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pcpkit._twisted import getReactor
from pcpkit.torrent.session import (
    SessionStopped,
    TorrentSession,
    UnknownTorrent,
    fileLayout,
    lt,
)

__all__ = [
    "MAX_LIMIT",
    "PRIORITIES",
    "RECHECK_RETRY",
    "checkLimit",
    "fileStorage",
    "priorityName",
    "filePriorities",
    "pause",
    "peers",
    "recheck",
    "resume",
    "setFilePriorities",
    "setFirstLastPiecesFirst",
    "setLimits",
    "setSequential",
    "torrentOptions",
    "trackers",
]

#: the file priorities a user names, as libtorrent's download priorities
PRIORITIES: dict[str, int] = {"skip": 0, "normal": 4, "high": 7}
#: libtorrent's top priority, given to the first and last pieces of wanted files
_TOP = 7


def priorityName(value: int) -> str:
    """The name of a libtorrent file priority (1..3 are "normal", 5..7 "high")."""
    if value == 0:
        return "skip"
    return "high" if value > PRIORITIES["normal"] else "normal"


def fileStorage(handle: Any) -> Any:
    """The torrent's file layout, ``None`` while a magnet's metadata is still missing."""
    ti = handle.torrent_file()
    if ti is None:
        return None
    return fileLayout(ti)


def pause(session: TorrentSession, torrentid: int) -> None:
    """
    Pause the torrent until :func:`resume`. It is taken out of libtorrent's queue
    (auto-management) so that the queue does not start it again by itself.
    """
    handle = session.handle(torrentid)
    handle.unset_flags(lt.torrent_flags.auto_managed)
    handle.pause()


def resume(session: TorrentSession, torrentid: int) -> None:
    """Resume a paused torrent (it runs until paused again, outside libtorrent's queue)."""
    handle = session.handle(torrentid)
    if session.status(torrentid)["state"] == "error":
        raise ValueError(
            "the torrent has a storage error; remove it and add it again to check its data"
        )
    handle.unset_flags(lt.torrent_flags.auto_managed)
    handle.resume()


#: Seconds between looks while libtorrent still checks a torrent's resume data (recheck)
RECHECK_RETRY = 0.05


def recheck(session: TorrentSession, torrentid: int, clock: Any = None) -> None:
    """
    Check the torrent's data on disk again, piece by piece.

    libtorrent ignores a recheck asked while it is still checking the resume data of a
    torrent just added (it then trusts that data): in that state the recheck is asked again
    every :data:`RECHECK_RETRY` seconds on ``clock`` (default: the reactor) until it is
    taken; it is dropped if the torrent or the session goes meanwhile.
    """
    handle = session.handle(torrentid)
    if handle.status(0).state != lt.torrent_status.checking_resume_data:
        handle.force_recheck()
        return

    def again() -> None:
        try:
            recheck(session, torrentid, clock)
        except (UnknownTorrent, SessionStopped):
            pass

    (getReactor() if clock is None else clock).callLater(RECHECK_RETRY, again)


def filePriorities(session: TorrentSession, torrentid: int) -> list[str]:
    """Each file's priority name (empty while a magnet's metadata is missing)."""
    handle = session.handle(torrentid)
    if fileStorage(handle) is None:
        return []
    return [priorityName(int(p)) for p in handle.get_file_priorities()]


def setFilePriorities(
    session: TorrentSession, torrentid: int, priorities: Mapping[int, str]
) -> list[str]:
    """
    Set the priority of files by index (``"skip"``, ``"normal"`` or ``"high"``); the other
    files keep theirs. A skipped file is not downloaded (pieces it shares with wanted files
    still are). Returns every file's priority after the change.

    :raises ValueError: an unknown priority or index, or no metadata yet.
    """
    handle = session.handle(torrentid)
    files = fileStorage(handle)
    if files is None:
        raise ValueError("the torrent's files are not known yet (its metadata is missing)")
    count = int(files.num_files())
    current = [int(p) for p in handle.get_file_priorities()]
    for index, name in priorities.items():
        if not isinstance(name, str) or name not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {name!r}")
        if not 0 <= index < count:
            raise ValueError(f"the torrent has no file {index} (it has {count})")
        current[index] = PRIORITIES[name]
    handle.prioritize_files(current)
    return [priorityName(p) for p in current]


def setSequential(session: TorrentSession, torrentid: int, on: bool) -> None:
    """Download pieces in order (for playing while downloading) or rarest first."""
    handle = session.handle(torrentid)
    if on:
        handle.set_flags(lt.torrent_flags.sequential_download)
    else:
        handle.unset_flags(lt.torrent_flags.sequential_download)


def setFirstLastPiecesFirst(
    session: TorrentSession,
    torrentid: int,
    on: bool,
    filePriorities: Sequence[str] | None = None,
) -> None:
    """
    Give the first and last piece of every wanted file the top priority (a player reads a
    media file's header and often its index at the end first); off: back to the pieces'
    file priorities. libtorrent has no such flag, so it is applied to piece priorities now:
    call it again after a change of file priorities (passing the new ones as
    ``filePriorities``: libtorrent applies a change later than it returns) or once a
    magnet's metadata arrived.
    """
    handle = session.handle(torrentid)
    ti = handle.torrent_file()
    if ti is None:
        return
    if filePriorities is None:
        filePrios = [int(p) for p in handle.get_file_priorities()]
    else:
        filePrios = [PRIORITIES[name] for name in filePriorities]
    if not on:
        handle.prioritize_files(filePrios)  # resets every piece to its files' priority
        return
    files = fileStorage(handle)
    pieces: list[tuple[int, int]] = []
    for index in range(int(files.num_files())):
        size = int(files.file_size(index))
        if size == 0 or filePrios[index] == 0:
            continue
        first = int(ti.map_file(index, 0, 0).piece)
        last = int(ti.map_file(index, size - 1, 0).piece)
        pieces.extend([(first, _TOP), (last, _TOP)])
    if pieces:
        handle.prioritize_pieces(pieces)


#: the highest rate limit, in bytes/s: libtorrent keeps limits in a C ``int``
MAX_LIMIT = 2**31 - 1


def checkLimit(name: str, value: object) -> int:
    """``value`` as a rate limit in bytes/s (``0``: none). :raises ValueError:"""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise ValueError(
            f"{name} must be a whole number of bytes/s from 0 (none) to {MAX_LIMIT}, not {value!r}"[
                :200
            ]
        )
    return value


def setLimits(
    session: TorrentSession,
    torrentid: int,
    downloadLimit: object = None,
    uploadLimit: object = None,
) -> None:
    """The torrent's rate limits in bytes/s (``0``: none; ``None``: unchanged)."""
    handle = session.handle(torrentid)
    if downloadLimit is not None:
        handle.set_download_limit(checkLimit("downloadLimit", downloadLimit) or -1)
    if uploadLimit is not None:
        handle.set_upload_limit(checkLimit("uploadLimit", uploadLimit) or -1)


def torrentOptions(session: TorrentSession, torrentid: int) -> dict[str, Any]:
    """``sequential``, ``downloadLimit`` and ``uploadLimit`` (bytes/s, ``0``: none)."""
    handle = session.handle(torrentid)
    flags = int(handle.flags())
    return {
        "sequential": bool(flags & int(lt.torrent_flags.sequential_download)),
        "downloadLimit": max(int(handle.download_limit()), 0),
        "uploadLimit": max(int(handle.upload_limit()), 0),
    }


def _errorText(entry: Mapping[str, Any]) -> str | None:
    """A tracker entry's last error as one line (``None``: no error)."""
    error = entry.get("last_error") or {}
    value = int(error.get("value", 0)) if isinstance(error, Mapping) else 0
    message = str(entry.get("message") or "").strip()
    if value == 0:
        return None
    if message:
        return message
    category = error.get("category", "")
    if category in ("system", "generic"):
        return os.strerror(value)
    return f"{category} error {value}"


def trackers(session: TorrentSession, torrentid: int) -> list[dict[str, Any]]:
    """
    The torrent's trackers: ``url``, ``tier``, ``fails`` (consecutive failures),
    ``updating`` (an announce is under way), ``error`` (the last failure as a line, ``None``
    when the last announce worked), ``message`` (the tracker's last message).
    """
    handle = session.handle(torrentid)
    result = []
    for entry in handle.trackers():
        # the entry's own fields summarise its endpoints in libtorrent 2.x; look at the
        # endpoints too, for bindings that leave the summary empty
        endpoints = [
            ih for endpoint in entry.get("endpoints", []) for ih in endpoint.get("info_hashes", [])
        ]
        errors = [e for e in (_errorText(x) for x in [entry, *endpoints]) if e]
        result.append(
            {
                "url": str(entry.get("url", "")),
                "tier": int(entry.get("tier", 0)),
                "fails": max([int(x.get("fails", 0)) for x in [entry, *endpoints]]),
                "updating": any(bool(x.get("updating")) for x in [entry, *endpoints]),
                "error": errors[0] if errors else None,
                "message": str(entry.get("message") or ""),
            }
        )
    return result


def peers(session: TorrentSession, torrentid: int) -> list[dict[str, Any]]:
    """
    The torrent's connected peers: ``address`` (``host:port``), ``client``, ``progress``
    (0..1), ``downRate``, ``upRate`` (bytes/s), ``downloaded``, ``uploaded`` (bytes),
    ``seed``.
    """
    handle = session.handle(torrentid)
    result = []
    for p in handle.get_peer_info():
        host, port = p.ip
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        client = p.client
        if isinstance(client, bytes):
            client = client.decode("utf-8", "replace")
        result.append(
            {
                "address": address,
                "client": str(client),
                "progress": float(p.progress),
                "downRate": int(p.payload_down_speed),
                "upRate": int(p.payload_up_speed),
                "downloaded": int(p.total_download),
                "uploaded": int(p.total_upload),
                "seed": bool(int(p.flags) & int(lt.peer_info.seed)),
            }
        )
    return result
