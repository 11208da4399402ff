"""
RabbitMQ (AMQP 0-9-1) as components: :class:`AMQPSource` and :class:`AMQPSink`.

The broker's credit is pcpkit's back-pressure, end to end:

* :class:`AMQPSource` consumes a queue with ``basic_qos`` prefetch equal to the bound of the
  inbox it feeds, and acknowledges a message only once the next component has *taken* it
  from that inbox. A slow consumer therefore leaves messages in the broker, never in
  pcpkit's memory, and a crash loses nothing (at-least-once: the broker redelivers what was
  not acknowledged, marked ``redelivered``).
* :class:`AMQPSink` publishes its inbox with publisher confirms and stops taking from its
  inbox (so its senders are held back) while ``window`` publishes are unconfirmed, while the
  broker says ``Connection.Blocked``, or while it is reconnecting. A nack or a returned
  (unroutable) message is an :class:`~pcpkit.ipc.ErrorInformation`, never a silent loss.

Both run on pika's Twisted adapter (``pip install pcpkit[amqp]``), connect through Twisted
endpoints, report broker faults as ``ErrorInformation`` on ``signal`` and, when asked
(``reconnect=True``), reconnect with exponential backoff. Credentials are never logged:
every URL shown is :func:`redactURL`'d.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import deque
from collections.abc import Generator, Mapping
from typing import Any, Protocol

import pika  # type: ignore[import-untyped,unused-ignore]
from pika.adapters.twisted_connection import (  # type: ignore[import-untyped,unused-ignore]
    TwistedProtocolConnection,
)
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.task import deferLater
from twisted.logger import Logger

from pcpkit._endpoints import clientEndpoint
from pcpkit._pause import Pause, Pauser, Watermark
from pcpkit._twisted import connectProtocol, getReactor
from pcpkit.component import Box, BoxFull, Component
from pcpkit.ipc import ErrorInformation, ProducerFinished, Shutdown, ShutdownMicroprocess

__all__ = [
    "DEFAULT_URL",
    "DEFAULT_PREFETCH",
    "DEFAULT_WINDOW",
    "AMQPMessage",
    "AMQPError",
    "PublishFailed",
    "Marshaller",
    "JSONMarshaller",
    "AMQPSource",
    "AMQPSink",
    "redactURL",
]

_log = Logger()

#: The broker a component talks to unless told otherwise (RabbitMQ's default account).
DEFAULT_URL = "amqp://guest:guest@127.0.0.1/"
#: Prefetch of an :class:`AMQPSource` whose destination inbox is unbounded.
DEFAULT_PREFETCH = 64
#: Unconfirmed publishes an :class:`AMQPSink` allows before it stops taking from its inbox.
DEFAULT_WINDOW = 256
#: First and longest pause between reconnection attempts, in seconds. The pause doubles at
#: each failed attempt, and goes back to the first only after a session that stayed up for
#: the longest: a broker that takes the connection and then closes the channel (say, 404
#: NOT_FOUND for a missing queue) is not asked again four times a second for good.
RETRY_FIRST = 0.25
RETRY_MAX = 8.0
#: Seconds the broker gets to answer Connection.Close before the connection is cut.
CLOSE_TIMEOUT = 5.0
#: First and longest pause between checks for taken-but-unacknowledged messages while the
#: destination inbox is below its low watermark (its drain waiter cannot tell us more).
ACK_CHECK_FIRST = 0.001
ACK_CHECK_MAX = 0.25


def redactURL(url: str) -> str:
    """``url`` with its password replaced by ``***``: the only form pcpkit shows or logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Marshaller(Protocol):
    """
    The marshalling hook (Kamaelia's ``Marshaller``/``DeMarshaller`` convention): a class or
    object with ``marshall(obj) -> bytes`` and ``demarshall(bytes) -> obj``.
    """

    def marshall(self, obj: Any) -> bytes: ...

    def demarshall(self, data: bytes) -> Any: ...


