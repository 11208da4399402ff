"""
Endpoint strings and ``HOST:PORT``: the one place pcpkit reads them from users.

Every surface (the ``pcpkit`` command, ``twistd pcpkit``, :class:`~pcpkit.internet.relay.Relay`,
the torrent daemon) takes addresses the same way:

* a **listening** address is a Twisted server endpoint string (``tcp:8080:interface=::1``,
  ``unix:/run/x.sock``), a bare port (``8080``: loopback only) or ``HOST:PORT`` (listen on
  that interface): :func:`listenDescription`, :func:`serverEndpoint`;
* a **connecting** address is a Twisted client endpoint string (``tcp:example.org:80``) or
  ``HOST:PORT`` / ``[V6]:PORT``: :func:`connectDescription`, :func:`clientEndpoint`;
* a peer is ``HOST:PORT`` (:func:`parseHostPort`, no lookup), resolved without blocking the
  reactor by :func:`resolveHostPort`.

Bad input raises :class:`EndpointError` whose message is one line that names the input and
says what is wrong with it, ready to be prefixed with the option's name. Nothing here blocks:
no name is looked up except by :func:`resolveHostPort`, on the reactor's resolver.
:func:`boundPort` and :func:`describeAddress` read a listening port through its public
``getHost()``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import clientFromString, serverFromString

from pcpkit._twisted import getReactor

__all__ = [
    "EndpointError",
    "listenDescription",
    "connectDescription",
    "serverEndpoint",
    "clientEndpoint",
    "parseHostPort",
    "resolveHostPort",
    "boundPort",
    "describeAddress",
    "isIPAddress",
    "listenInterface",
    "reasonLine",
]

#: Endpoint types Twisted ships: ``NAME:...`` with one of these is an endpoint string, not
#: ``HOST:PORT``.
_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "tls", "unix", "systemd", "onion", "tor", "i2p"})
#: The types whose port we can check before Twisted does (its errors are not one line).
_PORT_TYPES = frozenset({"tcp", "tcp6", "ssl"})


class EndpointError(ValueError):
    """An address that cannot be used; ``str()`` is one line naming it and the problem."""


def reasonLine(error: BaseException) -> str:
    """The first line of an exception's message, without Python's constructor jargon."""
    text = str(error).strip() or type(error).__name__
    # "TCP4ClientEndpoint.__init__() missing 1 required positional argument: 'port'"
    if isinstance(error, TypeError) and "__init__()" in text:
        text = text.split("__init__() ", 1)[1]
    return text.splitlines()[0]


def _split(description: str) -> list[str]:
    """Twisted's endpoint syntax: ``:``-separated fields, ``\\`` escapes the next character."""
    fields, current, escaped = [], [], False
    for ch in description:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def _escape(host: str) -> str:
    return host.replace("\\", "\\\\").replace(":", "\\:")


def _splitHostPort(value: str) -> tuple[str, str] | None:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port text); ``None`` if it is not that shape."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return None
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        return host[1:-1], port
    if ":" in host:
        return None  # an unbracketed IPv6 address, or an endpoint string
    return host, port


