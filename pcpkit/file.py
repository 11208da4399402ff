"""
File sources and sinks as components: ``FileReader``, ``RateControlledFileReader``,
``ReadFileAdaptor`` (Kamaelia's older reader), ``FileWriter`` and its Kamaelia name
``SimpleFileWriter``.

The readers send the file out of ``outbox`` in chunks, waiting while the next inbox is full,
then send ``ProducerFinished`` on ``signal``. A ``ShutdownMicroprocess`` on ``control`` stops
them early. Every open, read, write and close happens off the reactor thread (inline on a
``task.Clock``): for a regular file in the reactor's thread pool, for anything else (a FIFO, a
device) in a daemon thread of its own, since that can block for good (a FIFO nobody opens).
So a slow disk, a network file system or a FIFO with nobody at the other end never holds the
reactor, the pool's other users or the reactor's shutdown.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pcpkit._fifo import asBytes
from pcpkit._twisted import currentFailure, getReactor
from pcpkit.component import Component
from pcpkit.ipc import ProducerFinished

_log = Logger()
_T = TypeVar("_T")

__all__ = [
    "FileReader",
    "RateControlledFileReader",
    "ReadFileAdaptor",
    "FileWriter",
    "SimpleFileWriter",
]

#: FileWriter's modes -> the binary mode the file is opened with (Kamaelia programs written
#: for Python 2 pass "w" or "a"; ``str`` is written as UTF-8 either way).
_WRITE_MODES = {"wb": "wb", "w": "wb", "ab": "ab", "a": "ab"}
#: the most bytes :class:`FileWriter` hands the thread pool in one write
WRITE_BATCH = 1 << 20
#: the most bytes a reader takes from a regular file in one thread-pool job
READ_BATCH = 1 << 20


def _reactorFor(component: Component) -> Any:
    return component.scheduler.reactor if component.scheduler is not None else getReactor()


def _inPool(reactor: Any, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
    """``f(*args)`` in ``reactor``'s thread pool; inline where it has none (a ``Clock``)."""
    getPool = getattr(reactor, "getThreadPool", None)
    if getPool is None:
        return maybeDeferred(f, *args)
    return deferToThreadPool(reactor, getPool(), f, *args)


