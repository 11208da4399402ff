"""
The ``pcpkit`` command.

::

    pcpkit make PATH [-t TRACKER ...] [-o OUT] [--piece-size BYTES] [--version v1|v2|hybrid]
    pcpkit get TORRENT|MAGNET [-o DIR] [--peer HOST:PORT ...] [--seed] [--files LIST] [--list]
    pcpkit seed PATH|TORRENT [-o DIR] [--peer HOST:PORT ...] [-t TRACKER ...]
    pcpkit relay LISTEN CONNECT [--buffer BYTES] [--max-connections N]
    pcpkit demo [--size MIB] [--inspect ENDPOINT [--inspect-allowed-host NAME ...]]

``get`` and ``seed`` also take ``--listen ADDRESS:PORT``, ``--max-down``/``--max-up RATE``
(bytes per second, like ``500kB`` or ``2M``), ``--quiet`` (only errors) and ``--json`` (one
JSON object per line on stdout: an ``event`` key, and for ``"status"`` the torrent's
status keys).

Long work shows a progress bar (rate, time left) on a terminal and a plain line every few
seconds otherwise. Errors are one line on stderr. Exit status:

* ``0`` -- done; also after Ctrl-C (or SIGTERM) ends a command that runs until stopped
  (``seed``, ``get --seed`` once downloaded, ``relay``);
* ``1`` -- the work failed at run time (a torrent error, a disk error, a port in use, data
  that does not check out, a corrupt copy);
* ``2`` -- bad usage or bad input (unknown option, not a torrent, bad magnet link, bad
  endpoint, missing file);
* ``130`` -- Ctrl-C interrupted unfinished work (a download, ``make``, the demo).

The torrent commands listen on ``127.0.0.1`` unless ``--listen`` says otherwise, with
DHT, local peer discovery, UPnP and NAT-PMP off unless ``--dht`` is given: by default
nothing reaches beyond this machine except what the torrent's trackers and ``--peer`` say.
Interrupting ``get`` saves the torrent's resume data next to its files as
``<name>.pcpkit-resume`` (the next ``get`` starts from it; it is removed once the download
is complete). ``seed`` checks the data without ever writing to it, and writes no file.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import stat
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from pcpkit._format import formatBytes, formatRate, parseBytes, printable
from pcpkit._progress import Progress
from pcpkit._twisted import Interrupted, Stopper, getReactor

if TYPE_CHECKING:  # the torrent modules are imported only by the commands that use them
    from pcpkit.torrent.transfer import Transfer

__all__ = ["CommandError", "EXIT_INTERRUPTED", "main"]

#: exit status for Ctrl-C interrupting unfinished work (128 + SIGINT)
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure reported as one line on stderr, with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _usage(message: str) -> CommandError:
    return CommandError(message, 2)


# -- output ----------------------------------------------------------------------------------


def _say(line: str) -> None:
    """
    A line on stdout, flushed (the command is often read through a pipe). Control
    characters are shown escaped: names come from torrents and daemons.
    """
    sys.stdout.write(printable(line) + "\n")
    sys.stdout.flush()


def _complain(line: str) -> None:
    """A line on stderr (control characters escaped, as for :func:`_say`)."""
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def _progress(label: str, total: int, interval: float = 2.0) -> Progress:
    return Progress(label, total, stream=sys.stdout, interval=interval)


class _Output:
    """
    What a torrent command prints, in one of three modes: lines and progress bars for
    people (the default), nothing but errors (``--quiet``), or one JSON object per line
    (``--json``: ``{"event": ..., ...}``).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False)) and not self.json
        self.bar: Progress | None = None
        self.news = ""

    def line(self, text: str, event: str, **fields: Any) -> None:
        """``text`` for people, ``{"event": event, **fields}`` for scripts."""
        if self.json:
            _say(json.dumps({"event": event, **fields}, sort_keys=True))
        elif not self.quiet:
            self.endBar()
            _say(text)

    def startBar(self, label: str, total: int = 0, interval: float = 2.0) -> None:
        self.endBar()
        if not (self.json or self.quiet):
            self.bar = _progress(label, total, interval)

    def status(self, status: Any, done: str = "totalDone", rate: str = "downRate") -> None:
        """A status update: the progress line (tracker errors included), or a JSON line."""
        if self.json:
            _say(json.dumps({"event": "status", **status}, sort_keys=True))
            return
        bar = self.bar
        if bar is None:
            return
        if done == "totalDone":
            bar.total = int(status.get("totalSize") or 0)
        news = ""
        if status.get("error"):
            news = f"error: {status['error']}"
        elif status.get("trackerError"):
            news = f"tracker: {status['trackerError']}"
        extra = f"{status.get('numPeers', 0)} peers" + (f"  {news}" if news else "")
        # a new error is shown at once, not at the next periodic line
        fresh, self.news = news != self.news and bool(news), news
        bar.update(
            int(status.get(done) or 0), float(status.get(rate) or 0) or None, extra, urgent=fresh
        )

    def endBar(self, message: str | None = None) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.finish(message)
        elif message and not (self.json or self.quiet):
            _say(message)


# -- argument parsing ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise _usage(f"{self.prog}: {message} (see '{self.prog} --help')")


