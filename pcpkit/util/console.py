"""
The console as components: :class:`ConsoleReader` and :class:`ConsoleEchoer` (Kamaelia's
``Kamaelia.Util.Console``), on the reactor's standard I/O.

Both use one :class:`twisted.internet.stdio.StandardIO` per pair of file descriptors: no
thread, no polling; the reactor wakes them when there is input or room for output.

* :class:`ConsoleReader` sends each line typed (or piped) as a ``str`` ending in ``eol``.
  While its destination is full it stops reading standard input (flow control reaches the
  pipe or terminal), and at the end of the input it sends ``ProducerFinished``.
* :class:`ConsoleEchoer` writes what it receives to standard output; while the output is
  slow (a full pipe) it stops taking messages, so its senders are held back.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure
from zope.interface import implementer

from pcpkit._twisted import getReactor
from pcpkit.component import Component
from pcpkit.ipc import ErrorInformation, ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.util.framing import DEFAULT_MAX_LINE, FrameError, LineDecoder
from pcpkit.util.outlets import Outlets, boundInbox

__all__ = ["ConsoleReader", "ConsoleEchoer"]


@implementer(IHalfCloseableProtocol, IPushProducer)
class _Console(Protocol):
    """One StandardIO shared by the readers and echoers of a pair of descriptors."""

    def __init__(self, key: tuple[int, int], reactor: Any) -> None:
        self.key = key
        self.users = 0
        self.reader: ConsoleReader | None = None
        self.writePaused = False
        self.writeClosed = False
        self.readClosed = False
        self._waiters: list[Deferred[None]] = []
        #: Fires when the standard I/O transport is gone (after the last user left).
        self.closed: Deferred[None] = Deferred()
        makeStdio: Any = cast(Any, StandardIO)
        self.stdio: Any = makeStdio(self, stdin=key[0], stdout=key[1], reactor=reactor)
        # nobody reads yet: leave the input where it is
        self.stdio.pauseProducing()
        self.stdio.registerProducer(self, True)

    # reading ---------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.reader is not None:
            self.reader._received(data)

    def readConnectionLost(self) -> None:
        self.readClosed = True
        if self.reader is not None:
            self.reader._inputEnded()

    # writing (we are the producer registered on standard output) ---------------------------

    def pauseProducing(self) -> None:
        self.writePaused = True

    def resumeProducing(self) -> None:
        self.writePaused = False
        self._release()

    def stopProducing(self) -> None:
        self.writeClosed = True
        self._release()

    def writeConnectionLost(self) -> None:
        self.writeClosed = True
        self._release()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.writeClosed = self.readClosed = True
        self._release()
        if self.reader is not None:
            self.reader._inputEnded()
        if _consoles.get(self.key) is self:
            del _consoles[self.key]
        if not self.closed.called:
            self.closed.callback(None)

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def whenWritable(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def write(self, data: bytes) -> None:
        if not self.writeClosed:
            self.stdio.write(data)


_consoles: dict[tuple[int, int], _Console] = {}


def _acquire(stdin: int, stdout: int) -> _Console:
    key = (stdin, stdout)
    console = _consoles.get(key)
    if console is None:
        console = _consoles[key] = _Console(key, getReactor())
    console.users += 1
    return console


def _releaseConsole(console: _Console) -> None:
    console.users -= 1
    if console.users == 0:
        if _consoles.get(console.key) is console:
            del _consoles[console.key]
        console.stdio.unregisterProducer()
        console.stdio.loseConnection()


class ConsoleReader(Component):
    """
    Read lines from standard input and send each as a ``str`` ending in ``eol``.

    :param prompt: written to standard output before each line is read (Kamaelia's default
        ``">>> "``; pass ``""`` for none).
    :param eol: appended to each line sent (the line's own ``\\n`` is removed).
    :param stdin, stdout: file descriptors (default 0 and 1), for tests and redirection.
    :param maxLength: the longest line accepted; a longer one is reported as an
        ``ErrorInformation`` on ``signal`` and ends the reader.

    ``outbox``: the lines. ``signal``: ``ProducerFinished`` at the end of the input (or the
    shutdown message received on ``control``, passed on).
    """

    Inboxes = {"inbox": "NOT USED", "control": "a Shutdown stops reading"}
    Outboxes = {"outbox": "lines read (str, ending in eol)", "signal": "ProducerFinished at EOF"}

    def __init__(
        self,
        prompt: str = ">>> ",
        eol: str = "\n",
        *,
        stdin: int = 0,
        stdout: int = 1,
        maxLength: int = DEFAULT_MAX_LINE,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.prompt = prompt
        self.eol = eol
        self.stdin = stdin
        self.stdout = stdout
        self.decoder = LineDecoder(b"\n", maxLength)
        self.console: _Console | None = None
        self.out = Outlets(self, self._pauseInput, self._resumeInput)
        self.out.attach("outbox")
        self.lines = 0
        self._ended = False
        self._error: ErrorInformation | None = None

    def _pauseInput(self) -> None:
        if self.console is not None:
            self.console.stdio.pauseProducing()

    def _resumeInput(self) -> None:
        if self.console is not None and not self._ended:
            self.console.stdio.resumeProducing()
        self.unpause()

    def _received(self, data: bytes) -> None:
        try:
            lines = self.decoder.feed(data)
        except FrameError as e:
            for line in e.partial:
                self._line(line)
            self._error = ErrorInformation(self, exception=e, message=str(e))
            self._inputEnded()
            return
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        self.out.deliver(text + self.eol)
        self.lines += 1
        if self.prompt and self.console is not None:
            self.console.write(self.prompt.encode("utf-8"))

    def _inputEnded(self) -> None:
        if not self._ended:
            self._ended = True
            if self._error is None and self.decoder.buffer:
                self._line(self.decoder.buffer)
                self.decoder.buffer = b""
            if self.console is not None and self.console.reader is self:
                self.console.reader = None
                self.console.stdio.pauseProducing()
        self.unpause()

    def main(self) -> Generator[int, None, None]:
        console = self.console = _acquire(self.stdin, self.stdout)
        if console.reader is not None:
            raise RuntimeError(f"{console.reader} already reads file descriptor {self.stdin}")
        try:
            console.reader = self
            if self.prompt:
                console.write(self.prompt.encode("utf-8"))
            if console.readClosed:
                self._inputEnded()
            else:
                console.stdio.resumeProducing()
            while True:
                while self.dataReady("control"):
                    msg = self.recv("control")
                    if isinstance(msg, Shutdown):
                        self._inputEnded()
                        if isinstance(msg, ShutdownMicroprocess):
                            self.out.clear("told to stop")
                        while self.out.pending:
                            self.pause()
                            yield 1
                        self.send(msg, "signal")
                        return
                if self._ended and not self.out.pending:
                    if self._error is not None:
                        self.send(self._error, "signal")
                    self.send(ProducerFinished(self, "end of input"), "signal")
                    return
                self.pause()
                yield 1
        finally:
            if console.reader is self:
                console.reader = None
            _releaseConsole(console)


class ConsoleEchoer(Component):
    """
    Write everything sent to ``inbox`` to standard output (Kamaelia's ConsoleEchoer).

    ``bytes`` are written as they are; anything else as ``tag + str(msg)`` (``repr`` with
    ``use_repr``), UTF-8 encoded. With ``forwarder`` the messages are also sent on out of
    ``outbox``. A shutdown message on ``control`` ends it after what is queued has been
    written (at once for ``ShutdownMicroprocess``) and is passed on along ``signal``.
    ``stdout`` (default 1) is for tests and redirection; its inbox holds 64 messages.
    """

    Inboxes = {"inbox": "stuff that will be echoed to standard output", "control": "shutdown"}
    Outboxes = {
        "outbox": "stuff forwarded from 'inbox' (if forwarder)",
        "signal": "shutdown signalling",
    }

    def __init__(
        self,
        forwarder: bool = False,
        use_repr: bool = False,
        tag: str = "",
        *,
        stdout: int = 1,
        stdin: int = 0,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.forwarder = forwarder
        self.serialise = repr if use_repr else str
        self.tag = tag
        self.stdout = stdout
        self.stdin = stdin
        self.written = 0
        self.console: _Console | None = None
        boundInbox(self, "inbox")

    def _encode(self, msg: Any) -> bytes:
        if isinstance(msg, (bytes, bytearray, memoryview)) and not self.tag:
            return bytes(msg)
        return (self.tag + self.serialise(msg)).encode("utf-8")

    async def main(self) -> None:
        console = self.console = _acquire(self.stdin, self.stdout)
        try:
            async for msg in self.messages("inbox"):
                if console.writePaused and not console.writeClosed:
                    await console.whenWritable()
                data = self._encode(msg)
                console.write(data)
                self.written += len(data)
                if self.forwarder:
                    await self.put(msg, "outbox")
        finally:
            _releaseConsole(console)
        if console.users == 0:
            # the last writer waits until what it wrote has left the process: a script that
            # ends with the pipeline (``run()``) would otherwise stop the reactor first
            await console.closed
        msg = self.shutdownMessage
        self.send(msg if msg is not None else ProducerFinished(self), "signal")
