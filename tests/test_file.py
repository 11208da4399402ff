"""File readers and writers, and the Kamaelia example run as written."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from pcpkit import ErrorInformation, ProducerFinished, ShutdownMicroprocess
from pcpkit.chassis import Pipeline
from pcpkit.file import READ_BATCH, FileReader, FileWriter, RateControlledFileReader
from pcpkit.internet.threadedtcp import ThreadedTCPClient
from pcpkit.util import DataSource
from tests.componentutil import Collector
from tests.procutil import ProcessRunner, exitCode
from tests.tcputil import Recorder, server
from tests.waitutil import waitUntil


def fileThreadRuns() -> bool:
    """Whether a job of pcpkit.file's runs in a thread of its own (a FIFO's open, say)."""
    return any(t.name.startswith("pcpkit.file ") for t in threading.enumerate())


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest_twisted.ensureDeferred
async def test_filereader_to_filewriter_copies_exactly(tmp_path: Path) -> None:
    data = payload(3 * 65536 + 123)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    reader = FileReader(src, chunksize=10_000)
    writer = FileWriter(dst)
    writer.setInboxSize("inbox", 4)
    sink = Collector()
    p = Pipeline(reader, writer, sink)
    await p.activate().finished.addTimeout(30, reactor)
    assert dst.read_bytes() == data
    assert await reader.finished == len(data)
    assert await writer.finished == len(data)
    assert isinstance(sink.control[0], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_filereader_lines_mode(tmp_path: Path) -> None:
    src = tmp_path / "lines.txt"
    src.write_text("one\ntwo\nthree")
    sink = Collector()
    await Pipeline(FileReader(src, readmode="lines"), sink).activate().finished
    assert sink.got == ["one\n", "two\n", "three"]


@pytest_twisted.ensureDeferred
async def test_missing_file_is_reported(tmp_path: Path) -> None:
    sink = Collector()
    reader = FileReader(tmp_path / "nope.bin")
    p = Pipeline(reader, sink)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        await p.activate().finished.addTimeout(10, reactor)
    assert isinstance(sink.control[0], ErrorInformation)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="readmode"):
        FileReader("x", readmode="words")
    with pytest.raises(ValueError, match="rate"):
        RateControlledFileReader("x", rate=0)


@pytest_twisted.ensureDeferred
async def test_rate_control_is_not_faster_than_the_rate(tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(payload(50_000))
    sink = Collector()
    reader = RateControlledFileReader(src, rate=100_000, chunksize=5_000)
    start = reactor.seconds()
    await Pipeline(reader, sink).activate().finished.addTimeout(30, reactor)
    elapsed = reactor.seconds() - start
    assert b"".join(sink.got) == src.read_bytes()
    # 50 000 bytes at 100 000 B/s: the first chunk goes at once, so at least 0.45 s
    assert elapsed >= 0.45 * 0.95


@pytest_twisted.ensureDeferred
async def test_reader_stops_on_shutdownMicroprocess(tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(payload(1_000_000))
    sink = Collector()
    reader = RateControlledFileReader(src, rate=200_000)
    p = Pipeline(reader, sink)
    p.activate()
    reactor.callLater(0.2, p.inboxes["control"].final.deliver, ShutdownMicroprocess())
    await p.finished.addTimeout(30, reactor)
    assert isinstance(sink.control[0], ShutdownMicroprocess)
    got = b"".join(sink.got)
    assert 0 < len(got) < 1_000_000 and src.read_bytes().startswith(got)


@pytest_twisted.ensureDeferred
async def test_kamaelia_example_as_written(tmp_path: Path) -> None:
    """
    Kamaelia's documented example, with a local address:
    ``Pipeline(RateControlledFileReader("myfile", rate=100000),
    ThreadedTCPClient(host, port)).activate()``
    """
    data = payload(250_000, seed=7)
    myfile = tmp_path / "myfile"
    myfile.write_bytes(data)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        async with server(Recorder) as (port, factory):
            start = reactor.seconds()
            p = Pipeline(
                RateControlledFileReader("myfile", rate=100000),
                ThreadedTCPClient("127.0.0.1", port),
            ).activate()
            received = await factory.done.addTimeout(60, reactor)
            elapsed = reactor.seconds() - start
            await p.finished.addTimeout(30, reactor)
    finally:
        os.chdir(cwd)
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    # at about the given rate: 250 kB at 100 kB/s can't arrive in much under 2.4 s
    assert elapsed >= 2.4 * 0.9


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_filereader_does_not_hold_the_reactor_while_the_file_blocks(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer opens it, and reading it blocks until
    # data comes: on the reactor thread either would stop everything (waitUntil's timers
    # included); in the thread pool the reactor runs on, and each chunk goes out once it is
    # complete, not once a batch is.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = payload(50_000, seed=8)
    reader = FileReader(fifo, chunksize=1000)
    sink = Collector()
    p = Pipeline(reader, sink)
    p.activate()
    await waitUntil(fileThreadRuns, 30, "the reader's open in a thread")
    assert not reader.finished.called  # (it cannot: nobody writes the FIFO yet)
    # opening for writing blocks until the reader is there: in a thread
    w = await deferToThread(open, fifo, "wb", buffering=0)
    try:
        await deferToThread(w.write, data[:1000])
        # one whole chunk, the FIFO still open: it goes out now
        await waitUntil(lambda: len(sink.got) == 1, 30, "the first chunk")
        assert sink.got == [data[:1000]] and not reader.finished.called
        await deferToThread(w.write, data[1000:])
    finally:
        await deferToThread(w.close)
    assert await reader.finished.addTimeout(30, reactor) == len(data)
    await p.finished.addTimeout(10, reactor)
    assert b"".join(sink.got) == data
    assert isinstance(sink.control[0], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_filereader_reads_a_regular_file_in_batches_off_the_reactor(
    tmp_path: Path,
) -> None:
    # a file bigger than a batch, odd chunk size: same chunks, in order, as a plain loop of
    # read(chunksize) gives
    data = payload(READ_BATCH * 2 + 12_345, seed=9)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    sink = Collector()
    reader = FileReader(src, chunksize=7_777)
    await Pipeline(reader, sink).activate().finished.addTimeout(30, reactor)
    assert sink.got == [data[i : i + 7_777] for i in range(0, len(data), 7_777)]
    assert await reader.finished == len(data)


@pytest_twisted.ensureDeferred
async def test_filewriter_does_not_hold_the_reactor_while_the_file_blocks(tmp_path: Path) -> None:
    # Opening a FIFO for writing blocks until a reader opens it: done on the reactor thread,
    # it would stop everything, timers included (this test would time out at the first
    # poll of waitUntil); in the thread pool the reactor runs on.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = payload(300_000, seed=7)
    writer = FileWriter(fifo)
    sink = Collector()
    p = Pipeline(
        DataSource([data[i : i + 10_000] for i in range(0, len(data), 10_000)]), writer, sink
    )
    p.activate()
    # the open is under way in a thread, and the reactor runs meanwhile (waitUntil polls it
    # with timers)
    await waitUntil(fileThreadRuns, 30, "the writer's open in a thread")
    assert not writer.finished.called  # (it cannot: nobody reads the FIFO yet)
    # now read the FIFO (in a thread: reading blocks too) and the writer finishes
    got = await deferToThread(lambda: fifo.read_bytes())
    assert await writer.finished.addTimeout(30, reactor) == len(data)
    assert got == data
    await p.finished.addTimeout(10, reactor)


# -- a FIFO nobody opens holds neither the pool nor the shutdown ------------------------------

_STUCK = """
import os, sys, threading
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from pcpkit.chassis import Pipeline
from pcpkit.file import FileReader, FileWriter
from pcpkit.util import DataSource

