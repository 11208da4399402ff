"""
Helpers for testing code that uses pcpkit, under trial or pytest (with pytest-twisted).

* :class:`MessageCollector` -- a component that records every message reaching its inboxes
  and lets a test wait for them (:meth:`MessageCollector.waitFor`).
* :class:`RecordingConsumer` -- an ``IConsumer`` that records writes and producer
  registrations, and can play a slow consumer (``pauseAfter``).
* :class:`RecordingProducer` -- an ``IPushProducer`` (or ``IPullProducer``) that records the
  flow-control calls made on it, and can feed a consumer from a list of chunks.
* :func:`runComponent` -- activate a component and get a ``Deferred`` for its outcome, with a
  timeout that never leaves a ``DelayedCall`` behind; on timeout its message carries the
  component's waits-on chains (:mod:`pcpkit.inspect`).
* :class:`FillRecorder` / :func:`recordingFills` -- record the most every box and byte proxy
  held during a test, and :meth:`FillRecorder.assertBounded` that none went over its bound.

Every helper runs on the global reactor and leaves it clean once the thing it waits for has
happened (or its timeout has fired), so trial's and the test suite's dirty-reactor checks
pass. Example (pytest)::

    @pytest_twisted.ensureDeferred
    async def test_upper():
        sink = MessageCollector()
        result = await runComponent(Pipeline(Source([b"a", b"b"]), Upper(), sink))
        assert sink.messages == [b"A", b"B"]

The same test under trial is an ``async def`` method of a
``twisted.trial.unittest.TestCase``.
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from pcpkit import inspect as _inspect
from pcpkit._fifo import asBytes
from pcpkit._twisted import getReactor
from pcpkit.component import Box, Component, UnknownBox
from pcpkit.ipc import Shutdown
from pcpkit.pcp import BasicProducerConsumerProxy

__all__ = [
    "FillRecorder",
    "MessageCollector",
    "Peak",
    "recordingFills",
    "waitsOnDump",
    "MissingMessages",
    "RecordingConsumer",
    "RecordingProducer",
    "runComponent",
]


class MissingMessages(Exception):
    """
    A :meth:`MessageCollector.waitFor` can never be satisfied: the collector has finished
    with fewer messages than asked for. (:meth:`RecordingConsumer.waitFor` never fails so: a
    consumer cannot tell that no producer will write to it again, so only its timeout ends
    the wait.)
    """


class _CountWaiter:
    """One pending ``waitFor``: a Deferred, the count it needs, and its timeout call."""

    __slots__ = ("count", "deferred", "timeoutCall")

    def __init__(self, count: int, deferred: Deferred[Any]) -> None:
        self.count = count
        self.deferred = deferred
        self.timeoutCall: Any = None

    def fire(self, value: object) -> None:
        self._cancelTimeout()
        if not self.deferred.called:
            self.deferred.callback(value)

    def fail(self, error: Exception) -> None:
        self._cancelTimeout()
        if not self.deferred.called:
            self.deferred.errback(error)

    def _cancelTimeout(self) -> None:
        call, self.timeoutCall = self.timeoutCall, None
        if call is not None and call.active():
            call.cancel()


def _addCountWaiter(
    waiters: list[_CountWaiter],
    count: int,
    timeout: float | None,
    describe: Callable[[], str],
) -> Deferred[Any]:
    """
    Make a waiter for ``count`` items, registered in ``waiters``, timing out after
    ``timeout`` seconds with a :class:`~twisted.internet.defer.TimeoutError` whose message is
    ``describe()`` (evaluated when it times out). Cancelling the Deferred removes the waiter
    and its timeout call.
    """

    def cancel(d: Deferred[Any]) -> None:
        if waiter in waiters:
            waiters.remove(waiter)
        waiter._cancelTimeout()

    d: Deferred[Any] = Deferred(cancel)
    waiter = _CountWaiter(count, d)
    waiters.append(waiter)

    if timeout is not None:

        def timedOut() -> None:
            waiter.timeoutCall = None
            if waiter in waiters:
                waiters.remove(waiter)
            waiter.fail(TimeoutError(describe()))

        waiter.timeoutCall = getReactor().callLater(timeout, timedOut)
    return d


def _checkCount(count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError(f"count must be an int, not {type(count).__name__}")
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")


# -- MessageCollector ---------------------------------------------------------------------------


class MessageCollector(Component):
    """
    A component that records, in order, every message that reaches its inboxes.

    It has the usual ``inbox`` and ``control`` inboxes, plus one inbox for each name in
    ``extraInboxes``; link anything to them as to any component, for example as the last
    component of a :class:`~pcpkit.chassis.Pipeline`. Each inbox's messages are kept in
    :attr:`received` (``received["inbox"]`` is also :attr:`messages`, ``received["control"]``
    is :attr:`controlMessages`), and :attr:`history` holds ``(boxname, message)`` pairs in the
    order they were recorded.

    With ``stopOnShutdown=True`` (the default) it ends when a
    :class:`~pcpkit.ipc.Shutdown` (``ProducerFinished``, ``ShutdownMicroprocess``,
    ``SocketShutdown``...) arrives on ``control``: the shutdown message is recorded too
    (and kept in ``shutdownMessage``), after everything already waiting in the other inboxes,
    and ``finished`` fires with the ``inbox`` list. Other control messages (an
    :class:`~pcpkit.ipc.ErrorInformation`, say) are only recorded. With
    ``stopOnShutdown=False`` it records until :meth:`stop` is called.

    It never bounds its inboxes itself; call ``setInboxSize`` to test back-pressure.

    :param extraInboxes: names of further inboxes to create and record.
    :param stopOnShutdown: end on a ``Shutdown`` message on ``control``.
    :param argd: become attributes, as for any :class:`~pcpkit.component.Component`.
    """

    def __init__(self, *extraInboxes: str, stopOnShutdown: bool = True, **argd: Any) -> None:
        super().__init__(**argd)
        for name in extraInboxes:
            if not isinstance(name, str):
                raise TypeError(f"inbox names must be str, not {type(name).__name__}: {name!r}")
            if name not in self.inboxes:
                self.inboxes[name] = Box(self, name, True)
        self.stopOnShutdown = stopOnShutdown
        #: What reached each inbox, in order: box name to list of messages.
        self.received: dict[str, list[Any]] = {name: [] for name in self.inboxes}
        #: ``(boxname, message)`` for every message recorded, in the order recorded.
        self.history: list[tuple[str, Any]] = []
        self._countWaiters: dict[str, list[_CountWaiter]] = {name: [] for name in self.inboxes}
        self._stopRequested = False
        self.finished.addBoth(self._ended)

    # -- what was recorded ----------------------------------------------------------------------

    # ``Component.messages(box)`` is an async iterator for a component's own ``main``; a
    # collector's main does not use it, and for a test ``collector.messages`` is what it got.
    @property
    def messages(self) -> list[Any]:  # type: ignore[override]
        """The messages that reached ``inbox``, in order (the live list)."""
        return self.received["inbox"]

    @property
    def controlMessages(self) -> list[Any]:
        """The messages that reached ``control``, in order, shutdown message included."""
        return self.received["control"]

    # -- waiting --------------------------------------------------------------------------------

    def waitFor(
        self, count: int, box: str = "inbox", timeout: float | None = None
    ) -> Deferred[list[Any]]:
        """
        Wait until at least ``count`` messages have reached inbox ``box``.

        The Deferred fires with a copy of everything recorded in ``box`` so far (which may be
        more than ``count``); at once if there is already enough. It fails with
        :class:`MissingMessages` if the collector finishes with fewer, and with
        :class:`twisted.internet.defer.TimeoutError` after ``timeout`` seconds (``None``:
        no limit). The timeout call is cancelled when the Deferred fires, so nothing is left
        on the reactor; cancelling the Deferred also withdraws the wait.

        The collector must be active (``activate()`` or :func:`runComponent`) to record.

        :raises UnknownBox: if ``box`` is not one of its inboxes.
        """
        _checkCount(count)
        if box not in self.received:
            raise UnknownBox(
                f"{self!r} has no inbox {box!r}; its inboxes are {sorted(self.received)}"
            )
        got = self.received[box]
        if len(got) >= count:
            d: Deferred[list[Any]] = Deferred()
            d.callback(list(got))
            return d
        if self.finished.called:
            return _failed(MissingMessages(self._shortBy(count, box)))

        def describe() -> str:
            return (
                f"{self!r} had {len(self.received[box])} of {count} messages in {box!r} "
                f"after {timeout:g} seconds: {self.received[box]!r}"
            )

        return _addCountWaiter(self._countWaiters[box], count, timeout, describe)

    def stop(self) -> None:
        """
        End the collector: it records what is already waiting in its inboxes, then
        ``finished`` fires with the ``inbox`` list. It must have been activated.
        """
        self._stopRequested = True
        self.unpause()

    def bytes(self, box: str = "inbox") -> builtins.bytes:
        """
        The bytes messages recorded in ``box``, joined.

        :raises TypeError: naming the first message that is not bytes-like (a ``str``, a
            shutdown message on a data inbox...), so a byte stream cannot silently lose data.
        """
        if box not in self.received:
            raise UnknownBox(
                f"{self!r} has no inbox {box!r}; its inboxes are {sorted(self.received)}"
            )
        parts = []
        for i, msg in enumerate(self.received[box]):
            if not isinstance(msg, builtins.bytes | bytearray | memoryview):
                raise TypeError(
                    f"message {i} in {box!r} of {self!r} is {type(msg).__name__}, "
                    f"not bytes: {msg!r}"
                )
            parts.append(builtins.bytes(msg))
        return b"".join(parts)

    # -- the component ----------------------------------------------------------------------------

    def main(self) -> Generator[int, None, list[Any]]:
        """Record every inbox until a shutdown message on ``control`` or :meth:`stop`."""
        dataBoxes = [name for name in self.inboxes if name != "control"]
        hasControl = "control" in self.inboxes
        while True:
            for name in dataBoxes:
                self._drain(name)
            if self._stopRequested:
                return self.received["inbox"]
            ending: Shutdown | None = None
            while hasControl and ending is None and self.dataReady("control"):
                msg = self.recv("control")
                if self.stopOnShutdown and isinstance(msg, Shutdown):
                    # What reached the data inboxes before the shutdown is recorded first
                    # (a waitFor callback may have delivered both during this step).
                    for name in dataBoxes:
                        self._drain(name)
                    ending = msg
                self._record("control", msg)
                self._checkWaiters("control")
            if ending is not None:
                self.shutdownMessage = ending
                return self.received["inbox"]
            # Messages that arrived during this step (a producer refilled an inbox as it
            # drained, or a waitFor callback ran test code that sent some) are taken on the
            # next step: pausing now would sleep on them.
            if not self.anyReady():
                self.pause()
            yield 1

    def _drain(self, name: str) -> None:
        # At most what is queued now, so a producer that refills the inbox as it drains
        # cannot keep this component (and the reactor) busy for ever.
        count = self.dataReady(name)
        if count:
            for _ in range(count):
                self._record(name, self.recv(name))
            self._checkWaiters(name)

    def _record(self, name: str, msg: object) -> None:
        self.received[name].append(msg)
        self.history.append((name, msg))

    def _checkWaiters(self, name: str) -> None:
        waiters = self._countWaiters[name]
        if not waiters:
            return
        got = self.received[name]
        ready = [w for w in waiters if len(got) >= w.count]
        for w in ready:
            waiters.remove(w)
            w.fire(list(got))

    def _shortBy(self, count: int, box: str) -> str:
        got = self.received[box]
        return (
            f"{self!r} finished with {len(got)} of the {count} messages awaited in {box!r}: {got!r}"
        )

    def _ended(self, result: object) -> object:
        for box, waiters in self._countWaiters.items():
            pending, waiters[:] = list(waiters), []
            for w in pending:
                w.fail(MissingMessages(self._shortBy(w.count, box)))
        return result


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


# -- fake consumers and producers ---------------------------------------------------------------


@implementer(IConsumer)
class RecordingConsumer:
    """
    An ``IConsumer`` that records what is written to it and the producers registered on it.

    * :attr:`writes` holds each write (as ``bytes``), :attr:`data` all of them joined;
      ``bytearray`` and ``memoryview`` are accepted and copied, anything else (a ``str``...)
      raises ``TypeError`` naming its type, as a byte path must.
    * :attr:`calls` lists ``"registerProducer"`` and ``"unregisterProducer"`` in the order
      they were made; :attr:`producer` and :attr:`streaming` are the current registration
      (``producer`` is ``None`` once unregistered; ``streaming`` keeps the last value).
      Registering a second producer raises ``RuntimeError``, as the ``IConsumer`` contract
      requires.
    * ``pauseAfter=N`` makes it a slow consumer: once ``N`` bytes have been written since the
      producer was registered or last resumed, it calls the (streaming) producer's
      ``pauseProducing``. :meth:`resumeProducer` resumes it (or, for a pull producer, asks for
      one more write) and starts a new window of ``N`` bytes. Set :attr:`pauseAfter` to
      ``None`` to let everything through.

    A pull producer is never pulled on its own: call :meth:`resumeProducer` for each write.
    """

    def __init__(self, pauseAfter: int | None = None) -> None:
        if pauseAfter is not None:
            _checkCount(pauseAfter)
        #: Bytes per window before the producer is paused (``None``: never).
        self.pauseAfter = pauseAfter
        #: Each write, in order.
        self.writes: list[bytes] = []
        #: ``"registerProducer"`` / ``"unregisterProducer"``, in order.
        self.calls: list[str] = []
        #: The registered producer, or ``None``.
        self.producer: Any = None
        #: Whether the last registered producer is streaming (``None``: none registered yet).
        self.streaming: bool | None = None
        #: Whether this consumer has its producer paused.
        self.producerPaused = False
        #: How many times this consumer paused its producer.
        self.pauses = 0
        self._size = 0
        self._window = 0
        self._countWaiters: list[_CountWaiter] = []

    def __repr__(self) -> str:
        return f"<RecordingConsumer: {self._size} bytes in {len(self.writes)} writes>"

    @property
    def data(self) -> bytes:
        """Everything written, joined."""
        return b"".join(self.writes)

    @property
    def size(self) -> int:
        """How many bytes have been written."""
        return self._size

    # -- IConsumer ------------------------------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                f"{self!r} already has producer {self.producer!r}; unregister it first"
            )
        self.calls.append("registerProducer")
        self.producer = producer
        self.streaming = bool(streaming)
        self.producerPaused = False
        self._window = 0

    def unregisterProducer(self) -> None:
        self.calls.append("unregisterProducer")
        self.producer = None
        self.producerPaused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        chunk = asBytes(data, "data written to a RecordingConsumer")
        self.writes.append(chunk)
        self._size += len(chunk)
        self._window += len(chunk)
        if (
            self.pauseAfter is not None
            and self._window >= self.pauseAfter
            and self.streaming
            and self.producer is not None
            and not self.producerPaused
        ):
            self.pauseProducer()
        self._checkWaiters()

    def writeSequence(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Record each element of ``data`` as a write."""
        for chunk in data:
            self.write(chunk)

    # -- driving the producer --------------------------------------------------------------------

    def pauseProducer(self) -> None:
        """Pause the registered streaming producer now."""
        producer = self._registered()
        if not self.streaming:
            raise RuntimeError(f"{self!r} has a pull producer, which cannot be paused")
        self.producerPaused = True
        self.pauses += 1
        producer.pauseProducing()

    def resumeProducer(self) -> None:
        """
        Resume the registered producer (a pull producer: ask it for one write), starting a new
        ``pauseAfter`` window.
        """
        producer = self._registered()
        self._window = 0
        self.producerPaused = False
        producer.resumeProducing()

    def stopProducer(self) -> None:
        """Tell the registered producer to stop, as a transport whose connection was lost."""
        self._registered().stopProducing()

    def _registered(self) -> Any:
        if self.producer is None:
            raise RuntimeError(f"{self!r} has no producer registered")
        return self.producer

    # -- waiting --------------------------------------------------------------------------------

    def waitFor(self, count: int, timeout: float | None = None) -> Deferred[bytes]:
        """
        Wait until at least ``count`` bytes have been written.

        The Deferred fires with :attr:`data` at that moment (at once if there is enough
        already), or fails with :class:`twisted.internet.defer.TimeoutError` after
        ``timeout`` seconds (``None``: no limit); the timeout call is cancelled when it
        fires. Cancelling the Deferred withdraws the wait. An unregistered producer does not
        end it (another may register): give a ``timeout``.
        """
        _checkCount(count)
        if self._size >= count:
            d: Deferred[bytes] = Deferred()
            d.callback(self.data)
            return d

        def describe() -> str:
            return (
                f"{self!r} had {self._size} of {count} bytes after {timeout:g} seconds "
                f"(producer {self.producer!r}, paused by me: {self.producerPaused})"
            )

        return _addCountWaiter(self._countWaiters, count, timeout, describe)

    def _checkWaiters(self) -> None:
        waiters = self._countWaiters
        if not waiters:
            return
        ready = [w for w in waiters if self._size >= w.count]
        if ready:
            data = self.data
            for w in ready:
                waiters.remove(w)
                w.fire(data)


