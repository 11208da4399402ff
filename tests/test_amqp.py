"""
pcpkit.amqp against a real RabbitMQ node on 127.0.0.1 (tests/rabbitutil.py starts one per
session), with consumers in separate Python processes.

Issue 14 asks for 10^5 messages per scenario; to keep this file well under a minute and a half
on a shared 2-core machine the counts are scaled down (a few thousand messages, kilobytes
each where memory is the point). The properties checked are the issue's: exactly once and in
order, consumer memory bounded, the broker's unacknowledged count never above the prefetch,
the publisher's window held, at-least-once with marked redeliveries across a broker crash,
and work shared by credit between three consumer processes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, TimeoutError, ensureDeferred
from twisted.logger import globalLogPublisher

from pcpkit.amqp import (
    AMQPMessage,
    AMQPSink,
    AMQPSource,
    JSONMarshaller,
    PublishFailed,
    redactURL,
)
from pcpkit.component import Component
from pcpkit.ipc import ErrorInformation, ProducerFinished, ShutdownMicroprocess
from pcpkit.testing import MessageCollector, runComponent
from tests.procutil import ProcessRunner
from tests.rabbitutil import (
    RabbitNode,
    consumerCommand,
    freePort,
    parseConsumerOutput,
)
from tests.waitutil import waitUntil

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


class Feeder(Component):
    """``put``s each item (waiting while the sink's inbox is full), then ProducerFinished."""

    def __init__(self, items: list[Any], **argd: Any) -> None:
        super().__init__(**argd)
        self.items = items
        self.maxSinkQueue = 0
        self.maxUnconfirmed = 0
        self.sent = 0
        #: called after each put with the count sent; may return a Deferred to wait on
        self.afterEach: Callable[[int], Deferred[None] | None] | None = None

    async def main(self) -> None:
        sink = self.outboxes["outbox"].final
        for item in self.items:
            await self.put(item)
            self.sent += 1
            self.maxSinkQueue = max(self.maxSinkQueue, len(sink))
            owner = sink.owner
            if isinstance(owner, AMQPSink):
                self.maxUnconfirmed = max(self.maxUnconfirmed, owner.unconfirmed)
            if self.afterEach is not None:
                hold = self.afterEach(self.sent)
                if hold is not None:
                    await hold
        await self.put(ProducerFinished(self), "signal")


def publisher(
    url: str, queue: str, items: list[Any], **sinkOptions: Any
) -> tuple[Feeder, AMQPSink, MessageCollector]:
    """Feeder -> AMQPSink(default exchange, queue) -> signals into a MessageCollector."""
    feeder = Feeder(items)
    sink = AMQPSink("", queue, url=url, **sinkOptions)
    signals = MessageCollector()
    feeder.link((feeder, "outbox"), (sink, "inbox"))
    feeder.link((feeder, "signal"), (sink, "control"))
    sink.link((sink, "signal"), (signals, "control"))
    return feeder, sink, signals


async def publish(url: str, queue: str, items: list[Any], **sinkOptions: Any) -> AMQPSink:
    feeder, sink, signals = publisher(url, queue, items, **sinkOptions)
    for c in (signals, sink, feeder):
        c.activate()
    await runComponent(signals, timeout=60)
    errors = [m for m in signals.controlMessages if isinstance(m, ErrorInformation)]
    assert not errors, errors
    assert sink.confirmed == len(items)
    return sink


def started(comp: Component) -> MessageCollector:
    """Activate ``comp`` with a MessageCollector on its ``signal`` (returned)."""
    signals = MessageCollector()
    comp.link((comp, "signal"), (signals, "control"))
    signals.activate()
    comp.activate()
    return signals


def consumer(url: str, queue: str, *options: str) -> ProcessRunner:
    """Start a consumer process (tests/rabbitutil.py); a test kills it in a ``finally``."""
    argv = consumerCommand(url, queue, *options)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return ProcessRunner(argv, cwd=str(ROOT), env=env)


async def result(process: ProcessRunner, timeout: float = 60) -> dict[str, Any]:
    """What the consumer process printed, once it has ended by itself (exit code 0)."""
    try:
        code = await process.ended.addTimeout(timeout, reactor)
    except TimeoutError:
        said = process.outputs[2].decode(errors="replace")[-3000:]
        raise AssertionError(f"the consumer did not end within {timeout} s:\n{said}") from None
    assert code == 0, process.outputs[2].decode(errors="replace")[-3000:]
    return parseConsumerOutput(bytes(process.outputs[1]))


async def killed(*processes: ProcessRunner) -> None:
    """Kill, and wait for, those of ``processes`` still running (a test's ``finally``)."""
    for process in processes:
        await process.kill().addTimeout(30, reactor)


def body(i: int, size: int = 32) -> bytes:
    head = b"%d " % i
    return head + b"x" * max(0, size - len(head))


class UnackedSampler:
    """Polls ``rabbitmqctl list_queues`` (in a thread) until stopped; keeps what it saw."""

    def __init__(self, node: RabbitNode, queue: str) -> None:
        self.node, self.queue = node, queue
        self.samples: list[tuple[int, int]] = []
        self.running = True
        self.done = ensureDeferred(self._run())

    async def _run(self) -> None:
        while self.running:
            self.samples.append(await threads.deferToThread(self.node.queueCounts, self.queue))


# -- pure parts --------------------------------------------------------------------------------


def test_redactURL() -> None:
    assert redactURL("amqp://bob:s3cret@host:5673/vh") == "amqp://bob:***@host:5673/vh"
    assert redactURL("amqps://bob:s3cret@[::1]/") == "amqps://bob:***@[::1]/"
    assert redactURL("amqp://host/") == "amqp://host/"


def test_message() -> None:
    m = AMQPMessage(b"x", {"a": 1}, routingKey="k")
    assert m.headers == {"a": 1}
    assert m == AMQPMessage(b"x", {"a": 1}, routingKey="k")
    assert m != AMQPMessage(b"y", {"a": 1}, routingKey="k")
    assert AMQPMessage(b"x", properties={"headers": {"b": 2}}).headers == {"b": 2}
    assert "redelivered" in repr(AMQPMessage(b"x" * 100, redelivered=True))
    assert JSONMarshaller.demarshall(JSONMarshaller.marshall({"k": [1, "v"]})) == {"k": [1, "v"]}
    with pytest.raises(ValueError):
        AMQPSink("", "q", window=0)
    with pytest.raises(ValueError):
        AMQPSource("q", prefetch=0)


# -- the scenarios ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_separate_consumer_process_exactly_once_in_order(rabbit: RabbitNode) -> None:
    """
    4,000 messages of 8 KiB (32 MiB) published here, consumed by another process into a
    slow sink: each once, in order; the consumer's RSS grows by far less than the data;
    the broker never has more unacknowledged messages than the prefetch (the sink's inbox
    bound, 32), and the backlog waits in the broker.
    """
    n, size, prefetch = 4000, 8192, 32
    rabbit.declare("once")
    sampler = UnackedSampler(rabbit, "once")
    consuming = consumer(
        rabbit.url, "once", "--count", str(n), "--delay", "0.0005", "--inbox", str(prefetch)
    )
    try:
        await publish(rabbit.url, "once", [body(i, size) for i in range(n)], window=128)
        got = await result(consuming)
    finally:
        sampler.running = False
        await sampler.done
        await killed(consuming)

    assert got["ids"] == list(range(n))
    assert got["redelivered"] == [] and got["errors"] == []
    assert got["acked"] == n
    assert got["rssMax"] - got["rssFirst"] < 12 * 2**20, got
    assert max(unacked for _, unacked in sampler.samples) <= prefetch, sampler.samples
    # the slow consumer left the backlog in the broker, not in its memory
    assert max(ready for ready, _ in sampler.samples) > 10 * prefetch, sampler.samples
    assert rabbit.queueCounts("once") == (0, 0)


@pytest_twisted.ensureDeferred
async def test_sink_window_holds_and_senders_wait(rabbit: RabbitNode) -> None:
    """A feeder much faster than the broker's confirms: the window holds, nothing is lost."""
    n, window = 3000, 8
    rabbit.declare("window")
    feeder, sink, signals = publisher(
        rabbit.url, "window", [body(i) for i in range(n)], window=window
    )
    for c in (signals, sink, feeder):
        c.activate()
    await runComponent(signals, timeout=60)
    assert [m for m in signals.controlMessages if isinstance(m, ErrorInformation)] == []
    assert sink.published == sink.confirmed == n
    assert sink.maxUnconfirmed <= window
    assert feeder.maxUnconfirmed <= window
    assert sink.windowPauses > 10
    assert feeder.maxSinkQueue <= window  # the sink's inbox bound: the feeder waited
    assert rabbit.queueCounts("window") == (n, 0)


@pytest_twisted.ensureDeferred
async def test_sink_stops_while_broker_blocks_publishers(rabbit: RabbitNode) -> None:
    """Connection.Blocked (a memory alarm) stops the sink; Unblocked resumes it, all arrive."""
    n = 2000
    rabbit.declare("blocked")
    # a window as large as the stream: only the block can hold the sink back
    feeder, sink, signals = publisher(
        rabbit.url, "blocked", [body(i) for i in range(n)], window=n, inboxSize=16
    )
    await threads.deferToThread(rabbit.ctl, "set_vm_memory_high_watermark", "absolute", "1")

    # The broker blocks a connection at its first publish under the alarm. Feed the rest
    # only once the sink has been told: on a loaded machine the sink could otherwise publish
    # the whole stream into the socket before Connection.Blocked reached it.
    def gate(sent: int) -> Deferred[None] | None:
        if sent == 1:
            return ensureDeferred(waitUntil(lambda: sink.blocked, 20, "Connection.Blocked"))
        return None

    feeder.afterEach = gate
    try:
        for c in (signals, sink, feeder):
            c.activate()
        inbox = sink.inboxes["inbox"]
        await waitUntil(
            lambda: sink.blocked and inbox.isFull(), 20, "Connection.Blocked, the inbox full"
        )
        stuck, published = feeder.sent, sink.published
        # An ErrorInformation on the sink's control is passed on along its signal in the
        # step that would also publish: once it reaches the collector, the sink has run a
        # step while blocked, and it took nothing from its inbox.
        probe = ErrorInformation(feeder, message="probe")
        sink.inboxes["control"].deliver(probe)
        await signals.waitFor(1, "control", timeout=20)
        assert sink.blocked and inbox.isFull()
        assert sink.published == published < n and feeder.sent == stuck < n
        assert sink.unconfirmed < sink.window  # not the window: the block
    finally:
        await threads.deferToThread(rabbit.ctl, "set_vm_memory_high_watermark", "0.4")
    await runComponent(signals, timeout=30)
    assert [m for m in signals.controlMessages if isinstance(m, ErrorInformation)] == [probe]
    assert not sink.blocked
    assert sink.confirmed == n
    assert rabbit.queueCounts("blocked") == (n, 0)


@pytest_twisted.ensureDeferred
async def test_broker_killed_and_restarted_mid_stream(rabbit: RabbitNode) -> None:
    """
    SIGKILL the broker when half the messages are confirmed, start it again on the same
    data: the consumer process gets every message at least once, every copy it had already
    seen either marked redelivered or a resend of an unconfirmed publish, and the publisher
    resent only what was unconfirmed (at most its window).
    """
    n, window = 3000, 64
    rabbit.declare("crash")
    # the queue on disk before the crash: what is tested is pcpkit across a crash, not
    # whether the broker keeps a queue declared a moment before it is killed
    await threads.deferToThread(rabbit.restart)
    consuming = consumer(rabbit.url, "crash", "--count", str(n), "--delay", "0.001", "--reconnect")
    feeder, sink, signals = publisher(
        rabbit.url, "crash", [body(i, 256) for i in range(n)], window=window, reconnect=True
    )
    consumerUp: Deferred[None] = Deferred()
    crashed: Deferred[None] = Deferred()

    def gate(sent: int) -> Deferred[None] | None:
        if sent == n // 2:
            return consumerUp  # half published: wait until the consumer is busy too
        if sent == n // 2 + window // 2:
            crashed.callback(None)  # crash with publishes in flight
        return None

    feeder.afterEach = gate
    try:
        for c in (signals, sink, feeder):
            c.activate()
        # an event, not a sample of the broker's counts: a loaded machine's rabbitmqctl is
        # slow enough to miss the consumer's whole first half
        await waitUntil(
            lambda: b"consuming\n" in consuming.outputs[1],
            timeout=60,
            what="the consumer process taking its first message",
        )
        consumerUp.callback(None)
        await crashed
        await threads.deferToThread(rabbit.kill)
        await threads.deferToThread(rabbit.start)
        await runComponent(signals, timeout=60)
        got = await result(consuming)
    finally:
        await killed(consuming)

    assert set(got["ids"]) == set(range(n))
    copies = Counter(got["ids"])
    marked = Counter(got["redelivered"])
    unmarkedRepeats = sum(copies[i] - 1 - marked[i] for i in copies if copies[i] > 1)
    assert 0 <= unmarkedRepeats <= sink.resent
    assert got["connections"] == 2 and sink.connections == 2
    assert got["errors"], "the consumer was not told about the crash"
    assert not any("PRECONDITION_FAILED" in e for e in got["errors"])  # no stale acks
    sinkErrors = [str(m) for m in signals.controlMessages if isinstance(m, ErrorInformation)]
    assert sinkErrors and all("guest:guest" not in e for e in sinkErrors)
    assert sink.confirmed == n
    # only what was unconfirmed when the connection died was sent again: at most a window
    assert 0 < sink.resent <= window
    assert sink.published == n  # first publishes: each message taken from the inbox once


@pytest_twisted.ensureDeferred
async def test_three_consumer_processes_slowest_gets_fewest(rabbit: RabbitNode) -> None:
    """3,000 messages, three consumer processes of different speeds on one queue."""
    n = 3000
    rabbit.declare("shared")
    runs = [
        consumer(rabbit.url, "shared", "--delay", delay, "--inbox", "8")
        for delay in ("0", "0.002", "0.02")
    ]
    try:
        # all three consume before anything is published: none gets a head start
        for _ in range(200):
            if await threads.deferToThread(rabbit.consumers, "shared") == 3:
                break
        else:
            raise AssertionError("the three consumer processes did not all start consuming")
        await publish(rabbit.url, "shared", [body(i) for i in range(n)] + [b"END"] * 3, window=256)
        fast, medium, slow = [await result(run) for run in runs]
    finally:
        await killed(*runs)
    everything = sorted(fast["ids"] + medium["ids"] + slow["ids"])
    assert everything == list(range(n))
    assert len(slow["ids"]) < len(medium["ids"]) < len(fast["ids"])
    for r in (fast, medium, slow):
        assert r["ids"] == sorted(r["ids"])  # each sees its share in queue order


# -- faults ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_reported_without_credentials() -> None:
    url = f"amqp://someone:Sup3rSecret@127.0.0.1:{freePort()}/"
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        logged.append(repr(event))

    globalLogPublisher.addObserver(observe)
    try:
        for comp in (AMQPSource("q", url=url), AMQPSink("", "q", url=url)):
            signals = started(comp)
            await runComponent(signals, timeout=10)
            first, last = signals.controlMessages
            assert isinstance(first, ErrorInformation)
            assert "cannot connect" in str(first) and "someone:***@127.0.0.1" in str(first)
            assert isinstance(last, ProducerFinished)
            await comp.finished
    finally:
        globalLogPublisher.removeObserver(observe)
    assert logged and not any("Sup3rSecret" in line for line in logged)


@pytest_twisted.ensureDeferred
async def test_reconnect_retries_with_backoff_until_stopped() -> None:
    source = AMQPSource("q", url=f"amqp://guest:guest@127.0.0.1:{freePort()}/", reconnect=True)
    signals = started(source)
    await signals.waitFor(3, "control", timeout=10)  # three refused attempts, reported
    assert all(isinstance(m, ErrorInformation) for m in signals.controlMessages)
    source.inboxes["control"].deliver(ShutdownMicroprocess())
    await runComponent(signals, timeout=10)
    assert isinstance(signals.controlMessages[-1], ProducerFinished)
    assert source.connections == 0


@pytest_twisted.ensureDeferred
async def test_missing_queue_closes_channel_with_clear_error(rabbit: RabbitNode) -> None:
    signals = started(AMQPSource("no-such-queue", url=rabbit.url))
    await runComponent(signals, timeout=10)
    error, end = signals.controlMessages
    assert isinstance(error, ErrorInformation) and isinstance(end, ProducerFinished)
    assert "404" in str(error) and "no-such-queue" in str(error)


async def reconnectPauses(comp: Component, count: int = 3) -> tuple[list[float], MessageCollector]:
    """
    Run ``comp`` (with a collector on its ``signal``) until it has logged the pauses before
    its first ``count`` reconnection attempts; stop it; return them and the collector.
    """
    delays: list[float] = []

    def observe(event: dict[str, Any]) -> None:
        if "reconnecting" in event.get("log_format", "") and event.get("component") is comp:
            delays.append(event["delay"])
            if len(delays) == count:
                done.callback(delays)

    done: Deferred[list[float]] = Deferred()
    globalLogPublisher.addObserver(observe)
    signals = started(comp)
    try:
        await done.addTimeout(30, reactor)
    finally:
        globalLogPublisher.removeObserver(observe)
        comp.inboxes["control"].deliver(ShutdownMicroprocess())
        await runComponent(signals, timeout=10)
    return delays, signals


@pytest_twisted.ensureDeferred
async def test_missing_queue_with_reconnect_backs_off(rabbit: RabbitNode) -> None:
    """
    The broker takes the connection and then refuses the consumer (404): each such attempt
    is a failed one, so the pause doubles instead of staying at the first for good.
    """
    source = AMQPSource("no-such-queue", url=rabbit.url, reconnect=True)
    got, signals = await reconnectPauses(source)
    assert got == [0.25, 0.5, 1.0]
    errors = [str(m) for m in signals.controlMessages if isinstance(m, ErrorInformation)]
    assert len(errors) >= 3 and all("404" in e and "no-such-queue" in e for e in errors)
    assert source.connections >= 3


@pytest_twisted.ensureDeferred
async def test_missing_exchange_with_reconnect_backs_off(rabbit: RabbitNode) -> None:
    """
    The channel is set up, then closed at the first publish (404): a session that did not
    stay up does not reset the pause either, and the message is kept for the next one.
    """
    sink = AMQPSink("no-such-exchange", "q", url=rabbit.url, reconnect=True)
    sink.inboxes["inbox"].deliver(b"kept")
    got, signals = await reconnectPauses(sink)
    assert got == [0.25, 0.5, 1.0]
    errors = [str(m) for m in signals.controlMessages if isinstance(m, ErrorInformation)]
    assert any("404" in e and "no-such-exchange" in e for e in errors)
    assert sink.confirmed == 0 and sink.resent >= 2


@pytest_twisted.ensureDeferred
async def test_returned_and_unencodable_messages_are_errors_not_losses(
    rabbit: RabbitNode,
) -> None:
    rabbit.declare("returns")
    items: list[Any] = [
        b"0 ok",
        AMQPMessage(b"lost?", routingKey="no-queue-has-this-key"),
        "a str",
        b"1 ok",
    ]
    feeder, sink, signals = publisher(rabbit.url, "returns", items)
    for c in (signals, sink, feeder):
        c.activate()
    await runComponent(signals, timeout=20)
    errors = [m for m in signals.controlMessages if isinstance(m, ErrorInformation)]
    assert len(errors) == 2
    failed = {
        type(
            e.exception.amqpMessage.body
            if isinstance(e.exception.amqpMessage, AMQPMessage)
            else e.exception.amqpMessage
        ).__name__: e
        for e in errors
        if isinstance(e.exception, PublishFailed)
    }
    assert set(failed) == {"bytes", "str"}
    assert failed["bytes"].exception.amqpMessage.body == b"lost?"
    assert "NO_ROUTE" in str(failed["bytes"])
    assert "str" in str(failed["str"])
    assert rabbit.queueCounts("returns") == (2, 0)


@pytest_twisted.ensureDeferred
async def test_marshaller_headers_and_redelivery_in_one_process(rabbit: RabbitNode) -> None:
    """
    Objects through a JSONMarshaller with headers, source -> collector; a source shut down
    with messages unacknowledged leaves them to be redelivered, marked, to the next one.
    """
    rabbit.declare("objects")
    items = [AMQPMessage({"n": i}, {"h": i}) for i in range(20)]
    await publish(rabbit.url, "objects", items, marshaller=JSONMarshaller)

    first = AMQPSource("objects", url=rabbit.url, marshaller=JSONMarshaller)
    held = MessageCollector()
    held.setInboxSize("inbox", 8)
    first.link((first, "outbox"), (held, "inbox"))
    # the collector is not activated: nothing is taken, so nothing may be acknowledged
    first.activate()
    await waitUntil(lambda: len(held.inboxes["inbox"]) == 8, 10, "8 deliveries")
    assert await threads.deferToThread(rabbit.queueCounts, "objects") == (12, 8)
    assert first.acked == 0
    first.inboxes["control"].deliver(ShutdownMicroprocess())
    await first.finished

    second = AMQPSource("objects", url=rabbit.url, marshaller=JSONMarshaller)
    got = MessageCollector()
    second.link((second, "outbox"), (got, "inbox"))
    second.link((second, "signal"), (got, "control"))
    got.activate()
    second.activate()
    await got.waitFor(20, timeout=10)
    second.inboxes["control"].deliver(ProducerFinished())
    await runComponent(got, timeout=10)
    bodies = [m.body for m in got.messages]
    assert bodies == [{"n": i} for i in range(20)]
    assert [m.headers for m in got.messages] == [{"h": i} for i in range(20)]
    assert [m.redelivered for m in got.messages] == [True] * 8 + [False] * 12
    assert got.messages[0].properties.content_type == "application/json"
    assert second.acked == 20
    assert await threads.deferToThread(rabbit.queueCounts, "objects") == (0, 0)


def test_example_pipeline_runs(rabbit: RabbitNode) -> None:
    """examples/amqp_pipeline.py against the test broker: everything published is tallied."""
    from tests.exampleutil import runExample

    rabbit.declare("pcpkit-example")
    done = runExample("amqp_pipeline.py", rabbit.url, "700", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "published 700 orders" in done.stdout
    assert f"tallied 700 orders, total amount {sum(i % 97 for i in range(700))}" in done.stdout
    assert "guest:guest" not in done.stdout + done.stderr
    assert rabbit.queueCounts("pcpkit-example") == (0, 0)
    bad = runExample("amqp_pipeline.py", f"amqp://guest:guest@127.0.0.1:{freePort()}/", "5")
    assert bad.returncode == 1
    assert "cannot connect" in bad.stderr and "guest:***@" in bad.stderr
