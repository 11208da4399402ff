"""
pcpkit.inspect: the registry (zero cost off), the /graph.json contract (boxes, parked senders,
waits-on chains), the byte-level parts (bridges, proxies, a relay on real sockets), the HTTP
server and its event stream, and the pcpkit.testing helpers built on it.
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread

import pcpkit.inspect as pi
from pcpkit import bridge, component, pcp
from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.chassis import Pipeline
from pcpkit.component import Component, Scheduler
from pcpkit.inspect import graph as graphmod
from pcpkit.internet import relay as relaymod
from pcpkit.internet.relay import Relay
from pcpkit.ipc import ShutdownMicroprocess
from pcpkit.pcp import ProducerConsumerProxy
from pcpkit.testing import (
    RecordingConsumer,
    RecordingProducer,
    recordingFills,
    runComponent,
)
from pcpkit.torrent import stream
from tests.torrentutil import sessionsFixture  # noqa: F401 - the "sessions" fixture
from tests.waitutil import waitUntil

R: Any = reactor
HOST = "127.0.0.1"


# -- components ------------------------------------------------------------------------------


class Feed(Component):
    """Sends ``count`` numbers with plain sends (parked by a parking bound), then stops."""

    def __init__(self, count: int, asBytes: bool = False, **argd: Any) -> None:
        super().__init__(**argd)
        self.count = count
        self.asBytes = asBytes

    def main(self) -> Generator[int, None, None]:
        for i in range(self.count):
            if self.dataReady("control"):
                return
            self.send(b"%d" % i if self.asBytes else i, "outbox")
            yield 1


class Pass(Component):
    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
            self.pause()
            yield 1


class Gate(Component):
    """A sink that takes only what it is allowed to (``allow``): a consumer as slow as we like."""

    allowance = 0
    taken = 0

    def allow(self, n: int) -> None:
        self.allowance += n
        self.unpause()

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            while self.allowance and self.dataReady("inbox"):
                self.recv("inbox")
                self.allowance -= 1
                self.taken += 1
            self.pause()
            yield 1


def slowPipeline(count: int = 1000, size: int = 8) -> tuple[Pipeline, Feed, Pass, Gate]:
    src, mid, sink = Feed(count), Pass(), Gate()
    for c in (mid, sink):
        c.setInboxSize("inbox", size, park=True)
    return Pipeline(src, mid, sink), src, mid, sink


def run(clock: Clock, turns: int = 50) -> None:
    for _ in range(turns):
        clock.advance(0)


@pytest.fixture
def inspecting() -> Any:
    pi.enable()
    try:
        yield pi.registry
    finally:
        pi.disable()


def chainOf(graph: dict[str, Any], waiter: str) -> list[str]:
    for w in graph["waitsOn"]:
        if w["waiter"] == waiter:
            return [step["id"] for step in w["chain"]]
    raise AssertionError(f"{waiter} waits on nothing: {graph['waitsOn']}")


# -- the registry ----------------------------------------------------------------------------


HOOKED = [component, bridge, pcp, relaymod, stream]


def test_off_by_default_and_hooks_cleared_again() -> None:
    assert not pi.isEnabled()
    assert all(m.inspectHook is None for m in HOOKED)
    made = Pass()  # made while off: found by the scan when turned on
    pi.enable()
    try:
        assert all(m.inspectHook is not None for m in HOOKED)
        assert made in pi.registry.components
        later = Pass()
        assert later in pi.registry.components
        pi.enable()  # counted
        pi.disable()
        assert pi.isEnabled()
    finally:
        pi.disable()
    assert not pi.isEnabled()
    assert all(m.inspectHook is None for m in HOOKED)
    assert not list(pi.registry)
    Pass()
    assert not list(pi.registry)


def test_registry_holds_nothing_alive(inspecting: Any) -> None:
    c = Pass()
    assert c in inspecting.components
    del c
    gc.collect()
    assert not [x for x in inspecting.components if isinstance(x, Pass)]


# -- the JSON contract: a pipeline with a slow sink --------------------------------------------


def test_slow_sink_fills_boxes_parks_senders_and_names_the_root(inspecting: Any) -> None:
    clock = Clock()
    pipe, src, mid, sink = slowPipeline()
    pipe.activate(Scheduler(clock))
    run(clock)
    ins = pi.Inspector(fullThreshold=2.0, clock=clock.seconds)
    g = ins.snapshot()
    json.dumps(g)  # all of it is JSON
    ids = {c: ins.idOf(c) for c in (pipe, src, mid, sink)}
    comps = {c["id"]: c for c in g["components"]}
    assert comps[ids[pipe]]["kind"] == "chassis"
    assert {comps[ids[c]]["parent"] for c in (src, mid, sink)} == {ids[pipe]}
    midIn, sinkIn = g["boxes"][f"{ids[mid]}.in.inbox"], g["boxes"][f"{ids[sink]}.in.inbox"]
    for box in (midIn, sinkIn):
        assert box["full"] and box["parking"]
        assert box["limit"] == 8 and box["low"] == 4
        # parking bound: the size plus what one step of the sender sent
        assert box["length"] == 9
        assert box["fill"] > 1
    assert sinkIn["putCount"] == 9 and sinkIn["taken"] == 0
    assert midIn["putCount"] == 18 and midIn["taken"] == 9
    assert {(p["sender"], p["box"], p["how"]) for p in g["parked"]} == {
        (ids[src], midIn["id"], "parked"),
        (ids[mid], sinkIn["id"], "parked"),
    }
    assert comps[ids[src]]["state"] == comps[ids[mid]]["state"] == "parked"
    assert comps[ids[src]]["parkedOn"] == midIn["id"]
    # waits on: the source on the middle on the sink, which is the root: it is not reading
    assert chainOf(g, ids[src]) == [ids[src], ids[mid], ids[sink]]
    assert chainOf(g, ids[mid]) == [ids[mid], ids[sink]]
    first = g["waitsOn"][0]
    assert first["waiter"] == ids[src] and first["root"] == ids[sink]
    assert "not reading" in first["chain"][-1]["why"]
    assert not first["stuck"] and not g["stuck"]
    # the edges carry the fill of the box they lead to
    data = {(e["from"], e["to"]): e for e in g["edges"] if e["kind"] == "data"}
    assert data[(ids[src], ids[mid])]["fill"] == pytest.approx(9 / 8)
    assert data[(ids[mid], ids[sink])]["box"] == sinkIn["id"]

    # full for longer than the threshold: flagged, and time spent full is counted
    clock.advance(1.0)
    ins.snapshot()
    clock.advance(1.5)
    g = ins.snapshot()
    sinkIn = g["boxes"][sinkIn["id"]]
    assert sinkIn["fullFor"] == pytest.approx(2.5) and sinkIn["fullSeconds"] == pytest.approx(2.5)
    assert sinkIn["stuck"] and sinkIn["id"] in g["stuck"]
    assert g["waitsOn"][0]["stuck"]

    # the sink speeds up: everything drains, nobody waits
    sink.allow(10**6)
    run(clock, 2000)
    g = ins.snapshot()
    assert sink.taken == 1000
    assert not g["parked"] and not g["waitsOn"] and not g["stuck"]
    assert g["boxes"][sinkIn["id"]]["fullFor"] == 0
    assert g["boxes"][sinkIn["id"]]["fullSeconds"] == pytest.approx(2.5)
    pipe.inboxes["control"].deliver(ShutdownMicroprocess())
    run(clock)


def test_axon_bound_and_async_put_waiters(inspecting: Any) -> None:
    class AxonFeed(Component):
        def main(self) -> Generator[int, None, None]:
            i = 0
            while not self.dataReady("control"):
                try:
                    self.send(i, "outbox")
                    i += 1
                except component.BoxFull:
                    self.pause()
                yield 1

    class AsyncFeed(Component):
        async def main(self) -> None:
            i = 0
            try:
                while True:
                    await self.put(i, "outbox")
                    i += 1
            except component.Stopped:
                pass

    clock = Clock()
    sched = Scheduler(clock)
    axon, asyncFeed, s1, s2 = AxonFeed(), AsyncFeed(), Gate(), Gate()
    s1.setInboxSize("inbox", 4)  # an Axon bound: send raises BoxFull
    s2.setInboxSize("inbox", 4, park=True)
    axon.link((axon, "outbox"), (s1, "inbox"))
    asyncFeed.link((asyncFeed, "outbox"), (s2, "inbox"))
    for c in (axon, asyncFeed, s1, s2):
        c.activate(sched)
    run(clock)
    ins = pi.Inspector()
    g = ins.snapshot()
    b1, b2 = g["boxes"][f"{ins.idOf(s1)}.in.inbox"], g["boxes"][f"{ins.idOf(s2)}.in.inbox"]
    assert b1["length"] == 4 and not b1["parking"]  # an Axon bound never goes over
    assert b2["length"] == 4  # put waits before sending
    hows = {p["sender"]: (p["box"], p["how"]) for p in g["parked"]}
    assert hows[ins.idOf(axon)] == (b1["id"], "waiting")
    assert hows[ins.idOf(asyncFeed)] == (b2["id"], "waiting")
    assert chainOf(g, ins.idOf(axon)) == [ins.idOf(axon), ins.idOf(s1)]
    assert chainOf(g, ins.idOf(asyncFeed)) == [ins.idOf(asyncFeed), ins.idOf(s2)]
    for c in (axon, asyncFeed, s1, s2):
        c.inboxes["control"].deliver(ShutdownMicroprocess())
    run(clock)
    assert all(c._isStopped() for c in (axon, asyncFeed, s1, s2))


@pytest_twisted.ensureDeferred
async def test_threaded_component_held_back_by_a_full_inbox(inspecting: Any) -> None:
    from pcpkit.threaded import ThreadedComponent

    class Producer(ThreadedComponent):
        def main(self) -> None:
            for i in range(50):
                self.send(i, "outbox")

    prod, sink = Producer(queuelengths=2), Gate()
    sink.setInboxSize("inbox", 4, park=True)
    prod.link((prod, "outbox"), (sink, "inbox"))
    sink.activate()
    prod.activate()
    ins = pi.Inspector()
    pid, sid = ins.idOf(prod), ins.idOf(sink)
    await waitUntil(lambda: any(p["sender"] == pid for p in ins.snapshot()["parked"]))
    g = ins.snapshot()
    comps = {c["id"]: c for c in g["components"]}
    assert comps[pid]["kind"] == "threaded" and comps[pid]["state"] == "thread"
    assert {(p["sender"], p["how"]) for p in g["parked"]} == {(pid, "waiting")}
    assert chainOf(g, pid) == [pid, sid]
    assert g["boxes"][f"{sid}.in.inbox"]["length"] == 4  # a thread never overfills a box
    sink.allow(50)
    await prod.finished
    await waitUntil(lambda: sink.taken == 50)
    sink.inboxes["control"].deliver(ShutdownMicroprocess())
    await sink.finished


def test_long_parked_pipeline_chains_without_rescanning_edges(
    inspecting: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A parked pipeline of N stages has N chains of up to N steps: the snapshot looks up the
    boxes between two steps instead of scanning every edge at each step (N=800 took 12 s,
    blocking the reactor, when it did).
    """
    scans = 0

    class CountedEdges(list[dict[str, Any]]):
        def __iter__(self) -> Any:
            nonlocal scans
            scans += 1
            return super().__iter__()

    made = graphmod._Graph.__init__

    def init(self: Any, *a: Any) -> None:
        made(self, *a)
        self.edges = CountedEdges()

    monkeypatch.setattr(graphmod._Graph, "__init__", init)
    n = 60
    clock = Clock()
    stages = [Feed(10**6)] + [Pass() for _ in range(n)] + [Gate()]
    for c in stages[1:]:
        c.setInboxSize("inbox", 4, park=True)
    pipe = Pipeline(*stages)
    pipe.activate(Scheduler(clock))
    run(clock, 4 * n)
    ins = pi.Inspector(clock=clock.seconds)
    g = ins.snapshot()
    ids = [ins.idOf(c) for c in stages]
    assert len(g["parked"]) == n + 1
    assert chainOf(g, ids[0]) == ids  # the source waits on every stage down to the sink
    assert chainOf(g, ids[n // 2]) == ids[n // 2 :]
    assert scans < 5  # a few passes over the edges, not one per chain step (~n*n/2)
    pipe.inboxes["control"].deliver(ShutdownMicroprocess())
    run(clock)


# -- byte level: bridges and proxies ------------------------------------------------------------


def test_outbox_producer_paused_by_its_consumer(inspecting: Any) -> None:
    clock = Clock()
    feed = Feed(1000, asBytes=True)
    consumer = RecordingConsumer()
    feed.activate(Scheduler(clock))
    out = OutboxProducer(feed, "outbox", consumer, bufferSize=16)
    consumer.pauseProducer()
    run(clock)
    ins = pi.Inspector()
    g = ins.snapshot()
    op, fid = ins.idOf(out), ins.idOf(feed)
    prod = {p["id"]: p for p in g["producers"]}[op]
    assert prod["kind"] == "OutboxProducer" and prod["paused"]
    assert prod["level"] == 17 and prod["high"] == 16
    chain = chainOf(g, fid)
    assert chain == [fid, op, ins.idOf(consumer)]
    w = next(w for w in g["waitsOn"] if w["waiter"] == fid)
    assert "paused by its consumer" in w["chain"][1]["why"]
    edge = next(e for e in g["edges"] if e["from"] == op)
    assert edge["paused"] and edge["kind"] == "bytes"
    consumer.resumeProducer()
    run(clock, 500)
    assert len(consumer.writes) == 1000
    g = ins.snapshot()
    assert not g["waitsOn"]
    out.stop()


def test_inbox_consumer_pauses_its_producer(inspecting: Any) -> None:
    clock = Clock()
    sink = Gate()
    sink.activate(Scheduler(clock))
    ic = InboxConsumer(sink, "inbox", highWatermark=8)
    prod = RecordingProducer([b"x"] * 100)
    prod.startProducing(ic)
    run(clock)
    assert prod.paused
    ins = pi.Inspector()
    g = ins.snapshot()
    pid, icid, sid = ins.idOf(prod), ins.idOf(ic), ins.idOf(sink)
    assert chainOf(g, pid) == [pid, icid, sid]
    entry = {p["id"]: p for p in g["producers"]}[icid]
    assert entry["paused"] and entry["level"] == 8 and entry["high"] == 8
    sink.allow(1000)
    run(clock, 200)
    assert prod.done.called
    sink.inboxes["control"].deliver(ShutdownMicroprocess())
    run(clock)


def test_proxy_chain_to_the_consumer_that_paused_it(inspecting: Any) -> None:
    consumer = RecordingConsumer(pauseAfter=100)
    proxy = ProducerConsumerProxy(consumer, highWatermark=1000)
    producer = RecordingProducer([b"y" * 100] * 50)
    producer.startProducing(proxy)
    assert producer.paused and proxy.paused
    ins = pi.Inspector()
    g = ins.snapshot()
    pid, xid, cid = ins.idOf(producer), ins.idOf(proxy), ins.idOf(consumer)
    assert chainOf(g, pid) == [pid, xid, cid]
    entry = {p["id"]: p for p in g["producers"]}[xid]
    assert entry["level"] == proxy.bufferedBytes >= 1000 and entry["high"] == 1000
    edge = next(e for e in g["edges"] if e["from"] == xid)
    assert edge["paused"] and edge["fill"] >= 1


# -- a relay with a slow reader (real sockets) ----------------------------------------------------


class Silent(Protocol):
    """A target that does not read until told to."""

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self.received = 0
        self.factory.made.append(self)  # type: ignore[attr-defined]
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class Sender(Protocol):
    def connectionMade(self) -> None:
        # More than the kernel's socket buffers on both sides of the relay can absorb (the
        # send buffer autotunes up to tcp_wmem's 4 MiB), so the relay's own bound is reached.
        self.transport.write(b"z" * (32 << 20))  # type: ignore[union-attr]
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@pytest.mark.parametrize("splice", [False, True], ids=["portable", "splice"])
@pytest_twisted.ensureDeferred
async def test_relay_with_a_slow_reader_shows_its_paused_direction(splice: bool) -> None:
    pi.enable()
    targetF = Factory.forProtocol(Silent)
    targetF.made = []  # type: ignore[attr-defined]
    tport: Any = await TCP4ServerEndpoint(R, 0, interface=HOST).listen(targetF)
    tport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    relay = Relay(
        f"tcp:0:interface={HOST}",
        f"tcp:{HOST}:{tport.getHost().port}",
        bufferSize=131072,
        splice=splice,
    )
    try:
        rport: Any = await relay.start()
        client: Any = await TCP4ClientEndpoint(R, HOST, rport.getHost().port).connect(
            Factory.forProtocol(Sender)
        )
        await waitUntil(lambda: bool(relay.connections) and relay.connections[0].toTarget.paused)
        ins = pi.Inspector()
        g = ins.snapshot()
        (conn,) = relay.connections
        cid = ins.idOf(conn)
        dirs = {p["direction"]: p for p in g["producers"] if p.get("connection") == cid}
        assert dirs["toTarget"]["paused"] and not dirs["toClient"]["paused"]
        assert dirs["toTarget"]["level"] <= 131072 and dirs["toTarget"]["spliced"] == splice
        chain = chainOf(g, f"{cid}.client")
        assert chain == [f"{cid}.client", f"{cid}.target"]
        w = next(w for w in g["waitsOn"] if w["waiter"] == f"{cid}.client")
        assert w["chain"][-1]["why"] == "the target is not reading"
        assert any(e["paused"] and e["label"] == "toTarget" for e in g["edges"])
        # the target reads again: the direction resumes and everything arrives
        (target,) = targetF.made  # type: ignore[attr-defined]
        target.transport.resumeProducing()
        await waitUntil(lambda: target.received == 32 << 20)
        assert not any(w["waiter"] == f"{cid}.client" for w in ins.snapshot()["waitsOn"])
        client.transport.loseConnection()
        await client.closed
        await waitUntil(lambda: not relay.connections)
    finally:
        await relay.stop()
        await tport.stopListening()
        pi.disable()


# -- over HTTP ----------------------------------------------------------------------------------


class EventReader(Protocol):
    """Reads a server-sent event stream; ``events`` are (name, data) pairs."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[tuple[str, str]] = []
        self.headers = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.headers and b"\r\n\r\n" in self.buffer:
            self.headers, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        while b"\n\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n\n", 1)
            # chunked transfer: drop the chunk-size lines
            lines = [ln for ln in raw.decode().split("\n") if ":" in ln or ln.startswith("retry")]
            fields = dict(ln.split(": ", 1) for ln in lines if ": " in ln)
            if "event" in fields:
                self.events.append((fields["event"], fields["data"]))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


def _fetch(url: str, method: str) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, "", b""


async def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    result: tuple[int, str, bytes] = await deferToThread(_fetch, url, method)
    return result


@pytest_twisted.ensureDeferred
async def test_server_graph_json_page_and_read_only() -> None:
    server = pi.serve("tcp:0:interface=127.0.0.1")
    port = (await server.listening).getHost().port
    clock = Clock()
    pipe, src, mid, sink = slowPipeline()
    pipe.activate(Scheduler(clock))
    run(clock)
    try:
        base = f"http://127.0.0.1:{port}/"
        code, kind, page = await fetch(base)
        assert code == 200 and "inspect.js" in page.decode() and b"<svg" in page
        for name, want in (("inspect.js", "text/javascript"), ("inspect.css", "text/css")):
            code, kind, body = await fetch(base + name)
            assert code == 200 and kind.startswith(want) and len(body) > 500
        code, kind, body = await fetch(base + "graph.json")
        g = json.loads(body)
        assert kind == "application/json"
        assert chainOf(g, f"c{src.id}") == [f"c{src.id}", f"c{mid.id}", f"c{sink.id}"]
        assert (await fetch(base + "graph.json", "POST"))[0] == 405
        assert (await fetch(base + "nothing"))[0] == 404
    finally:
        pipe.inboxes["control"].deliver(ShutdownMicroprocess())
        run(clock)
        await server.stop()
    assert not pi.isEnabled()


@pytest_twisted.ensureDeferred
async def test_event_stream_is_coalesced_to_ten_updates_a_second() -> None:
    server = pi.serve("tcp:0:interface=127.0.0.1")
    port = (await server.listening).getHost().port
    # A pipeline on the real reactor whose sink takes a message at every turn: the graph
    # changes all the time.
    pipe, src, mid, sink = slowPipeline(count=10**9)
    sink.allowance = 10**9
    pipe.activate()
    reader = EventReader()
    try:
        await TCP4ClientEndpoint(R, HOST, port).connect(_factoryOf(reader))
        await waitUntil(lambda: len(reader.events) >= 1)
        t0, n0 = time.monotonic(), len(reader.events)
        await deferLater(R, 1.5, lambda: None)
        rate = (len(reader.events) - n0) / (time.monotonic() - t0)
        assert 3 <= rate <= 11, rate
        assert b"text/event-stream" in reader.headers
        name, data = reader.events[-1]
        g = json.loads(data)
        assert name == "graph" and any(c["id"] == f"c{sink.id}" for c in g["components"])
        assert sink.taken > 1000  # the program kept running meanwhile
    finally:
        pipe.inboxes["control"].deliver(ShutdownMicroprocess())
        for c in (src, mid, sink):
            c.inboxes["control"].deliver(ShutdownMicroprocess())
        await pipe.finished
        await server.stop()
        await reader.closed


def _factoryOf(proto: Protocol) -> Factory:
    f = Factory()
    f.buildProtocol = lambda addr: proto  # type: ignore[method-assign]
    return f


@pytest_twisted.ensureDeferred
async def test_busy_port_fails_listening_and_turns_the_registry_off() -> None:
    first = pi.serve("tcp:0:interface=127.0.0.1")
    port = (await first.listening).getHost().port
    try:
        second = pi.serve(f"tcp:{port}:interface=127.0.0.1")
        with pytest.raises(CannotListenError):
            await second.listening
        assert pi.isEnabled()  # the first one still has it on
    finally:
        await first.stop()
    assert not pi.isEnabled()


def test_serve_binds_loopback_by_default() -> None:
    assert pi.DEFAULT_ENDPOINT == "tcp:8090:interface=127.0.0.1"
    server = pi.InspectServer(8090)
    assert server.endpoint == 8090  # a bare port: serverEndpoint makes it loopback


# -- pcpkit.testing --------------------------------------------------------------------------------


def test_fill_recorder_sees_exact_peaks_and_passes_a_bounded_pipeline() -> None:
    clock = Clock()
    with recordingFills() as fills:
        pipe, src, mid, sink = slowPipeline(count=200)
        pipe.activate(Scheduler(clock))
        run(clock)
        sink.allow(10**6)
        run(clock, 500)
        assert sink.taken == 200
        # a parking bound holds its size plus one step's send
        assert fills.peakOf(sink.inboxes["inbox"]) == 9
        fills.assertBounded(pipe, slack=1)
        with pytest.raises(AssertionError, match="held 9, bound 8"):
            fills.assertBounded(pipe, slack=0)
        pipe.inboxes["control"].deliver(ShutdownMicroprocess())
        run(clock)
    assert not pi.isEnabled()


def test_fill_recorder_catches_a_proxy_over_its_watermark() -> None:
    with recordingFills() as fills:
        consumer = RecordingConsumer(pauseAfter=10)
        proxy = ProducerConsumerProxy(consumer, highWatermark=1000)
        # a producer that ignores pauseProducing: the proxy buffers what it is given
        for _ in range(30):
            proxy.write(b"q" * 100)
        assert fills.peakOf(proxy) == proxy.bufferedBytes >= 2900
        fills.assertBounded(byteSlack=2000)
        with pytest.raises(AssertionError, match="ProducerConsumerProxy"):
            fills.assertBounded(byteSlack=100)
    assert "write" not in vars(proxy)  # the instrumentation is gone


@pytest_twisted.ensureDeferred
async def test_run_component_timeout_names_what_waits_on_what() -> None:
    pipe, src, mid, sink = slowPipeline()
    with pytest.raises(TimeoutError) as info:
        await runComponent(pipe, timeout=0.2)
    text = str(info.value)
    assert f"{src} (parked on 'inbox' of {mid}" in text
    assert f"-> {sink} (idle but not reading" in text
    pipe.inboxes["control"].deliver(ShutdownMicroprocess())
    for c in (src, mid, sink):
        c.inboxes["control"].deliver(ShutdownMicroprocess())
    await pipe.finished


# -- --inspect on the twistd services and on pcpkit demo ------------------------------------------


INSPECTOR_LINE = "pcpkit inspector on http://127.0.0.1:"


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_twistd_relay_with_inspect_serves_its_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.procutil import ProcessRunner
    from tests.test_twistd_torrent import pluginEnvironment, twistdArgv
    from tests.torrentutil import waitUntil

    pluginEnvironment(monkeypatch)
    runner = ProcessRunner(
        twistdArgv("relay", "--listen", "0", "--connect", "127.0.0.1:9", "--inspect", "0")
    )
    try:
        await waitUntil(
            lambda: INSPECTOR_LINE in runner.text() or not runner.running, 30, "the inspector"
        )
        assert runner.running, runner.text()
        port = int(runner.text().split(INSPECTOR_LINE, 1)[1].split("/", 1)[0])
        code, kind, body = await fetch(f"http://127.0.0.1:{port}/graph.json")
        g = json.loads(body)
        relays = [n for n in g["nodes"] if n["kind"] == "relay"]
        assert code == 200 and len(relays) == 1, g["nodes"]
        assert relays[0]["label"].startswith("Relay tcp:0:interface=127.0.0.1")
    finally:
        await runner.stop()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_twistd_inspect_port_busy_or_bad_exits_naming_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.procutil import ProcessRunner, exitCode
    from tests.test_twistd_torrent import pluginEnvironment, twistdArgv

    pluginEnvironment(monkeypatch)
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        runner = ProcessRunner(
            twistdArgv("relay", "--listen", "0", "--connect", "127.0.0.1:9", "--inspect", str(port))
        )
        code = await exitCode(runner, 30)
    finally:
        busy.close()
    text = runner.text()
    assert code == 1, text
    assert f"twistd pcpkit relay: --inspect tcp:{port}:interface=127.0.0.1: Couldn't listen" in text
    assert "Traceback" not in text
    runner = ProcessRunner(twistdArgv("demo", "--inspect", "tcp:99999"))
    code = await exitCode(runner, 30)
    assert code != 0 and "--inspect: bad endpoint 'tcp:99999'" in runner.text(), runner.text()


def test_pcpkit_demo_with_inspect(tmp_path: Path) -> None:
    from tests.test_cli import PCPKIT

    bad = subprocess.run(
        [*PCPKIT, "demo", "--inspect", "tcp:99999"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "bad --inspect endpoint" in bad.stderr, bad.stderr
    ok = subprocess.run(
        [*PCPKIT, "demo", "--size", "2", "--no-tracker", "--inspect", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "inspector: http://127.0.0.1:" in ok.stdout and "sha256 verified" in ok.stdout


# -- a torrent stream (real libtorrent sessions) ---------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_torrent_stream_window_and_its_paused_consumer(sessions: Any, tmp_path: Path) -> None:
    from tests.test_torrent_stream import PIECE, swarm
    from tests.torrentutil import withTimeout

    pi.enable()
    try:
        seeder, _, downloader, added, data = await swarm(sessions, tmp_path, size=4 << 20)
        consumer = RecordingConsumer(pauseAfter=PIECE)
        producer = stream.TorrentFileProducer(downloader, added.torrentid, 0, consumer, window=6)
        d = producer.beginProducing()
        downloader.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
        await waitUntil(lambda: consumer.producerPaused, 30)
        ins = pi.Inspector()
        g = ins.snapshot()
        sid, cid = ins.idOf(producer), ins.idOf(consumer)
        entry = {p["id"]: p for p in g["producers"]}[sid]
        assert entry["kind"] == "TorrentFileProducer" and entry["paused"]
        assert entry["window"] == 6 and entry["high"] == 6
        assert entry["piecesInFlight"] + entry["piecesAhead"] <= 6
        assert entry["bytesWritten"] == len(consumer.data) >= PIECE
        assert chainOf(g, sid) == [sid, cid]
        consumer.pauseAfter = None
        consumer.resumeProducer()
        await withTimeout(d, 50)
        assert consumer.data == data
        assert not any(p["id"] == sid for p in ins.snapshot()["producers"])  # over: gone
    finally:
        pi.disable()
