"""
Kamaelia's most-imported components on pcpkit: ``DataSource``, ``TriggeredSource``,
``Chargen`` (pcpkit.util.sources), ``SimpleFileWriter``, ``ReadFileAdaptor`` (pcpkit.file),
``ServerCore``
(pcpkit.internet.tcp): unit tests on a ``task.Clock``, real sockets for the server, and
differential runs of the same Kamaelia programs on real Axon and on pcpkit.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent

from pcpkit import Component, ProducerFinished, ShutdownMicroprocess
from pcpkit.chassis import Pipeline
from pcpkit.component import Scheduler
from pcpkit.file import FileWriter, ReadFileAdaptor, SimpleFileWriter
from pcpkit.internet.tcp import ServerCore, SimpleServer
from pcpkit.util import Chargen, DataSource, PureTransformer, TriggeredSource
from tests.componentutil import Collector, drive, settle, wire
from tests.kamaeliadiff import compare

# -- DataSource --------------------------------------------------------------------------


def _run(clock: Clock, *components: Component) -> None:
    sched = Scheduler(clock)
    for c in components:
        c.activate(sched)


def test_datasource_sends_each_message_then_producerFinished() -> None:
    items: list[Any] = [b"hello", "world", 3, None, ("a", 1)]
    source, sink = DataSource(items), Collector()
    wire(source, sink)
    clock = Clock()
    _run(clock, source, sink)
    drive(clock, source, sink)
    assert sink.got == items
    assert [type(m) for m in sink.control] == [ProducerFinished]
    assert items == [b"hello", "world", 3, None, ("a", 1)]  # not consumed, unlike Kamaelia's
    assert source.sent == len(items)


def test_datasource_takes_any_iterable() -> None:
    source, sink = DataSource(i * i for i in range(100)), Collector()
    wire(source, sink)
    clock = Clock()
    _run(clock, source, sink)
    drive(clock, source, sink)
    assert sink.got == [i * i for i in range(100)]


@pytest.mark.parametrize("park", [True, False])
def test_datasource_is_paced_by_the_inbox_it_feeds(park: bool) -> None:
    # park=True: a parking bound (pcpkit's adapters); park=False: an Axon bound (BoxFull).
    source, sink = DataSource(list(range(500))), Collector()
    sink.setInboxSize("inbox", 4, park=park)
    wire(source, sink)
    clock = Clock()
    sched = Scheduler(clock)
    source.activate(sched)  # the sink takes nothing yet
    settle(clock)
    # waiting for room, not spinning: nothing left to run
    assert clock.getDelayedCalls() == []
    assert not source.finished.called
    assert len(sink.inboxes["inbox"]) <= 4 + 1
    assert source.sent <= 4 + 1
    sink.activate(sched)
    drive(clock, source, sink)
    assert sink.got == list(range(500))
    assert sink.maxQueued <= 4 + 1
    assert [type(m) for m in sink.control] == [ProducerFinished]


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=300),
    size=st.integers(min_value=1, max_value=20),
    park=st.booleans(),
    perStep=st.integers(min_value=1, max_value=5),
)
def test_datasource_loses_duplicates_reorders_nothing_and_keeps_the_bound(
    items: list[int], size: int, park: bool, perStep: int
) -> None:
    class Slow(Collector):
        # takes perStep messages a step: the source outruns it
        def main(self) -> Any:
            while True:
                self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
                for _ in range(perStep):
                    if not self.dataReady("inbox"):
                        break
                    self.got.append(self.recv("inbox"))
                if not self.dataReady("inbox") and self.dataReady("control"):
                    self.control.append(self.recv("control"))
                    return self.got
                if not self.dataReady("inbox"):
                    self.pause()
                yield 1

    source, sink = DataSource(items), Slow()
    sink.setInboxSize("inbox", size, park=park)
    wire(source, sink)
    clock = Clock()
    _run(clock, source, sink)
    drive(clock, source, sink)
    assert sink.got == items
    assert sink.maxQueued <= size + 1
    assert [type(m) for m in sink.control] == [ProducerFinished]


def test_datasource_stops_on_shutdownMicroprocess() -> None:
    source, sink = DataSource(list(range(500))), Collector()
    sink.setInboxSize("inbox", 4, park=True)
    wire(source, sink)
    clock = Clock()
    sched = Scheduler(clock)
    source.activate(sched)
    settle(clock)
    source.inboxes["control"].deliver(ShutdownMicroprocess())
    sink.activate(sched)
    drive(clock, source, sink)
    assert sink.got == list(range(len(sink.got)))
    assert len(sink.got) < 500
    assert [type(m) for m in sink.control] == [ShutdownMicroprocess]


# -- TriggeredSource ---------------------------------------------------------------------


def test_triggeredsource_sends_its_message_per_trigger() -> None:
    source, trigger, sink = DataSource(["a", 2, None]), TriggeredSource(b"bang"), Collector()
    assert isinstance(trigger, PureTransformer)
    wire(source, trigger)
    wire(trigger, sink)
    clock = Clock()
    _run(clock, source, trigger, sink)
    drive(clock, source, trigger, sink)
    assert sink.got == [b"bang"] * 3
    assert [type(m) for m in sink.control] == [ProducerFinished]


# -- Chargen -----------------------------------------------------------------------------


def test_chargen_parks_on_a_full_inbox_and_ends_on_shutdownMicroprocess() -> None:
    gen, sink = Chargen(), Collector()
    sink.setInboxSize("inbox", 8, park=True)
    wire(gen, sink)
    clock = Clock()
    sched = Scheduler(clock)
    gen.activate(sched)
    settle(clock)
    assert clock.getDelayedCalls() == []  # parked, not spinning
    assert gen.sent <= 8 + 1 and len(sink.inboxes["inbox"]) <= 8 + 1
    assert not gen.finished.called
    # the stop gets through although it is parked
    gen.inboxes["control"].deliver(ShutdownMicroprocess())
    settle(clock)
    assert gen.finished.called
    sink.activate(sched)
    drive(clock, sink)
    assert sink.got == ["Hello World"] * gen.sent
    assert [type(m) for m in sink.control] == [ShutdownMicroprocess]


def test_chargen_ignores_other_control_messages() -> None:
    gen, sink = Chargen(), Collector()
    sink.setInboxSize("inbox", 8, park=True)
    gen.link((gen, "outbox"), (sink, "inbox"))
    clock = Clock()
    gen.activate(Scheduler(clock))
    gen.inboxes["control"].deliver(ProducerFinished())
    settle(clock)
    assert not gen.finished.called  # as Kamaelia's: it has no input that could finish
    gen.inboxes["control"].deliver(ShutdownMicroprocess())
    settle(clock)
    assert gen.finished.called


@pytest_twisted.ensureDeferred
async def test_chargen_into_a_consumer_never_starves_the_reactor() -> None:
    # An unbounded consumer: nothing parks Chargen, so only its yield each step lets the
    # reactor run the timer that stops it.
    gen, sink = Chargen(), Collector()
    wire(gen, sink)
    sink.activate()
    gen.activate()
    reactor.callLater(0.05, gen.inboxes["control"].deliver, ShutdownMicroprocess())
    await sink.finished.addTimeout(10, reactor)
    assert gen.sent > 0 and sink.got == ["Hello World"] * gen.sent
    assert [type(m) for m in sink.control] == [ShutdownMicroprocess]


# -- SimpleFileWriter --------------------------------------------------------------------


def test_simplefilewriter_writes_what_it_is_sent(tmp_path: Path) -> None:
    chunks = [bytes([i]) * (i * 97 + 1) for i in range(200)] + ["t\u00e9xt"]
    expected = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"old content, replaced")
    source, writer, sink = DataSource(chunks), SimpleFileWriter(str(dst)), Collector()
    assert isinstance(writer, FileWriter)
    writer.setInboxSize("inbox", 4, park=True)
    wire(source, writer)
    wire(writer, sink)
    clock = Clock()
    _run(clock, source, writer, sink)
    drive(clock, source, writer, sink)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(expected).digest()
    assert [type(m) for m in sink.control] == [ProducerFinished]
    assert writer.written == len(expected)


@pytest.mark.parametrize("mode", ["ab", "a"])
def test_simplefilewriter_append_mode(tmp_path: Path, mode: str) -> None:
    dst = tmp_path / "log.bin"
    dst.write_bytes(b"kept;")
    source, writer = DataSource([b"one;", b"two;"]), SimpleFileWriter(dst, mode)
    wire(source, writer)
    clock = Clock()
    _run(clock, source, writer)
    drive(clock, source, writer)
    assert dst.read_bytes() == b"kept;one;two;"


def test_simplefilewriter_refuses_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of wb, w, ab, a, not 'r'"):
        SimpleFileWriter(tmp_path / "x", "r")
    assert not (tmp_path / "x").exists()


# -- ReadFileAdaptor ---------------------------------------------------------------------

TEXT = b"".join(b"line %d: %s\n" % (i, b"x" * (i % 50)) for i in range(300)) + b"no newline"


def _read(clock: Clock, reader: ReadFileAdaptor) -> Collector:
    sink = Collector()
    wire(reader, sink)
    _run(clock, reader, sink)
    drive(clock, reader, sink)
    assert [type(m) for m in sink.control] == [ProducerFinished]
    return sink


@pytest.mark.parametrize("readmode", ["", "line"])
def test_readfileadaptor_lines_as_bytes(tmp_path: Path, readmode: str) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(TEXT)
    sink = _read(Clock(), ReadFileAdaptor(str(src), readmode=readmode))
    assert sink.got == TEXT.splitlines(keepends=True)


@pytest.mark.parametrize("readsize", [1000, "1450"])
def test_readfileadaptor_blocks(tmp_path: Path, readsize: Any) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(TEXT)
    sink = _read(Clock(), ReadFileAdaptor(filename=src, readmode="block", readsize=readsize))
    n = int(readsize)
    assert sink.got == [TEXT[i : i + n] for i in range(0, len(TEXT), n)]


@pytest_twisted.ensureDeferred
async def test_readfileadaptor_bitrate_paces_the_reads(tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(TEXT[:5000])
    # 1000 bytes a chunk, 20 chunks a second: five chunks take at least 4 steps of 0.05 s
    reader = ReadFileAdaptor(str(src), readmode="bitrate", bitrate=160_000, chunkrate=20)
    assert (reader.readsize, reader.steptime) == (1000, 0.05)
    sink = Collector()
    start = reactor.seconds()
    await Pipeline(reader, sink).activate().finished.addTimeout(30, reactor)
    assert reactor.seconds() - start >= 0.2 * 0.95
    assert sink.got == [TEXT[i : i + 1000] for i in range(0, 5000, 1000)]


def test_readfileadaptor_refuses_what_it_does_not_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="command=.*not supported"):
        ReadFileAdaptor(command="fortune -a")
    with pytest.raises(ValueError, match="needs filename=.*ConsoleReader"):
        ReadFileAdaptor()
    with pytest.raises(ValueError, match="readsize must be positive"):
        ReadFileAdaptor(tmp_path / "x", readmode="block", readsize=0)
    with pytest.raises(ValueError, match="bitrate and chunkrate"):
        ReadFileAdaptor(tmp_path / "x", readmode="bitrate", chunkrate=0)


def test_readfileadaptor_missing_file_fails_it(tmp_path: Path) -> None:
    reader, sink = ReadFileAdaptor(str(tmp_path / "nope.txt")), Collector()
    wire(reader, sink)
    clock = Clock()
    _run(clock, reader, sink)
    settle(clock)
    failures: list[Any] = []
    reader.finished.addErrback(failures.append)
    assert failures and failures[0].check(FileNotFoundError)


# -- ServerCore --------------------------------------------------------------------------


class Welcome(Component):
    """Kamaelia's CleverEchoProtocol: says where it is connected, then echoes."""

    def __init__(self, peer: str, peerport: int, localip: str, localport: int) -> None:
        super().__init__()
        self.peer, self.peerport = peer, peerport
        self.localip, self.localport = localip, localport

    async def main(self) -> None:
        hello = f"{self.localip} {self.localport} {self.peer} {self.peerport}\n"
        await self.put(hello.encode(), "outbox")
        async for data in self.messages("inbox"):
            await self.put(data, "outbox")


