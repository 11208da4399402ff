"""
pcpkit.testing under trial, as a Twisted user's suite would use it.

Run with ``python -m twisted.trial tests.trial_testing`` (pytest does not collect this
module: its name does not start with ``test_``). Trial fails a test that leaves a
``DelayedCall`` or a reader behind, and one that logs an error it did not flush, so these
tests also show that the helpers leave the reactor clean.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pcpkit import Component, ProducerFinished, ShutdownMicroprocess, producerFinished
from pcpkit._twisted import getReactor
from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.chassis import Pipeline
from pcpkit.component import Scheduler
from pcpkit.testing import (
    MessageCollector,
    MissingMessages,
    RecordingConsumer,
    RecordingProducer,
    runComponent,
)
from tests.componentutil import Source, Upper, settle


class Failing(Component):
    def main(self) -> Generator[int, None, None]:
        yield 1
        raise ValueError("planned failure")


class Forever(Component):
    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            self.pause()
            yield 1
        self.recv("control")


class ByteSource(Component):
    def __init__(self, chunks: list[bytes], **argd: Any) -> None:
        super().__init__(**argd)
        self.chunks = chunks

    async def main(self) -> int:
        for chunk in self.chunks:
            await self.put(chunk, "outbox")
        return len(self.chunks)


def pendingCalls() -> list[Any]:
    """Active DelayedCalls, except the one trial keeps for its own test timeout."""
    return [
        c
        for c in getReactor().getDelayedCalls()
        if c.active() and "TestCase._run" not in getattr(c.func, "__qualname__", "")
    ]


class MessageCollectorTests(unittest.TestCase):
    def test_returnTheDeferred(self) -> Deferred[None]:
        """Classic trial: return the Deferred, check in a callback."""
        sink = MessageCollector()
        d = runComponent(Pipeline(Source(["a", "b"]), Upper(), sink))

        def check(result: object) -> None:
            self.assertIsNone(result)
            self.assertEqual(sink.messages, ["A", "B"])
            self.assertIsInstance(sink.controlMessages[-1], ProducerFinished)

        d.addCallback(check)
        return d

    @inlineCallbacks
    def test_inlineCallbacks(self) -> Generator[Deferred[Any], Any, None]:
        sink = MessageCollector("extra")
        sink.activate()
        sink.inboxes["extra"].deliver("e")
        got = yield sink.waitFor(1, "extra", timeout=5)
        self.assertEqual(got, ["e"])
        sink.inboxes["inbox"].deliver(b"ab")
        sink.inboxes["inbox"].deliver(b"cd")
        sink.inboxes["control"].deliver(ShutdownMicroprocess())
        result = yield sink.finished
        self.assertEqual(result, [b"ab", b"cd"])
        self.assertEqual(sink.bytes(), b"abcd")
        self.assertIsInstance(sink.shutdownMessage, ShutdownMicroprocess)

    async def test_waitForTimeout(self) -> None:
        sink = MessageCollector()
        sink.activate()
        with self.assertRaises(TimeoutError) as info:
            await sink.waitFor(1, timeout=0.05)
        self.assertIn("0 of 1 messages", str(info.exception))
        sink.stop()
        self.assertEqual(await sink.finished, [])

    async def test_waitForMissing(self) -> None:
        sink = MessageCollector()
        sink.activate()
        d = sink.waitFor(2)
        sink.inboxes["control"].deliver(producerFinished())
        with self.assertRaises(MissingMessages):
            await d

    async def test_stopOnShutdownFalse(self) -> None:
        sink = MessageCollector(stopOnShutdown=False)
        sink.activate()
        sink.inboxes["control"].deliver(producerFinished())
        sink.inboxes["inbox"].deliver(1)
        await sink.waitFor(1, timeout=5)
        self.assertFalse(sink.finished.called)
        sink.stop()
        self.assertEqual(await sink.finished, [1])


class RunComponentTests(unittest.TestCase):
    async def test_result(self) -> None:
        class Answer(Component):
            async def main(self) -> int:
                return 42

        self.assertEqual(await runComponent(Answer(), timeout=30), 42)
        # Trial would also fail the test on a left-over 30 s DelayedCall.
        self.assertEqual(pendingCalls(), [])

    async def test_failure(self) -> None:
        with self.assertRaises(ValueError):
            await runComponent(Failing())
        # pcpkit logs a failing component; trial reports logged errors unless flushed.
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_failureReturned(self) -> Deferred[None]:
        d = runComponent(Failing())
        self.assertFailure(d, ValueError)
        d.addCallback(lambda _: self.flushLoggedErrors(ValueError))
        return d.addCallback(lambda _: None)

    async def test_timeout(self) -> None:
        c = Forever()
        with self.assertRaises(TimeoutError) as info:
            await runComponent(c, timeout=0.05)
        self.assertIn(repr(c), str(info.exception))
        self.assertIn("0.05 seconds", str(info.exception))
        self.assertEqual(pendingCalls(), [])
        c.inboxes["control"].deliver(ShutdownMicroprocess())
        await c.finished

    async def test_timeoutWithClock(self) -> None:
        clock = Clock()
        c = Forever()
        d = runComponent(c, timeout=3, clock=clock)
        clock.advance(3)
        with self.assertRaises(TimeoutError):
            await d
        self.assertEqual(clock.getDelayedCalls(), [])
        c.inboxes["control"].deliver(ShutdownMicroprocess())
        await c.finished


class RecordingFakesTests(unittest.TestCase):
    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IConsumer, RecordingConsumer()))
        self.assertTrue(verifyObject(IPushProducer, RecordingProducer()))
        self.assertTrue(verifyObject(IPullProducer, RecordingProducer(streaming=False)))

    def test_consumerRefusesStr(self) -> None:
        consumer = RecordingConsumer()
        self.assertRaises(TypeError, consumer.write, "text")
        self.assertEqual(consumer.writes, [])

    def test_pauseAfter(self) -> None:
        consumer = RecordingConsumer(pauseAfter=4)
        producer = RecordingProducer([b"ab"] * 4)
        done = producer.startProducing(consumer)
        self.assertEqual(consumer.data, b"abab")
        self.assertTrue(producer.paused)
        consumer.resumeProducer()
        self.assertEqual(consumer.data, b"ab" * 4)
        self.assertTrue(done.called)
        self.assertEqual(producer.calls, ["pauseProducing", "resumeProducing", "pauseProducing"])
        self.assertEqual(consumer.calls, ["registerProducer", "unregisterProducer"])

    def test_pullProducer(self) -> None:
        consumer = RecordingConsumer()
        producer = RecordingProducer([b"1", b"2"], streaming=False)
        producer.startProducing(consumer)
        consumer.resumeProducer()
        self.assertEqual(consumer.writes, [b"1"])
        consumer.resumeProducer()
        self.assertEqual(consumer.writes, [b"1", b"2"])
        self.assertEqual(producer.calls, ["resumeProducing"] * 2)
        self.assertTrue(producer.done.called)

    async def test_inboxConsumerPausesAndResumes(self) -> None:
        sink = MessageCollector()
        sink.setInboxSize("inbox", 4)
        chunks = [b"%02d" % i for i in range(12)]
        producer = RecordingProducer(chunks)
        done = producer.startProducing(InboxConsumer(sink, "inbox"))
        self.assertEqual(producer.calls, ["pauseProducing"])
        sink.activate()
        await done
        self.assertEqual(await sink.waitFor(12, timeout=10), chunks)
        self.assertIn("resumeProducing", producer.calls)
        sink.stop()
        await sink.finished

    async def test_outboxProducerIntoSlowConsumer(self) -> None:
        chunks = [b"x" * 10] * 10
        source = ByteSource(chunks)
        consumer = RecordingConsumer(pauseAfter=20)
        clock = Clock()
        source.activate(Scheduler(clock))  # runs only when the clock is advanced
        producer = OutboxProducer(source, "outbox", consumer, bufferSize=2)
        settle(clock)
        self.assertTrue(producer.paused)
        # nothing is left to run until the consumer resumes: nothing more was written
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(consumer.size, 20)
        self.assertFalse(source.finished.called)
        consumer.pauseAfter = None
        consumer.resumeProducer()
        settle(clock)
        self.assertEqual(await source.finished, 10)
        await producer.whenDrained()
        self.assertEqual(consumer.data, b"".join(chunks))
        producer.stop()
        self.assertEqual(consumer.calls, ["registerProducer", "unregisterProducer"])
