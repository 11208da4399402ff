"""
``twistd pcpkit``: the relay, the torrent daemon and the demo as twistd services.

    twistd -n pcpkit relay --listen tcp:8080:interface=127.0.0.1 --connect tcp:example:80
    twistd -n pcpkit torrent --save-path DIR [--watch DIR] [--state-dir DIR] [--http ENDPOINT]
    twistd -n pcpkit demo

Listening defaults bind 127.0.0.1. Bad options are a usage error naming the option; a service
that cannot do its job (its port taken, its folder not writable) ends twistd before the reactor
runs, with exit status 1 and one line naming the option, so a supervisor sees it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from pcpkit.internet.relay import MIN_BUFFER

__all__ = ["Options", "makeService", "RelayOptions", "TorrentOptions", "DemoOptions"]


def _positiveInt(option: str, least: int = 1) -> Any:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise usage.UsageError(f"--{option} must be a whole number, not {value!r}") from None
        if n < least:
            raise usage.UsageError(f"--{option} must be at least {least}, not {n}")
        return n

    return parse


def _hostPort(value: str) -> tuple[str, int]:
    from pcpkit._endpoints import EndpointError, parseHostPort

    try:
        return parseHostPort(value)
    except EndpointError as e:
        raise usage.UsageError(f"--peer: {e}") from None


def _endpoint(option: str, value: str, server: bool) -> str:
    """Parse an endpoint now, so a typo is a usage error naming the option, not a traceback."""
    from pcpkit import _endpoints

    try:
        if server:
            description = _endpoints.listenDescription(value)
            _endpoints.serverEndpoint(description)
        else:
            description = _endpoints.connectDescription(value)
            _endpoints.clientEndpoint(description)
    except _endpoints.EndpointError as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    return description


def _hostName(option: str, value: str) -> str:
    """A name for an allowed-host option, checked now: a usage error naming the option."""
    from pcpkit.hosts import checkHostName

    try:
        return checkHostName(value)
    except ValueError as e:
        raise usage.UsageError(f"{option}: {e}") from None


class _InspectOptions(usage.Options):
    """``--inspect ENDPOINT`` and ``--inspect-allowed-host NAME``, on every subcommand."""

    optParameters: list[list[Any]] = [
        ["inspect", None, None, "serve pcpkit.inspect's live view on ENDPOINT (read-only)"],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self["inspect-allowed-host"] = []

    def opt_inspect_allowed_host(self, value: str) -> None:
        """a Host name the inspector answers besides localhost, IPs (repeatable; '*': any)"""
        from pcpkit.inspect.web import ALLOWED_HOST_OPTION

        self["inspect-allowed-host"].append(_hostName(ALLOWED_HOST_OPTION, value))


class RelayOptions(_InspectOptions):
    synopsis = "--listen ENDPOINT --connect ENDPOINT [--buffer BYTES] [--max-connections N]"
    longdesc = "Relay every connection accepted on --listen to a new connection to --connect."
    optParameters = [
        ["listen", "l", None, "server endpoint, e.g. tcp:8080:interface=127.0.0.1 (or a port)"],
        ["connect", "c", None, "client endpoint, e.g. tcp:127.0.0.1:80"],
        [
            "buffer",
            "b",
            262144,
            f"bytes held per direction of a connection (at least {MIN_BUFFER})",
            _positiveInt("buffer", MIN_BUFFER),
        ],
        ["max-connections", "m", 256, "connections open at once", _positiveInt("max-connections")],
    ]
    optFlags = [["no-splice", None, "always relay through Python (no os.splice)"]]

    def postOptions(self) -> None:
        for name in ("listen", "connect"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        self["listen"] = _endpoint("listen", self["listen"], server=True)
        self["connect"] = _endpoint("connect", self["connect"], server=False)


class TorrentOptions(_InspectOptions):
    synopsis = (
        "--save-path DIR [--watch DIR] [--state-dir DIR] [--http ENDPOINT] "
        "[--listen-interfaces IFACES] [--peer HOST:PORT ...] [--http-max-body BYTES] "
        "[--allowed-host NAME ...]"
    )
    longdesc = (
        "Run a torrent daemon: .torrent and .magnet files dropped into --watch are added "
        "(removing the file stops the torrent); resume data is kept in --state-dir; --http "
        "serves a web UI, /status.json, /stream/<infohash>/<fileIndex> with Range, and a "
        "JSON control API under /api whose state-changing requests need the token of "
        "STATE_DIR/api-token (made at the first start, mode 0600) in an X-Pcpkit-Token header. "
        "HTTP requests are answered only when their Host is localhost, an IP address, the "
        "--http interface or an --allowed-host name (421 otherwise: no DNS rebinding)."
    )
    optParameters = [
        ["save-path", "s", None, "where downloads are saved"],
        ["watch", "w", None, "folder of .torrent / .magnet files to follow"],
        ["state-dir", None, None, "folder for resume data (default: SAVE_PATH/.pcpkit-state)"],
        ["http", None, None, "HTTP server endpoint, e.g. tcp:8080:interface=127.0.0.1"],
        ["listen-interfaces", None, "127.0.0.1:0", "libtorrent listen_interfaces"],
        ["tick", None, "1", "seconds between status updates"],
        [
            "http-max-body",
            None,
            str(16 * 1024 * 1024),
            "largest HTTP request body (a .torrent upload) in bytes",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self["peer"] = []
        self["allowed-host"] = []

    def opt_peer(self, value: str) -> None:
        """HOST:PORT of a peer to connect every torrent to (repeatable)."""
        self["peer"].append(_hostPort(value))

    def opt_allowed_host(self, value: str) -> None:
        """a Host name HTTP answers besides localhost, IPs (repeatable; '*': any name)"""
        from pcpkit.torrent.hosts import OPTION

        self["allowed-host"].append(_hostName(OPTION, value))

    def postOptions(self) -> None:
        if not self["save-path"]:
            raise usage.UsageError("--save-path is required")
        if self["http"] is not None:
            self["http"] = _endpoint("http", self["http"], server=True)
        from pcpkit.torrent.daemon import listenInterfacesProblem

        problem = listenInterfacesProblem(self["listen-interfaces"])
        if problem is not None:
            raise usage.UsageError(f"--listen-interfaces: {problem}")
        try:
            tick = float(self["tick"])
        except ValueError:
            raise usage.UsageError(f"--tick must be a number, not {self['tick']!r}") from None
        if tick <= 0:
            raise usage.UsageError("--tick must be positive")
        self["tick"] = tick
        self["http-max-body"] = _positiveInt("http-max-body")(self["http-max-body"])


class DemoOptions(_InspectOptions):
    synopsis = "[--size MIB]"
    longdesc = "The embedded demo: a loopback swarm and a relay transfer, then stop."
    optParameters = [
        ["size", None, 64, "payload size in MiB", _positiveInt("size")],
    ]
    optFlags = [["no-tracker", None, "connect the peers directly even if opentracker is here"]]


def _checkInspect(options: usage.Options) -> None:
    if options["inspect"] is not None:
        options["inspect"] = _endpoint("inspect", options["inspect"], server=True)
    elif options["inspect-allowed-host"]:
        raise usage.UsageError("--inspect-allowed-host needs --inspect ENDPOINT")


for _sub in (RelayOptions, TorrentOptions, DemoOptions):
    _sub.synopsis += " [--inspect ENDPOINT [--inspect-allowed-host NAME ...]]"


class Options(usage.Options):
    synopsis = "relay|torrent|demo [options]"
    subCommands = [
        ["relay", None, RelayOptions, "a flow-controlled TCP relay"],
        ["torrent", None, TorrentOptions, "a torrent daemon with a watch folder and HTTP"],
        ["demo", None, DemoOptions, "the embedded demo (loopback swarm and relay)"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("choose a subcommand: relay, torrent or demo")
        _checkInspect(self.subOptions)

    def parseOptions(self, options: Any = None) -> None:
        # twistd before Twisted 26.10 prints a usage error and exits 0 (Twisted #12656);
        # a supervisor must see a bad option as a failure on every supported Twisted.
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call,unused-ignore]
        except usage.UsageError as e:
            print(self)
            print(f"{' '.join(sys.argv[0:2])}: {e}")
            raise SystemExit(1) from None


class _Supervised(MultiService):
    """
    A service run by twistd: if it cannot start, end the process with one line naming the
    option (``SystemExit``: exit status 1, no traceback) instead of a traceback, or a process
    that keeps running without doing its job.
    """

    def __init__(
        self, command: str, service: Any, explain: Callable[[Exception], str | None]
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self.command = command
        self.explain = explain
        service.setServiceParent(self)

    def privilegedStartService(self) -> None:
        self._supervise(super().privilegedStartService)

    def startService(self) -> None:
        self._supervise(super().startService)

    def _supervise(self, start: Callable[[], object]) -> None:
        try:
            start()
        except Exception as e:
            message = self.explain(e)
            if message is None:
                raise
            raise SystemExit(f"twistd pcpkit {self.command}: {message}") from None


#: TorrentDaemon's parameters as twistd options.
_DAEMON_OPTIONS = {
    "savePath": "--save-path",
    "stateDir": "--state-dir",
    "watchDir": "--watch",
    "httpEndpoint": "--http",
    "listenInterfaces": "--listen-interfaces",
}


def makeService(options: Options) -> Any:
    """The service for ``twistd pcpkit SUBCOMMAND`` (with ``--inspect``: and the inspector)."""
    service = _makeService(options)
    endpoint = options.subOptions["inspect"]
    if endpoint is None:
        return service
    from pcpkit._endpoints import reasonLine
    from pcpkit.inspect import InspectService

    parent = _Supervised(
        str(options.subCommand),
        InspectService(endpoint, options.subOptions["inspect-allowed-host"]),
        lambda e: f"--inspect {endpoint}: {reasonLine(e)}",
    )
    service.setServiceParent(parent)
    return parent


def _makeService(options: Options) -> Any:
    from pcpkit._endpoints import reasonLine

    sub = options.subOptions
    if options.subCommand == "relay":
        from pcpkit.internet.relay import Relay

        listen = sub["listen"]
        relay = Relay(
            listen,
            sub["connect"],
            bufferSize=sub["buffer"],
            maxConnections=sub["max-connections"],
            splice=False if sub["no-splice"] else None,
        )
        return _Supervised("relay", relay, lambda e: f"--listen {listen}: {reasonLine(e)}")
    if options.subCommand == "torrent":
        from pcpkit.torrent.daemon import DaemonStartError, TorrentDaemon

        daemon = TorrentDaemon(
            savePath=sub["save-path"],
            watchDir=sub["watch"],
            stateDir=sub["state-dir"],
            httpEndpoint=sub["http"],
            listenInterfaces=sub["listen-interfaces"],
            peers=tuple(sub["peer"]),
            tickInterval=sub["tick"],
            httpMaxBody=sub["http-max-body"],
            allowedHosts=tuple(sub["allowed-host"]),
        )

        def explain(e: Exception) -> str | None:
            if isinstance(e, DaemonStartError):
                return f"{_DAEMON_OPTIONS.get(e.parameter, e.parameter)}: {e.reason}"
            return None

        return _Supervised("torrent", daemon, explain)
    from pcpkit.demo import DemoService

    return DemoService(sizeMiB=sub["size"], useTracker=False if sub["no-tracker"] else None)