def _talk(port: int, payload: bytes) -> tuple[tuple[str, int], bytes, bytes]:
    """Read the greeting line, send ``payload`` and read as many bytes back, then close."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        me = s.getsockname()
        got = b""
        while b"\n" not in got and (data := s.recv(65536)):
            got += data
        line, _, got = got.partition(b"\n")
        s.sendall(payload)
        while len(got) < len(payload) and (data := s.recv(65536)):
            got += data
    return me, line, got


@pytest_twisted.ensureDeferred
async def test_servercore_passes_the_connection_details() -> None:
    srv = ServerCore(protocol=Welcome, port=0)
    srv.activate()
    port = await srv.listening.addTimeout(10, reactor)
    payload = bytes(range(256)) * 400
    try:
        (myip, myport), line, got = await deferToThread(_talk, port, payload)
    finally:
        srv.inboxes["control"].deliver(ShutdownMicroprocess())
        await srv.finished.addTimeout(10, reactor)
    assert line == f"127.0.0.1 {port} {myip} {myport}".encode()
    assert got == payload


@pytest_twisted.ensureDeferred
async def test_servercore_subclass_with_class_attributes() -> None:
    # Kamaelia servers are often written as subclasses naming their protocol; and
    # SimpleServer is a ServerCore whose protocol takes no arguments.
    made: list[dict[str, Any]] = []

    class Greeting(Component):
        async def main(self) -> None:
            await self.put(b"hi\n", "outbox")  # then it ends: the connection closes

    class MyServer(ServerCore):
        protocol = Greeting

        def mkProtocolHandler(self, **sockInfo: Any) -> Any:
            made.append(sockInfo)
            return self.protocol()

    assert issubclass(SimpleServer, ServerCore)
    srv = MyServer(socketOptions=None)
    srv.activate()
    port = await srv.listening.addTimeout(10, reactor)
    try:
        (_, myport), line, got = await deferToThread(_talk, port, b"")
    finally:
        srv.inboxes["control"].deliver(ShutdownMicroprocess())
        await srv.finished.addTimeout(10, reactor)
    assert (line, got) == (b"hi", b"")
    assert made == [
        {"peer": "127.0.0.1", "peerport": myport, "localip": "127.0.0.1", "localport": port}
    ]


def _receiveAll(port: int) -> bytes:
    """What the server sends before it closes (an abort counts as a close)."""
    got = b""
    s = socket.socket()
    s.settimeout(30)
    try:
        # (the reset can come before this thread is back from connect: that is a close too)
        s.connect(("127.0.0.1", port))
        while data := s.recv(65536):
            got += data
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return got


@pytest_twisted.ensureDeferred
async def test_servercore_factory_failing_closes_that_connection_only() -> None:
    class Greeting(Component):
        async def main(self) -> None:
            await self.put(b"hi\n", "outbox")

    def noArguments() -> Component:  # a SimpleServer factory given to ServerCore
        return Greeting()

    # (a component class takes the four keywords: they become attributes, as in Axon)
    srv = ServerCore(noArguments)
    srv.activate()
    port = await srv.listening.addTimeout(10, reactor)
    try:
        with capturedLogs() as events:
            got = await deferToThread(_receiveAll, port)
        assert got == b""  # aborted, nothing sent
        failed = [e for e in events if "protocol factory failed" in formatEvent(e)]
        assert len(failed) == 1 and failed[0]["log_failure"].check(TypeError)
        assert "ServerCore protocol factory failed for the connection from 127.0.0.1:" in (
            formatEvent(failed[0])
        )
        assert not srv.finished.called and not srv.connections
    finally:
        srv.inboxes["control"].deliver(ShutdownMicroprocess())
        await srv.finished.addTimeout(10, reactor)


def test_servercore_needs_a_protocol() -> None:
    with pytest.raises(TypeError, match="ServerCore needs a protocol factory"):
        ServerCore(port=0)


# -- differential: the same Kamaelia programs on Axon and on pcpkit ----------------------

DATASOURCE = """
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Util.DataSource import DataSource, TriggeredSource