def _inOwnThread(reactor: Any, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
    """
    ``f(*args)`` in a daemon thread of its own; inline where the reactor has no pool (a
    ``Clock``). For work on a FIFO or a device, which can block for good: in the reactor's
    pool it would hold a thread that the pool's other users (name resolution) need, and the
    reactor's shutdown, which joins the pool's threads.
    """
    if getattr(reactor, "getThreadPool", None) is None:
        return maybeDeferred(f, *args)
    d: Deferred[_T] = Deferred()

    def run() -> None:
        try:
            result = f(*args)
        except BaseException:
            reactor.callFromThread(d.errback, currentFailure())
        else:
            reactor.callFromThread(d.callback, result)

    name = getattr(f, "__qualname__", "job")
    threading.Thread(target=run, name=f"pcpkit.file {name}", daemon=True).start()
    return d


_Runner = Callable[..., "Deferred[Any]"]


def _runnerFor(regular: bool) -> _Runner:
    """Where a file's jobs run: the reactor's pool for a regular file, else a thread each."""
    return _inPool if regular else _inOwnThread


def _isRegularPath(path: str | os.PathLike[str]) -> bool:
    """(In a thread.) Whether ``path`` is a regular file, or nothing yet (it will be one)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def _closeLater(run: _Runner, reactor: Any, f: IO[Any]) -> None:
    """
    Close ``f`` off the reactor thread, not waiting (its component ended early). A read or
    write still under way holds the file's lock, so the close waits for it there.
    """
    run(reactor, f.close).addErrback(
        lambda failure: _log.failure("closing {name}", failure, name=f.name)
    )


def _openForReading(filename: str | os.PathLike[str], readmode: str) -> IO[Any]:
    if readmode == "bytes":
        return open(filename, "rb")
    if readmode == "lines":
        return open(filename, encoding="utf-8", newline="")
    raise ValueError(f"readmode must be 'bytes' or 'lines', not {readmode!r}")


class FileReader(Component):
    """
    Send the contents of ``filename`` as fast as the next component takes it.

    Outboxes: ``outbox`` -- ``bytes`` chunks of at most ``chunksize`` (``readmode="bytes"``)
    or one ``str`` line each (``readmode="lines"``); ``signal`` -- ``ProducerFinished`` at
    the end of the file (or the ``ShutdownMicroprocess`` that stopped it).
    The file is opened when the component starts: a missing file fails it with
    ``FileNotFoundError``, reported as for any component.

    The file is opened and read off the reactor thread (see the module's note). A regular
    file is read up to :data:`READ_BATCH` bytes a job (so a reader holds at most that much
    beyond what the next inbox holds); anything else (a FIFO, a device) one chunk a job, so
    each chunk goes out once it is complete rather than once a whole batch is.
    """

    Inboxes = {"inbox": "unused", "control": "ShutdownMicroprocess stops reading early"}
    Outboxes = {"outbox": "file contents", "signal": "ProducerFinished at end of file"}

    def __init__(
        self,
        filename: str | os.PathLike[str],
        chunksize: int = 65536,
        readmode: str = "bytes",
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        if chunksize < 1:
            raise ValueError(f"chunksize must be positive, not {chunksize}")
        if readmode not in ("bytes", "lines"):
            raise ValueError(f"readmode must be 'bytes' or 'lines', not {readmode!r}")
        self.filename = filename
        self.chunksize = chunksize
        self.readmode = readmode
        self.sent = 0
        self._t0: float | None = None

    def _read(self, f: IO[Any], size: int) -> Any:
        return f.readline() if self.readmode == "lines" else f.read(size)

    def _readBatch(self, f: IO[Any], regular: bool) -> tuple[list[Any], bool]:
        """
        (In the thread pool.) The next chunks, and whether the file ended: up to
        :data:`READ_BATCH` bytes of a regular file, one chunk of anything else (another
        could wait for data not written yet).
        """
        chunks: list[Any] = []
        size = 0
        while True:
            chunk = self._read(f, self.chunksize)
            if not chunk:
                return chunks, True
            chunks.append(chunk)
            size += len(chunk)
            if not regular or size >= READ_BATCH:
                return chunks, False

    async def _pace(self, units: int) -> None:
        """Hook for rate control: called after each chunk of ``units`` bytes or lines."""

    async def _waitUntil(self, offset: float, first: float) -> None:
        """
        Wait until ``offset`` seconds after the start, the start being ``first`` seconds
        before the first call. Pacing against the start rather than chunk by chunk keeps
        timer lateness from accumulating into a lower rate.
        """
        reactor = getReactor()
        now = reactor.seconds()
        if self._t0 is None:
            self._t0 = now - first
        due = self._t0 + offset
        if due > now:
            await deferLater(reactor, due - now, lambda: None)

    async def main(self) -> int:
        reactor = _reactorFor(self)
        regular = await _inPool(reactor, _isRegularPath, self.filename)
        run = _runnerFor(regular)
        f = await run(reactor, _openForReading, self.filename, self.readmode)
        try:
            ended = False
            while not ended:
                # (Not read ahead while a batch goes out: the two threads would contend for
                # the GIL, and a page-cached file went 2.9 -> 2.1 GB/s.)
                chunks, ended = await run(reactor, self._readBatch, f, regular)
                for chunk in chunks:
                    stop = self._takeShutdownMicroprocess()
                    if stop is not None:
                        self.send(stop, "signal")
                        return self.sent
                    await self.put(chunk, "outbox")
                    units = len(chunk) if self.readmode == "bytes" else 1
                    self.sent += units
                    await self._pace(units)
            await run(reactor, f.close)
        finally:
            if not f.closed:  # ended early
                _closeLater(run, reactor, f)
        self.send(ProducerFinished(self, f"end of {os.fspath(self.filename)}"), "signal")
        return self.sent


class RateControlledFileReader(FileReader):
    """
    Send ``filename`` at ``rate`` units (bytes, or lines with ``readmode="lines"``) per
    second, in chunks of ``chunksize`` bytes (default ``rate / chunkrate``, with ``chunkrate``
    10 chunks a second), as Kamaelia's reader of the same name. The Kamaelia example runs as
    written::

        Pipeline(RateControlledFileReader("myfile", rate=100000),
                 ThreadedTCPClient("127.0.0.1", 1000)).activate()
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        readmode: str = "bytes",
        rate: float = 100000,
        chunksize: int | None = None,
        chunkrate: float | None = None,
        **argd: Any,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if chunksize is None:
            chunksize = max(1, int(rate / (chunkrate or 10)))
        super().__init__(filename, chunksize=chunksize, readmode=readmode, **argd)
        self.rate = float(rate)

    async def _pace(self, units: int) -> None:
        await self._waitUntil(self.sent / self.rate, units / self.rate)


class ReadFileAdaptor(FileReader):
    """
    Kamaelia's ``ReadFileAdaptor`` for files: ``bytes`` out of ``outbox``, then
    ``ProducerFinished`` on ``signal`` at the end of the file. The boxes and early stop are
    :class:`FileReader`'s.

    :param filename: the file to read. Kamaelia's other sources are refused with a
        ``ValueError``: no ``filename`` (stdin: use :class:`~pcpkit.util.console.ConsoleReader`) or
        ``command`` (run it with ``reactor.spawnProcess``).
    :param readmode: ``"line"`` or ``""`` (the default): one line (``bytes``, with its end
        of line) per message; ``"bitrate"``: ``bitrate / 8 / chunkrate`` bytes ``chunkrate``
        times a second; anything else (``"block"``): ``readsize`` bytes per message.
    :param steptime: seconds between reads in ``"line"`` and ``"block"`` modes (0: as fast
        as the next inbox takes them).
    :param debug: if true, each read is also logged, with its size (``twisted.logger``,
        debug level; Kamaelia prints the data).

    The reads are paced against the start time, as for :class:`RateControlledFileReader`
    (Kamaelia's first read waits one ``steptime``; this one's does not).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] = "",
        command: str = "",
        readmode: str = "",
        readsize: int = 1450,
        steptime: float = 0.0,
        bitrate: float = 65536.0,
        chunkrate: float = 24,
        debug: int = 0,
        **argd: Any,
    ) -> None:
        if command:
            raise ValueError(
                "ReadFileAdaptor(command=...) is not supported: run the command with "
                "reactor.spawnProcess"
            )
        if not filename:
            raise ValueError(
                "ReadFileAdaptor needs filename= (for stdin use pcpkit.util.ConsoleReader)"
            )
        self.lineMode = readmode in ("line", "")
        if readmode == "bitrate":
            if bitrate <= 0 or chunkrate <= 0:
                raise ValueError(
                    f"bitrate and chunkrate must be positive, not {bitrate}, {chunkrate}"
                )
            steptime = 1.0 / chunkrate
            readsize = max(1, int(bitrate / 8 / chunkrate))
        readsize = int(readsize)  # Kamaelia's own callers pass "1450"
        if readsize < 1:
            raise ValueError(f"readsize must be positive, not {readsize}")
        if steptime < 0:
            raise ValueError(f"steptime must be 0 or more, not {steptime}")
        super().__init__(filename, chunksize=readsize, **argd)
        self.command = command
        self.mode = readmode
        self.readsize = readsize
        self.steptime = float(steptime)
        self.debug = debug
        self.chunks = 0

    def _read(self, f: IO[Any], size: int) -> Any:
        return f.readline() if self.lineMode else f.read(size)

    async def _pace(self, units: int) -> None:
        if self.debug:
            _log.debug("{reader} read {n} bytes", reader=self, n=units)
        self.chunks += 1
        if self.steptime <= 0:
            return
        # one chunk per steptime (the first goes at once)
        await self._waitUntil(self.chunks * self.steptime, self.steptime)


class FileWriter(Component):
    """
    Write every message from ``inbox`` (bytes-like, or ``str`` encoded as UTF-8) to
    ``filename``, which is created or truncated (``mode="wb"``, or ``"w"``), or created or
    appended to (``mode="ab"``, or ``"a"``).

    On a :class:`~pcpkit.ipc.Shutdown` on ``control`` it writes what is queued (unless it was
    ``ShutdownMicroprocess``), closes the file, passes the message on along ``signal`` and
    finishes with the number of bytes written.

    Opening, writing and closing happen off the reactor thread, one job at a time (see the
    module's note: the reactor's thread pool for a regular file, a thread of its own for a FIFO
    or a device), so a slow disk or a FIFO nobody reads yet never holds the reactor. While a
    write is under way the inbox fills up to its bound and holds its senders back; what has
    queued meanwhile goes in the next job (up to :data:`WRITE_BATCH` bytes). On a scheduler
    driven by a ``task.Clock`` (which has no thread pool) the file is written inline.
    """

    Inboxes = {"inbox": "data to write", "control": "ProducerFinished closes the file"}
    Outboxes = {"outbox": "unused", "signal": "the shutdown message, passed on"}

    def __init__(self, filename: str | os.PathLike[str], mode: str = "wb", **argd: Any) -> None:
        super().__init__(**argd)
        if mode not in _WRITE_MODES:
            raise ValueError(f"mode must be one of {', '.join(_WRITE_MODES)}, not {mode!r}")
        self.filename = filename
        self.mode = mode
        self.written = 0

    async def main(self) -> int:
        reactor = _reactorFor(self)

        run = _runnerFor(await _inPool(reactor, _isRegularPath, self.filename))

        def inThread(f: Callable[..., _T], *args: Any) -> Deferred[_T]:
            return run(reactor, f, *args)

        f = await inThread(open, self.filename, _WRITE_MODES[self.mode])
        try:
            batch: list[bytes] = []
            size = 0
            async for msg in self.messages("inbox"):
                data = msg.encode("utf-8") if isinstance(msg, str) else asBytes(msg)
                batch.append(data)
                size += len(data)
                if size >= WRITE_BATCH or not self.dataReady("inbox"):
                    await inThread(f.writelines, batch)
                    self.written += size
                    batch, size = [], 0
            if batch:  # taken before a ShutdownMicroprocess ended the loop: written
                await inThread(f.writelines, batch)
                self.written += size
            await inThread(f.close)
        finally:
            if not f.closed:  # failed, or stopped while it waited
                _closeLater(run, reactor, f)
        return self.written


class SimpleFileWriter(FileWriter):
    """
    Kamaelia's ``SimpleFileWriter(filename, mode="wb")``: a :class:`FileWriter` (same boxes
    and messages). The file is opened when the component starts and closed when it ends; a
    ``ProducerFinished`` on ``control`` ends it after what is queued is written, a
    ``ShutdownMicroprocess`` at once; either is passed on along ``signal``. The Kamaelia
    example runs as written::

        Pipeline(RateControlledFileReader("sourcefile", rate=1000000),
                 SimpleFileWriter("destinationfile")).activate()
    """
