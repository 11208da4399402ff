"""
A file of a torrent as a Twisted push producer, delivered in order while it downloads.

:func:`streamFile` registers a :class:`TorrentFileProducer` on a consumer (a transport, an
HTTP request, a pcpkit proxy, ...) and writes a byte range of one file of the torrent to
it, in order, as the pieces arrive:

- a *window* of pieces ahead of the next one to deliver is given a ``set_piece_deadline``
  so libtorrent fetches them first; the nearest of them (the *read-ahead*, below) with
  ``alert_when_available``, so libtorrent posts a ``read_piece_alert`` with each piece's
  bytes as soon as it has passed its hash check; pieces already on disk are read with
  ``read_piece`` (which pieces are on disk is known from the torrent's status when the
  stream starts and from the piece events after it, not asked piece by piece:
  ``have_piece`` is a round trip to libtorrent's network thread);
- the window is *time-based* (as proposed for libtorrent's streaming guide, PR 6293): it
  holds about ``horizon`` seconds of data at the stream's rate, measured as it runs. While
  the consumer sets the pace (it held the stream paused for most of the last sample), the
  rate is the consumer's drain rate, so a slow player holds little; otherwise it is twice
  the larger of the drain rate and the rate pieces arrive at (the swarm's), so a window too
  small to fill the swarm's capacity grows until it is not. The deadlines follow the same
  rate: the *k*-th piece ahead is due when the consumer will want it. The window stays
  within the byte bound (:data:`DEFAULT_WINDOW_BYTES`, or ``window`` pieces), never below
  :data:`MIN_WINDOW` pieces, and starts at the bound (the rates are not known yet);
- the ``read_piece_alert``\\ s come back in any order and are re-ordered by piece;
- memory is bounded by the *read-ahead*, a part of the window: only the pieces next in
  line, about :data:`READ_SECONDS` of data at the same rate (at least :data:`READ_AHEAD`
  pieces, at most the window), are read (their bytes posted to the stream; of the pieces
  already on disk, only the first :data:`READ_AHEAD` until the rates are first measured:
  each read in flight holds a piece in libtorrent too, and many streams may start at once);
  the rest of the window gets deadlines without a read, so libtorrent fetches them and
  they wait on disk (verified) until the stream is near. A stream holds at most the pieces
  its read-ahead asked for plus the one being written
  (:attr:`TorrentFileProducer.maxBufferedBytes` records the peak; never more than
  ``(maxReadAhead + 1) * pieceLength``). A smaller read-ahead or window asks for nothing
  more past its end (what it has is delivered: reading it again would cost more); a
  consumer that stays paused (a player paused with a full buffer) is measured as it waits,
  and its stream shrinks to the least and lets go at once of what lies past the new end
  (pieces dropped are on disk; deadlines are reset);
- opening a media file (a ``video/`` or ``audio/`` type by its name, streamed from its
  first byte) *primes* its last pieces too (a deadline, no read), since a player reads the
  container's index at the end before it plays; the first piece of a stream is due at once;
- :meth:`TorrentFileProducer.seek` moves the stream to another range of the file: the old
  window's deadlines are reset at once and the new position's first piece is due at once
  (an HTTP player seeks with a new ``Range`` request instead: the old request's stream
  is stopped, which resets its deadlines, when its connection goes);
- ``pauseProducing`` stops writing *and* requesting, so a paused stream holds at most its
  read-ahead; ``resumeProducing`` carries on (the consumer's pause is a
  :class:`~pcpkit._pause.Pause` of the stream's :class:`~pcpkit._pause.Pauser`, pcpkit's one
  pause mechanism);
- ``stopProducing`` (the consumer gave up) cancels the outstanding deadlines and fails the
  Deferred with :class:`StreamStopped`: the range was *not* delivered, and saying so is
  safer than firing as if it had been. The producer does not call ``unregisterProducer``
  then: the consumer that stopped it already let it go.

The Deferred fires with ``None`` once the whole range is written and the producer is
unregistered; it fails with a :class:`~pcpkit.torrent.session.TorrentError` when the
torrent errors, is removed, or its session stops (the producer is unregistered first).
A stream waits as long as the pieces take: with no peer it waits until cancelled
(``deferred.cancel()`` stops it, unregisters the producer and fails with
``CancelledError``; ``addTimeout`` does that for you).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mimetypes
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from pcpkit._fifo import ByteFIFO
from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import getReactor
from pcpkit.torrent.session import TorrentError, TorrentSession, fileLayout, lt

__all__ = ["StreamStopped", "TorrentFileProducer", "releaseFreedMemory", "streamFile"]

log = Logger()


class StreamStopped(TorrentError):
    """The consumer called ``stopProducing`` before the whole range was delivered."""


#: the most a stream requests ahead by default (rounded up to whole pieces)
DEFAULT_WINDOW_BYTES = 6 * 1024 * 1024
#: the fewest and most pieces of a window (the byte bound is kept within these)
MIN_WINDOW = 4
MAX_WINDOW = 64
#: Set by :mod:`pcpkit.inspect` while its registry is on (``None`` otherwise: no cost);
#: called once with each stream (:class:`TorrentFileProducer`) when it is made.
inspectHook: Callable[[object], object] | None = None
#: seconds of data the window aims to hold at the stream's measured rate
HORIZON_SECONDS = 3.0
#: seconds between two measures of the rates (and resizes of the window)
SAMPLE_SECONDS = 0.25
#: the shortest and longest step between two pieces' deadlines, in ms
MIN_STEP_MS = 25
MAX_STEP_MS = 1000
#: the fewest pieces next in line whose bytes a stream asks for (and may hold); the rest
#: of the window only has deadlines
READ_AHEAD = 4
#: seconds of data at the stream's rate that the read-ahead aims to hold
READ_SECONDS = 1.0
#: bytes at the end of a media file primed when it is opened
PRIME_TAIL_BYTES = 512 * 1024


@implementer(IPushProducer)
class TorrentFileProducer:
    """
    Writes bytes ``[start, end)`` of file ``fileIndex`` of a torrent to ``consumer``.

    :param session: the :class:`~pcpkit.torrent.session.TorrentSession` running it.
    :param torrentid: the torrent's id in that session.
    :param fileIndex: the file's index in the torrent (0 for a single-file torrent).
    :param consumer: an ``IConsumer``; this registers itself on it as a push producer.
    :param start: first byte of the file to deliver.
    :param end: one past the last byte (``None``: the end of the file).
    :param window: the most pieces requested ahead of the next one to deliver (the byte
        bound); by default as many as make :data:`DEFAULT_WINDOW_BYTES` (6 MiB), at least
        4 and at most 64 pieces. The window in use is sized within it from the measured
        rates (see the module documentation).
    :param chunkSize: largest single ``write`` (pieces are cut so a pause takes effect
        within one chunk).
    :param deadlineMs: the deadline step before a rate is measured: the *k*-th piece of
        the window is due within ``k * deadlineMs`` ms (libtorrent requests late pieces
        from more peers); then the step is the time the consumer takes for one piece.
    :param horizon: seconds of data the window aims to hold (:data:`HORIZON_SECONDS`);
        ``0`` keeps the window at its bound.
    :param primeMedia: prime the last pieces when a media file is opened (see the module
        documentation).
    :param clock: an ``IReactorTime`` for the rate measures (the global reactor by default).

    Use :meth:`beginProducing` (or :func:`streamFile`) to start it.
    """

    #: re-requests of one piece whose read was cancelled before the stream gives up
    MAX_CANCELLATIONS = 20

    def __init__(
        self,
        session: TorrentSession,
        torrentid: int,
        fileIndex: int,
        consumer: Any,
        start: int = 0,
        end: int | None = None,
        *,
        window: int | None = None,
        chunkSize: int = 65536,
        deadlineMs: int = 250,
        horizon: float = HORIZON_SECONDS,
        primeMedia: bool = True,
        clock: Any = None,
    ) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, not {window!r}")
        if chunkSize < 1:
            raise ValueError(f"chunkSize must be >= 1, not {chunkSize!r}")
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, not {horizon!r}")
        self.session = session
        self.torrentid = torrentid
        self.fileIndex = fileIndex
        self.consumer = consumer
        self.start = start
        self.end = end
        #: the most pieces requested ahead; ``None`` until known when not given
        self.windowLimit: int | None = window
        #: pieces requested ahead now (sized from the rates within ``windowLimit``)
        self.window: int | None = window
        #: the largest window used so far
        self.maxWindow = window or 0
        #: pieces next in line whose bytes are asked for (and may be held) now, and the most
        #: so far (see the module documentation)
        self.readAhead = READ_AHEAD
        self.maxReadAhead = 0
        self.chunkSize = chunkSize
        self.deadlineMs = deadlineMs
        self.horizon = horizon
        self.primeMedia = primeMedia
        self.clock: Any = getReactor() if clock is None else clock
        #: fires when the range is delivered; see the module documentation. Cancelling it
        #: stops the stream and unregisters the producer.
        self.deferred: Deferred[None] = Deferred(self._cancel)
        #: bytes delivered to the consumer so far
        self.bytesWritten = 0
        #: the most bytes held at once (received ahead + being written)
        self.maxBufferedBytes = 0
        #: pieces reported finished by libtorrent while streaming (informational)
        self.piecesFinished = 0
        #: the consumer's drain rate and the rate pieces arrive at, bytes/s (``None``:
        #: not measured yet)
        self.drainRate: float | None = None
        self.swarmRate: float | None = None
        #: pieces primed (a deadline without a read) when the file was opened
        self.primed: list[int] = []

        self._handle: Any = None
        self._pieceLength = 0
        self._fileStart = 0
        self._fileSize = 0
        self._absStart = 0
        self._absEnd = 0
        self._first = 0
        self._next = 0  # next piece to move into the write buffer
        self._last = -1
        self._urgent = True  # the next piece asked for is due at once (start, seek)
        self._requested: set[int] = set()  # reads asked for: their data comes to us
        self._ahead: set[int] = set()  # deadlines only: fetched, read when near
        self._onDisk: set[int] = set()  # known to be had, not read yet
        # the pieces on disk: from the torrent's status when mapped, then piece events (a
        # piece checked after that is read through its deadline's alert all the same)
        self._had = bytearray()
        self._aheadTo = -1  # the window past the read-ahead was walked up to this piece
        self._cancellations: dict[int, int] = {}
        self._received: dict[int, bytes] = {}
        self._receivedBytes = 0
        self._fifo = ByteFIFO()
        # Delivery and requests stop while any pause is held (both loops check it); the
        # last release carries on. The consumer's pause is one Pause.
        self._pauser = Pauser(_nothing, self._carryOn)
        self._consumerPause: Pause | None = None
        # the current rate sample: its start, bytes written and arrived, time paused
        self._sampleAt = 0.0
        self._sampleWritten = 0
        self._sampleArrived = 0
        self._samplePaused = 0.0
        self._pausedAt: float | None = None
        self._stallCall: Any = None  # measures a consumer that stays paused
        self._flushing = False
        self._started = False
        self._mapped = False
        self._listening = False
        self._registered = False
        self._over = False
        if inspectHook is not None:
            inspectHook(self)

    # -- public ------------------------------------------------------------------------

    @property
    def bufferedBytes(self) -> int:
        """Bytes held now: pieces received ahead of their turn plus the write buffer."""
        return self._receivedBytes + len(self._fifo)

    @property
    def paused(self) -> bool:
        """Whether delivery is paused (by the consumer)."""
        return self._pauser.paused

    @property
    def pieceLength(self) -> int:
        """The torrent's piece length (``0`` until the range is mapped)."""
        return self._pieceLength

    def inspectState(self) -> dict[str, Any]:
        """What :mod:`pcpkit.inspect` shows of this stream: its window and what is in flight."""
        return {
            "torrent": self.torrentid,
            "file": self.fileIndex,
            "window": self.window,
            "nextPiece": self._next,
            "lastPiece": self._last,
            "piecesInFlight": len(self._requested),
            "piecesAhead": len(self._received),
            "bufferedBytes": self.bufferedBytes,
            "maxBufferedBytes": self.maxBufferedBytes,
            "bytesWritten": self.bytesWritten,
            "paused": self.paused,
            "over": self._over,
        }

    def beginProducing(self) -> Deferred[None]:
        """Register on the consumer and start delivering; returns :attr:`deferred`."""
        if self._started:
            return self.deferred
        self._started = True
        try:
            self._handle = self.session.handle(self.torrentid)
            self.session.addPieceListener(self.torrentid, self)
        except TorrentError as e:
            self._over = True
            self.deferred.errback(e)
            return self.deferred
        self._listening = True
        try:
            self.consumer.registerProducer(self, True)
        except Exception as e:  # e.g. the consumer already has a producer
            self._fail(e)
            return self.deferred
        self._registered = True
        if self._handle.torrent_file() is not None:
            self._map()
        # else: a magnet still fetching its metadata; metadataReceived() maps the range
        return self.deferred

    def seek(self, start: int, end: int | None = None) -> None:
        """
        Deliver bytes ``[start, end)`` of the file from now on instead of the rest of the
        range: what is buffered is dropped, the old window's deadlines are reset at once
        and the new position's first piece is due at once. :attr:`deferred` fires when
        the new range has been delivered.

        :raises ValueError: the range is not within the file, or the stream is over.
        """
        if self._over or not self._started:
            raise ValueError("seek() needs a running stream")
        if not self._mapped:
            self.start, self.end = start, end  # mapped when the metadata comes
            return
        stop = self._fileSize if end is None else end
        if not 0 <= start <= stop <= self._fileSize:
            raise ValueError(
                f"range [{start}, {stop}) is not within file {self.fileIndex} "
                f"of {self._fileSize} bytes"
            )
        self._resetDeadlines(self._requested | self._ahead)
        self._requested.clear()
        self._ahead.clear()
        self._onDisk.clear()
        self._cancellations.clear()
        self._received.clear()
        self._receivedBytes = 0
        self._fifo.clear()
        self.start, self.end = start, end
        self._setRange(start, stop)
        if not self._flushing:
            self._carryOn()

    # -- IPushProducer -----------------------------------------------------------------

    def pauseProducing(self) -> None:
        if self._consumerPause is None:
            self._consumerPause = self._pauser.pause("consumer")
            self._pausedAt = self.clock.seconds()
            if self._stallCall is None and not self._over:
                self._stallCall = self.clock.callLater(2 * SAMPLE_SECONDS, self._stalled)

    def resumeProducing(self) -> None:
        if self._over:
            return
        held = self._consumerPause
        if held is not None:
            self._consumerPause = None
            if self._pausedAt is not None:
                self._samplePaused += self.clock.seconds() - self._pausedAt
                self._pausedAt = None
            held.unpause()  # the last pause released: _carryOn
        elif not self._pauser.paused:
            self._carryOn()  # a resume without a pause (some consumers start that way)

    def stopProducing(self) -> None:
        if self._over:
            return
        self._cleanup()
        self.deferred.errback(
            StreamStopped(
                f"stream of torrent {self.torrentid} file {self.fileIndex} stopped by the "
                f"consumer after {self.bytesWritten} of {self._absEnd - self._absStart} bytes"
            )
        )

    # -- PieceListener -----------------------------------------------------------------

    def pieceRead(self, piece: int, data: bytes | None, error: str | None) -> None:
        if self._over or piece not in self._requested:
            return  # another stream's piece, or one we already have
        self._requested.discard(piece)
        if data is None:
            self._fail(
                TorrentError(f"torrent {self.torrentid}: reading piece {piece} failed: {error}")
            )
            return
        base = piece * self._pieceLength
        lo = max(self._absStart - base, 0)
        hi = min(self._absEnd - base, len(data))
        chunk = data[lo:hi] if (lo, hi) != (0, len(data)) else data
        self._received[piece] = chunk
        self._receivedBytes += len(chunk)
        self._sampleArrived += len(chunk)
        self.maxBufferedBytes = max(self.maxBufferedBytes, self.bufferedBytes)
        if not self._flushing:
            self._sample()
            self._flush()
            self._fill()

    def pieceReadCancelled(self, piece: int) -> None:
        if self._over or piece not in self._requested:
            return
        # another stream on this torrent reset this piece's deadline (or the torrent was
        # paused): ask again; a piece cancelled over and over is given up on
        self._requested.discard(piece)
        self._cancellations[piece] = self._cancellations.get(piece, 0) + 1
        if self._cancellations[piece] > self.MAX_CANCELLATIONS:
            self._fail(
                TorrentError(
                    f"torrent {self.torrentid}: reading piece {piece} was cancelled "
                    f"{self._cancellations[piece]} times"
                )
            )
            return
        self._fill()

    def pieceFinished(self, piece: int) -> None:
        # read_piece_alerts (from the deadline flag) carry the data of the pieces asked
        # for; this keeps the map of the pieces on disk
        if 0 <= piece < len(self._had):
            self._had[piece] = 1
        if self._first <= piece <= self._last:
            self.piecesFinished += 1

    def metadataReceived(self) -> None:
        if not self._over and not self._mapped:
            self._map()

    def torrentFailed(self, error: TorrentError) -> None:
        self._listening = False  # the session dropped us already
        self._fail(error)

    # -- internals ---------------------------------------------------------------------

    def _carryOn(self) -> None:
        if not self._over and not self._flushing:
            self._sample()
            self._flush()
            self._fill()

    def _map(self) -> None:
        """Turn (file, start, end) into torrent offsets and pieces, then start requesting."""
        ti = self._handle.torrent_file()
        files = fileLayout(ti)
        if not 0 <= self.fileIndex < files.num_files():
            self._fail(
                ValueError(
                    f"torrent {self.torrentid} has no file {self.fileIndex} "
                    f"(it has {files.num_files()})"
                )
            )
            return
        size = int(files.file_size(self.fileIndex))
        end = size if self.end is None else self.end
        if not 0 <= self.start <= end <= size:
            self._fail(
                ValueError(
                    f"range [{self.start}, {end}) is not within file {self.fileIndex} "
                    f"of {size} bytes"
                )
            )
            return
        self._mapped = True
        self._pieceLength = int(ti.piece_length())
        if self.windowLimit is None:
            # Bounded in bytes, not pieces, so a torrent of 4 MiB pieces does not hold 100 MiB
            # per stream; a deep window keeps libtorrent fetching ahead (measured on 256 KiB
            # pieces: 12 pieces gave 0.84x a plain download's speed, 24 gave 0.94x).
            self.windowLimit = max(
                MIN_WINDOW, min(MAX_WINDOW, -(-DEFAULT_WINDOW_BYTES // self._pieceLength))
            )
        # no rate is known yet: fetch and read as far as the bound (of the pieces on disk,
        # READ_AHEAD at a time); the first samples size both
        self.window = self.windowLimit
        self.maxWindow = max(self.maxWindow, self.window)
        self.readAhead = self.window
        self.maxReadAhead = max(self.maxReadAhead, self.readAhead)
        self._fileStart = int(files.file_offset(self.fileIndex))
        self._fileSize = size
        pieces = self._handle.status(lt.status_flags_t.query_pieces).pieces
        self._had = bytearray(1 if had else 0 for had in pieces)
        if len(self._had) < int(ti.num_pieces()):  # (no bitfield while checking)
            self._had = bytearray(int(ti.num_pieces()))
        self._sampleAt = self.clock.seconds()
        if self._setRange(self.start, end):
            return
        path = str(files.file_path(self.fileIndex))
        if self.primeMedia and self.start == 0 and _isMedia(path):
            self._primeTail()
        self._fill()

    def _setRange(self, start: int, end: int) -> bool:
        """Point the stream at file bytes ``[start, end)``; ``True`` when that is empty."""
        self._absStart = self._fileStart + start
        self._absEnd = self._fileStart + end
        if self._absEnd == self._absStart:
            self._finish()
            return True
        self._first = self._next = self._absStart // self._pieceLength
        self._last = (self._absEnd - 1) // self._pieceLength
        self._aheadTo = self._next - 1
        self._urgent = True
        return False

    def _primeTail(self) -> None:
        """Ask for the file's last pieces soon (no read: the player asks for them later)."""
        fileEnd = self._fileStart + self._fileSize
        lastPiece = (fileEnd - 1) // self._pieceLength
        firstPiece = max(fileEnd - PRIME_TAIL_BYTES, self._fileStart) // self._pieceLength
        top = self._next + (self.window or MIN_WINDOW) - 1
        step = self._stepMs()
        for piece in range(max(firstPiece, top + 1), lastPiece + 1):
            try:
                if not self._had[piece]:
                    # right after the first pieces of the stream
                    self._handle.set_piece_deadline(piece, 2 * step)
                    self.primed.append(piece)
            except RuntimeError:  # an invalid handle: _fill reports it
                return

    def _stepMs(self) -> int:
        """ms between two pieces' deadlines: one piece's time at the consumer's pace."""
        rate = self.drainRate
        if not rate:
            return self.deadlineMs
        return int(max(MIN_STEP_MS, min(MAX_STEP_MS, 1000 * self._pieceLength / rate)))

    def _fill(self) -> None:
        """Request the pieces of the window that are neither requested nor received."""
        if self._over or self._pauser.count or not self._mapped:
            return
        top = min(self._next + (self.window or MIN_WINDOW) - 1, self._last)
        near = min(self._next + self.readAhead - 1, top)
        # Pieces on disk are read READ_AHEAD at a time until the first measure: every
        # read in flight holds a piece in libtorrent as well as ours, and hundreds of
        # streams starting at once must not each read their whole window.
        measured = self.drainRate is not None
        nearOnDisk = self._next + (self.readAhead if measured else READ_AHEAD) - 1
        step = self._stepMs()
        # (this runs for every piece delivered: the far part of the window is only walked
        # where it is new, and which pieces are had is known from the piece events, not
        # asked of libtorrent -- have_piece is a round trip to its busy network thread)
        try:
            for piece in range(self._next, near + 1):
                if piece in self._requested or piece in self._received:
                    continue
                if piece in self._onDisk or self._had[piece]:
                    self._onDisk.add(piece)
                    if piece > nearOnDisk:
                        continue  # read when the stream is nearer
                    self._onDisk.discard(piece)
                    self._ahead.discard(piece)
                    self._requested.add(piece)
                    self._handle.read_piece(piece)
                else:
                    self._ahead.discard(piece)
                    self._requested.add(piece)
                    self._handle.set_piece_deadline(
                        piece, self._deadline(piece, step), lt.deadline_flags_t.alert_when_available
                    )
            for piece in range(max(near, self._aheadTo) + 1, top + 1):
                # fetched ahead, its bytes not held: read when the stream is near it
                if piece in self._requested or piece in self._received:
                    continue
                if self._had[piece]:
                    self._onDisk.add(piece)
                else:
                    self._ahead.add(piece)
                    self._handle.set_piece_deadline(piece, self._deadline(piece, step))
        except RuntimeError as e:  # an invalid handle: the torrent is going away
            self._fail(TorrentError(f"torrent {self.torrentid}: {e}"))
            return
        self._aheadTo = max(self._aheadTo, top)
        self._urgent = False

    def _deadline(self, piece: int, step: int) -> int:
        if self._urgent and piece == self._next:
            return 0  # the first byte of a stream or a seek: at once
        return step * (piece - self._next + 1)

    def _stalled(self) -> None:
        """
        Look at a consumer that paused: if it has held that pause a while, measure and
        shrink; look again while it holds it. (One call per stream at a time, not one per
        pause: a transport pauses and resumes its producer many times a second.)
        """
        self._stallCall = None
        if self._over or self._consumerPause is None or self._pausedAt is None:
            return
        waited = self.clock.seconds() - self._pausedAt
        if waited >= 2 * SAMPLE_SECONDS:
            self._sample(release=True)
            if self.readAhead <= READ_AHEAD and (self.window or 0) <= MIN_WINDOW:
                return  # as small as it gets: nothing more to look at
            waited = 0.0
        self._stallCall = self.clock.callLater(2 * SAMPLE_SECONDS - waited, self._stalled)

    def _cancelStallCall(self) -> None:
        call, self._stallCall = self._stallCall, None
        if call is not None and call.active():
            call.cancel()

    def _sample(self, release: bool = False) -> None:
        """
        Every SAMPLE_SECONDS: measure the rates and size the window from them. When the
        consumer stays paused (``release``), what lies past a smaller window is let go of
        at once; otherwise it is delivered (reading it again later would cost more).
        """
        if not self._mapped:
            return
        now = self.clock.seconds()
        elapsed = now - self._sampleAt
        if elapsed < SAMPLE_SECONDS:
            return
        paused = self._samplePaused
        if self._pausedAt is not None:
            paused += now - self._pausedAt
            self._pausedAt = now
        written, arrived = self._sampleWritten, self._sampleArrived
        drain, arrive = written / elapsed, arrived / elapsed
        self.drainRate = drain if self.drainRate is None else (self.drainRate + drain) / 2
        self.swarmRate = arrive if self.swarmRate is None else (self.swarmRate + arrive) / 2
        self._sampleAt = now
        self._sampleWritten = self._sampleArrived = 0
        self._samplePaused = 0.0
        if not self.horizon or self.windowLimit is None:
            return
        if paused >= elapsed / 2:
            rate = self.drainRate  # the consumer sets the pace
        elif not (written or arrived):
            return  # nothing came and nothing was asked for: waiting for peers, no measure
        else:
            rate = 2 * max(self.drainRate, self.swarmRate)  # the swarm does: room to grow
        wanted = -(-int(self.horizon * rate) // self._pieceLength)
        window = max(min(MIN_WINDOW, self.windowLimit), min(self.windowLimit, wanted))
        reads = -(-int(READ_SECONDS * rate) // self._pieceLength)
        self._resize(window, max(min(READ_AHEAD, window), min(window, reads)), release)

    def _resize(self, window: int, readAhead: int, release: bool) -> None:
        """
        Use ``window`` pieces, reading the first ``readAhead``. A smaller one asks for no
        more past its end; with ``release``, what lies past it is let go of now (a stream
        whose rate merely dipped keeps what it asked for: dropping it would only read it
        again).
        """
        old = self.window or window
        self.window, self.readAhead = window, readAhead
        self.maxWindow = max(self.maxWindow, window)
        self.maxReadAhead = max(self.maxReadAhead, readAhead)
        if not release:
            return
        if window < old:
            top = self._next + window - 1
            beyond = [p for p in self._requested | self._ahead if p > top]
            self._resetDeadlines(beyond)
            self._requested.difference_update(beyond)
            self._ahead.difference_update(beyond)
            self._aheadTo = min(self._aheadTo, top)
        near = self._next + readAhead - 1
        far = [p for p in self._requested if p > near]
        # still fetched (their deadlines stay), but their bytes are dropped when they come
        self._requested.difference_update(far)
        self._ahead.update(far)
        for piece in [p for p in self._received if p > near]:
            # verified and on disk: read again when the stream is near it
            self._receivedBytes -= len(self._received.pop(piece))

    def _resetDeadlines(self, pieces: Any) -> None:
        for piece in pieces:
            try:
                self._handle.reset_piece_deadline(piece)
            except RuntimeError:
                pass

    def _advance(self) -> None:
        """Move the next piece, if it is here, into the write buffer (cut into chunks)."""
        if self._fifo or self._next not in self._received:
            return
        data = self._received.pop(self._next)
        self._cancellations.pop(self._next, None)
        self._receivedBytes -= len(data)
        self._next += 1
        if len(data) <= self.chunkSize:
            self._fifo.append(data)
        else:
            view = memoryview(data)
            for i in range(0, len(data), self.chunkSize):
                self._fifo.append(bytes(view[i : i + self.chunkSize]))

    def _flush(self) -> None:
        self._flushing = True
        try:
            while not self._over:
                self._advance()
                if not self._fifo:
                    break
                if self._pauser.count:
                    return
                chunk = self._fifo.popChunk()
                self.bytesWritten += len(chunk)
                self._sampleWritten += len(chunk)
                # may pause, resume, seek or stop us re-entrantly: the loop re-checks
                self.consumer.write(chunk)
        finally:
            self._flushing = False
        if not self._over and self._mapped and self._next > self._last and not self._fifo:
            self._finish()

    def _finish(self) -> None:
        self._cleanup()
        self.consumer.unregisterProducer()
        self.deferred.callback(None)

    def _fail(self, error: BaseException) -> None:
        if self._over:
            return
        registered = self._registered
        self._cleanup()
        if registered:
            try:
                self.consumer.unregisterProducer()
            except Exception:
                log.failure("unregisterProducer failed after a stream error")
        self.deferred.errback(error)

    def _cancel(self, d: Deferred[None]) -> None:
        # Deferred.cancel(): stop and let go of the consumer; the Deferred then fails
        # with CancelledError
        if not self._over:
            registered = self._registered
            self._cleanup()
            if registered:
                self.consumer.unregisterProducer()

    def _cleanup(self) -> None:
        self._over = True
        self._cancelStallCall()
        self._registered = False
        self._resetDeadlines(self._requested | self._ahead)
        self._requested.clear()
        self._ahead.clear()
        self._onDisk.clear()
        self._received.clear()
        self._receivedBytes = 0
        self._fifo.clear()
        if self._listening:
            self._listening = False
            self.session.removePieceListener(self.torrentid, self)


def _mallocTrim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` (another C library)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _mallocTrim()


def releaseFreedMemory() -> bool:
    """
    Give the memory freed by ended streams back to the system, as far as the C library
    allows; returns whether it could try.

    A stream's pieces are blocks of a piece's size, above the size glibc serves from
    ``mmap`` at first but below the threshold it raises to after freeing such blocks: they
    end up on its heaps, which it returns only from their top. After hundreds of streams
    the memory stays taken although Python holds none of it (measured: 500 streams of a
    32 MiB file, ~850 MB resident after all had ended). ``malloc_trim(0)`` returns the
    free pages of every heap. It takes a few milliseconds on a large heap: call it when a
    burst of streams is over (the daemon's HTTP side does when its last stream ends).
    """
    if _trim is None:
        return False
    _trim(0)
    return True


def _isMedia(path: str) -> bool:
    """Whether a file's name says audio or video (a player reads its end first)."""
    kind, _ = mimetypes.guess_type(path)
    return kind is not None and kind.split("/")[0] in ("video", "audio")


def _nothing() -> None:
    pass


def streamFile(
    session: Any,
    torrentid: int,
    fileIndex: int,
    consumer: Any,
    start: int = 0,
    end: int | None = None,
    *,
    window: int | None = None,
    chunkSize: int = 65536,
) -> Deferred[None]:
    """
    Deliver bytes ``[start, end)`` of a torrent's file to ``consumer`` in order, as they
    download; see :class:`TorrentFileProducer` and the module documentation.

    ``session`` is a :class:`~pcpkit.torrent.session.TorrentSession`, or a started
    :class:`~pcpkit.torrent.client.TorrentClient` or
    :class:`~pcpkit.torrent.patron.TorrentPatron` (its ``session`` is used).

    :return: a Deferred firing with ``None`` when the range has been written and the
        producer unregistered; failing with ``ValueError`` (no such file, bad range),
        :class:`~pcpkit.torrent.session.UnknownTorrent`, :class:`StreamStopped` (the
        consumer called ``stopProducing``) or another
        :class:`~pcpkit.torrent.session.TorrentError` (torrent error or removal,
        session stopped).
    """
    if not isinstance(session, TorrentSession):
        # a TorrentClient component (or anything else that owns a session) will do
        owned = getattr(session, "session", None)
        if not isinstance(owned, TorrentSession):
            raise TypeError(
                "streamFile needs a TorrentSession or a started TorrentClient or "
                f"TorrentPatron, not {session!r}"
            )
        session = owned
    producer = TorrentFileProducer(
        session, torrentid, fileIndex, consumer, start, end, window=window, chunkSize=chunkSize
    )
    return producer.beginProducing()
