"""
The ``pcpkit`` command.

::

    pcpkit make PATH [-t TRACKER ...] [-o OUT] [--piece-size BYTES] [--version v1|v2|hybrid]
    pcpkit get TORRENT|MAGNET [-o DIR] [--peer HOST:PORT ...] [--seed]
    pcpkit seed PATH|TORRENT [-o DIR] [--peer HOST:PORT ...] [-t TRACKER ...]
    pcpkit relay LISTEN CONNECT [--buffer BYTES] [--max-connections N]
    pcpkit demo [--size MIB]

Long work shows a progress bar (rate, time left) on a terminal and a plain line every few
seconds otherwise. Errors are one line on stderr. Exit status:

* ``0`` -- done; also after Ctrl-C (or SIGTERM) ends a command that runs until stopped
  (``seed``, ``get --seed`` once downloaded, ``relay``);
* ``1`` -- the work failed at run time (a torrent error, a port in use, a corrupt copy);
* ``2`` -- bad usage or bad input (unknown option, not a torrent, bad magnet link, bad
  endpoint, missing file);
* ``130`` -- Ctrl-C interrupted unfinished work (a download, ``make``, the demo).

The torrent commands listen on ``127.0.0.1`` unless ``--listen`` says otherwise, with
DHT, local peer discovery, UPnP and NAT-PMP off unless ``--dht`` is given: by default
nothing reaches beyond this machine except what the torrent's trackers and ``--peer`` say.
Interrupting ``get`` or ``seed`` saves the torrent's resume data next to its files as
``<name>.pcpkit-resume``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from pcpkit._progress import Progress
from pcpkit._twisted import getReactor

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
    """A line on stdout, flushed (the command is often read through a pipe)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _complain(line: str) -> None:
    """A line on stderr."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _progress(label: str, total: int, interval: float = 2.0) -> Progress:
    return Progress(label, total, stream=sys.stdout, interval=interval)


# -- argument parsing ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise _usage(f"{self.prog}: {message} (see '{self.prog} --help')")


def _byteCount(value: str) -> int:
    """``"262144"``, ``"256K"``, ``"4M"``, ``"1G"`` (binary units) -> bytes."""
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    scale = 1
    if text and text[-1] in "KMG":
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}[text[-1]]
        text = text[:-1]
    try:
        n = int(text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a byte count (like 262144, 256K or 4M)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
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
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (IP address, port); names are resolved."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host, int(port)
    except OSError:
        pass
    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot resolve {host!r}: {e}") from None
    return str(info[0][4][0]), int(port)


def _listenInterfaces(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not ADDRESS:PORT (like 127.0.0.1:0 or 0.0.0.0:6881)")
    return value


def _buildParser() -> _Parser:
    parser = _Parser(
        prog="pcpkit",
        description="Flow-controlled transfers on Twisted: torrents, a TCP relay, a demo.",
        epilog="Exit status: 0 done (or Ctrl-C ending seed/relay), 1 failed, "
        "2 bad usage or input, 130 interrupted.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log Twisted and libtorrent events to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    make = sub.add_parser("make", help="make a .torrent of a file or folder",
                          description="Make a .torrent of a file or a folder.")
    make.add_argument("path", metavar="PATH", help="the file or folder to share")
    make.add_argument("-t", "--tracker", action="append", default=[], metavar="URL",
                      help="announce URL (repeat for more trackers, one tier each)")
    make.add_argument("-o", "--output", metavar="OUT",
                      help="the .torrent file, or a folder for NAME.torrent "
                      "(default: NAME.torrent here)")
    make.add_argument("--piece-size", type=_byteCount, metavar="BYTES",
                      help="bytes per piece, a power of two >= 16K (default: automatic)")
    make.add_argument("--version", choices=("v1", "v2", "hybrid"), default="v1",
                      help="BitTorrent version of the metadata (default: v1)")
    make.add_argument("--comment", help="the torrent's comment")
    make.set_defaults(run=_make)

    def torrentOptions(p: argparse.ArgumentParser) -> None:
        p.add_argument("--peer", action="append", default=[], type=_peer,
                       metavar="HOST:PORT", help="connect to this peer (repeatable)")
        p.add_argument("--listen", type=_listenInterfaces, default="127.0.0.1:0",
                       metavar="ADDRESS:PORT",
                       help="libtorrent listen interface (default: 127.0.0.1:0)")
        p.add_argument("--dht", action="store_true",
                       help="turn on DHT, local peer discovery, UPnP and NAT-PMP")

    get = sub.add_parser("get", help="download a torrent",
                         description="Download a torrent (a .torrent file or a magnet link).")
    get.add_argument("source", metavar="TORRENT|MAGNET", help=".torrent file or magnet link")
    get.add_argument("-o", "--output", default=".", metavar="DIR",
                     help="folder to download into (default: here)")
    get.add_argument("--seed", action="store_true",
                     help="keep seeding once downloaded, until Ctrl-C")
    torrentOptions(get)
    get.set_defaults(run=_get)

    seed = sub.add_parser(
        "seed", help="seed a file, folder or .torrent",
        description="Seed a file or folder (the torrent is made in memory; its magnet link "
        "is printed), or a .torrent whose data is in DIR. Runs until Ctrl-C.")
    seed.add_argument("source", metavar="PATH|TORRENT",
                      help="a file or folder to share, or a .torrent file")
    seed.add_argument("-o", "--output", default=".", metavar="DIR",
                      help="folder holding a .torrent's data (default: here)")
    seed.add_argument("-t", "--tracker", action="append", default=[], metavar="URL",
                      help="announce URL for a torrent made here (repeatable)")
    seed.add_argument("--save-torrent", metavar="FILE",
                      help="also write the torrent made here to FILE")
    torrentOptions(seed)
    seed.set_defaults(run=_seed)

    relay = sub.add_parser(
        "relay", help="a flow-controlled TCP relay",
        description="Relay every connection accepted on LISTEN to a new connection to "
        "CONNECT, until Ctrl-C. Endpoints are Twisted endpoint strings "
        "(tcp:8080:interface=127.0.0.1, tcp:example.com:80, unix:/path); a bare port "
        "listens on 127.0.0.1, and HOST:PORT connects over TCP.")
    relay.add_argument("listen", metavar="LISTEN", help="server endpoint or port")
    relay.add_argument("connect", metavar="CONNECT", help="client endpoint or HOST:PORT")
    relay.add_argument("--buffer", type=_byteCount, default=262144, metavar="BYTES",
                       help="bytes held per direction of a connection (default: 256K)")
    relay.add_argument("--max-connections", type=_positive, default=256, metavar="N",
                       help="connections open at once (default: 256)")
    relay.add_argument("--no-splice", action="store_true",
                       help="always relay through Python (no os.splice)")
    relay.set_defaults(run=_relay)

    demo = sub.add_parser(
        "demo", help="the embedded demo: a loopback swarm and a relay",
        description="Seed and download a payload between two torrent sessions on "
        "127.0.0.1 (through a local opentracker when installed), verify it, send it through "
        "a relay, and print what it measured.")
    demo.add_argument("--size", type=_positive, default=64, metavar="MIB",
                      help="payload size in MiB (default: 64)")
    demo.add_argument("--no-tracker", action="store_true",
                      help="connect the peers directly even when opentracker is installed")
    demo.set_defaults(run=_demo)
    return parser


# -- running on the reactor ------------------------------------------------------------------


def _runOnReactor(work: Callable[[Any], Awaitable[int]]) -> int:
    """
    Run ``work(stopper)`` on the reactor (started here, once) and return its exit status.

    The first Ctrl-C or SIGTERM stops ``stopper``: ``work`` is expected to clean up and
    return. A second one stops the reactor at once.
    """
    from pcpkit.demo import Stopper

    reactor = getReactor()
    stopper = Stopper()
    outcome = {"code": 1}

    def hardStop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def onSignal(signum: int, frame: object) -> None:
        if stopper.stopped:
            reactor.callFromThread(hardStop)
        else:
            reactor.callFromThread(stopper.stop)

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
        d.addBoth(lambda _: hardStop())

    reactor.callWhenRunning(begin)
    reactor.run()
    return outcome["code"]


async def _coroutine(work: Callable[[Any], Awaitable[int]], stopper: Any) -> int:
    return await work(stopper)


def _report(failure: Failure) -> int:
    """One line on stderr for a failure; its exit status."""
    from pcpkit.demo import DemoFailed, Interrupted
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
        _complain(failure.getTraceback())
    return 1


def _torrentSettings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"listen_interfaces": args.listen}
    if args.dht:
        settings.update(enable_dht=True, enable_lsd=True, enable_upnp=True,
                        enable_natpmp=True)
    return settings


def _listenHost(args: argparse.Namespace) -> str:
    return str(args.listen).rpartition(":")[0].strip("[]")


# -- make ------------------------------------------------------------------------------------


def _make(args: argparse.Namespace) -> int:
    from pcpkit.torrent.maker import infohashOf, makeTorrent, torrentName
    from pcpkit.torrent.session import parseMetainfo

    path = args.path
    if not os.path.exists(path):
        raise _usage(f"pcpkit make: no such file or folder: {path}")
    total = _treeSize(path)
    name = os.path.basename(os.path.abspath(path))
    out = args.output or f"{name}.torrent"
    if os.path.isdir(out):
        out = os.path.join(out, f"{name}.torrent")
    bar = _progress(f"hashing {name}", total)
    started = time.monotonic()

    def progress(done: int, pieces: int) -> None:
        bar.update(total * done // pieces if pieces else 0)

    try:
        raw = makeTorrent(path, [[t] for t in args.tracker], args.piece_size, args.comment,
                          version=args.version, progress=progress)
    except ValueError as e:
        raise _usage(f"pcpkit make: {e}") from None
    except OSError as e:
        raise CommandError(f"pcpkit make: {e}") from None
    finally:
        bar.finish()
    try:
        with open(out, "wb") as f:
            f.write(raw)
    except OSError as e:
        raise CommandError(f"pcpkit make: cannot write {out}: {e}") from None
    ti = parseMetainfo(raw)
    seconds = time.monotonic() - started
    _say(f"wrote {out}: {torrentName(raw)}, {_size(total)} in {ti.num_files()} file(s), "
         f"{ti.num_pieces()} pieces of {_size(ti.piece_length())}, hashed in "
         f"{seconds:.1f} s")
    _say(f"infohash {infohashOf(raw)}")
    _say(_magnet(raw))
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


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


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
    try:
        with open(source, "rb") as f:
            raw = f.read(64 * 1024 * 1024 + 1)
    except FileNotFoundError:
        raise _usage(f"pcpkit {command}: no such file: {source}") from None
    except IsADirectoryError:
        raise _usage(f"pcpkit {command}: {source} is a folder, not a .torrent file") from None
    except OSError as e:
        raise _usage(f"pcpkit {command}: cannot read {source}: {e.strerror}") from None
    if len(raw) > 64 * 1024 * 1024:
        raise _usage(f"pcpkit {command}: {source} is too big to be a .torrent file")
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


def _get(args: argparse.Namespace) -> int:
    raw, magnet, name, infohash = _readSource(args.source, "get")
    folder = _outputFolder(args.output, "get")
    settings = _torrentSettings(args)
    return _runOnReactor(
        lambda stopper: _download(args, stopper, raw, magnet, name, infohash, folder, settings))


async def _download(
    args: argparse.Namespace, stopper: Any, raw: bytes | None, magnet: str | None, name: str,
    infohash: str, folder: str, settings: dict[str, Any],
) -> int:
    from pcpkit.demo import Interrupted, PatronDriver
    from pcpkit.torrent.ipc import TIPCCreateNewTorrent
    from pcpkit.torrent.session import TorrentError

    driver = PatronDriver(tickInterval=0.5, savePath=folder, settings=settings)
    tid: int | None = None
    seeding = False
    bar: Progress | None = None
    try:
        tid = await stopper.wait(driver.addTorrent(TIPCCreateNewTorrent(
            rawmetainfo=raw, magnet=magnet, savefolder=folder, peers=tuple(args.peer))))
        _say(f"downloading {name} into {folder} (infohash {infohash}, "
             f"listening on {_listenHost(args)}:{driver.listenPort})")
        started = time.monotonic()
        progressBar = bar = _progress(f"downloading {name}", 0)

        def status(_: int, s: dict[str, Any]) -> None:
            progressBar.total = int(s.get("totalSize") or 0)
            progressBar.label = f"downloading {s.get('name') or name}"
            progressBar.update(int(s.get("totalDone", 0)), float(s.get("downRate") or 0) or None,
                               f"{s.get('numPeers', 0)} peers")

        driver.onStatus = status
        await stopper.wait(driver.whenFinished(tid))
        seconds = time.monotonic() - started
        last: dict[str, Any] = dict(driver.statuses.get(tid, {}))
        session = driver.session
        if session is not None and not session.stopped:
            last.update(session.status(tid))
        size = int(last.get("totalSize") or 0)
        name = str(last.get("name") or name)
        bar.finish(f"downloaded {name}: {_size(size)} in {seconds:.1f} s"
                   + (f" ({size / seconds / 1e6:.1f} MB/s)" if size and seconds > 0 else ""))
        if not args.seed:
            return 0
        seeding = True
        _say(f"seeding {name} on {_listenHost(args)}:{driver.listenPort}; "
             "press Ctrl-C to stop")
        bar = _seedingDisplay(driver, name)
        await stopper.wait(Deferred())
        return 0  # pragma: no cover - only an interruption ends the wait
    except Interrupted:
        if bar is not None:
            bar.finish()
        if tid is not None:
            await _saveResume(driver, tid, folder, driver.statuses.get(tid, {}).get("name")
                              or name)
        if seeding:
            _say("stopped seeding")
            return 0
        _complain("pcpkit get: interrupted before the download finished")
        return EXIT_INTERRUPTED
    except TorrentError as e:
        raise CommandError(f"pcpkit get: {e.reason}") from None
    finally:
        if bar is not None:
            bar.finish()
        await driver.leave()


def _seedingDisplay(driver: Any, name: str) -> Progress:
    bar = _progress(f"seeding {name}: uploaded", 0, interval=10.0)

    def status(_: int, s: dict[str, Any]) -> None:
        bar.update(int(s.get("totalUploaded", 0)), float(s.get("upRate") or 0) or None,
                   f"{s.get('numPeers', 0)} peers")

    driver.onStatus = status
    return bar


async def _saveResume(driver: Any, tid: int, folder: str, name: str) -> None:
    from pcpkit.torrent.session import TorrentError

    path = os.path.join(folder, f"{name}.pcpkit-resume")
    try:
        await driver.saveResumeData(tid, path)
    except (TorrentError, OSError) as e:
        _complain(f"pcpkit: resume data not saved: {getattr(e, 'reason', e)}")
        return
    _say(f"resume data saved to {path}")


# -- seed ------------------------------------------------------------------------------------


def _seed(args: argparse.Namespace) -> int:
    source = args.source
    settings = _torrentSettings(args)
    if source.lower().endswith(".torrent") and os.path.isfile(source):
        raw, _, name, _ = _readSource(source, "seed")
        folder = os.path.abspath(args.output)
        if not os.path.isdir(folder):
            raise _usage(f"pcpkit seed: no folder {folder} holding the data of {source}")
        _checkDataPresent(raw, folder, name)
        return _runOnReactor(lambda stopper: _seeding(args, stopper, raw, folder, settings))
    if not os.path.exists(source):
        raise _usage(f"pcpkit seed: no such file or folder: {source}")
    if args.output != ".":
        raise _usage("pcpkit seed: -o/--output is for seeding a .torrent; a PATH is "
                     "seeded where it is")
    return _runOnReactor(lambda stopper: _seedPath(args, stopper, source, settings))


def _checkDataPresent(raw: bytes | None, folder: str, name: str) -> None:
    import libtorrent

    from pcpkit.torrent.session import parseMetainfo

    files = parseMetainfo(raw).files()
    pad = int(libtorrent.file_storage.flag_pad_file)
    paths = [files.file_path(i) for i in range(files.num_files())
             if not int(files.file_flags(i)) & pad]
    if not any(os.path.exists(os.path.join(folder, p)) for p in paths):
        raise _usage(f"pcpkit seed: the data of {name} is not in {folder} "
                     f"(looked for {paths[0]}); use -o DIR to say where it is")


async def _seedPath(
    args: argparse.Namespace, stopper: Any, path: str, settings: dict[str, Any]
) -> int:
    from twisted.internet.threads import deferToThread

    from pcpkit.demo import Interrupted
    from pcpkit.torrent.maker import makeTorrent

    path = os.path.abspath(path)
    total = _treeSize(path)
    bar = _progress(f"hashing {os.path.basename(path)}", total)

    def progress(done: int, pieces: int) -> None:
        if stopper.stopped:
            raise Interrupted()
        getReactor().callFromThread(bar.update, total * done // pieces if pieces else 0)

    try:
        raw = await stopper.wait(deferToThread(
            makeTorrent, path, [[t] for t in args.tracker], None, None, progress=progress))
    except Interrupted:
        bar.finish()
        _complain("pcpkit seed: interrupted while hashing")
        return EXIT_INTERRUPTED
    except ValueError as e:
        raise _usage(f"pcpkit seed: {e}") from None
    finally:
        bar.finish()
    if args.save_torrent:
        try:
            with open(args.save_torrent, "wb") as f:
                f.write(raw)
        except OSError as e:
            raise CommandError(f"pcpkit seed: cannot write {args.save_torrent}: {e}") from None
        _say(f"wrote {args.save_torrent}")
    return await _seeding(args, stopper, raw, os.path.dirname(path), settings)


async def _seeding(
    args: argparse.Namespace, stopper: Any, raw: bytes | None, folder: str,
    settings: dict[str, Any],
) -> int:
    from pcpkit.demo import Interrupted, PatronDriver
    from pcpkit.torrent.ipc import TIPCCreateNewTorrent
    from pcpkit.torrent.maker import infohashOf, torrentName
    from pcpkit.torrent.session import TorrentError

    assert raw is not None
    name, infohash = torrentName(raw), infohashOf(raw)
    driver = PatronDriver(tickInterval=0.5, savePath=folder, settings=settings)
    tid: int | None = None
    bar: Progress | None = None
    try:
        tid = await stopper.wait(driver.addTorrent(TIPCCreateNewTorrent(
            rawmetainfo=raw, savefolder=folder, peers=tuple(args.peer))))
        # complete data makes the torrent finish after its check; a check that leaves it
        # downloading means the data is missing or wrong
        checked: Deferred[None] = Deferred()

        def finished(result: object) -> None:
            if not checked.called:
                if isinstance(result, Failure):
                    checked.errback(result)
                else:
                    checked.callback(None)

        driver.whenFinished(tid).addBoth(finished)
        checkBar = bar = _progress(f"checking {name}", 0)

        def checking(_: int, s: dict[str, Any]) -> None:
            state = str(s.get("state", ""))
            checkBar.total = int(s.get("totalSize") or 0)
            checkBar.update(int(s.get("totalDone", 0)))
            if state == "downloading" and not checked.called:
                checked.errback(TorrentError(
                    f"cannot seed {name}: its data in {folder} is missing or incomplete "
                    f"({float(s.get('fractionDone', 0)) * 100:.1f}% present)"))

        driver.onStatus = checking
        await stopper.wait(checked)
        bar.finish()
        port = driver.listenPort
        host = _listenHost(args)
        peer = None if host in ("0.0.0.0", "::") else (host, port)
        _say(f"seeding {name} ({_size(_torrentSize(raw))}) from {folder}")
        _say(f"infohash {infohash}")
        _say(f"listening on {host}:{port}")
        _say(_magnet(raw, peer))
        _say("press Ctrl-C to stop")
        bar = _seedingDisplay(driver, name)
        await stopper.wait(Deferred())
        return 0  # pragma: no cover - only an interruption ends the wait
    except Interrupted:
        if bar is not None:
            bar.finish()
        if tid is not None:
            await _saveResume(driver, tid, folder, name)
        _say("stopped seeding")
        return 0
    except TorrentError as e:
        raise CommandError(f"pcpkit seed: {e.reason}") from None
    finally:
        if bar is not None:
            bar.finish()
        await driver.leave()


def _torrentSize(raw: bytes) -> int:
    from pcpkit.torrent.session import parseMetainfo

    return int(parseMetainfo(raw).total_size())


# -- relay -----------------------------------------------------------------------------------


def _relay(args: argparse.Namespace) -> int:
    from pcpkit.internet.relay import Relay

    listen, connect = args.listen, args.connect
    connect = _hostPortEndpoint(connect)
    _checkEndpoint(listen, server=True)
    _checkEndpoint(connect, server=False)
    try:
        relay = Relay(listen, connect, bufferSize=args.buffer,
                      maxConnections=args.max_connections,
                      splice=False if args.no_splice else None)
    except Exception as e:
        raise _usage(f"pcpkit relay: {_reason(e)}") from None
    return _runOnReactor(lambda stopper: _relaying(relay, stopper))


def _hostPortEndpoint(description: str) -> str:
    """``HOST:PORT`` or ``[V6]:PORT`` (not an endpoint string) -> ``tcp:HOST:PORT``."""
    host, sep, port = description.rpartition(":")
    if not sep or not host or not port.isdigit():
        return description
    if host.startswith("[") and host.endswith("]"):
        return "tcp:" + host[1:-1].replace(":", "\\:") + ":" + port
    if ":" not in host and ("." in host or host == "localhost"):
        return f"tcp:{host}:{port}"
    return description


def _checkEndpoint(description: str, server: bool) -> None:
    """Parse an endpoint string now: a typo is a usage error, not a traceback."""
    from pcpkit._twisted import clientEndpoint, serverEndpoint

    which = "listen" if server else "connect"
    if server and description.isdigit():
        description = f"tcp:{description}:interface=127.0.0.1"
    try:
        endpoint = serverEndpoint(description) if server else clientEndpoint(description)
    except Exception as e:
        raise _usage(f"pcpkit relay: bad {which} endpoint {description!r}: {_reason(e)}") \
            from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not (0 if server else 1) <= port <= 65535:
        raise _usage(f"pcpkit relay: bad {which} endpoint {description!r}: "
                     f"port {port} is out of range")


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    # "TCP4ClientEndpoint.__init__() missing 1 required positional argument: 'port'"
    if isinstance(e, TypeError) and "__init__()" in text:
        text = text.split("__init__() ", 1)[1]
    return text.splitlines()[0]


async def _relaying(relay: Any, stopper: Any) -> int:
    from pcpkit.demo import Interrupted

    try:
        port = await stopper.wait(relay.start())
    except Interrupted:
        await relay.stop()
        return 0
    except Exception as e:
        raise CommandError(f"pcpkit relay: cannot listen on {relay.listenDescription}: "
                           f"{_reason(e)}") from None
    address: Any = port.getHost()
    _say(f"relaying {getattr(address, 'host', address)}:{getattr(address, 'port', '')} -> "
         f"{relay.connectDescription} ({'splice' if relay.usesSplice else 'portable'} path, "
         f"{relay.bufferSize} bytes per direction); press Ctrl-C to stop")
    display = _RelayDisplay(relay)
    try:
        await stopper.wait(Deferred())
    except Interrupted:
        pass
    finally:
        display.stop()
        await relay.stop()
    s = relay.stats
    _say(f"relay stopped: {s.total} connection(s), {_size(s.toTarget.bytes)} to the target, "
         f"{_size(s.toClient.bytes)} back, {s.toTarget.pauses + s.toClient.pauses} pauses, "
         f"{s.refused} refused, {s.failedDials} failed dials")
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
        line = (f"{s.active} open / {s.total} total, {_size(s.toTarget.bytes)} out, "
                f"{_size(s.toClient.bytes)} back, {rate / 1e6:.1f} MB/s, "
                f"{s.toTarget.pauses + s.toClient.pauses} pauses")
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


async def _demoRun(args: argparse.Namespace, stopper: Any) -> int:
    from pcpkit.demo import DemoFailed, Interrupted, runDemo

    try:
        await runDemo(args.size, write=_say, progress=_progress, stopper=stopper,
                      useTracker=False if args.no_tracker else None)
    except Interrupted:
        _complain("pcpkit demo: interrupted (temporary files removed)")
        return EXIT_INTERRUPTED
    except DemoFailed as e:
        raise CommandError(f"pcpkit demo: {e}") from None
    return 0


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

