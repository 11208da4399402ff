"""
``ThreadedTCPClient``: Kamaelia's threaded TCP client, with the signature and signals it had,
and the sending it documented but never did.

Kamaelia's version only ever received: nothing written to its inbox reached the server. This
one runs the socket in its own thread with ``select``, so it sends and receives at once.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from pcpkit._fifo import asBytes
from pcpkit.ipc import (
    ErrorInformation,
    Shutdown,
    ShutdownMicroprocess,
    SocketShutdown,
)
from pcpkit.threaded import ThreadedComponent, ThreadStopped

__all__ = ["ThreadedTCPClient"]

#: After a ``ProducerFinished`` the client shuts its sending side and keeps reading the
#: server's last words for at most this long before closing.
LINGER_SECONDS = 10.0


class ThreadedTCPClient(ThreadedComponent):
    """
    ``ThreadedTCPClient(host, port[, chargen][, initialsendmessage])``: a TCP connection in a
    thread of its own.

    :param host: the server's address.
    :param port: the server's port.
    :param chargen: accepted for compatibility and ignored: Kamaelia stored it and never
        used it (its name recalls the RFC 864 character-generator test service).
    :param initialsendmessage: bytes sent as soon as the connection is made.

    Messages:

    * ``inbox``: bytes to send (a bounded inbox of 64 messages: senders wait while the
      socket is slow).
    * ``control``: ``ProducerFinished`` -- send everything queued, shut the socket's sending
      side, read until the server closes (at most 10 s), close, end;
      ``ShutdownMicroprocess`` -- close at once.
    * ``outbox``: bytes received.
    * ``signal``: ``ErrorInformation`` for socket errors, then one ``SocketShutdown``.
      (Kamaelia also sent progress strings such as ``"socket connected"``; they are not sent,
      because they would reach the next component's ``control``.)
    """

    Inboxes = {
        "inbox": "data to send to the socket",
        "control": "ProducerFinished: send what is queued, then close; "
        "ShutdownMicroprocess: close now",
    }
    Outboxes = {
        "outbox": "data received from the socket",
        "signal": "ErrorInformation for socket errors, then SocketShutdown",
    }

    def __init__(
        self,
        host: str,
        port: int,
        chargen: Any = 0,
        initialsendmessage: bytes | None = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.host = host
        self.port = port
        self.chargen = chargen
        self.sendmessage = None if initialsendmessage is None else asBytes(initialsendmessage)
        self.connectTimeout = 30.0
        self.bytesSent = 0
        self.bytesReceived = 0
        self.setInboxSize("inbox", 64, park=True)
        # Wakes the thread's select() when a message arrives, so it never polls.
        self._wakeR, self._wakeW = socket.socketpair()
        self._wakeR.setblocking(False)
        self._wakeW.setblocking(False)

    def _wake(self) -> None:
        super()._wake()
        try:
            self._wakeW.send(b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def _signal(self, msg: object) -> None:
        try:
            self.send(msg, "signal")
        except ThreadStopped:
            pass

    def main(self) -> None:
        try:
            self._connectAndRun()
        finally:
            self._wakeR.close()
            self._wakeW.close()

    def _connectAndRun(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connectTimeout)
        except OSError as e:
            self._signal(ErrorInformation(self, e, f"cannot connect to {where}: {e}"))
            self._signal(SocketShutdown(self))
            return
        try:
            sock.setblocking(False)
            self._serve(sock, where)
        except ThreadStopped:
            pass
        except OSError as e:
            self._signal(ErrorInformation(self, e, f"connection to {where} failed: {e}"))
        finally:
            sock.close()
            self._signal(SocketShutdown(self))

    def _serve(self, sock: socket.socket, where: str) -> None:
        out = memoryview(self.sendmessage or b"")
        finishing = False
        shutWrite = False
        lingerUntil: float | None = None

        while True:
            if self.stopping:
                return
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, ShutdownMicroprocess):
                    return
                if isinstance(msg, Shutdown):
                    finishing = True
            if not out and self.dataReady("inbox") and not shutWrite:
                msg = self.recv("inbox")
                try:
                    out = memoryview(asBytes(msg, "a message for ThreadedTCPClient's inbox"))
                except TypeError as e:
                    self._signal(ErrorInformation(self, e, f"not sent: {e}"))
                    continue
            if finishing and not out and not self.dataReady("inbox") and not shutWrite:
                sock.shutdown(socket.SHUT_WR)
                shutWrite = True
                lingerUntil = time.monotonic() + LINGER_SECONDS
            timeout = 1.0
            if lingerUntil is not None:
                timeout = lingerUntil - time.monotonic()
                if timeout <= 0:
                    return
            readable, writable, _ = select.select(
                [sock, self._wakeR], [sock] if out else [], [], timeout
            )
            if self._wakeR in readable:
                try:
                    self._wakeR.recv(4096)
                except BlockingIOError:
                    pass
            if sock in writable and out:
                try:
                    n = sock.send(out)
                except BlockingIOError:
                    n = 0
                self.bytesSent += n
                out = out[n:]
            if sock in readable:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    unsent = len(out) > 0
                    if unsent or self.dataReady("inbox"):
                        self._signal(
                            ErrorInformation(
                                self,
                                message=f"{where} closed the connection with data unsent",
                            )
                        )
                    return
                self.bytesReceived += len(data)
                self.send(data, "outbox")  # blocks while downstream is full