def _byteCount(value: str) -> int:
    """A positive byte count: ``262144``, ``256K``, ``256KiB``, ``4MB`` (see parseBytes)."""
    try:
        n = parseBytes(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return n


def _relayBuffer(value: str) -> int:
    """A relay's ``--buffer``: a byte count of at least the relay's least (1024 bytes)."""
    from pcpkit.internet.relay import MIN_BUFFER

    n = _byteCount(value)
    if n < MIN_BUFFER:
        raise argparse.ArgumentTypeError(f"{value!r} is below the least, {MIN_BUFFER} bytes")
    return n


def _pieceSize(value: str) -> int:
    n = _byteCount(value)
    if n < 16 * 1024 or n & (n - 1):
        raise argparse.ArgumentTypeError(
            f"{value!r} ({n} bytes) is not a power of two of at least 16K (like 16K, 256K or 4M)"
        )
    return n


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return n


def _peer(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``); names are resolved later, on the reactor."""
    from pcpkit._endpoints import EndpointError, parseHostPort

    try:
        return parseHostPort(value)
    except EndpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _trackerURL(value: str) -> str:
    url = urllib.parse.urlsplit(value.strip())
    if url.scheme not in ("http", "https", "udp") or not url.hostname:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a tracker URL (like http://tracker.example:6969/announce "
            "or udp://tracker.example:1337)"
        )
    try:
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value!r}: {e}") from None
    return value.strip()


def _hostName(value: str) -> str:
    from pcpkit.hosts import checkHostName

    try:
        return checkHostName(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _listenInterfaces(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not ADDRESS:PORT (like 127.0.0.1:0 or 0.0.0.0:6881)"
        )
    return value


def _fileList(value: str) -> list[int]:
    """``0,2,5-7`` -> [0, 2, 5, 6, 7]."""
    chosen: list[int] = []
    try:
        for part in value.split(","):
            first, dash, last = part.strip().partition("-")
            low, high = int(first), int(last) if dash else int(first)
            if low < 0 or high < low:
                raise ValueError
            chosen.extend(range(low, high + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a list of file numbers (like 0,2,5-7; see --list)"
        ) from None
    return sorted(set(chosen))


def _buildParser() -> _Parser:
    parser = _Parser(
        prog="pcpkit",
        description="Flow-controlled transfers on Twisted: torrents, a TCP relay, a demo.",
        epilog="Exit status: 0 done (or Ctrl-C ending seed/relay), 1 failed, "
        "2 bad usage or input, 130 interrupted.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log Twisted and libtorrent events to stderr"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def trackerOption(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument(
            "-t",
            "--tracker",
            action="append",
            default=[],
            metavar="URL",
            type=_trackerURL,
            help=help,
        )

    def outputOptions(p: argparse.ArgumentParser) -> None:
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
        shown.add_argument(
            "--json", action="store_true", help="print one JSON object per line (events and status)"
        )

    make = sub.add_parser(
        "make",
        help="make a .torrent of a file or folder",
        description="Make a .torrent of a file or a folder.",
    )
    make.add_argument("path", metavar="PATH", help="the file or folder to share")
    trackerOption(make, "announce URL (repeat for more trackers, one tier each)")
    make.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="the .torrent file, or a folder for NAME.torrent (default: NAME.torrent here)",
    )
    make.add_argument(
        "--piece-size",
        type=_pieceSize,
        metavar="BYTES",
        help="bytes per piece, a power of two >= 16K (default: automatic)",
    )
    make.add_argument(
        "--version",
        choices=("v1", "v2", "hybrid"),
        default="v1",
        help="BitTorrent version of the metadata (default: v1)",
    )
    make.add_argument("--comment", help="the torrent's comment")
    outputOptions(make)
    make.set_defaults(run=_make)

    def torrentOptions(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--peer",
            action="append",
            default=[],
            type=_peer,
            metavar="HOST:PORT",
            help="connect to this peer, again until it answers (repeatable)",
        )
        p.add_argument(
            "--listen",
            type=_listenInterfaces,
            default="127.0.0.1:0",
            metavar="ADDRESS:PORT",
            help="libtorrent listen interface (default: 127.0.0.1:0); a port in use is an error",
        )
        p.add_argument(
            "--dht", action="store_true", help="turn on DHT, local peer discovery, UPnP and NAT-PMP"
        )
        p.add_argument(
            "--max-down",
            type=_byteCount,
            metavar="RATE",
            help="download at most RATE bytes/s (like 500kB or 2M)",
        )
        p.add_argument(
            "--max-up",
            type=_byteCount,
            metavar="RATE",
            help="upload at most RATE bytes/s (like 500kB or 2M)",
        )
        outputOptions(p)

    get = sub.add_parser(
        "get",
        help="download a torrent",
        description="Download a torrent (a .torrent file or a magnet link).",
    )
    get.add_argument("source", metavar="TORRENT|MAGNET", help=".torrent file or magnet link")
    get.add_argument(
        "-o", "--output", default=".", metavar="DIR", help="folder to download into (default: here)"
    )
    get.add_argument(
        "--seed", action="store_true", help="keep seeding once downloaded, until Ctrl-C"
    )
    get.add_argument(
        "--files",
        type=_fileList,
        metavar="LIST",
        help="download only these files of the torrent (numbers from --list, like 0,2,5-7)",
    )
    get.add_argument(
        "--list", action="store_true", help="list the torrent's files (number, size, path) and exit"
    )
    torrentOptions(get)
    get.set_defaults(run=_get)

    seed = sub.add_parser(
        "seed",
        help="seed a file, folder or .torrent",
        description="Seed a file or folder (the torrent is made in memory; its magnet link "
        "is printed), or a .torrent whose data is in DIR. The data is checked first and "
        "never written to. Runs until Ctrl-C.",
    )
    seed.add_argument(
        "source", metavar="PATH|TORRENT", help="a file or folder to share, or a .torrent file"
    )
    seed.add_argument(
        "-o",
        "--output",
        default=".",
        metavar="DIR",
        help="folder holding a .torrent's data (default: here)",
    )
    trackerOption(seed, "announce URL for a torrent made here (repeatable)")
    seed.add_argument(
        "--save-torrent", metavar="FILE", help="also write the torrent made here to FILE"
    )
    torrentOptions(seed)
    seed.set_defaults(run=_seed)

    relay = sub.add_parser(
        "relay",
        help="a flow-controlled TCP relay",
        description="Relay every connection accepted on LISTEN to a new connection to "
        "CONNECT, until Ctrl-C. Endpoints are Twisted endpoint strings "
        "(tcp:8080:interface=127.0.0.1, tcp:example.com:80, unix:/path); a bare port "
        "listens on 127.0.0.1, and HOST:PORT connects over TCP.",
    )
    relay.add_argument("listen", metavar="LISTEN", help="server endpoint or port")
    relay.add_argument("connect", metavar="CONNECT", help="client endpoint or HOST:PORT")
    relay.add_argument(
        "--buffer",
        type=_relayBuffer,
        default=262144,
        metavar="BYTES",
        help="bytes held per direction of a connection (default: 256K)",
    )
    relay.add_argument(
        "--max-connections",
        type=_positive,
        default=256,
        metavar="N",
        help="connections open at once (default: 256)",
    )
    relay.add_argument(
        "--no-splice", action="store_true", help="always relay through Python (no os.splice)"
    )
    relay.set_defaults(run=_relay)

    demo = sub.add_parser(
        "demo",
        help="the embedded demo: a loopback swarm and a relay",
        description="Seed and download a payload between two torrent sessions on "
        "127.0.0.1 (through a local opentracker when installed), verify it, send it through "
        "a relay, and print what it measured.",
    )
    demo.add_argument(
        "--size",
        type=_positive,
        default=64,
        metavar="MIB",
        help="payload size in MiB (default: 64)",
    )
    demo.add_argument(
        "--inspect",
        metavar="ENDPOINT",
        help="serve pcpkit.inspect's live view there while the demo runs (read-only; "
        "a bare port means 127.0.0.1)",
    )
    demo.add_argument(
        "--inspect-allowed-host",
        action="append",
        default=[],
        type=_hostName,
        metavar="NAME",
        help="a Host name the inspector answers besides localhost and IP addresses "
        "(repeatable; '*': any name, behind a reverse proxy that checks it)",
    )
    demo.add_argument(
        "--no-tracker",
        action="store_true",
        help="connect the peers directly even when opentracker is installed",
    )
    demo.set_defaults(run=_demo)
    _remoteParser(sub)
    return parser


def _remoteParser(sub: Any) -> None:
    remote = sub.add_parser(
        "remote",
        help="control a running torrent daemon (twistd pcpkit torrent --http ...)",
        description="Control a torrent daemon through its JSON API: add, list, remove, "
        "pause, resume, recheck. Changes need the daemon's token: --token, the "
        "PCPKIT_TOKEN environment variable, or --state-dir (the daemon's state folder, "
        "which holds the file api-token).",
    )
    remote.add_argument(
        "--http",
        required=True,
        type=_daemonURL,
        metavar="URL",
        help="the daemon's HTTP address: http://HOST:PORT, HOST:PORT or PORT (127.0.0.1)",
    )
    remote.add_argument("--token", metavar="TOKEN", help="the daemon's API token")
    remote.add_argument(
        "--state-dir", metavar="DIR", help="the daemon's state folder (read api-token there)"
    )
    remote.add_argument(
        "--json", action="store_true", help="print the daemon's JSON answers, one per line"
    )
    actions = remote.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    add = actions.add_parser("add", help="add .torrent files or magnet links")
    add.add_argument("sources", nargs="+", metavar="TORRENT|MAGNET")
    actions.add_parser("list", help="list the torrents")
    rm = actions.add_parser("rm", help="remove torrents (their files are kept)")
    rm.add_argument("--delete-files", action="store_true", help="delete their downloaded files too")
    for name, what in (
        ("pause", "pause torrents"),
        ("resume", "resume paused torrents"),
        ("recheck", "check the data of torrents again"),
    ):
        p = actions.add_parser(name, help=what)
        p.add_argument(
            "torrents",
            nargs="+",
            metavar="TORRENT",
            help="info-hash, a unique prefix of it (4+ hex digits), or name",
        )
    rm.add_argument(
        "torrents",
        nargs="+",
        metavar="TORRENT",
        help="info-hash, a unique prefix of it (4+ hex digits), or name",
    )
    remote.set_defaults(run=_remote)


def _daemonURL(value: str) -> str:
    from pcpkit.torrent.remote import daemonURL

    try:
        return daemonURL(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- running on the reactor ------------------------------------------------------------------


#: seconds after a first Ctrl-C/SIGTERM from which a second one stops at once
SIGNAL_REPEAT = 0.5


class StopSignals:
    """
    What each Ctrl-C/SIGTERM means: the first, ``"stop"`` (clean up and end); one that comes
    :data:`SIGNAL_REPEAT` seconds or more after it, ``"force"`` (end at once); one sooner,
    ``"repeat"``: the same stop delivered twice, ignored.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.first: float | None = None

    def meaning(self) -> str:
        now = self.clock()
        if self.first is None:
            self.first = now
            return "stop"
        return "force" if now - self.first >= SIGNAL_REPEAT else "repeat"


def _runOnReactor(work: Callable[[Stopper], Awaitable[int]]) -> int:
    """
    Run ``work(stopper)`` on the reactor (started here, once) and return its exit status.

    The first Ctrl-C or SIGTERM stops ``stopper``: ``work`` is expected to clean up and
    return. A second one, :data:`SIGNAL_REPEAT` seconds or more later, stops at once (exit
    status 130); one sooner is the same stop delivered twice (``timeout`` sends its SIGTERM
    to the command and to its process group) and is ignored, so the clean-up still runs.
    """
    reactor = getReactor()
    stopper = Stopper()
    outcome = {"code": 1}
    signals = StopSignals()
    forced: list[bool] = []
    pending: list[bool] = [True]

    def hardStop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def forceStop() -> None:
        forced.append(True)
        hardStop()

    def onSignal(signum: int, frame: object) -> None:
        meaning = signals.meaning()
        if meaning == "stop":
            reactor.callFromThread(stopper.stop)
        elif meaning == "force":
            reactor.callFromThread(forceStop)

    def begin() -> None:
        # Twisted has installed its own handlers (SIGCHLD for child processes among them);
        # ours replace its SIGINT and SIGTERM ones, which would stop the reactor at once
        signal.signal(signal.SIGINT, onSignal)
        signal.signal(signal.SIGTERM, onSignal)
        d: Deferred[int] = ensureDeferred(_coroutine(work, stopper))

        def done(code: int) -> None:
            outcome["code"] = code

        def failed(failure: Failure) -> None:
            outcome["code"] = _report(failure)

        d.addCallbacks(done, failed)
        d.addBoth(lambda _: pending.clear())
        d.addBoth(lambda _: hardStop())

    reactor.callWhenRunning(begin)
    reactor.run()
    if forced and pending:
        # Stopped at once, its clean-up cut short: exit now, as asked. (Left to the
        # interpreter, the suspended coroutine's clean-up would run at exit with no reactor,
        # and print "coroutine ignored GeneratorExit".)
        _complain("pcpkit: stopped at once (a second Ctrl-C); the clean-up was cut short")
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)
    return outcome["code"]


