"""pcpkit._endpoints: one way to read listening and connecting addresses."""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from pcpkit._endpoints import (
    EndpointError,
    boundPort,
    clientEndpoint,
    connectDescription,
    describeAddress,
    listenDescription,
    listenInterface,
    parseHostPort,
    resolveHostPort,
    serverEndpoint,
)
from pcpkit._twisted import getReactor


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("8080", "tcp:8080:interface=127.0.0.1"),
        (8080, "tcp:8080:interface=127.0.0.1"),
        ("0", "tcp:0:interface=127.0.0.1"),
        ("127.0.0.1:80", "tcp:80:interface=127.0.0.1"),
        ("[::1]:9", "tcp:9:interface=\\:\\:1"),
        ("tcp:8080", "tcp:8080"),
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock"),
    ],
)
def test_listenDescription(given_: str | int, expected: str) -> None:
    assert listenDescription(given_) == expected


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("127.0.0.1:80", "tcp:127.0.0.1:80"),
        ("example.org:80", "tcp:example.org:80"),
        ("[::1]:80", "tcp:\\:\\:1:80"),
        ("tcp:h:80", "tcp:h:80"),
        ("unix:/x", "unix:/x"),
    ],
)
def test_connectDescription(given_: str, expected: str) -> None:
    assert connectDescription(given_) == expected


@pytest.mark.parametrize(
    ("given_", "server", "message"),
    [
        ("tcp:99999", True, "bad endpoint 'tcp:99999': port 99999 is out of range"),
        ("tcp:abc", True, "bad endpoint 'tcp:abc': port 'abc' is not a number"),
        ("70000", True, "bad address '70000': port 70000 is out of range"),
        ("", True, "bad address '': it is empty"),
        ("tcp:h", False, "bad endpoint 'tcp:h': the port is missing"),
        ("tcp:h:0", False, "bad endpoint 'tcp:h:0': port 0 is out of range"),
        ("tcp:port=80", False, "bad endpoint 'tcp:port=80': the host is missing"),
        ("h.example:x", False, "bad address 'h.example:x': port 'x' is not a number"),
        ("h:x", False, "bad endpoint 'h:x': Unknown endpoint type: 'h'"),
        ("foo", False, "bad endpoint 'foo': Unknown endpoint type: 'foo'"),
        ("bogus:1:2", True, "bad endpoint 'bogus:1:2': Unknown endpoint type: 'bogus'"),
    ],
)
def test_badAddressIsOneLine(given_: str, server: bool, message: str) -> None:
    with pytest.raises(EndpointError) as info:
        if server:
            serverEndpoint(given_)
        else:
            clientEndpoint(given_)
    assert str(info.value) == message


def test_endpointTypes() -> None:
    reactor = getReactor()
    assert isinstance(serverEndpoint("8080", reactor), TCP4ServerEndpoint)
    assert isinstance(serverEndpoint("unix:/tmp/x.sock", reactor), UNIXServerEndpoint)
    assert isinstance(clientEndpoint("127.0.0.1:80", reactor), TCP4ClientEndpoint)


@given(st.text(max_size=40))
def test_anyTextIsAnEndpointOrOneLineError(text: str) -> None:
    """Whatever a user types, the answer is an endpoint or one EndpointError line."""
    for make in (serverEndpoint, clientEndpoint):
        try:
            make(text)
        except EndpointError as e:
            assert "\n" not in str(e)


@pytest.mark.parametrize(
    ("given_", "expected"),
    [("a:1", ("a", 1)), ("[::1]:2", ("::1", 2)), ("10.0.0.1:65535", ("10.0.0.1", 65535))],
)
def test_parseHostPort(given_: str, expected: tuple[str, int]) -> None:
    assert parseHostPort(given_) == expected


@pytest.mark.parametrize(
    ("description", "interface"),
    [
        (listenDescription(8080), "127.0.0.1"),
        (listenDescription("[::1]:80"), "::1"),
        (listenDescription("box.lan:80"), "box.lan"),
        ("tcp6:port=80:interface=\\:\\:", "::"),
        ("TCP:80", None),
        ("tcp:80:interface=", None),
        ("unix:/run/x.sock", None),
    ],
)
def test_listenInterface(description: str, interface: str | None) -> None:
    assert listenInterface(description) == interface


@pytest.mark.parametrize("bad", ["::1:3", "x", "a:0", "a:b", ":80", "a:65536", "a:" + "9" * 5000])
def test_parseHostPortRejects(bad: str) -> None:
    with pytest.raises(EndpointError) as info:
        parseHostPort(bad)
    assert str(info.value).startswith(f"bad address {bad!r}"[:60])
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_resolveAddressIsImmediate(host: str) -> None:
    d = resolveHostPort(getReactor(), host, 5)
    assert d.called
    assert d.result == (host, 5)  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_resolveName() -> None:
    assert await resolveHostPort(getReactor(), "localhost", 7) in {("127.0.0.1", 7), ("::1", 7)}


@pytest_twisted.ensureDeferred
async def test_resolveFailureIsEndpointError() -> None:
    with pytest.raises(EndpointError, match="cannot resolve 'no-such-host.invalid'"):
        await resolveHostPort(getReactor(), "no-such-host.invalid", 7)


@pytest_twisted.ensureDeferred
async def test_boundPort() -> None:
    port = await serverEndpoint("0", getReactor()).listen(Factory.forProtocol(Protocol))
    try:
        number = boundPort(port)
        assert isinstance(number, int) and number > 0
        assert describeAddress(port.getHost()) == f"127.0.0.1:{number}"
    finally:
        await port.stopListening()
