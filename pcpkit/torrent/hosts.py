"""
The ``Host`` names the torrent daemon answers: its guard against DNS rebinding.

A web page on ``http://evil.example:8080/`` can have ``evil.example`` re-resolved to
127.0.0.1 (DNS rebinding); the browser then sends that page's requests to a daemon listening
on 127.0.0.1:8080 as same-origin requests and lets the page read the answers (torrent names,
file lists, peers, streamed data). Every such request says ``Host: evil.example:8080``, so
the daemon answers only requests whose ``Host`` is one of its own names
(:class:`AllowedHosts`), as Transmission's ``rpc-host-whitelist`` and Jupyter do:

- ``localhost``;
- any literal IP address (``127.0.0.1``, ``[::1]``, ``192.168.1.5``): a page cannot rebind
  an address, only a name;
- the name the daemon listens on (``--http tcp:8080:interface=NAME``);
- the names given with ``--allowed-host NAME`` (repeatable); ``--allowed-host '*'`` answers
  any name, for a daemon behind a reverse proxy that checks the name itself.

A name matches in any case, with or without a port and a final dot. A request without a
``Host`` header is answered (an HTTP/1.0 tool; no browser sends one); several ``Host``
headers, or one that is not ``NAME[:PORT]`` / ``[IPV6][:PORT]``, are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pcpkit._endpoints import isIPAddress

__all__ = ["ANY_HOST", "DEFAULT_NAMES", "OPTION", "AllowedHosts", "hostName", "checkHostName"]

#: the name that allows every ``Host``
ANY_HOST = "*"
#: the twistd option that adds a name (named in refusals and in its errors)
OPTION = "--allowed-host"
#: names every daemon answers to, besides IP addresses
DEFAULT_NAMES = frozenset({"localhost"})

# DNS labels (underscores too: some local names have them), 253 characters at most
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{0,5}")


def hostName(header: bytes | str) -> str | None:
    """
    The name in a ``Host`` header, lower-case, without its port, final dot or IPv6
    brackets (``b"[::1]:8080"`` -> ``"::1"``); ``None`` when it is not ``NAME[:PORT]``,
    ``IPV4[:PORT]`` or ``[IPV6][:PORT]``.
    """
    try:
        text = header.decode("ascii") if isinstance(header, bytes) else header
    except UnicodeDecodeError:
        return None
    text = text.strip(" \t").lower()
    if text.startswith("["):
        address, bracket, port = text[1:].partition("]")
        if not bracket or not isIPAddress(address) or ":" not in address:
            return None
        if port and not (port.startswith(":") and _PORT.fullmatch(port[1:])):
            return None
        return address
    name, _, port = text.partition(":")
    if not _PORT.fullmatch(port):
        return None  # another ':' (an IPv6 address without brackets), or not a port
    if name.endswith("."):
        name = name[:-1]
    if not _NAME.fullmatch(name):
        return None
    return name


def checkHostName(value: str) -> str:
    """
    A name for :class:`AllowedHosts` as it is compared (lower-case, no final dot, an IPv6
    address without brackets), or :data:`ANY_HOST`.

    :raises ValueError: (one line) empty, with a port, or not a host name.
    """
    text = value.strip()
    if not text:
        raise ValueError("the host name is empty (give a name, or '*' for any)")
    if text == ANY_HOST:
        return ANY_HOST
    name = text.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if isIPAddress(name):
        return name
    if name.endswith("."):
        name = name[:-1]
    if not _NAME.fullmatch(name):
        raise ValueError(f"{text[:100]!r} is not a host name (give it without a port, or '*')")
    return name


class AllowedHosts:
    """
    The rule of which ``Host`` headers a daemon answers (see the module's documentation).

    :param names: more names (``"media.lan"``), or ``"*"`` for any.
    :param listenName: the name (or address) the daemon listens on, if any.
    :raises ValueError: a name that is not one (see :func:`checkHostName`).
    """

    def __init__(self, names: Iterable[str] = (), listenName: str | None = None) -> None:
        checked = {checkHostName(name) for name in names}
        #: whether any name is answered
        self.anyHost = ANY_HOST in checked
        checked.discard(ANY_HOST)
        if listenName:
            name = hostName(listenName)
            if name is not None:
                checked.add(name)
        #: the names answered besides IP addresses
        self.names = frozenset(checked | DEFAULT_NAMES)

    def allows(self, headers: Sequence[bytes]) -> bool:
        """Whether a request with these ``Host`` headers (all of them, maybe none) is answered."""
        if not headers:
            return True
        if len(headers) > 1:
            return False
        if self.anyHost:
            return True
        name = hostName(headers[0])
        return name is not None and (name in self.names or isIPAddress(name))

    def refusal(self, headers: Sequence[bytes]) -> str:
        """The one line telling why a request with these ``Host`` headers is refused."""
        if len(headers) > 1:
            return "the request has several Host headers"
        shown = headers[0].decode("latin-1")[:100]
        name = hostName(headers[0])
        hint = f"{OPTION} {name}" if name is not None else f"{OPTION} NAME"
        return (
            f"Host {shown!r} is not a name of this torrent daemon (a guard against DNS "
            f"rebinding); to answer it, start the daemon with {hint} "
            f"(or {OPTION} '*' behind a reverse proxy that checks the name)"
        )