system = Pipeline(DataSource([b"hello", "world", 3, None, (1, 2)] + list(range(200))),
                  %s
                  Collector(size=4, perStep=1))
"""


def test_datasource_differential() -> None:
    expected = [repr(m) for m in [b"hello", "world", 3, None, (1, 2)] + list(range(200))]
    assert compare(DATASOURCE % "") == expected + ["ipc:producerFinished"]


def test_triggeredsource_differential() -> None:
    # Kamaelia's prefab is a PureTransformer of lambda r: msg: one per trigger
    record = compare(DATASOURCE % 'TriggeredSource("bang"),')
    assert record == ["'bang'"] * 205 + ["ipc:producerFinished"]


SIMPLEFILEWRITER = """
import hashlib, os, tempfile
from Axon.Component import component
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Util.DataSource import DataSource
from Kamaelia.File.Writing import SimpleFileWriter

PATH = os.path.join(tempfile.mkdtemp(), "out.bin")
with open(PATH, "wb") as f:
    f.write(b"already there;")

class Report(component):
    # on the writer's shutdown message, send what the file holds on
    def main(self):
        while not self.dataReady("control"):
            self.pause()
            yield 1
        msg = self.recv("control")
        with open(PATH, "rb") as f:
            data = f.read()
        os.unlink(PATH)
        self.send((len(data), hashlib.sha256(data).hexdigest(), data[:20]), "outbox")
        self.send(msg, "signal")