async def _coroutine(work: Callable[[Stopper], Awaitable[int]], stopper: Stopper) -> int:
    return await work(stopper)


def _report(failure: Failure) -> int:
    """One line on stderr for a failure; its exit status."""
    from pcpkit.demo import DemoFailed
    from pcpkit.torrent.session import TorrentError

    err = failure.value
    if isinstance(err, CommandError):
        _complain(err.message)
        return err.code
    if isinstance(err, Interrupted):
        _complain("pcpkit: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(err, TorrentError):
        _complain(f"pcpkit: {err.reason}")
        return 1
    if isinstance(err, (DemoFailed, OSError)):
        _complain(f"pcpkit: {err}")
        return 1
    _complain(f"pcpkit: unexpected error: {type(err).__name__}: {err}")
    if os.environ.get("PCPKIT_DEBUG"):
        sys.stderr.write(failure.getTraceback())
    return 1


def _torrentSettings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"listen_interfaces": args.listen}
    if not args.listen.endswith(":0"):
        # a port asked for is that port or an error: libtorrent would quietly try the next
        # ten ports, then any port
        settings.update(max_retry_port_bind=0, listen_system_port_fallback=False)
    if args.dht:
        settings.update(enable_dht=True, enable_lsd=True, enable_upnp=True, enable_natpmp=True)
    if args.max_down or args.max_up:
        settings.update(
            download_rate_limit=args.max_down or 0,
            upload_rate_limit=args.max_up or 0,
            # limits apply on the local network too, where the peers may be
            ignore_limits_on_local_network=False,
        )
    return settings


