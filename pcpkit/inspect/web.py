"""
The inspector over HTTP (twisted.web), read-only:

* ``/`` -- the page (plain HTML, JavaScript and SVG from this package: no CDN, no build);
* ``/graph.json`` -- one snapshot (:mod:`pcpkit.inspect.graph`);
* ``/events`` -- Server-Sent Events: a ``graph`` event with a full snapshot when a client
  connects and then whenever the graph changed, at most :data:`MAX_UPDATES_PER_SECOND` times
  a second however busy the program is (updates are coalesced: a client gets the latest
  graph, never a backlog). A client that does not read is skipped until its connection
  drains, so a slow browser cannot make the server buffer without bound.

:func:`serve` is the one call a program needs; it listens on 127.0.0.1 unless told otherwise.

Every request, on every path (the page, ``/graph.json``, ``/events``, the static files), is
answered only when its ``Host`` header names the inspector: ``localhost``, a literal IP
address, the name it listens on, or a name given as ``allowedHosts`` (the option
``--inspect-allowed-host`` of ``twistd pcpkit`` and ``pcpkit demo``). Any other gets ``421
Misdirected Request`` with one JSON line naming the Host and the option before a resource
sees it (:class:`~pcpkit.hosts.HostCheckedSite`), so a page that has its own name
re-resolved to 127.0.0.1 (DNS rebinding) cannot read the program's graph.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from importlib import resources
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from pcpkit._endpoints import EndpointError, listenDescription, listenInterface, serverEndpoint
from pcpkit._twisted import getReactor
from pcpkit.hosts import AllowedHosts, HostCheckedSite
from pcpkit.inspect import parts as _parts
from pcpkit.inspect.graph import DEFAULT_FULL_THRESHOLD, Inspector

__all__ = [
    "ALLOWED_HOST_OPTION",
    "DEFAULT_ENDPOINT",
    "MAX_UPDATES_PER_SECOND",
    "InspectServer",
    "InspectService",
    "inspectResource",
    "serve",
]

log = Logger()

#: Where :func:`serve` listens unless told otherwise: loopback only.
DEFAULT_ENDPOINT = "tcp:8090:interface=127.0.0.1"
#: The option of ``twistd pcpkit`` and ``pcpkit demo`` that allows the inspector a ``Host``
#: name (named in its refusals).
ALLOWED_HOST_OPTION = "--inspect-allowed-host"
#: The most graph events a client gets per second.
MAX_UPDATES_PER_SECOND = 10
#: Seconds between keep-alive comments on a quiet event stream.
KEEPALIVE_SECONDS = 15.0
#: What the browser waits before reconnecting a broken event stream (ms).
RETRY_MS = 1000

_STATIC = {
    "": ("page.html", "text/html; charset=utf-8"),
    "inspect.js": ("inspect.js", "text/javascript; charset=utf-8"),
    "inspect.css": ("inspect.css", "text/css; charset=utf-8"),
}


def _static(name: str) -> bytes:
    return resources.files("pcpkit.inspect").joinpath(name).read_bytes()


def _dumps(graph: dict[str, Any]) -> bytes:
    return json.dumps(graph, separators=(",", ":"), default=str).encode()


def _withoutClock(graph: dict[str, Any]) -> bytes:
    # what changes every tick whatever happens: not a reason to send an update
    return _dumps({k: v for k, v in graph.items() if k not in ("time", "tick")})


def _withClock(key: bytes, graph: dict[str, Any]) -> bytes:
    # the event's payload: the key with the clock put back (one JSON encoding per tick)
    clock = _dumps({"time": graph["time"], "tick": graph["tick"]})
    return clock[:-1] + b"," + key[1:]


@implementer(IPushProducer)
class _EventClient:
    """One ``/events`` connection; paused by its transport while it does not read."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.paused = False
        self.last: bytes | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True

    def send(self, event: str, payload: bytes) -> None:
        self.request.write(b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n")


class _ReadOnly(Resource):
    """GET and HEAD only: the inspector changes nothing."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"the pcpkit inspector is read-only\n"
        return super().render(request)  # type: ignore[no-untyped-call,unused-ignore]


class _Root(Resource):
    def getChild(self, path: bytes, request: Any) -> Any:
        return notFound()


class _StaticResource(_ReadOnly):
    def __init__(self, body: bytes, contentType: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.body = body
        self.contentType = contentType.encode()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", self.contentType)
        return self.body


class _GraphResource(_ReadOnly):
    def __init__(self, server: InspectServer) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.inspectServer = server

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return _dumps(self.inspectServer.inspector.snapshot())


class _EventsResource(_ReadOnly):
    def __init__(self, server: InspectServer) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.inspectServer = server

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-store")
        request.write(f"retry: {RETRY_MS}\n\n".encode())
        self.inspectServer._addClient(request)
        return NOT_DONE_YET


def _inspectorHosts(names: Iterable[str] = (), endpoint: str | int | None = None) -> AllowedHosts:
    """
    The ``Host`` rule of an inspector listening on ``endpoint``: ``localhost``, IP addresses,
    the interface name ``endpoint`` binds, and ``names`` (``"*"``: any); its refusals name
    :data:`ALLOWED_HOST_OPTION`. :raises ValueError: a name that is not one (one line).
    """
    listenName = None
    if endpoint is not None:
        try:
            listenName = listenInterface(listenDescription(endpoint))
        except EndpointError:
            pass  # start() says what is wrong with it
    return AllowedHosts(names, listenName, service="pcpkit inspector", option=ALLOWED_HOST_OPTION)


class InspectServer:
    """
    The inspector's HTTP service: :meth:`start` listens on ``endpoint``, :meth:`stop` stops
    (and turns the registry off again). :attr:`resource` can also be mounted in a site of
    your own (:func:`inspectResource`; wrap it in a :class:`~pcpkit.hosts.HostCheckedSite`
    to keep the guard against DNS rebinding).

    :param allowedHosts: ``Host`` names answered besides ``localhost``, IP addresses and the
        interface ``endpoint`` binds (``"*"``: any name, behind a reverse proxy that checks
        it), or a whole :class:`~pcpkit.hosts.AllowedHosts` rule. Other names get ``421``.
    :raises ValueError: a name in ``allowedHosts`` that is not a host name (one line).
    """

    def __init__(
        self,
        endpoint: str | int = DEFAULT_ENDPOINT,
        *,
        fullThreshold: float = DEFAULT_FULL_THRESHOLD,
        reactor: Any = None,
        allowedHosts: Iterable[str] | AllowedHosts = (),
    ) -> None:
        self.endpoint = endpoint
        #: the ``Host`` rule of the site :meth:`start` serves
        self.allowedHosts = (
            allowedHosts
            if isinstance(allowedHosts, AllowedHosts)
            else _inspectorHosts(allowedHosts, endpoint)
        )
        self.reactor = reactor if reactor is not None else getReactor()
        self.inspector = Inspector(fullThreshold=fullThreshold)
        self.clients: list[_EventClient] = []
        self.port: Any = None
        #: graph events sent (to any client)
        self.updates = 0
        #: reactor time spent taking, encoding and sending snapshots for the event streams
        self.busySeconds = 0.0
        self._ticker: LoopingCall | None = None
        self._sinceKeepalive = 0.0
        root: Any = _Root()  # type: ignore[no-untyped-call,unused-ignore]
        self.resource: Any = root
        for path, (name, contentType) in _STATIC.items():
            root.putChild(path.encode(), _StaticResource(_static(name), contentType))
        root.putChild(b"graph.json", _GraphResource(self))
        root.putChild(b"events", _EventsResource(self))
        self._enabled = False
        #: what :func:`serve` started: fires with the listening port
        self.listening: Deferred[Any] | None = None

    def start(self) -> Deferred[Any]:
        """Turn the registry on and listen; fires with the listening port."""
        if not self._enabled:
            _parts.enable()
            self._enabled = True
        site = HostCheckedSite(self.resource, self.allowedHosts)
        d: Deferred[Any] = serverEndpoint(self.endpoint, self.reactor).listen(site)

        def listening(port: Any) -> Any:
            self.port = port
            addr = port.getHost()
            log.info("pcpkit inspector on http://{host}:{port}/", host=addr.host, port=addr.port)
            return port

        def failed(reason: Any) -> Any:
            self._disable()
            return reason

        return d.addCallbacks(listening, failed)

    def _disable(self) -> None:
        if self._enabled:
            self._enabled = False
            _parts.disable()

    def stop(self) -> Deferred[None]:
        """Close the event streams, stop listening, turn the registry off."""
        for c in list(self.clients):
            transport = c.request.transport
            c.request.unregisterProducer()
            c.request.finish()
            # an event stream never ends on its own: close its connection too
            if transport is not None:
                transport.loseConnection()
        self.clients.clear()
        self._stopTicker()
        self._disable()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    # -- event streams ------------------------------------------------------------------

    def _addClient(self, request: Any) -> None:
        client = _EventClient(request)
        request.registerProducer(client, True)
        self.clients.append(client)
        request.notifyFinish().addBoth(self._clientGone, client)
        self._sendTo([client], self.inspector.snapshot())
        if self._ticker is None:
            self._ticker = LoopingCall(self._tick)
            self._ticker.clock = self.reactor
            self._ticker.start(1.0 / MAX_UPDATES_PER_SECOND, now=False)

    def _clientGone(self, _: object, client: _EventClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
        if not self.clients:
            self._stopTicker()

    def _stopTicker(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None and ticker.running:
            ticker.stop()

    def _tick(self) -> None:
        ready = [c for c in self.clients if not c.paused]
        if not ready:
            return
        began = time.perf_counter()
        self._sendTo(ready, self.inspector.snapshot())
        self.busySeconds += time.perf_counter() - began

    def _sendTo(self, clients: list[_EventClient], graph: dict[str, Any]) -> None:
        key = _withoutClock(graph)
        payload: bytes | None = None
        self._sinceKeepalive += 1.0 / MAX_UPDATES_PER_SECOND
        for c in clients:
            if c.last == key:
                continue
            if payload is None:
                payload = _withClock(key, graph)
                self.updates += 1
            c.last = key
            c.send("graph", payload)
        if payload is None and self._sinceKeepalive >= KEEPALIVE_SECONDS:
            self._sinceKeepalive = 0.0
            for c in clients:
                c.request.write(b": keep-alive\n\n")


def inspectResource(fullThreshold: float = DEFAULT_FULL_THRESHOLD) -> Resource:
    """
    The inspector's pages as a twisted.web ``Resource`` to mount in a site of your own
    (say under ``/inspect/``). The registry must be on (:func:`pcpkit.inspect.enable`).
    """
    resource: Resource = InspectServer(fullThreshold=fullThreshold).resource
    return resource


def serve(
    endpoint: str | int = DEFAULT_ENDPOINT,
    *,
    fullThreshold: float = DEFAULT_FULL_THRESHOLD,
    reactor: Any = None,
    allowedHosts: Iterable[str] | AllowedHosts = (),
) -> InspectServer:
    """
    Turn the inspector on and serve it on ``endpoint`` (a server endpoint string; a bare port
    means that port on 127.0.0.1). Returns the :class:`InspectServer`; its ``start()`` has
    been called: wait on :attr:`InspectServer.listening` for the port, :meth:`~InspectServer.stop`
    to end. A port that cannot be bound is logged and fails ``listening``.

    Only requests whose ``Host`` is ``localhost``, an IP address, the name ``endpoint``
    binds or one of ``allowedHosts`` (``"*"``: any) are answered; others get ``421``.

    :raises ValueError: a name in ``allowedHosts`` that is not a host name (one line).
    """
    server = InspectServer(
        endpoint, fullThreshold=fullThreshold, reactor=reactor, allowedHosts=allowedHosts
    )
    server.listening = server.start()
    return server


class InspectService(Service):
    """
    The inspector as a twisted ``IService`` (what ``--inspect ENDPOINT`` adds to the
    ``twistd pcpkit`` services, with the ``--inspect-allowed-host`` names as
    ``allowedHosts``): it listens in ``privilegedStartService`` and raises there if
    the endpoint cannot be bound, so twistd fails at start naming the option.
    """

    def __init__(
        self, endpoint: str | int = DEFAULT_ENDPOINT, allowedHosts: Iterable[str] = ()
    ) -> None:
        self.server = InspectServer(endpoint, allowedHosts=allowedHosts)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call,unused-ignore]
        failures: list[Any] = []
        self.server.start().addErrback(failures.append)
        if failures:
            failures[0].raiseException()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call,unused-ignore]
        return self.server.stop()
