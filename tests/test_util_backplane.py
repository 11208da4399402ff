"""Publish/subscribe (pcpkit.util.backplane), alone and as a TCP chat server."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from pcpkit import ProducerFinished, ShutdownMicroprocess
from pcpkit.chassis import Pipeline
from pcpkit.internet.tcp import SimpleServer
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.util import (
    Backplane,
    BackplaneExists,
    PublishTo,
    SubscribeTo,
)
from tests.componentutil import Source
from tests.test_util_fanout import Gate, waitUntil


async def _stop(backplane: Backplane) -> None:
    backplane.inboxes["control"].final.deliver(ProducerFinished())
    await runComponent(backplane, 5)


def test_backplane_boxes_are_kamaelias() -> None:
    from Kamaelia.Util import Backplane as K

    for ours, theirs in (
        (Backplane, K.Backplane),
        (PublishTo, K.PublishTo),
        (SubscribeTo, K.SubscribeTo),
    ):
        assert set(theirs.Inboxes) <= set(ours.Inboxes)
        assert set(theirs.Outboxes) - {"_outbox"} <= set(ours.Outboxes)


@pytest_twisted.ensureDeferred
async def test_names_are_unique_and_must_exist() -> None:
    bp = Backplane("unique").activate()
    with pytest.raises(BackplaneExists):
        Backplane("unique")
    pub = PublishTo("nowhere")
    with pytest.raises(LookupError, match="nowhere"):
        await runComponent(pub, 5)
    await _stop(bp)
    # the name is free again once the backplane has ended
    again = Backplane("unique").activate()
    await _stop(again)


@pytest_twisted.ensureDeferred
async def test_subscribers_join_and_leave_at_run_time() -> None:
    bp = Backplane("joins").activate()
    early, late = MessageCollector(), MessageCollector()
    subEarly = Pipeline(SubscribeTo("joins"), early).activate()
    publish = PublishTo("joins").activate()
    box = publish.inboxes["inbox"]
    await waitUntil(lambda: len(bp.splitter.outlets) == 1)
    assert box.final is bp.splitter.inboxes["inbox"]
    for i in range(5):
        box.final.deliver(i)
    await early.waitFor(5, timeout=5)
    subLate = Pipeline(SubscribeTo("joins"), late).activate()
    await waitUntil(lambda: len(bp.splitter.outlets) == 2)
    for i in range(5, 10):
        box.final.deliver(i)
    await late.waitFor(5, timeout=5)
    # the early subscriber leaves; the late one stays
    subEarly.inboxes["control"].final.deliver(ProducerFinished())
    await runComponent(subEarly, 5)
    for i in range(10, 15):
        box.final.deliver(i)
    await late.waitFor(10, timeout=5)
    assert early.messages == list(range(10))
    assert late.messages == list(range(5, 15))
    # the backplane's end reaches the remaining subscriber
    await _stop(bp)
    await runComponent(subLate, 5)
    publish.inboxes["control"].deliver(ProducerFinished())
    await runComponent(publish, 5)


@pytest_twisted.ensureDeferred
async def test_pause_policy_holds_publishers_and_loses_nothing() -> None:
    bp = Backplane("paced").activate()
    fast, slow = MessageCollector(), Gate(bound=3)
    subs = [Pipeline(SubscribeTo("paced"), fast), Pipeline(SubscribeTo("paced"), slow)]
    for s in subs:
        s.activate()
    await waitUntil(lambda: len(bp.splitter.outlets) == 2)
    feeders = [Source(range(i * 1000, i * 1000 + 200)) for i in range(2)]
    pubs = [Pipeline(f, PublishTo("paced")) for f in feeders]
    for p in pubs:
        p.activate()
    await waitUntil(lambda: bp.splitter.outlets.paused and sum(f.sent for f in feeders) >= 64)
    held = sum(f.sent for f in feeders)
    assert held < 400
    slow.open()
    await DeferredList([p.finished for p in pubs])
    await fast.waitFor(400, timeout=10)
    await waitUntil(lambda: len(slow.got) == 400)
    for f in feeders:
        for got in (fast.messages, slow.got):
            mine = [m for m in got if m in set(f.items)]
            assert mine == f.items  # complete and in order per publisher
    assert bp.dropped == 0
    await _stop(bp)
    await DeferredList([s.finished for s in subs])


@pytest_twisted.ensureDeferred
async def test_drop_policy_subscriber_is_bounded_and_counted() -> None:
    bp = Backplane("lossy").activate()
    fast, stuck = MessageCollector(), Gate(bound=100)
    subFast = Pipeline(SubscribeTo("lossy"), fast).activate()
    lossy = SubscribeTo("lossy", policy="drop", size=10)
    subStuck = Pipeline(lossy, stuck).activate()
    await waitUntil(lambda: len(bp.splitter.outlets) == 2)
    pub = Pipeline(Source(range(300)), PublishTo("lossy"))
    await runComponent(pub, 10)
    await fast.waitFor(300, timeout=10)
    assert fast.messages == list(range(300))
    assert lossy.dropped == 290
    assert lossy.outlet is not None and lossy.outlet.peak == 10
    assert stuck.dataReady("inbox") == 10
    stuck.open()
    await _stop(bp)
    await runComponent(subStuck, 5)
    await runComponent(subFast, 5)
    assert stuck.got == list(range(10))
    assert lossy.dropped == 290


# -- the composed test: a TCP chat server ---------------------------------------------------

LINES_EACH = 20
CLIENTS = 50
QUEUE = 32


def loadExample(name: str) -> Any:
    """Import ``examples/<name>.py`` (not a package) as a module."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chatConnection = loadExample("chat_server").chatConnection


