"""
:class:`TransportConsumer`: a connection's transport as a consumer that can ``finish()``.

A Twisted transport is an ``IConsumer`` with no ``finish``: what a proxy
(:class:`~pcpkit.pcp.ProducerConsumerProxy`) or a stream
(:func:`~pcpkit.torrent.stream.streamFile`) calls when the data is all written. This wrapper
adds one that closes the connection (or only its sending half) after the last byte, which
every program that streams into a socket otherwise writes for itself.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

__all__ = ["TransportConsumer"]


@implementer(IConsumer)
class TransportConsumer:
    """
    ``transport`` as an ``IConsumer`` whose ``finish()`` closes the connection.

    ``write``, ``writeSequence``, ``registerProducer`` and ``unregisterProducer`` go to the
    transport unchanged, so its flow control (pausing a registered producer while its write
    buffer is full) is the transport's own. ``finish()`` is called by a proxy only after it
    has unregistered and handed over its last buffered byte; the transport writes what it
    still holds before it closes, so nothing is lost.

    :param transport: a connected ``ITransport`` that is also an ``IConsumer`` (any
        Twisted TCP, TLS, UNIX or process transport).
    :param halfClose: on ``finish()``, close only the sending half
        (``loseWriteConnection``: the peer reads end-of-file and may still answer) instead
        of the whole connection. The protocol must provide ``IHalfCloseableProtocol`` for
        the reading half to stay open.
    """

    def __init__(self, transport: Any, *, halfClose: bool = False) -> None:
        self.transport = transport
        self.halfClose = halfClose
        self.finished = False

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        self.transport.writeSequence(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def finish(self) -> None:
        """Close the connection (or its sending half) once the transport has written all."""
        if self.finished:
            return
        self.finished = True
        if self.halfClose:
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()

    def __repr__(self) -> str:
        return f"<TransportConsumer of {self.transport!r}>"