class JSONMarshaller:
    """Objects as UTF-8 JSON (a ready-made :class:`Marshaller`)."""

    contentType = "application/json"

    @staticmethod
    def marshall(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    @staticmethod
    def demarshall(data: bytes) -> Any:
        return json.loads(data)


class AMQPMessage:
    """
    One message, as :class:`AMQPSource` emits it and :class:`AMQPSink` accepts it.

    :param body: the payload: ``bytes``, or any object when the component has a marshaller.
    :param headers: the AMQP ``headers`` table (a dict), or ``None``.
    :param properties: other AMQP basic properties, as a ``pika.BasicProperties`` or a dict
        of its field names (``content_type``, ``message_id``, ``correlation_id``, ...).
        ``headers`` above wins over ``properties``' own headers.
    :param routingKey: on a sink, overrides the sink's routing key; on a source, the key the
        message was published with.
    :param exchange: on a source, the exchange the message was published to.
    :param redelivered: set by a source when the broker delivers the message again (an
        earlier delivery was not acknowledged, say because a consumer or the broker died):
        the message may have been seen before.
    """

    __slots__ = ("body", "_headers", "properties", "routingKey", "exchange", "redelivered")

    def __init__(
        self,
        body: Any,
        headers: Mapping[str, Any] | None = None,
        *,
        properties: Any = None,
        routingKey: str | None = None,
        exchange: str | None = None,
        redelivered: bool = False,
    ) -> None:
        self.body = body
        self._headers = None if headers is None else dict(headers)
        self.properties = properties
        self.routingKey = routingKey
        self.exchange = exchange
        self.redelivered = redelivered

    @property
    def headers(self) -> dict[str, Any] | None:
        """The headers table, from ``headers`` or else from ``properties``."""
        if self._headers is not None:
            return self._headers
        p = self.properties
        if p is None:
            return None
        h = p.get("headers") if isinstance(p, Mapping) else getattr(p, "headers", None)
        return None if h is None else dict(h)

    def __repr__(self) -> str:
        body = self.body
        shown = (
            repr(body[:40]) + ("..." if len(body) > 40 else "")
            if isinstance(body, bytes)
            else repr(body)
        )
        extra = " redelivered" if self.redelivered else ""
        return f"<AMQPMessage {shown}{extra}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AMQPMessage):
            return NotImplemented
        return (self.body, self.headers, self.routingKey) == (
            other.body,
            other.headers,
            other.routingKey,
        )

    __hash__ = None  # type: ignore[assignment]


class AMQPError(Exception):
    """A broker fault: connection refused or lost, channel closed by the broker, ..."""


class PublishFailed(AMQPError):
    """
    The broker refused a message (a nack), returned it (unroutable, published
    ``mandatory``), or it could not be published. ``amqpMessage`` is the message.
    """

    def __init__(self, reason: str, amqpMessage: object) -> None:
        super().__init__(reason)
        self.amqpMessage = amqpMessage


def _describeClose(reason: object) -> str:
    """A pika channel/connection close reason as one line (codes and texts only)."""
    code = getattr(reason, "reply_code", None)
    text = getattr(reason, "reply_text", None)
    if code is not None:
        return f"{code} {text}"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    return str(reason)


class _Connection(TwistedProtocolConnection):  # type: ignore[misc,unused-ignore]
    """pika's Twisted protocol, telling when its transport is really gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disconnected: Deferred[Any] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.disconnected.callback(getattr(reason, "value", reason))


class _BrokerComponent(Component):
    """
    What both components share: connecting (with backoff when asked), reporting faults,
    closing cleanly. Subclasses set up their channel in :meth:`_ready` and forget the
    channel's state in :meth:`_lost`.

    ``main`` is a generator supervising the session: it handles ``control`` and sleeps;
    broker callbacks wake it.
    """

    def __init__(
        self,
        url: str,
        endpoint: str | None,
        reconnect: bool,
        connectTimeout: float,
    ) -> None:
        super().__init__()
        self.url = url
        self._params = pika.URLParameters(url)
        self.endpoint = endpoint
        self.reconnect = reconnect
        self.connectTimeout = connectTimeout
        #: How many times a connection was (re)established.
        self.connections = 0
        self._protocol: Any = None
        self._channel: Any = None
        self._connecting: Deferred[Any] | None = None
        self._sleeping: Deferred[Any] | None = None
        self._session: Deferred[None] | None = None
        self._lostD: Deferred[Any] | None = None
        self._stopping = False
        self._fatal = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {redactURL(self.url)}>"

    # -- connecting ------------------------------------------------------------------------

    def _makeEndpoint(self) -> Any:
        if self.endpoint is not None:
            return clientEndpoint(self.endpoint)
        p = self._params
        ep: Any = HostnameEndpoint(getReactor(), p.host, p.port, timeout=self.connectTimeout)
        if urllib.parse.urlsplit(self.url).scheme == "amqps":
            # imported here: TLS needs pyOpenSSL, plain amqp:// does not
            from twisted.internet.ssl import optionsForClientTLS

            return wrapClientTLS(optionsForClientTLS(p.host), ep)
        return ep

    async def _open(self, lost: Deferred[Any]) -> Any:
        """Connect, complete the AMQP handshake, open a channel; return the pika channel."""
        proto = _Connection(self._params, custom_reactor=getReactor())
        self._connecting = connectProtocol(self._makeEndpoint(), proto)
        try:
            await self._connecting
            self._protocol = proto
            ready = self._connecting = proto.ready
            assert ready is not None
            ready.addTimeout(self.connectTimeout, getReactor())
            await ready
        finally:
            self._connecting = None
        # pika's own reason (say, 320 CONNECTION_FORCED) is the better one; the transport's
        # loss covers a connection that dies without one.
        if proto.closed is not None:
            proto.closed.addBoth(lambda r: self._onLost(lost, "connection closed", r))
        proto.disconnected.addBoth(lambda r: self._onLost(lost, "connection lost", r))
        # The raw pika channel: its callbacks cost no Deferred per message, and its
        # confirms are O(1) per ack (TwistedChannel rescans every pending publish).
        channel = await self._rpc(lost, lambda done: proto._impl.channel(on_open_callback=done))
        channel.add_on_close_callback(
            lambda _ch, reason: self._onLost(lost, "channel closed", reason)
        )
        return channel

    def _rpc(self, lost: Deferred[Any], start: Any) -> Deferred[Any]:
        """``start(callback)`` a pika request; its reply, or an error if the session ends."""
        d: Deferred[Any] = Deferred()

        def onLost(reason: Any) -> Any:
            if not d.called:
                d.errback(AMQPError(reason or "stopped"))
            return reason

        start(lambda *a: None if d.called else d.callback(a[0] if a else None))
        lost.addBoth(onLost)
        return d

    async def _runSession(self) -> None:
        delay = RETRY_FIRST
        while not self._stopping:
            lost: Deferred[Any] = Deferred()
            self._lostD = lost
            try:
                channel = await self._open(lost)
            except Exception as e:
                if not self._stopping:
                    self._fault(f"cannot connect to {self._where()}: {_describeClose(e)}")
                await self._dropConnection()
            else:
                self._channel = channel
                self.connections += 1
                up: float | None = None
                try:
                    await self._ready(channel, lost)
                except Exception as e:
                    self._onLost(lost, "setting up the channel failed", e)
                else:
                    up = getReactor().seconds()
                reason = await lost
                if up is not None and getReactor().seconds() - up >= RETRY_MAX:
                    delay = RETRY_FIRST
                self._channel = None
                self._lost()
                if not self._stopping:
                    self._fault(reason)
                await self._dropConnection()
            if self._stopping:
                break
            if not self.reconnect:
                self._fatal = True
                return
            _log.info(
                "{component}: reconnecting to {where} in {delay:.2f}s",
                component=self,
                where=self._where(),
                delay=delay,
            )
            self._sleeping = deferLater(getReactor(), delay, lambda: None)
            try:
                await self._sleeping
            except CancelledError:
                break
            finally:
                self._sleeping = None
            delay = min(delay * 2, RETRY_MAX)

    def _onLost(self, lost: Deferred[Any], what: str, reason: Any) -> None:
        if lost.called:
            return
        if hasattr(reason, "value"):  # a Failure
            reason = reason.value
        lost.callback(f"{what} ({self._where()}): {_describeClose(reason)}")

    def _where(self) -> str:
        return self.endpoint if self.endpoint is not None else redactURL(self.url)

    def _fault(self, text: str, exception: BaseException | None = None) -> None:
        """One broker fault: logged (no credentials) and sent on ``signal``."""
        _log.warn("{component}: {text}", component=self, text=text)
        exc = exception if isinstance(exception, AMQPError) else AMQPError(text)
        self._forceSend(ErrorInformation(self, exception=exc, message=text), "signal")

    async def _dropConnection(self) -> None:
        """Close the connection (politely if the handshake was done) and wait until it is."""
        proto, self._protocol = self._protocol, None
        if proto is None or proto.disconnected.called:
            return
        if proto.is_open:
            proto.close()
        else:
            proto.transport.abortConnection()
        gone = proto.disconnected
        try:
            await gone.addTimeout(CLOSE_TIMEOUT, getReactor())
        except Exception:
            # the broker did not answer Connection.Close: cut the connection
            proto.transport.abortConnection()
            await proto.disconnected

    # -- supervising -------------------------------------------------------------------------

    def _startSession(self) -> None:
        self._session = ensureDeferred(self._runSession())
        self._session.addErrback(lambda f: _log.failure("{c} session", f, c=self))
        self._session.addBoth(lambda _: self.unpause())

    def _stop(self) -> Generator[Any, Any, None]:
        """End the session: cancel a connect or a backoff, close the connection, wait."""
        self._stopping = True
        for d in (self._connecting, self._sleeping):
            if d is not None and not d.called:
                d.cancel()
        lost = self._lostD
        if lost is not None and not lost.called:
            lost.callback(None)
        dropped = ensureDeferred(self._dropConnection())
        dropped.addBoth(lambda _: self.unpause())
        while not (dropped.called and (self._session is None or self._session.called)):
            self.pause()
            yield 1

    def _controlMessage(self) -> Shutdown | None:
        """The first shutdown message on ``control`` (others are passed on or dropped)."""
        while self.dataReady("control"):
            msg = self.recv("control")
            if isinstance(msg, Shutdown):
                return msg
            if isinstance(msg, ErrorInformation):
                self._forceSend(msg, "signal")
        return None

    async def _ready(self, channel: Any, lost: Deferred[Any]) -> None:
        """Set up a newly opened channel (``lost`` fires if the session ends meanwhile)."""
        raise NotImplementedError

    def _lost(self) -> None:
        raise NotImplementedError


class AMQPSource(_BrokerComponent):
    """
    Messages consumed from a RabbitMQ queue, out of ``outbox``, with end-to-end credit.

    :param queue: the queue to consume (it must exist unless ``declare=True``).
    :param url: ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS).
    :param prefetch: the broker's credit (``basic_qos`` prefetch count). Default: the bound
        of the inbox ``outbox`` is linked to, or :data:`DEFAULT_PREFETCH` if unbounded.
    :param endpoint: a Twisted client endpoint string to connect through instead of the
        URL's host and port (the URL still gives credentials and vhost).
    :param marshaller: turns each body into an object (``demarshall``); see
        :class:`Marshaller`.
    :param declare: declare the queue (durable) before consuming.
    :param reconnect: on a refused or lost connection, or a channel closed by the broker,
        report it and try again with exponential backoff, rather than finish.

    A message is acknowledged only when the component it was delivered to has *taken* it
    from its inbox, so the broker holds at most ``prefetch`` unacknowledged messages and
    pcpkit holds no more than that. Link ``outbox`` before activating the source.

    Inboxes: ``inbox`` (unused), ``control`` (``ProducerFinished``: stop consuming, wait
    until what was delivered has been taken (or the component taking it has finished),
    acknowledge it, close; ``ShutdownMicroprocess``:
    close now, what was not acknowledged is redelivered by the broker).

    Outboxes: ``outbox`` (one :class:`AMQPMessage` per message; ``redelivered`` marks a
    message delivered before), ``signal`` (an ``ErrorInformation`` per broker fault, then
    ``ProducerFinished`` when the source ends).
    """

    Inboxes = {
        "inbox": "unused",
        "control": "ProducerFinished (drain and close) or ShutdownMicroprocess (close now)",
    }
    Outboxes = {
        "outbox": "AMQPMessage per consumed message",
        "signal": "ErrorInformation per broker fault, then ProducerFinished",
    }

    def __init__(
        self,
        queue: str,
        *,
        url: str = DEFAULT_URL,
        prefetch: int | None = None,
        endpoint: str | None = None,
        marshaller: Marshaller | None = None,
        declare: bool = False,
        reconnect: bool = False,
        connectTimeout: float = 10.0,
    ) -> None:
        super().__init__(url, endpoint, reconnect, connectTimeout)
        if prefetch is not None and prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self.queue = queue
        self.prefetch = prefetch
        self.marshaller = marshaller
        self.declare = declare
        #: Messages delivered by the broker / of those, marked redelivered / acknowledged.
        self.delivered = 0
        self.redelivered = 0
        self.acked = 0
        # (delivery tag, box it went to, that box's putCount after it) per unacked message
        self._pending: deque[tuple[int, Box, int]] = deque()
        self._waitingOn: Box | None = None
        self._ackTimer: Any = None
        self._ackMisses = 0
        self._consumerTag: str | None = None
        self._draining = False

    def main(self) -> Generator[Any, Any, None]:
        self._startSession()
        ending: Shutdown | None = None
        while ending is None and not self._fatal:
            ending = self._controlMessage()
            if ending is None and not self._fatal:
                self._ackTaken()
                self.pause()
                yield 1
        if isinstance(ending, ProducerFinished) and self._channel is not None:
            # Stop the flow, then acknowledge what downstream takes before closing.
            self._draining = True
            tag, self._consumerTag = self._consumerTag, None
            if tag is not None and self._channel.is_open:
                self._channel.basic_cancel(tag)
            # ... unless the component downstream has ended: it will take nothing more
            owner = self.outboxes["outbox"].final.owner
            ownerDone = getattr(owner, "finished", None)
            if isinstance(ownerDone, Deferred):
                ownerDone.addBoth(self._wakePassing)
            while (
                self._pending
                and self._channel is not None
                and not (isinstance(ownerDone, Deferred) and ownerDone.called)
            ):
                ctl = self._controlMessage()
                if isinstance(ctl, ShutdownMicroprocess):
                    break
                self._ackTaken()
                self.pause()
                yield 1
        # whatever happens to the rest, what was taken is done with: say so before closing
        self._ackTaken()
        self._cancelAckTimer()
        yield from self._stop()
        self._forceSend(ProducerFinished(self), "signal")

    def _wakePassing(self, result: object) -> object:
        self.unpause()
        return result

    async def _ready(self, channel: Any, lost: Deferred[Any]) -> None:
        if self.declare:
            await self._rpc(
                lost, lambda done: channel.queue_declare(self.queue, durable=True, callback=done)
            )
        prefetch = self.prefetch
        if prefetch is None:
            prefetch = self.outboxes["outbox"].final.maxsize or DEFAULT_PREFETCH
        await self._rpc(
            lost, lambda done: channel.basic_qos(prefetch_count=prefetch, callback=done)
        )

        # wait for ConsumeOk: a missing queue is a channel set up that failed
        def consume(done: Any) -> None:
            self._consumerTag = channel.basic_consume(self.queue, self._onMessage, callback=done)

        await self._rpc(lost, consume)
        channel.add_on_cancel_callback(self._onCancelled)

    def _onCancelled(self, frame: Any) -> None:
        # the broker cancelled the consumer (the queue was deleted): a fault, as if lost
        channel = self._channel
        if channel is not None and channel.is_open:
            channel.close(reply_code=200, reply_text=f"consumer of {self.queue!r} cancelled")

    def _lost(self) -> None:
        # Delivery tags belong to the channel that is gone: never ack them on a new one.
        # The broker redelivers those messages (marked redelivered).
        self._pending.clear()
        self._consumerTag = None
        self._cancelAckTimer()

    def _onMessage(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        m = self.marshaller
        msg = AMQPMessage(
            body if m is None else m.demarshall(body),
            properties=properties,
            routingKey=method.routing_key,
            exchange=method.exchange,
            redelivered=method.redelivered,
        )
        self.delivered += 1
        if method.redelivered:
            self.redelivered += 1
        box = self.outboxes["outbox"].final
        try:
            box.deliver(msg)
        except BoxFull:
            # already accepted by the broker's credit (more senders share this inbox):
            # the bound is box size + prefetch
            box.forceDeliver(msg)
        self._pending.append((method.delivery_tag, box, box.putCount))
        if self._waitingOn is None:
            self._watch(box)

    def _ackTaken(self) -> bool:
        """Acknowledge (one ``multiple`` ack) every delivered message taken downstream."""
        pending = self._pending
        last = None
        n = 0
        while pending:
            tag, box, index = pending[0]
            if box.putCount - len(box) < index:
                break
            pending.popleft()
            last = tag
            n += 1
        if last is None:
            return False
        channel = self._channel
        if channel is not None and channel.is_open:
            channel.basic_ack(last, multiple=True)
            self.acked += n
        if self._draining and not pending:
            self.unpause()
        return True

    def _watch(self, box: Box) -> None:
        """Get called back when downstream has taken more: the box's drain waiter, or a timer."""
        self._waitingOn = box
        box.addWaiter(self._onDrained)

    def _onDrained(self) -> None:
        box, self._waitingOn = self._waitingOn, None
        progress = self._ackTaken()
        if not self._pending or box is None:
            self._ackMisses = 0
            return
        if progress or len(box) > box.low:
            self._ackMisses = 0
            self._watch(box)
            return
        # Nothing taken since the last look, and below the low watermark the waiter fires
        # on the next turn whatever happens. Look once more on the next turn (downstream
        # may simply not have run yet: the waiter can run first), then back off.
        self._ackMisses += 1
        if self._ackMisses == 1:
            self._watch(box)
        elif self._ackTimer is None:
            delay = min(ACK_CHECK_FIRST * 2 ** (self._ackMisses - 2), ACK_CHECK_MAX)
            self._waitingOn = box
            self._ackTimer = getReactor().callLater(delay, self._onAckTimer)

    def _onAckTimer(self) -> None:
        self._ackTimer = None
        self._onDrained()

    def _cancelAckTimer(self) -> None:
        t, self._ackTimer = self._ackTimer, None
        if t is not None and t.active():
            t.cancel()
        self._waitingOn = None