chunks = [bytes([i %% 256]) * (i * 37 + 1) for i in range(300)]
system = Pipeline(DataSource(chunks), SimpleFileWriter(PATH%s), Report(), Collector())
"""


@pytest.mark.parametrize("mode", ["", ', mode="ab"'])
def test_simplefilewriter_differential(mode: str) -> None:
    chunks = b"".join(bytes([i % 256]) * (i * 37 + 1) for i in range(300))
    data = (b"already there;" if mode else b"") + chunks
    record = compare(SIMPLEFILEWRITER % mode)
    assert record == [
        repr((len(data), hashlib.sha256(data).hexdigest(), data[:20])),
        "ipc:producerFinished",
    ]


CHARGEN = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Util.Chargen import Chargen

class Take(component):
    # pass the first n messages on, then stop the generator (Kamaelia's Chargen ignores
    # its control inbox) and finish
    def __init__(self, n, source):
        super(Take, self).__init__()
        self.n = n
        self.source = source

    def main(self):
        taken = 0
        while taken < self.n:
            while self.dataReady("inbox") and taken < self.n:
                self.send(self.recv("inbox"), "outbox")
                taken += 1
            if taken < self.n:
                self.pause()
                yield 1
        self.source.stop()
        self.send(producerFinished(self), "signal")
        yield 1

gen = Chargen()
system = Pipeline(gen, Take(%d, gen), Collector(size=4, perStep=1))
"""