fifo, kind = sys.argv[1], sys.argv[2]
if kind == "reader":
    FileReader(fifo).activate()
else:
    Pipeline(DataSource([b"data"]), FileWriter(fifo)).activate()

def check():
    if not any(t.name.startswith("pcpkit.file ") for t in threading.enumerate()):
        reactor.callLater(0.01, check)
        return
    # the open is stuck in its thread; the reactor's pool still serves
    d = deferToThread(lambda: "pool ok")
    d.addCallback(print)
    d.addCallback(lambda _: reactor.stop())

reactor.callWhenRunning(check)
reactor.run()
print("stopped")
"""


@pytest.mark.parametrize("kind", ["reader", "writer"])
@pytest_twisted.ensureDeferred
async def test_a_fifo_nobody_opens_holds_neither_the_pool_nor_the_shutdown(
    tmp_path: Path, kind: str
) -> None:
    # In the reactor's pool the stuck open would hold a pool thread, and the reactor's
    # shutdown (which joins the pool's threads) would wait for it for good.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = tmp_path / "stuck.py"
    script.write_text(_STUCK)
    runner = ProcessRunner([sys.executable, str(script), str(fifo), kind])
    assert await exitCode(runner, 60) == 0, runner.text()
    assert runner.outputs[1].decode().split() == ["pool", "ok", "stopped"], runner.text()