class AMQPSink(_BrokerComponent):
    """
    Publishes what arrives in ``inbox`` to a RabbitMQ exchange, with publisher confirms.

    :param exchange: the exchange (``""``: the default exchange, routing key = queue name).
    :param routingKey: the routing key (an :class:`AMQPMessage` may override it).
    :param window: unconfirmed publishes allowed; at that many the sink stops taking from
        its inbox (whose senders are then held back) until confirms bring it down to half.
    :param url, endpoint, reconnect, connectTimeout: as for :class:`AMQPSource`.
    :param marshaller: turns objects into bytes (``marshall``); without one, the inbox takes
        ``bytes`` and :class:`AMQPMessage` with ``bytes`` bodies.
    :param persistent: publish with ``delivery_mode=2`` (survives a broker restart when the
        queue is durable).
    :param mandatory: ask the broker to return messages no queue takes (reported as a
        :class:`PublishFailed` ``ErrorInformation``).
    :param inboxSize: the bound of ``inbox`` (default: ``window``).
    :param declare: on connecting, declare a durable queue named ``routingKey`` (for the
        default exchange: a work queue that exists before anything is published to it).

    On a lost connection with ``reconnect=True``, the messages not confirmed yet are
    published again on the new connection, first and in order; confirmed ones never are.

    Inboxes: ``inbox`` (bytes, :class:`AMQPMessage`, or objects with a marshaller),
    ``control`` (``ProducerFinished``: publish what is queued, wait for every confirm, close;
    ``ShutdownMicroprocess``: close now, reporting what was left unconfirmed or unsent).

    Outboxes: ``outbox`` (unused), ``signal`` (``ErrorInformation`` per fault, nack,
    returned message or message that could not be published, then ``ProducerFinished``).
    """

    Inboxes = {
        "inbox": "messages to publish",
        "control": "ProducerFinished (publish all, then close) or ShutdownMicroprocess",
    }
    Outboxes = {
        "outbox": "unused",
        "signal": "ErrorInformation per fault, nack or return, then ProducerFinished",
    }

    def __init__(
        self,
        exchange: str = "",
        routingKey: str = "",
        *,
        window: int = DEFAULT_WINDOW,
        url: str = DEFAULT_URL,
        endpoint: str | None = None,
        marshaller: Marshaller | None = None,
        persistent: bool = True,
        mandatory: bool = True,
        reconnect: bool = False,
        connectTimeout: float = 10.0,
        inboxSize: int | None = None,
        declare: bool = False,
    ) -> None:
        super().__init__(url, endpoint, reconnect, connectTimeout)
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.exchange = exchange
        self.routingKey = routingKey
        self.window = window
        self.marshaller = marshaller
        self.persistent = persistent
        self.mandatory = mandatory
        self.declare = declare
        self.setInboxSize("inbox", window if inboxSize is None else inboxSize, park=True)
        #: Publishes sent / confirmed / sent again after a reconnect / nacked or returned.
        self.published = 0
        self.confirmed = 0
        self.resent = 0
        self.failed = 0
        #: The most publishes that were ever unconfirmed at once (at most ``window``).
        self.maxUnconfirmed = 0
        # Unconfirmed publishes: seq -> message, and the seqs in publishing order.
        self._unconfirmed: dict[int, object] = {}
        self._order: deque[int] = deque()
        self._seq = 0
        # Reasons not to take from the inbox: window full, broker blocked, not connected.
        self._gate = Pauser(self._closeGate, self._openGate)
        self._gateClosed = False
        self._windowMark = Watermark(self._gate, window, reason="window")
        self._blocked: Pause | None = None
        self._offline: Pause | None = self._gate.pause("not connected")
        self._defaultProps = self._props(None)

    @property
    def windowPauses(self) -> int:
        """How many times the sink stopped taking from its inbox (window, blocked, offline)."""
        return self._gate.pauses

    @property
    def unconfirmed(self) -> int:
        """How many publishes the broker has not confirmed yet."""
        return len(self._unconfirmed)

    @property
    def blocked(self) -> bool:
        """Whether the broker has blocked publishing (``Connection.Blocked``)."""
        return self._blocked is not None

    def _closeGate(self) -> None:
        self._gateClosed = True

    def _openGate(self) -> None:
        self._gateClosed = False
        self.unpause()

    def main(self) -> Generator[Any, Any, None]:
        self._startSession()
        ending: Shutdown | None = None
        while not self._fatal:
            if ending is None:
                ending = self._controlMessage()
            elif isinstance(self._controlMessage(), ShutdownMicroprocess):
                ending = ShutdownMicroprocess(self)
            if isinstance(ending, ShutdownMicroprocess):
                break
            if not self._gateClosed:
                self._publishQueued()
            if ending is not None and not self.dataReady("inbox") and not self._unconfirmed:
                break
            self.pause()
            yield 1
        yield from self._stop()
        if self._unconfirmed:
            self._fault(
                f"{len(self._unconfirmed)} published messages were never confirmed by "
                f"{self._where()}: they may be lost"
            )
        left = self.dataReady("inbox")
        if left:
            self._fault(f"{left} queued messages were not published")
        self._forceSend(ProducerFinished(self), "signal")

    def _props(self, msg: AMQPMessage | None) -> Any:
        fields: dict[str, Any] = {}
        if msg is not None:
            p = msg.properties
            if isinstance(p, Mapping):
                fields.update(p)
            elif p is not None:
                fields.update({k: v for k, v in vars(p).items() if v is not None})
            if msg._headers is not None:
                fields["headers"] = msg._headers
        if self.persistent:
            fields.setdefault("delivery_mode", 2)
        ct = getattr(self.marshaller, "contentType", None)
        if ct is not None:
            fields.setdefault("content_type", ct)
        return pika.BasicProperties(**fields)

    def _encode(self, msg: object) -> tuple[bytes, Any, str]:
        key = self.routingKey
        props = self._defaultProps
        body: Any = msg
        if isinstance(msg, AMQPMessage):
            body = msg.body
            if msg.properties is not None or msg._headers is not None:
                props = self._props(msg)
            if msg.routingKey is not None:
                key = msg.routingKey
        if self.marshaller is not None:
            body = self.marshaller.marshall(body)
        elif not isinstance(body, bytes):
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:
                raise TypeError(
                    f"AMQPSink publishes bytes, not {type(body).__name__} "
                    "(give it a marshaller= for objects)"
                )
        return body, props, key

    def _publishQueued(self) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        box = self.inboxes["inbox"]
        mark = self._windowMark
        while len(box) and not self._gateClosed:
            msg = self.recv("inbox")
            try:
                body, props, key = self._encode(msg)
            except Exception as e:
                self.failed += 1
                self._forceSend(
                    ErrorInformation(self, exception=PublishFailed(str(e), msg), message=str(e)),
                    "signal",
                )
                continue
            channel.basic_publish(self.exchange, key, body, props, self.mandatory)
            self._seq += 1
            self._unconfirmed[self._seq] = msg
            self._order.append(self._seq)
            self.published += 1
            n = len(self._unconfirmed)
            if n > self.maxUnconfirmed:
                self.maxUnconfirmed = n
            mark.check(n)

    async def _ready(self, channel: Any, lost: Deferred[Any]) -> None:
        await self._rpc(lost, lambda done: channel.confirm_delivery(self._onConfirm, callback=done))
        channel.add_on_return_callback(self._onReturn)
        conn = self._protocol._impl
        conn.add_on_connection_blocked_callback(self._onBlocked)
        conn.add_on_connection_unblocked_callback(self._onUnblocked)
        # The new channel numbers its publishes from 1: send again, in order, what the
        # last connection left unconfirmed, before anything new.
        again = [self._unconfirmed[s] for s in self._order if s in self._unconfirmed]
        self._unconfirmed.clear()
        self._order.clear()
        self._seq = 0
        self._windowMark.release()
        for msg in again:
            body, props, key = self._encode(msg)
            channel.basic_publish(self.exchange, key, body, props, self.mandatory)
            self._seq += 1
            self._unconfirmed[self._seq] = msg
            self._order.append(self._seq)
            self.resent += 1
        self._windowMark.check(len(self._unconfirmed))
        offline, self._offline = self._offline, None
        if offline is not None:
            offline.unpause()

    def _lost(self) -> None:
        if self._offline is None:
            self._offline = self._gate.pause("not connected")
        blocked, self._blocked = self._blocked, None
        if blocked is not None:
            blocked.unpause()

    def _onConfirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        nack = isinstance(method, pika.spec.Basic.Nack)
        unconfirmed = self._unconfirmed
        order = self._order
        if method.multiple:
            done = []
            while order and order[0] <= tag:
                s = order.popleft()
                if s in unconfirmed:
                    done.append(unconfirmed.pop(s))
        else:
            m = unconfirmed.pop(tag, None)
            done = [] if m is None else [m]
            while order and order[0] not in unconfirmed:
                order.popleft()
        if nack:
            self.failed += len(done)
            for m in done:
                self._forceSend(
                    ErrorInformation(
                        self,
                        exception=PublishFailed("nacked by the broker", m),
                        message=f"the broker refused (nack) {m!r}",
                    ),
                    "signal",
                )
        else:
            self.confirmed += len(done)
        self._windowMark.check(len(unconfirmed))
        if not unconfirmed:
            self.unpause()

    def _onReturn(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.failed += 1
        msg = AMQPMessage(
            body, properties=properties, routingKey=method.routing_key, exchange=method.exchange
        )
        text = (
            f"returned by the broker ({method.reply_code} {method.reply_text}): "
            f"exchange {method.exchange!r}, routing key {method.routing_key!r}"
        )
        self._forceSend(
            ErrorInformation(self, exception=PublishFailed(text, msg), message=text), "signal"
        )

    def _onBlocked(self, connection: Any, frame: Any) -> None:
        if self._blocked is None:
            _log.warn("{component}: the broker blocked publishing", component=self)
            self._blocked = self._gate.pause("Connection.Blocked")

    def _onUnblocked(self, connection: Any, frame: Any) -> None:
        blocked, self._blocked = self._blocked, None
        if blocked is not None:
            blocked.unpause()
