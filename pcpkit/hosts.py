"""
The ``Host`` names an HTTP server of pcpkit answers: its guard against DNS rebinding.

A web page on ``http://evil.example:8080/`` can have ``evil.example`` re-resolved to
127.0.0.1 (DNS rebinding); the browser then sends that page's requests to a server listening
on 127.0.0.1:8080 as same-origin requests and lets the page read the answers. Every such
request says ``Host: evil.example:8080``, so the torrent daemon's web side
(:mod:`pcpkit.torrent.web`) and the inspector (:mod:`pcpkit.inspect.web`) answer only
requests whose ``Host`` is one of their own names (:class:`AllowedHosts`), as
Transmission's ``rpc-host-whitelist`` and Jupyter do:

- ``localhost``;
- any literal IP address (``127.0.0.1``, ``[::1]``, ``192.168.1.5``): a page cannot rebind
  an address, only a name;
- the name the server listens on (``tcp:8080:interface=NAME``);
- the names given to it (``--allowed-host NAME`` on the daemon, ``--inspect-allowed-host
  NAME`` for the inspector, both repeatable); ``'*'`` answers any name, for a server behind
  a reverse proxy that checks the name itself.

A name matches in any case, with or without a port and a final dot. A request without a
``Host`` header is answered (an HTTP/1.0 tool; no browser sends one); several ``Host``
headers, or one that is not ``NAME[:PORT]`` / ``[IPV6][:PORT]``, are refused.

:class:`HostCheckedSite` is a :class:`~twisted.web.server.Site` that applies the rule to
every request (:class:`HostCheckedRequest`) once its headers are in, before any resource
sees it: a refused request, whatever its path and method, is answered ``421 Misdirected
Request`` with ``{"error": "<one line naming the Host and the option>"}`` and its body is
dropped.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource

from pcpkit._endpoints import isIPAddress
from pcpkit.httpflow import FlowControlledRequest, FlowControlledSite

__all__ = [
    "ANY_HOST",
    "DEFAULT_NAMES",
    "MISDIRECTED",
    "OPTION",
    "AllowedHosts",
    "HostCheckedRequest",
    "HostCheckedSite",
    "checkHostName",
    "hostName",
]

log = Logger()

#: the name that allows every ``Host``
ANY_HOST = "*"
#: the option that adds a name, named in refusals unless a server names its own
OPTION = "--allowed-host"
#: names every server answers to, besides IP addresses
DEFAULT_NAMES = frozenset({"localhost"})
#: the status of a request whose ``Host`` is not the server's (RFC 9110 Misdirected Request)
MISDIRECTED = 421

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
    The rule of which ``Host`` headers a server answers (see the module's documentation).

    :param names: more names (``"media.lan"``), or ``"*"`` for any.
    :param listenName: the name (or address) the server listens on, if any.
    :param service: what refusals call the server (default :attr:`service`).
    :param option: the option refusals tell to use to allow a name (default :attr:`option`).
    :raises ValueError: a name that is not one (see :func:`checkHostName`).
    """

    #: what refusals call the server: "Host ... is not a name of this <service>"
    service = "server"
    #: the option that allows a name, named in refusals
    option = OPTION

    def __init__(
        self,
        names: Iterable[str] = (),
        listenName: str | None = None,
        *,
        service: str | None = None,
        option: str | None = None,
    ) -> None:
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
        if service is not None:
            self.service = service
        if option is not None:
            self.option = option

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
        option = self.option
        hint = f"{option} {name}" if name is not None else f"{option} NAME"
        return (
            f"Host {shown!r} is not a name of this {self.service} (a guard against DNS "
            f"rebinding); to answer it, start the {self.service} with {hint} "
            f"(or {option} '*' behind a reverse proxy that checks the name)"
        )


class HostCheckedRequest(FlowControlledRequest):
    """
    A request to a :class:`HostCheckedSite`, checked once its headers are in and before any
    resource sees it: one whose ``Host`` the site's rule refuses gets ``421`` (see
    :meth:`answerError`), whatever its path and method, and its body is dropped as it comes.
    Like any :class:`~pcpkit.httpflow.FlowControlledRequest`, it is answered only once the
    answers before it on its connection have drained.
    """

    #: why the request is refused for its ``Host`` (``None``: it is not)
    misdirected: str | None = None

    def hostCheckedSite(self) -> HostCheckedSite | None:
        """The site the request came to, when it is a :class:`HostCheckedSite`."""
        site = getattr(self.channel, "site", None)
        return site if isinstance(site, HostCheckedSite) else None

    def checkHost(self) -> bool:
        """Check the ``Host`` headers (once, when they are all in): whether it is answered."""
        site = self.hostCheckedSite()
        hosts = self.requestHeaders.getRawHeaders(b"host") or []
        if site is not None and not site.allowedHosts.allows(hosts):
            self.misdirected = site.allowedHosts.refusal(hosts)
            site.refused(hosts)
        return self.misdirected is None

    def gotLength(self, length: int | None) -> None:
        # the headers are all in: the one place every request's Host is checked
        if self.checkHost():
            super().gotLength(length)  # type: ignore[no-untyped-call,unused-ignore]
        else:
            self.content = io.BytesIO()  # stays empty: the body is dropped

    def handleContentChunk(self, data: bytes) -> None:
        if self.misdirected is None:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call,unused-ignore]

    def answer(self) -> None:
        if self.misdirected is not None:
            # RFC 9110 15.5.20: this server does not answer for the name the request is for
            self.answerError(MISDIRECTED, b"Misdirected Request", self.misdirected)
        else:
            super().answer()

    def answerError(
        self, code: int, phrase: bytes | None, message: str, close: bool = False
    ) -> None:
        """
        Answer ``{"error": message}`` with ``code`` without a resource seeing the request;
        ``close``: and close the connection (a body that is not read).
        """
        request: Any = self  # Request's methods are untyped
        request.site = self.hostCheckedSite()
        body = json.dumps({"error": message}).encode()
        request.setResponseCode(code, phrase)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if close:
            request.setHeader(b"connection", b"close")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()


class HostCheckedSite(FlowControlledSite):
    """
    A :class:`~twisted.web.server.Site` that answers only requests whose ``Host``
    ``allowedHosts`` allows (default: ``localhost`` and IP addresses); any other gets ``421``
    for every path (:class:`HostCheckedRequest`). A subclass's ``requestFactory`` must be a
    :class:`HostCheckedRequest`.
    """

    requestFactory = HostCheckedRequest
    displayTracebacks = False
    noisy = False
    #: the most refused Host names logged (each once): a page retrying cannot flood the log
    loggedRefusals = 64

    def __init__(
        self, resource: Resource, allowedHosts: AllowedHosts | None = None, **kwargs: Any
    ) -> None:
        super().__init__(resource, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        #: the rule
        self.allowedHosts = AllowedHosts() if allowedHosts is None else allowedHosts
        self._refusedHosts: set[bytes] = set()

    def refused(self, hosts: Sequence[bytes]) -> None:
        """Log a request refused for its ``Host`` headers (the first of each Host only)."""
        key = b"\n".join(hosts)
        if key in self._refusedHosts or len(self._refusedHosts) >= self.loggedRefusals:
            return
        self._refusedHosts.add(key)
        log.warn("refused HTTP requests: {why}", why=self.allowedHosts.refusal(hosts))