def _show(value: object) -> str:
    """``repr`` of user input, cut short: an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + "...'"


def _isNumber(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is true, int("²") fails


def _port(text: str, value: str, lowest: int) -> int:
    if not text:
        raise EndpointError(f"bad address {_show(value)}: the port is missing")
    if not _isNumber(text):
        raise EndpointError(f"bad address {_show(value)}: port {_show(text)} is not a number")
    # Checked by length first: int() of thousands of digits raises (the int-string limit).
    port = int(text) if len(text) <= 6 else 1 << 20
    if not lowest <= port <= 65535:
        raise EndpointError(f"bad address {_show(value)}: port {text[:12]} is out of range")
    return port


def _asHostPort(value: str) -> tuple[str, str] | None:
    """
    ``(host, port text)`` when ``value`` reads as ``HOST:PORT`` rather than an endpoint
    string: not a Twisted endpoint type, and either a numeric port or a host that is
    plainly one (bracketed, dotted, ``localhost``).
    """
    if value.split(":", 1)[0].lower() in _ENDPOINT_TYPES:
        return None
    hostPort = _splitHostPort(value)
    if hostPort is None:
        return None
    host, text = hostPort
    if _isNumber(text) or value.startswith("[") or "." in host or host == "localhost":
        return hostPort
    return None  # "stdio:", "myplugin:arg": an endpoint type Twisted may know


def _checkPort(description: str, server: bool) -> None:
    """The port of a ``tcp``/``tcp6``/``ssl`` endpoint string is there and in range."""
    fields = _split(description)
    kind = fields[0].lower()
    if kind not in _PORT_TYPES:
        return
    positional = [f for f in fields[1:] if "=" not in f]
    keywords = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    index = 0 if server else 1
    text = keywords.get("port", positional[index] if len(positional) > index else "")
    if not server and not keywords.get("host", positional[0] if positional else ""):
        raise EndpointError(f"bad endpoint {_show(description)}: the host is missing")
    try:
        _port(text, description, 0 if server else 1)
    except EndpointError as e:
        raise EndpointError(str(e).replace("bad address", "bad endpoint", 1)) from None


def listenDescription(value: str | int) -> str:
    """
    The server endpoint string for a listening address.

    A bare port (``8080``) listens on 127.0.0.1 only; ``HOST:PORT`` (``[V6]:PORT``) on that
    interface; anything else is taken as a server endpoint string, as Twisted defines it
    (``tcp:8080`` listens on every interface). :raises EndpointError: a bad port.
    """
    if isinstance(value, int) or _isNumber(value):
        return f"tcp:{_port(str(value), str(value), 0)}:interface=127.0.0.1"
    return _description(value, server=True)


def listenInterface(description: str) -> str | None:
    """
    The interface a ``tcp``/``tcp6``/``ssl`` server endpoint string binds (an address or a
    name, as written); ``None`` when it binds every interface or is another kind.
    """
    fields = _split(description)
    if fields[0].lower() not in _PORT_TYPES:
        return None
    keywords = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    return keywords.get("interface") or None


def connectDescription(value: str) -> str:
    """
    The client endpoint string for a connecting address: ``HOST:PORT`` and ``[V6]:PORT``
    become ``tcp:HOST:PORT``; anything else is taken as a client endpoint string.
    :raises EndpointError: a bad port, or no host.
    """
    return _description(value, server=False)


def _description(value: str, server: bool) -> str:
    """``HOST:PORT`` as a ``tcp:`` endpoint string; an endpoint string checked as it is."""
    value = value.strip()
    if not value:
        raise EndpointError("bad address '': it is empty")
    hostPort = _asHostPort(value)
    if hostPort is None:
        _checkPort(value, server=server)
        return value
    host, text = hostPort
    if server:
        return f"tcp:{_port(text, value, 0)}:interface={_escape(host)}"
    return f"tcp:{_escape(host)}:{_port(text, value, 1)}"


def serverEndpoint(value: str | int, reactor: Any = None) -> Any:
    """
    An ``IStreamServerEndpoint`` for a listening address (see :func:`listenDescription`),
    on ``reactor`` (the global one by default). :raises EndpointError:
    """
    description = listenDescription(value)
    try:
        return serverFromString(  # type: ignore[no-untyped-call,unused-ignore]
            getReactor() if reactor is None else reactor, description
        )
    except Exception as e:
        raise EndpointError(f"bad endpoint {_show(description)}: {reasonLine(e)}") from None


def clientEndpoint(value: str, reactor: Any = None) -> Any:
    """
    An ``IStreamClientEndpoint`` for a connecting address (see :func:`connectDescription`),
    on ``reactor`` (the global one by default). :raises EndpointError:
    """
    description = connectDescription(value)
    try:
        return clientFromString(  # type: ignore[no-untyped-call,unused-ignore]
            getReactor() if reactor is None else reactor, description
        )
    except Exception as e:
        raise EndpointError(f"bad endpoint {_show(description)}: {reasonLine(e)}") from None


def parseHostPort(value: str) -> tuple[str, int]:
    """
    ``HOST:PORT`` (``[V6]:PORT`` for IPv6) -> ``(host, port)``, without looking the host up.
    :raises EndpointError:
    """
    hostPort = _splitHostPort(value.strip())
    if hostPort is None or not hostPort[0]:
        raise EndpointError(f"bad address {_show(value)}: expected HOST:PORT (or [IPV6]:PORT)")
    host, text = hostPort
    return host, _port(text, value, 1)


def isIPAddress(host: str) -> bool:
    """Whether ``host`` is a literal IPv4 or IPv6 address (no brackets, no lookup)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolveHostPort(reactor: Any, host: str, port: int) -> Deferred[tuple[str, int]]:
    """
    ``(IP address, port)`` for ``host``: at once for an IP address, else through the
    reactor's name resolver (a thread; the reactor never blocks). Fails with
    :class:`EndpointError` when the name does not resolve.
    """
    if isIPAddress(host):
        return succeed((host, port))
    d: Deferred[tuple[str, int]] = Deferred()
    resolver = getattr(reactor, "nameResolver", None)
    if resolver is None:
        # A reactor without pluggable resolution: IPv4 only, still without blocking.
        def resolved(ip: str) -> tuple[str, int]:
            return ip, port

        def failed(reason: Any) -> None:
            raise EndpointError(
                f"cannot resolve {_show(host)}: {reasonLine(reason.value)}"
            ) from None

        return reactor.resolve(host).addCallbacks(resolved, failed)  # type: ignore[no-any-return]
    found: list[str] = []

    class Receiver:
        def resolutionBegan(self, resolution: object) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            found.append(str(address.host))

        def resolutionComplete(self) -> None:
            if found:
                d.callback((found[0], port))
            else:
                d.errback(EndpointError(f"cannot resolve {_show(host)}: no address found"))

    resolver.resolveHostName(Receiver(), host, port)
    return d


def boundPort(port: Any) -> int | None:
    """The port number an ``IListeningPort`` is bound to (``None`` for a UNIX socket)."""
    number = getattr(port.getHost(), "port", None)
    return number if isinstance(number, int) else None


def describeAddress(address: Any) -> str:
    """``HOST:PORT`` (``[V6]:PORT``) of an ``IAddress``, or its path / ``str()``."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return str(address)
