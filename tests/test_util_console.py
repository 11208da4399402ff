"""ConsoleReader / ConsoleEchoer on the reactor's stdio, over real pipes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import fdesc
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from zope.interface.verify import verifyObject

from pcpkit import ErrorInformation, ProducerFinished
from pcpkit.chassis import Pipeline
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.util import ConsoleEchoer, ConsoleReader
from pcpkit.util import console as consolemodule
from tests.componentutil import Source
from tests.test_util_fanout import Gate, waitUntil


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    """(stdin read end, stdin write end, stdout read end, stdout write end)."""
    inR, inW = os.pipe()
    outR, outW = os.pipe()
    yield inR, inW, outR, outW
    for fd in (inR, inW, outR, outW):
        try:
            os.close(fd)
        except OSError:
            pass


def readAll(fd: int) -> bytes:
    fdesc.setNonBlocking(fd)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest_twisted.ensureDeferred
async def test_reader_sends_lines_prompts_and_ends_at_eof(
    pipes: tuple[int, int, int, int],
) -> None:
    inR, inW, outR, outW = pipes
    reader = ConsoleReader(prompt="> ", stdin=inR, stdout=outW)
    out = MessageCollector()
    p = Pipeline(reader, out)
    p.activate()
    os.write(inW, "hello\nwörld\r\nlast".encode())
    await out.waitFor(2, timeout=5)
    # the shared stdio protocol is the producer registered on standard output
    assert reader.console is not None
    verifyObject(IPushProducer, reader.console)
    verifyObject(IHalfCloseableProtocol, reader.console)
    os.close(inW)
    await runComponent(p, 5)
    assert out.messages == ["hello\n", "wörld\n", "last\n"]
    assert isinstance(out.controlMessages[-1], ProducerFinished)
    assert reader.console is not None
    await reader.console.closed
    assert readAll(outR) == b"> " * 4


@pytest_twisted.ensureDeferred
async def test_reader_stops_reading_while_its_destination_is_full(
    pipes: tuple[int, int, int, int],
) -> None:
    inR, inW, outR, outW = pipes
    reader = ConsoleReader(prompt="", stdin=inR, stdout=outW)
    slow = Gate(bound=2)
    p = Pipeline(reader, slow)
    p.activate()
    lines = b"".join(b"line %d\n" % i for i in range(100))
    os.write(inW, lines)
    await waitUntil(lambda: reader.out.paused)
    assert slow.dataReady("inbox") == 2
    slow.open()
    await waitUntil(lambda: len(slow.got) == 100)
    os.close(inW)
    await runComponent(p, 5)
    assert slow.got == [f"line {i}\n" for i in range(100)]
    assert reader.out.pauser.pauses >= 1
    assert reader.console is not None
    await reader.console.closed


@pytest_twisted.ensureDeferred
async def test_reader_too_long_line(pipes: tuple[int, int, int, int]) -> None:
    inR, inW, outR, outW = pipes
    reader = ConsoleReader(prompt="", stdin=inR, stdout=outW, maxLength=10)
    out = MessageCollector()
    p = Pipeline(reader, out)
    p.activate()
    os.write(inW, b"short\n" + b"x" * 50 + b"\n")
    await runComponent(p, 5)
    assert out.messages == ["short\n"]
    assert isinstance(out.controlMessages[0], ErrorInformation)
    assert "longer than 10" in str(out.controlMessages[0].message)
    assert reader.console is not None
    await reader.console.closed


@pytest_twisted.ensureDeferred
async def test_echoer_writes_everything_and_holds_senders_while_stdout_is_full(
    pipes: tuple[int, int, int, int],
) -> None:
    inR, inW, outR, outW = pipes
    block = b"y" * 4096
    count = 1000  # 4 MB: far more than the pipe and the transport's buffer hold
    feeder = Source([block] * count + ["text", 42])
    echoer = ConsoleEchoer(tag="", stdin=inR, stdout=outW)
    p = Pipeline(feeder, echoer)
    p.activate()
    await waitUntil(lambda: echoer.dataReady("inbox") >= 32 and feeder.sent < count)
    console = consolemodule._consoles[(inR, outW)]
    assert console.writePaused
    # now drain the pipe as a slow reader would
    got = bytearray()
    fdesc.setNonBlocking(outR)

    def drain() -> bool:
        try:
            got.extend(os.read(outR, 1 << 16))
        except BlockingIOError:
            pass
        return p.finished.called

    await waitUntil(drain, timeout=20)
    await waitUntil(lambda: drain() and console.closed.called)
    got.extend(readAll(outR))
    assert bytes(got) == block * count + b"text42"
    assert echoer.written == len(got)
