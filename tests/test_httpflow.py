"""
pcpkit.httpflow on the inspector's real site over TCP on 127.0.0.1: a client that pipelines
many requests and reads none of the answers is answered no faster than it reads.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from pcpkit.inspect.web import InspectServer
from tests.waitutil import waitUntil

BODY = b"x" * 65536
COUNT = 400  # 25 MiB of answers: well over what the kernel buffers between the two sockets


class Big(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered = 0

    def render_GET(self, request: Any) -> bytes:
        self.rendered += 1
        return BODY


async def pipelining() -> tuple[InspectServer, Big, Any, socket.socket]:
    """The inspector serving ``/big``, its site, and a client that sent ``COUNT`` requests."""
    server = InspectServer("tcp:0:interface=127.0.0.1")
    big = Big()
    server.resource.putChild(b"big", big)
    port = await server.start()
    return server, big, port.factory, pipelinedClient(port.getHost().port, COUNT)


async def held(site: Any) -> None:
    """Wait until the answers fill the buffers and the next request is held."""
    await waitUntil(lambda: site.heldRequests == 1, timeout=30, what="a request held")


def pipelinedClient(port: int, count: int) -> socket.socket:
    """A socket with a small receive buffer that has sent ``count`` requests, the last closing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    one = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sock.sendall(one * (count - 1) + last)
    return sock


def readAll(sock: socket.socket) -> bytes:
    sock.settimeout(60)
    chunks = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_wait_for_the_client_to_read() -> None:
    server, big, site, sock = await pipelining()
    try:
        # the next request is held, and no more are answered
        await held(site)
        rendered = big.rendered
        assert rendered < COUNT // 2, rendered
        # the client reads: every request is answered, in order, and nothing stays held
        received = await deferToThread(readAll, sock)
    finally:
        sock.close()
        await server.stop()
    assert received.count(b"HTTP/1.1 200 OK\r\n") == COUNT
    assert received.count(BODY) == COUNT
    assert big.rendered == COUNT and site.heldRequests == 0


@pytest_twisted.ensureDeferred
async def test_a_client_gone_while_its_request_is_held() -> None:
    server, big, site, sock = await pipelining()
    try:
        await held(site)
        rendered = big.rendered
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # reset: the held request is dropped, not answered
        await waitUntil(lambda: site.heldRequests == 0, timeout=30, what="the hold released")
    finally:
        sock.close()
        await server.stop()
    assert big.rendered == rendered