def _listenHost(args: argparse.Namespace) -> str:
    return str(args.listen).rpartition(":")[0].strip("[]")


async def _startSession(
    args: argparse.Namespace, stopper: Stopper, savePath: str, command: str
) -> tuple[Any, int, list[tuple[str, int]]]:
    """A TorrentSession listening where ``--listen`` says, and the ``--peer`` addresses."""
    from pcpkit._endpoints import EndpointError, resolveHostPort
    from pcpkit._twisted import withTimeout
    from pcpkit.torrent.session import TorrentError, TorrentSession

    session = TorrentSession(0.5, savePath=savePath, settings=_torrentSettings(args))
    try:
        port = await stopper.wait(withTimeout(session.whenListening(), 15, "libtorrent to listen"))
    except (TorrentError, TimeoutError) as e:
        await session.stop()
        raise CommandError(
            f"pcpkit {command}: --listen {args.listen}: {getattr(e, 'reason', e)}"
        ) from None
    except BaseException:
        await session.stop()
        raise
    peers = []
    for host, peerPort in args.peer:
        try:
            peers.append(await stopper.wait(resolveHostPort(getReactor(), host, peerPort)))
        except EndpointError as e:
            await session.stop()
            raise _usage(f"pcpkit {command}: --peer: {e}") from None
    return session, port, peers


# -- make ------------------------------------------------------------------------------------


#: the largest .torrent file the command reads
MAX_TORRENT_FILE = 64 * 1024 * 1024