class RecordingProducer:
    """
    A producer that records the flow-control calls made on it.

    By default it is an ``IPushProducer``; with ``streaming=False`` it is an
    ``IPullProducer`` (``zope.interface.verify.verifyObject`` passes for the one it claims).

    * :attr:`calls` lists ``"pauseProducing"``, ``"resumeProducing"`` and
      ``"stopProducing"`` in the order they were made; :attr:`paused` and :attr:`stopped` give
      the resulting state.
    * Given ``chunks``, it can drive a consumer: :meth:`startProducing` registers it on the
      consumer and then it writes the chunks -- a push producer at once and on each
      ``resumeProducing`` until it is paused; a pull producer one chunk per
      ``resumeProducing``. When the last chunk is written it unregisters from the consumer
      (unless ``unregisterWhenDone=False``) and :attr:`done` fires. Re-entrant calls (a
      consumer that pauses or pulls from inside ``write``) are handled.
    * Without ``chunks`` it only records; :attr:`done` fires on ``stopProducing``.

    :param chunks: bytes to write, in order, or ``None`` to only record.
    :param streaming: push (``True``) or pull (``False``) producer.
    :param unregisterWhenDone: unregister from the consumer after the last chunk.
    """

    def __init__(
        self,
        chunks: Iterable[bytes] | None = None,
        *,
        streaming: bool = True,
        unregisterWhenDone: bool = True,
    ) -> None:
        directlyProvides(self, IPushProducer if streaming else IPullProducer)
        self.streaming = streaming
        self.unregisterWhenDone = unregisterWhenDone
        #: ``"pauseProducing"`` / ``"resumeProducing"`` / ``"stopProducing"``, in order.
        self.calls: list[str] = []
        self.paused = False
        self.stopped = False
        #: The consumer given to :meth:`startProducing`.
        self.consumer: Any = None
        #: The chunks written so far.
        self.written: list[bytes] = []
        #: Fires (with ``None``) when every chunk has been written, or on ``stopProducing``.
        self.done: Deferred[None] = Deferred()
        self._chunks: deque[bytes] | None = (
            None
            if chunks is None
            else deque(asBytes(c, "a RecordingProducer chunk") for c in chunks)
        )
        self._producing = False
        self._owed = 0

    def __repr__(self) -> str:
        kind = "push" if self.streaming else "pull"
        state = "stopped" if self.stopped else "paused" if self.paused else "running"
        return f"<RecordingProducer ({kind}, {state}): {len(self.written)} chunks written>"

    @property
    def remaining(self) -> list[bytes]:
        """The chunks not written yet."""
        return list(self._chunks or ())

    def startProducing(self, consumer: Any) -> Deferred[None]:
        """
        Register on ``consumer`` (streaming or not, as constructed) and start writing the
        chunks to it; returns :attr:`done`.
        """
        if self.consumer is not None:
            raise RuntimeError(f"{self!r} already produces for {self.consumer!r}")
        self.consumer = consumer
        consumer.registerProducer(self, self.streaming)
        if self.streaming and not self.paused:
            self._produce()
        else:
            self._maybeDone()
        return self.done

    # -- IPushProducer / IPullProducer ----------------------------------------------------------

    def pauseProducing(self) -> None:
        self.calls.append("pauseProducing")
        self.paused = True

    def resumeProducing(self) -> None:
        self.calls.append("resumeProducing")
        self.paused = False
        if not self.streaming:
            self._owed += 1
        self._produce()

    def stopProducing(self) -> None:
        self.calls.append("stopProducing")
        self.stopped = True
        if not self.done.called:
            self.done.callback(None)

    # -- writing ----------------------------------------------------------------------------------

    def _produce(self) -> None:
        if self._producing or self.stopped or self.consumer is None:
            return
        chunks = self._chunks  # None (only recording) or empty: straight to _maybeDone
        self._producing = True
        try:
            while chunks and not self.stopped and self.consumer is not None:
                if self.streaming:
                    if self.paused:
                        break
                elif self._owed <= 0:
                    break
                else:
                    self._owed -= 1
                chunk = chunks.popleft()
                self.written.append(chunk)
                self.consumer.write(chunk)
        finally:
            self._producing = False
        self._maybeDone()

    def _maybeDone(self) -> None:
        if self._chunks is None or self._chunks or self.done.called or self._producing:
            return
        self._owed = 0
        consumer = self.consumer
        if self.unregisterWhenDone and consumer is not None and not self.stopped:
            consumer.unregisterProducer()
        self.done.callback(None)