def test_chargen_differential() -> None:
    assert compare(CHARGEN % 300) == ["'Hello World'"] * 300 + ["ipc:producerFinished"]


READFILEADAPTOR = """
import os, tempfile
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.File.ReadFileAdaptor import ReadFileAdaptor

PATH = os.path.join(tempfile.mkdtemp(), "in.txt")
with open(PATH, "wb") as f:
    f.write(b"".join(b"line %%d: %%s\\n" %% (i, b"x" * (i %% 50)) for i in range(300)))
    f.write(b"no newline")

system = Pipeline(ReadFileAdaptor(PATH%s), Collector(size=4, perStep=1))
"""


@pytest.mark.parametrize(
    "args",
    [
        "",
        ', readmode="line"',
        ', readmode="block", readsize=1000',
        ', readmode="bitrate", bitrate=800000, chunkrate=200',
    ],
)
def test_readfileadaptor_differential(args: str) -> None:
    record = compare(READFILEADAPTOR % args)
    assert record[-1] == "ipc:producerFinished"
    assert b"".join(eval(r) for r in record[:-1]) == TEXT


# ServerCore serving Kamaelia's TCPClient: the protocol is told where it is connected, echoes,
# and closes; the client's side stops the server. On Axon, Kamaelia's TCPServer is told to
# listen on 127.0.0.1 (it listens on every interface otherwise).
SERVERCORE = """
import socket
from Axon.Component import component
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Graphline import Graphline
from Kamaelia.Chassis.ConnectedServer import ServerCore
from Kamaelia.Internet.TCPClient import TCPClient
from Kamaelia.Util.DataSource import DataSource

_s = socket.socket()
_s.bind(("127.0.0.1", 0))
PORT = _s.getsockname()[1]
_s.close()

local = {}
if RUNTIME == "axon":
    # Kamaelia listens on every interface: keep the test on 127.0.0.1
    from Kamaelia.Internet.TCPServer import TCPServer

    class LocalTCPServer(TCPServer):
        def makeTCPServerPort(self, suppliedport=None, HOST=None, **argd):
            return TCPServer.makeTCPServerPort(self, suppliedport, "127.0.0.1", **argd)

    local = {"TCPS": LocalTCPServer}

PAYLOAD = b"".join(b"%d," % i for i in range(2000))

class Welcome(component):
    def __init__(self, peer, peerport, localip, localport):
        super(Welcome, self).__init__()
        self.hello = ("%s %s %s\\n" % (localip, localport == PORT, peer)).encode()

    def main(self):
        self.send(self.hello, "outbox")
        echoed = 0
        while echoed < len(PAYLOAD):
            while self.dataReady("inbox"):
                data = self.recv("inbox")
                echoed += len(data)
                self.send(data, "outbox")
            if self.dataReady("control"):
                return
            if echoed < len(PAYLOAD):
                self.pause()
                yield 1
        self.send(producerFinished(self), "signal")
        yield 1

class Tap(component):
    Outboxes = {"outbox": "", "signal": "", "stop": "to the server"}

    def main(self):
        got = b""
        while True:
            while self.dataReady("inbox"):
                got += self.recv("inbox")
            if self.dataReady("control"):
                msg = self.recv("control")
                while self.dataReady("inbox"):
                    got += self.recv("inbox")
                self.send(got, "outbox")
                self.send(shutdownMicroprocess(self), "stop")
                self.send(producerFinished(self), "signal")
                return
            self.pause()
            yield 1

chunks = [PAYLOAD[i:i + 1000] for i in range(0, len(PAYLOAD), 1000)]
system = Graphline(
    SERVER=ServerCore(protocol=Welcome, port=PORT, **local),
    SRC=DataSource(chunks),
    CLIENT=TCPClient("127.0.0.1", PORT, delay=0.5, wait_for_serverclose=True),
    TAP=Tap(),
    OUT=Collector(),
    linkages={
        ("SRC", "outbox"): ("CLIENT", "inbox"),
        ("SRC", "signal"): ("CLIENT", "control"),
        ("CLIENT", "outbox"): ("TAP", "inbox"),
        ("CLIENT", "signal"): ("TAP", "control"),
        ("TAP", "outbox"): ("OUT", "inbox"),
        ("TAP", "signal"): ("OUT", "control"),
        ("TAP", "stop"): ("SERVER", "control"),
    },
)
"""


def test_servercore_differential() -> None:
    payload = b"".join(b"%d," % i for i in range(2000))
    record = compare(SERVERCORE)
    assert record == [repr(b"127.0.0.1 True 127.0.0.1\n" + payload), "ipc:producerFinished"]