def _readTorrentFile(command: str, source: str) -> bytes:
    """
    The bytes of the .torrent file ``source``: a regular file of at most
    :data:`MAX_TORRENT_FILE` bytes, else a usage error. Opened without blocking first, so a
    FIFO (or a device) is refused instead of waiting for good for a writer.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _usage(f"pcpkit {command}: cannot read {source}: no such file") from None
    except IsADirectoryError:
        raise _usage(f"pcpkit {command}: {source} is a folder, not a .torrent file") from None
    except OSError as e:
        raise _usage(f"pcpkit {command}: cannot read {source}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise _usage(f"pcpkit {command}: {source} is a folder, not a .torrent file")
        raise _usage(f"pcpkit {command}: {source} is not a regular file (a FIFO, a device)")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_TORRENT_FILE + 1)
        except OSError as e:
            raise _usage(f"pcpkit {command}: cannot read {source}: {e.strerror or e}") from None
    if len(raw) > MAX_TORRENT_FILE:
        raise _usage(f"pcpkit {command}: {source} is too big to be a .torrent file")
    return raw


def _checkTorrentTarget(command: str, option: str, target: str, data: str) -> None:
    """Refuse a .torrent path that is the data being shared, or inside its folder."""
    from pcpkit.torrent.transfer import pathWithin

    if pathWithin(target, data):
        raise _usage(
            f"pcpkit {command}: {option} {target} is inside the data being shared ({data}); "
            "writing it there would change the data: write the .torrent elsewhere"
        )


def _writeTorrentFile(command: str, target: str, raw: bytes) -> None:
    """Write a .torrent atomically: a full disk leaves the old file (or none), never a part."""
    from pcpkit.torrent.transfer import atomicWrite

    try:
        atomicWrite(target, raw)
    except OSError as e:
        raise CommandError(f"pcpkit {command}: cannot write {target}: {e}") from None


def _make(args: argparse.Namespace) -> int:
    from pcpkit.torrent.maker import infohashOf, makeTorrent, torrentName
    from pcpkit.torrent.session import parseMetainfo

    out = _Output(args)
    path = args.path
    if not os.path.exists(path):
        raise _usage(f"pcpkit make: no such file or folder: {path}")
    total = _treeSize(path)
    if total == 0 and (os.path.isfile(path) or _hasFiles(path)):
        raise _usage(f"pcpkit make: {path} is empty (0 bytes): a torrent needs data to share")
    name = os.path.basename(os.path.abspath(path))
    target = args.output or f"{name}.torrent"
    if os.path.isdir(target):
        target = os.path.join(target, f"{name}.torrent")
    _checkTorrentTarget("make", "-o", target, path)
    out.startBar(f"hashing {name}", total)
    started = time.monotonic()

    def progress(done: int, pieces: int) -> None:
        if out.bar is not None:
            out.bar.update(total * done // pieces if pieces else 0)

    try:
        raw = makeTorrent(
            path,
            [[t] for t in args.tracker],
            args.piece_size,
            args.comment,
            version=args.version,
            progress=progress,
        )
    except ValueError as e:
        raise _usage(f"pcpkit make: {e}") from None
    except OSError as e:
        raise CommandError(f"pcpkit make: {e}") from None
    finally:
        out.endBar()
    _writeTorrentFile("make", target, raw)
    ti = parseMetainfo(raw)
    seconds = time.monotonic() - started
    infohash, magnet = infohashOf(raw), _magnet(raw)
    out.line(
        f"wrote {target}: {torrentName(raw)}, {formatBytes(total)} in {ti.num_files()} "
        f"file(s), {ti.num_pieces()} pieces of {formatBytes(ti.piece_length())}, hashed "
        f"in {seconds:.1f} s",
        "made",
        torrent=target,
        name=torrentName(raw),
        size=total,
        files=ti.num_files(),
        pieces=ti.num_pieces(),
        pieceSize=ti.piece_length(),
        infohash=infohash,
        magnet=magnet,
    )
    if not out.json:
        out.line(f"infohash {infohash}", "infohash")
        out.line(magnet, "magnet")
    return 0


def _treeSize(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(folder, f))
            except OSError:
                pass
    return total


def _hasFiles(path: str) -> bool:
    return any(files for _, _, files in os.walk(path))


def _magnet(raw: bytes, peer: tuple[str, int] | None = None) -> str:
    import libtorrent

    from pcpkit.torrent.session import parseMetainfo

    link = str(libtorrent.make_magnet_uri(parseMetainfo(raw)))  # type: ignore[no-untyped-call,unused-ignore]
    if peer is not None:
        host, port = peer
        link += f"&x.pe={'[' + host + ']' if ':' in host else host}:{port}"
    return link


# -- get -------------------------------------------------------------------------------------


def _readSource(source: str, command: str) -> tuple[bytes | None, str | None, str, str]:
    """``(rawmetainfo, magnet, name, infohash)`` of a .torrent path or magnet link."""
    from pcpkit.torrent.maker import infohashOf, torrentName
    from pcpkit.torrent.session import InvalidTorrent, parseMagnet, parseMetainfo

    if source.lower().startswith("magnet:"):
        try:
            info = parseMagnet(source)
        except InvalidTorrent as e:
            raise _usage(f"pcpkit {command}: {e.reason}") from None
        return None, source, info.name, info.infohash
    raw = _readTorrentFile(command, source)
    try:
        parseMetainfo(raw)
    except InvalidTorrent as e:
        raise _usage(f"pcpkit {command}: {source}: {e.reason}") from None
    return raw, None, torrentName(raw), infohashOf(raw)


def _outputFolder(folder: str, command: str) -> str:
    folder = os.path.abspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise _usage(f"pcpkit {command}: {folder} is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise _usage(f"pcpkit {command}: cannot make {folder}: {e.strerror}") from None
    return folder


def _files(raw: bytes) -> list[tuple[int, int, str]]:
    """``(number, size, path)`` of each file of a torrent (pad files left out)."""
    import libtorrent

    from pcpkit.torrent.session import fileLayout, parseMetainfo

    files = fileLayout(parseMetainfo(raw))
    pad = int(libtorrent.file_storage.flag_pad_file)
    return [
        (i, int(files.file_size(i)), str(files.file_path(i)))
        for i in range(files.num_files())
        if not int(files.file_flags(i)) & pad
    ]


def _get(args: argparse.Namespace) -> int:
    raw, magnet, name, infohash = _readSource(args.source, "get")
    if (args.list or args.files is not None) and raw is None:
        option = "--list" if args.list else "--files"
        raise _usage(
            f"pcpkit get: {option} needs a .torrent file (a magnet link does not list its files)"
        )
    if args.list:
        assert raw is not None
        out = _Output(args)
        for number, size, path in _files(raw):
            out.line(
                f"{number:>4}  {formatBytes(size):>9}  {path}",
                "file",
                index=number,
                size=size,
                path=path,
            )
        return 0
    if args.files is not None:
        assert raw is not None
        numbers = {n for n, _, _ in _files(raw)}
        unknown = [n for n in args.files if n not in numbers]
        if unknown:
            raise _usage(f"pcpkit get: --files: the torrent has no file {unknown[0]} (see --list)")
    folder = _outputFolder(args.output, "get")
    return _runOnReactor(
        lambda stopper: _download(args, stopper, raw, magnet, name, infohash, folder)
    )


async def _download(
    args: argparse.Namespace,
    stopper: Stopper,
    raw: bytes | None,
    magnet: str | None,
    name: str,
    infohash: str,
    folder: str,
) -> int:
    from pcpkit.torrent.session import TorrentError
    from pcpkit.torrent.transfer import download

    out = _Output(args)
    session, port, peers = await _startSession(args, stopper, folder, "get")
    resumeFile = os.path.join(folder, f"{name}.pcpkit-resume")
    transfer = None
    try:
        started: list[bool] = []

        def status(s: Any) -> None:
            if not started:
                # the first status: the torrent is in the session (and has resume data)
                started.append(True)
                out.line(
                    f"downloading {name} into {folder} (infohash {infohash}, listening "
                    f"on {_listenHost(args)}:{port})",
                    "started",
                    name=name,
                    infohash=infohash,
                    folder=folder,
                    port=port,
                )
                out.startBar(f"downloading {name}")
            out.status(s)

        transfer = download(
            session,
            raw,
            folder,
            magnet=magnet,
            resumeFile=resumeFile,
            peers=peers,
            onStatus=status,
            files=args.files,
        )
        try:
            result = await stopper.wait(transfer)
        except Interrupted:
            out.endBar()
            await transfer.close()
            if transfer.resumeError is not None:
                # said at any verbosity: the next get checks what is on disk, not resumes
                _complain(
                    f"pcpkit get: resume data not saved to {resumeFile}: {transfer.resumeError}"
                )
            elif os.path.exists(resumeFile):
                out.line(f"resume data saved to {resumeFile}", "resume", path=resumeFile)
            _complain("pcpkit get: interrupted before the download finished")
            return EXIT_INTERRUPTED
        except TorrentError as e:
            raise CommandError(f"pcpkit get: {e.reason}") from None
        seconds = result.seconds
        fetched = f"; fetched {formatBytes(result.downloaded)}" + (
            f" at {formatRate(result.downloaded / seconds)}" if seconds > 0 else ""
        )
        out.endBar()
        out.line(
            f"downloaded {result.name}: {formatBytes(result.totalSize)} in {seconds:.1f} s"
            + fetched,
            "downloaded",
            name=result.name,
            size=result.totalSize,
            fetched=result.downloaded,
            seconds=round(seconds, 3),
            folder=folder,
        )
        if not args.seed:
            return 0
        out.line(
            f"seeding {result.name} on {_listenHost(args)}:{port}; press Ctrl-C to stop",
            "seeding",
            name=result.name,
            port=port,
        )
        return await _seedUntilStopped(out, transfer, stopper, result.name)
    finally:
        out.endBar()
        if transfer is not None:
            await transfer.close()
        await session.stop()


# -- seed ------------------------------------------------------------------------------------


def _seed(args: argparse.Namespace) -> int:
    source = args.source
    if source.lower().endswith(".torrent") and os.path.isfile(source):
        raw, _, name, _ = _readSource(source, "seed")
        assert raw is not None
        folder = os.path.abspath(args.output)
        if not os.path.isdir(folder):
            raise _usage(f"pcpkit seed: no folder {folder} holding the data of {source}")
        _checkDataPresent(raw, folder, name)
        return _runOnReactor(lambda stopper: _seeding(args, stopper, raw, folder))
    if not os.path.exists(source):
        raise _usage(f"pcpkit seed: no such file or folder: {source}")
    if args.output != ".":
        raise _usage(
            "pcpkit seed: -o/--output is for seeding a .torrent; a PATH is seeded where it is"
        )
    if _treeSize(source) == 0:
        raise _usage(f"pcpkit seed: {source} is empty (0 bytes): nothing to share")
    return _runOnReactor(lambda stopper: _seedPath(args, stopper, source))


def _checkDataPresent(raw: bytes, folder: str, name: str) -> None:
    paths = [path for _, _, path in _files(raw)]
    if not any(os.path.exists(os.path.join(folder, p)) for p in paths):
        raise _usage(
            f"pcpkit seed: the data of {name} is not in {folder} "
            f"(looked for {paths[0]}); use -o DIR to say where it is"
        )


async def _seedUntilStopped(out: _Output, transfer: Transfer, stopper: Stopper, name: str) -> int:
    """Show the upload line until Ctrl-C, then say so: the end of both ``seed`` forms."""
    out.startBar(f"seeding {name}: uploaded", interval=10.0)
    transfer.onStatus = lambda s: out.status(s, "totalUploaded", "upRate")
    try:
        await stopper.wait(Deferred())
    except Interrupted:
        pass
    out.endBar()
    out.line("stopped seeding", "stopped")
    return 0


async def _seedPath(args: argparse.Namespace, stopper: Stopper, path: str) -> int:
    from twisted.internet.threads import deferToThread

    from pcpkit.torrent.maker import makeTorrent

    out = _Output(args)
    path = os.path.abspath(path)
    if args.save_torrent:
        _checkTorrentTarget("seed", "--save-torrent", args.save_torrent, path)
    total = _treeSize(path)
    out.startBar(f"hashing {os.path.basename(path)}", total)

    def progress(done: int, pieces: int) -> None:
        if stopper.stopped:
            raise Interrupted()
        if out.bar is not None:
            getReactor().callFromThread(out.bar.update, total * done // pieces if pieces else 0)

    try:
        raw = await stopper.wait(
            deferToThread(
                makeTorrent, path, [[t] for t in args.tracker], None, None, progress=progress
            )
        )
    except Interrupted:
        out.endBar()
        _complain("pcpkit seed: interrupted while hashing")
        return EXIT_INTERRUPTED
    except ValueError as e:
        raise _usage(f"pcpkit seed: {e}") from None
    finally:
        out.endBar()
    if args.save_torrent:
        _writeTorrentFile("seed", args.save_torrent, raw)
        out.line(f"wrote {args.save_torrent}", "wrote", path=args.save_torrent)
    return await _seeding(args, stopper, raw, os.path.dirname(path))


async def _seeding(args: argparse.Namespace, stopper: Stopper, raw: bytes, folder: str) -> int:
    from pcpkit.torrent.maker import infohashOf, torrentName
    from pcpkit.torrent.session import TorrentError, parseMetainfo
    from pcpkit.torrent.transfer import seed

    out = _Output(args)
    name, infohash = torrentName(raw), infohashOf(raw)
    size = int(parseMetainfo(raw).total_size())
    session, port, peers = await _startSession(args, stopper, folder, "seed")
    transfer = None
    try:
        out.line(
            f"checking {name} ({formatBytes(size)}) in {folder}",
            "checking",
            name=name,
            folder=folder,
            size=size,
        )
        transfer = seed(session, raw, folder, peers=peers)
        try:
            await stopper.wait(transfer)
        except Interrupted:
            _complain("pcpkit seed: interrupted while checking")
            return EXIT_INTERRUPTED
        except TorrentError as e:
            raise CommandError(f"pcpkit seed: {e.reason}") from None
        host = _listenHost(args)
        peer = None if host in ("0.0.0.0", "::") else (host, port)
        magnet = _magnet(raw, peer)
        out.line(
            f"seeding {name} ({formatBytes(size)}) from {folder}",
            "seeding",
            name=name,
            folder=folder,
            size=size,
            infohash=infohash,
            host=host,
            port=port,
            magnet=magnet,
        )
        if not out.json:
            out.line(f"infohash {infohash}", "infohash")
            out.line(f"listening on {host}:{port}", "listening")
            out.line(magnet, "magnet")
            out.line("press Ctrl-C to stop", "help")
        return await _seedUntilStopped(out, transfer, stopper, name)
    finally:
        out.endBar()
        if transfer is not None:
            await transfer.close()
        await session.stop()


# -- relay -----------------------------------------------------------------------------------


def _relay(args: argparse.Namespace) -> int:
    from pcpkit._endpoints import (
        EndpointError,
        clientEndpoint,
        connectDescription,
        listenDescription,
        reasonLine,
        serverEndpoint,
    )
    from pcpkit.internet.relay import Relay

    checked = []
    for which, value, parse, make in (
        ("listen", args.listen, listenDescription, serverEndpoint),
        ("connect", args.connect, connectDescription, clientEndpoint),
    ):
        # parsed now: a typo is a usage error naming the argument, not a traceback
        try:
            description = parse(value)
            make(description)
        except EndpointError as e:
            raise _usage(f"pcpkit relay: bad {which} endpoint: {e}") from None
        checked.append(description)
    try:
        relay = Relay(
            checked[0],
            checked[1],
            bufferSize=args.buffer,
            maxConnections=args.max_connections,
            splice=False if args.no_splice else None,
        )
    except Exception as e:
        raise _usage(f"pcpkit relay: {reasonLine(e)}") from None
    return _runOnReactor(lambda stopper: _relaying(relay, stopper))


async def _relaying(relay: Any, stopper: Stopper) -> int:
    from pcpkit._endpoints import describeAddress, reasonLine

    try:
        port = await stopper.wait(relay.start())
    except Interrupted:
        await relay.stop()
        return 0
    except Exception as e:
        raise CommandError(
            f"pcpkit relay: cannot listen on {relay.listenDescription}: {reasonLine(e)}"
        ) from None
    _say(
        f"relaying {describeAddress(port.getHost())} -> "
        f"{relay.connectDescription} ({'splice' if relay.usesSplice else 'portable'} path, "
        f"{relay.bufferSize} bytes per direction); press Ctrl-C to stop"
    )
    display = _RelayDisplay(relay)
    try:
        await stopper.wait(Deferred())
    except Interrupted:
        pass
    finally:
        display.stop()
        await relay.stop()
    s = relay.stats
    _say(
        f"relay stopped: {s.total} connection(s), {formatBytes(s.toTarget.bytes)} to the target, "
        f"{formatBytes(s.toClient.bytes)} back, {s.toTarget.pauses + s.toClient.pauses} pauses, "
        f"{s.refused} refused, {s.failedDials} failed dials"
    )
    return 0


class _RelayDisplay:
    """The relay's counters: redrawn every second on a terminal, a line per change else."""

    def __init__(self, relay: Any) -> None:
        from twisted.internet.task import LoopingCall

        self.relay = relay
        self.tty = sys.stdout.isatty()
        self.last = ""
        self.lastTime = 0.0
        self.width = 0
        self.previous = (time.monotonic(), 0)
        self.loop = LoopingCall(self.tick)
        self.loop.clock = getReactor()
        self.loop.start(1.0, now=False)

    def tick(self) -> None:
        s = self.relay.stats
        now = time.monotonic()
        moved = s.toTarget.bytes + s.toClient.bytes
        rate = (moved - self.previous[1]) / max(1e-6, now - self.previous[0])
        self.previous = (now, moved)
        line = (
            f"{s.active} open / {s.total} total, {formatBytes(s.toTarget.bytes)} out, "
            f"{formatBytes(s.toClient.bytes)} back, {formatRate(rate)}, "
            f"{s.toTarget.pauses + s.toClient.pauses} pauses"
        )
        if self.tty:
            sys.stdout.write("\r" + line + " " * max(0, self.width - len(line)))
            sys.stdout.flush()
            self.width = len(line)
        elif line != self.last and now - self.lastTime >= 10:
            self.last, self.lastTime = line, now
            _say(line)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()
        if self.tty and self.width:
            sys.stdout.write("\r" + " " * self.width + "\r")
            sys.stdout.flush()