class ChatClient(Protocol):
    """Sends its lines, reads until it has seen ``expected`` lines."""

    def __init__(self, ident: int, expected: int) -> None:
        self.ident = ident
        self.expected = expected
        self.buffer = b""
        self.lines: list[bytes] = []
        self.done: Deferred[list[bytes]] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        for seq in range(LINES_EACH):
            self.transport.write(line(self.ident, seq))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(lines)
        if len(self.lines) >= self.expected and not self.done.called:
            self.done.callback(self.lines)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


def line(ident: int, seq: int) -> bytes:
    return b"%d:%d:" % (ident, seq) + b"x" * 180 + b"\n"


@pytest_twisted.ensureDeferred
async def test_chat_server_fifty_clients_one_never_reads() -> None:
    bp = Backplane("chat-test").activate()
    server = SimpleServer(lambda: chatConnection("chat-test", QUEUE))
    server.activate()
    port = await server.listening
    total = CLIENTS * LINES_EACH

    # the one that never reads: small kernel buffers so its backlog reaches the server soon
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    slow.connect(("127.0.0.1", port))
    await waitUntil(lambda: len(server.connections) == 1)
    (slowHandler,) = server.connections
    slowHandler.transport.socket.setsockopt(  # type: ignore[union-attr]
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
    )
    slowSub = slowHandler.component.components["SUB"]  # type: ignore[union-attr]

    clients = [ChatClient(i, total) for i in range(1, CLIENTS)]
    await gatherResults(
        [connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), c) for c in clients]
    )
    await waitUntil(lambda: len(bp.splitter.outlets) == CLIENTS)
    slow.sendall(b"".join(line(0, seq) for seq in range(LINES_EACH)))
    await gatherResults([c.done for c in clients])

    expected = {i: [line(i, s)[:-1] for s in range(LINES_EACH)] for i in range(CLIENTS)}
    for c in clients:
        assert len(c.lines) == total
        for i, mine in expected.items():
            assert [m for m in c.lines if m.startswith(b"%d:" % i)] == mine
    # the slow one lost messages, counted; its queue never passed its bound
    assert slowSub.dropped > 0
    assert slowSub.outlet.peak <= QUEUE
    assert bp.dropped == slowSub.dropped
    assert bp.splitter.pauses == 0 or all(o.policy == "drop" for o in bp.splitter.outlets)

    for c in clients:
        c.transport.loseConnection()  # type: ignore[union-attr]
    slow.close()
    await gatherResults([c.lost for c in clients])
    server.inboxes["control"].deliver(ShutdownMicroprocess())
    await runComponent(server, 10)
    await _stop(bp)