# -- runComponent ---------------------------------------------------------------------------------


def runComponent(
    component: Component, timeout: float | None = 10.0, *, clock: Any = None
) -> Deferred[Any]:
    """
    Activate ``component`` and return a Deferred for its outcome.

    The Deferred fires with what ``main`` returned, fails with the exception it raised, or
    fails with :class:`twisted.internet.defer.TimeoutError` (naming the component and the
    timeout) if it has not finished within ``timeout`` seconds (``None``: no limit). The
    timeout call is cancelled as soon as the component finishes, and is gone once it has
    fired, so no ``DelayedCall`` is left behind either way.

    A timed-out component is left as it is: one waiting for input costs nothing and leaves
    the reactor clean; send it a :class:`~pcpkit.ipc.ShutdownMicroprocess` on ``control`` to
    end it.

    The returned Deferred takes over a failure: ``component.finished`` carries ``None`` after
    it instead of the failure, so the error is reported once, by the test. A successful
    result stays on ``component.finished`` too. Cancelling the returned Deferred cancels the
    timeout (the component keeps running).

    Under trial, return the Deferred (or ``await`` it in an ``async def`` test); with
    pytest-twisted, ``await`` it in a test decorated with ``@pytest_twisted.ensureDeferred``.
    A component that fails has logged its failure, which trial reports unless the test calls
    ``self.flushLoggedErrors(ExceptionType)``.

    :param clock: what schedules the timeout (an ``IReactorTime``; default the reactor), so
        a test can drive the timeout with a :class:`twisted.internet.task.Clock`.
    """
    if not isinstance(component, Component):
        raise TypeError(f"runComponent() takes a Component, not {type(component).__name__}")
    timeoutCall: Any = None

    def cancelTimeout() -> None:
        nonlocal timeoutCall
        call, timeoutCall = timeoutCall, None
        if call is not None and call.active():
            call.cancel()

    def cancel(d: Deferred[Any]) -> None:
        cancelTimeout()

    result: Deferred[Any] = Deferred(cancel)

    def timedOut() -> None:
        nonlocal timeoutCall
        timeoutCall = None
        if not result.called:
            result.errback(
                TimeoutError(
                    f"{component!r} did not finish within {timeout:g} seconds "
                    "(runComponent timeout); waits on:\n" + waitsOnDump(component)
                )
            )

    def ended(outcome: object) -> object:
        cancelTimeout()
        if result.called:
            # Timed out or cancelled: nobody is listening on ``result`` any more, so the
            # outcome stays on ``finished`` for whoever else is.
            return outcome
        if isinstance(outcome, Failure):
            result.errback(outcome)
            return None
        result.callback(outcome)
        return outcome

    if timeout is not None:
        timeoutCall = (clock if clock is not None else getReactor()).callLater(timeout, timedOut)
    component.finished.addBoth(ended)
    component.activate()
    return result