# -- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    return _runOnReactor(lambda stopper: _demoRun(args, stopper))


async def _demoRun(args: argparse.Namespace, stopper: Stopper) -> int:
    if args.inspect_allowed_host and not args.inspect:
        raise _usage("pcpkit demo: --inspect-allowed-host needs --inspect ENDPOINT")
    inspector = (
        await _startInspector(args.inspect, args.inspect_allowed_host) if args.inspect else None
    )
    try:
        return await _demoSteps(args, stopper)
    finally:
        if inspector is not None:
            await inspector.stop()


async def _startInspector(value: str, allowedHosts: list[str]) -> Any:
    from pcpkit._endpoints import EndpointError, listenDescription, reasonLine
    from pcpkit.inspect import InspectServer

    try:
        description = listenDescription(value)
    except EndpointError as e:
        raise _usage(f"pcpkit demo: bad --inspect endpoint: {e}") from None
    server = InspectServer(description, allowedHosts=allowedHosts)
    try:
        port = await server.start()
    except Exception as e:
        raise CommandError(f"pcpkit demo: --inspect {value}: {reasonLine(e)}") from None
    addr = port.getHost()
    _say(f"inspector: http://{addr.host}:{addr.port}/")
    return server


async def _demoSteps(args: argparse.Namespace, stopper: Stopper) -> int:
    from pcpkit.demo import DemoFailed, runDemo

    try:
        await runDemo(
            args.size,
            write=_say,
            progress=_progress,
            stopper=stopper,
            useTracker=False if args.no_tracker else None,
        )
    except Interrupted:
        _complain("pcpkit demo: interrupted (temporary files removed)")
        return EXIT_INTERRUPTED
    except DemoFailed as e:
        raise CommandError(f"pcpkit demo: {e}") from None
    return 0


# -- remote ----------------------------------------------------------------------------------


def _remote(args: argparse.Namespace) -> int:
    from pcpkit.torrent.daemon import TOKEN_RULE, isToken

    token = args.token or os.environ.get("PCPKIT_TOKEN") or None
    if token is not None and not isToken(token):
        where = "--token" if args.token else "PCPKIT_TOKEN"
        raise _usage(f"pcpkit remote: {where}: not an API token (a token is {TOKEN_RULE})")
    if token is None and args.state_dir:
        from pcpkit.torrent.remote import readToken

        try:
            token = readToken(args.state_dir)
        except ValueError as e:
            raise _usage(f"pcpkit remote: --state-dir: {e}") from None
    if token is None and args.action != "list":
        raise _usage(
            "pcpkit remote: this needs the daemon's token: --token, PCPKIT_TOKEN or "
            "--state-dir DIR (the daemon's state folder, holding api-token)"
        )
    sources: list[tuple[bytes | None, str | None, str]] = []
    if args.action == "add":
        for source in args.sources:
            if source.startswith("magnet:"):
                sources.append((None, source, source))
                continue
            sources.append((_readTorrentFile("remote add", source), None, source))
    return _runOnReactor(lambda stopper: _remoteRun(args, token, sources))


async def _remoteRun(
    args: argparse.Namespace, token: str | None, sources: list[tuple[bytes | None, str | None, str]]
) -> int:
    from pcpkit.torrent.remote import RemoteDaemon, RemoteError

    remote = RemoteDaemon(args.http, token)

    def show(value: Any, text: str) -> None:
        _say(json.dumps(value, sort_keys=True) if args.json else text)

    failed = 0
    try:
        if args.action == "list":
            torrents = await remote.torrents()
            for t in torrents:
                problem = t.get("error") or t.get("trackerError")
                show(
                    t,
                    f"{t['infohash'][:12]}  {float(t['fractionDone']) * 100:5.1f}%  "
                    f"{t['activity']:<12} {formatRate(int(t['downRate'])):>11} down  "
                    f"{formatRate(int(t['upRate'])):>11} up  {t['name']}"
                    + (f"  ({problem})" if problem else ""),
                )
            if not torrents and not args.json:
                _say("no torrents")
            return 0
        # one change per item: its label, and what makes it (its answer, what to print)
        verb = {"rm": "removed", "pause": "paused", "resume": "resumed", "recheck": "rechecking"}

        async def change(key: str) -> tuple[Any, str]:
            infohash = await remote.resolve(key)
            if args.action == "rm":
                return await remote.remove(infohash, args.delete_files), infohash
            return await remote.action(infohash, args.action), infohash

        async def add(source: tuple[bytes | None, str | None, str]) -> tuple[Any, str]:
            added = await remote.add(metainfo=source[0], magnet=source[1])
            return added, f"{added['name']} ({added['infohash']})"

        items: list[tuple[str, Callable[[], Awaitable[tuple[Any, str]]]]]
        if args.action == "add":
            items = [(source[2], functools.partial(add, source)) for source in sources]
        else:
            items = [(key, functools.partial(change, key)) for key in args.torrents]
        for label, work in items:
            try:
                answer, what = await work()
            except RemoteError as e:
                if e.code == 0:
                    raise
                _complain(f"pcpkit remote {args.action}: {label}: {e.message}")
                failed += 1
                continue
            show(answer, f"{verb.get(args.action, 'added')} {what}")
        return 1 if failed else 0
    except RemoteError as e:
        raise CommandError(f"pcpkit remote: {e.message}") from None


# -- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The ``pcpkit`` console command; returns the exit status."""
    from pcpkit import __version__  # written once, in pcpkit/__init__.py

    parser = _buildParser()
    parser.add_argument("--version", action="version", version=f"pcpkit {__version__}")
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.verbose:
            from twisted.logger import globalLogBeginner, textFileLogObserver

            observer: Any = textFileLogObserver(sys.stderr)
            globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except CommandError as e:
        _complain(e.message)
        return e.code
    except KeyboardInterrupt:
        _complain("pcpkit: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except Exception as e:
        # a bug of ours, still reported as one line (PCPKIT_DEBUG=1 shows the traceback)
        _complain(f"pcpkit: unexpected error: {type(e).__name__}: {e}")
        if os.environ.get("PCPKIT_DEBUG"):
            import traceback

            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