def waitsOnDump(component: Component) -> str:
    """
    What ``component`` and its children wait on, as text: one line per parked sender or
    paused producer, the chain to the part that is not draining (:mod:`pcpkit.inspect`).
    Works with the inspector off (the component tree is walked).
    """
    graph = _inspect.Inspector().snapshot(roots=[component])
    return _inspect.formatWaitsOn(graph)


# -- bounds ---------------------------------------------------------------------------------------


@dataclass
class Peak:
    """The most one box or buffer held while a :class:`FillRecorder` ran."""

    #: what it is (``"<inbox 'inbox' of <Upper #3>>"``, a proxy's repr)
    label: str
    #: the most it held (messages for a box, bytes for a proxy)
    peak: int
    #: its bound then (``None``: unbounded)
    limit: int | None
    #: the component that owns the box (``None`` for a proxy)
    owner: object = None


class FillRecorder:
    """
    Records the most each box and each byte proxy held while it runs, so a test can assert
    that back-pressure held (:meth:`assertBounded`).

    :meth:`start` turns :mod:`pcpkit.inspect`'s registry on and instruments every part
    already registered and every part made later: a box is looked at before and after each
    scheduler step of its owner and of every component sending into it (a box grows only
    while a sender runs or a transport writes into it, and shrinks only while its owner
    runs, so its peak is seen exactly for generator mains, pcpkit's adapters and
    bridges); a proxy after each ``write``. This costs a little per step and per write,
    which is why it is for tests. :meth:`stop` removes the instrumentation. Use
    :func:`recordingFills` for both.
    """

    def __init__(self) -> None:
        #: every box and proxy seen, by ``id()``
        self.peaks: dict[int, Peak] = {}
        self._instrumented: list[tuple[object, str]] = []
        self._running = False
        # keep what we measure alive only as long as the program does
        self._boxes: dict[int, Box] = {}

    def start(self) -> FillRecorder:
        if self._running:
            return self
        self._running = True
        reg = _inspect.enable()
        reg.listeners.append(self._instrument)
        for obj in reg:
            self._instrument(obj)
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        reg = _inspect.registry
        if self._instrument in reg.listeners:
            reg.listeners.remove(self._instrument)
        for obj, name in self._instrumented:
            vars(obj).pop(name, None)
        self._instrumented.clear()
        self._boxes.clear()
        _inspect.disable()

    def _instrument(self, obj: object) -> None:
        if isinstance(obj, BasicProducerConsumerProxy):
            self._wrapWrite(obj)
        elif callable(getattr(obj, "_run", None)) and "_run" not in vars(obj):
            self._wrapRun(obj)

    def _wrapRun(self, runnable: Any) -> None:
        original = runnable._run
        sample = self._sampleRunnable

        def run() -> None:
            sample(runnable)
            original()
            sample(runnable)

        runnable._run = run
        self._instrumented.append((runnable, "_run"))

    def _sampleRunnable(self, r: Any) -> None:
        for box in getattr(r, "inboxes", {}).values():
            self.sampleBox(box)
        for box in getattr(r, "outboxes", {}).values():
            self.sampleBox(box.final)
        sink = getattr(r, "sink", None)
        if isinstance(sink, Box):
            self.sampleBox(sink)

    def sampleBox(self, box: Box) -> None:
        """Look at ``box`` now (the instrumentation calls this; a test may too)."""
        n = len(box)
        p = self.peaks.get(id(box))
        if p is None:
            self._boxes[id(box)] = box
            self.peaks[id(box)] = Peak(repr(box), n, box.maxsize, box.owner)
        elif n > p.peak:
            p.peak = n
            p.limit = box.maxsize

    def _wrapWrite(self, proxy: Any) -> None:
        original = proxy.write
        peaks = self.peaks

        def write(data: bytes) -> None:
            original(data)
            n = proxy.bufferedBytes
            p = peaks.get(id(proxy))
            high = getattr(proxy, "highWatermark", None)
            if p is None:
                peaks[id(proxy)] = Peak(repr(proxy), n, high)
            elif n > p.peak:
                p.peak = n

        proxy.write = write
        self._instrumented.append((proxy, "write"))

    def assertBounded(
        self, component: Component | None = None, slack: int = 0, byteSlack: int = 65536
    ) -> None:
        """
        Fail (``AssertionError`` listing every offender) if a bounded box held more than its
        bound plus ``slack`` messages, or a bounded proxy more than its high watermark plus
        ``byteSlack`` bytes (a push producer may write one chunk after being paused).
        With ``component``, only the boxes of it and its descendants are checked.
        """
        owners: set[int] | None = None
        if component is not None:
            owners = set()
            todo = [component]
            while todo:
                c = todo.pop()
                owners.add(id(c))
                todo.extend(c.children)
        bad = []
        for p in self.peaks.values():
            if p.limit is None:
                continue
            if owners is not None and id(p.owner) not in owners:
                continue
            allowed = p.limit + (byteSlack if p.owner is None else slack)
            if p.peak > allowed:
                bad.append(f"{p.label}: held {p.peak}, bound {p.limit} (+{allowed - p.limit})")
        if bad:
            raise AssertionError("over their bounds:\n" + "\n".join(bad))

    def peakOf(self, obj: Box | BasicProducerConsumerProxy) -> int:
        """The most ``obj`` (a box or a proxy) held; 0 if it was never seen."""
        p = self.peaks.get(id(obj))
        return 0 if p is None else p.peak


@contextmanager
def recordingFills() -> Iterator[FillRecorder]:
    """``with recordingFills() as fills: ...; fills.assertBounded()``: a started recorder."""
    recorder = FillRecorder().start()
    try:
        yield recorder
    finally:
        recorder.stop()
