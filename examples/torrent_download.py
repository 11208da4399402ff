"""
Kamaelia's TorrentPatron console example, on libtorrent and the Twisted reactor.

Kamaelia's example was a pipeline::

    ConsoleReader(">>> ") -> TriggeredFileReader() -> TorrentPatron()
                          -> BasicTorrentExplainer() -> ConsoleEchoer()

you typed the name of a ``.torrent`` file, its contents went to a ``TorrentPatron`` as a
``TIPCCreateNewTorrent``, and every message the patron sent back was turned into a line of
text and printed. This is the same graph with pcpkit components, plus a small ``UntilDone``
between the patron and the explainer that tells the patron to leave once its torrents have
finished (Kamaelia's ran until Ctrl-C)::

    READER ---> PATRON ---> WATCH ---> EXPLAIN ---> ECHO
                  ^           |
                  +-- stop ---+       (shutdown signals follow the same path)

Run it::

    python examples/torrent_download.py                 # self-contained, no network
    python examples/torrent_download.py FILE.torrent [--peer HOST:PORT] [-o DIR]
    python examples/torrent_download.py 'magnet:?xt=urn:btih:...' --dht --listen 0.0.0.0:6881

With no arguments it writes a small random payload into a temporary folder, makes a torrent
of it, seeds it with one patron and downloads it with another (different save paths, so two
sessions on 127.0.0.1, connected directly with ``TIPCCreateNewTorrent(peers=...)``), prints
both patrons' messages, checks the copy's SHA-256 and exits (0 when it matches).

With a torrent it downloads it into ``-o DIR`` (default: here). Peers come from the
torrent's trackers, ``--peer`` and, with ``--dht``, DHT and local discovery. The session
listens on ``--listen`` (default ``127.0.0.1:0``, which only reaches peers on this machine:
use ``0.0.0.0:6881`` for the Internet).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Generator, Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react

from pcpkit import Component, producerFinished
from pcpkit.chassis import Graphline
from pcpkit.ipc import Shutdown
from pcpkit.torrent.ipc import (
    TIPCCreateNewTorrent,
    TIPCNewTorrentCreated,
    TIPCTorrentAlreadyDownloading,
    TIPCTorrentError,
    TIPCTorrentFinished,
    TIPCTorrentStartFail,
)
from pcpkit.torrent.maker import BasicTorrentExplainer, makeTorrent
from pcpkit.torrent.patron import TorrentPatron

MiB = 1024 * 1024


# -- the components ------------------------------------------------------------------------


class TorrentFileReader(Component):
    """
    Kamaelia's ``ConsoleReader`` + ``TriggeredFileReader`` pair, fed from the command line:
    sends one ``TIPCCreateNewTorrent`` per source (a ``.torrent`` file's contents, or a
    magnet link), then ends.
    """

    def __init__(
        self,
        sources: Sequence[str],
        *,
        savefolder: str | None = None,
        peers: Sequence[tuple[str, int]] = (),
        seed: bool = False,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.savefolder = savefolder
        self.peers = tuple(peers)
        self.seed = seed

    def main(self) -> Generator[int, None, None]:
        for source in self.sources:
            if source.startswith("magnet:"):
                msg = TIPCCreateNewTorrent(magnet=source, savefolder=self.savefolder,
                                           peers=self.peers)
            else:
                with open(source, "rb") as f:
                    raw = f.read()
                msg = TIPCCreateNewTorrent(rawmetainfo=raw, savefolder=self.savefolder,
                                           peers=self.peers, seed=self.seed)
            self.send(msg, "outbox")
            yield 1


class UntilDone(Component):
    """
    Passes the patron's messages on; once ``expected`` torrents have finished or failed it
    sends ``producerFinished`` on ``stop`` (linked to the patron's ``control``), so the
    patron leaves. ``expected=None``: never, the patron runs until told otherwise.

    ``started`` fires with the first ``TIPCNewTorrentCreated``; ``finished`` / ``failed``
    list what happened.
    """

    Outboxes = {
        "outbox": "every message, passed on",
        "signal": "the patron's shutdown message, passed on",
        "stop": "producerFinished for the patron when all torrents are done",
    }

    def __init__(self, expected: int | None) -> None:
        super().__init__()
        self.expected = expected
        self.started: Deferred[TIPCNewTorrentCreated] = Deferred()
        self.created: list[TIPCNewTorrentCreated] = []
        self.done: list[int] = []
        self.failed: list[str] = []

    def main(self) -> Generator[int, None, None]:
        asked = False
        while True:
            while self.dataReady("inbox"):
                msg = self.recv("inbox")
                self.note(msg)
                self.send(msg, "outbox")
            if (not asked and self.expected is not None
                    and len(self.done) + len(self.failed) >= self.expected):
                asked = True
                self.send(producerFinished(self, "all torrents done"), "stop")
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, Shutdown):
                    self.send(msg, "signal")
                    return
            self.pause()
            yield 1

    def note(self, msg: object) -> None:
        if isinstance(msg, TIPCNewTorrentCreated):
            self.created.append(msg)
            if not self.started.called:
                self.started.callback(msg)
        elif isinstance(msg, TIPCTorrentFinished):
            if msg.torrentid not in self.done:
                self.done.append(msg.torrentid)
        elif isinstance(msg, TIPCTorrentStartFail):
            self.failed.append(msg.reason)
        elif isinstance(msg, TIPCTorrentAlreadyDownloading):
            self.failed.append(f"already downloading as torrent {msg.torrentid}")
        elif isinstance(msg, TIPCTorrentError):
            self.failed.append(msg.reason)


class Explainer(Component):
    """``BasicTorrentExplainer`` as a pipeline stage: one line of text per message."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix
        self.explain = BasicTorrentExplainer()

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                self.send(self.prefix + self.explain(self.recv("inbox")), "outbox")
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, Shutdown):
                    self.send(msg, "signal")
                    return
            self.pause()
            yield 1


class ConsoleEchoer(Component):
    """Prints each line it receives (Kamaelia's ``ConsoleEchoer``)."""

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                print(self.recv("inbox"), flush=True)
            if self.dataReady("control") and isinstance(self.recv("control"), Shutdown):
                return
            self.pause()
            yield 1


def consoleClient(reader: Component, patron: TorrentPatron, watch: UntilDone,
                  prefix: str = "") -> Graphline:
    """The example's graph: reader -> patron -> watch -> explainer -> echoer."""
    return Graphline(
        linkages={
            ("READER", "outbox"): ("PATRON", "inbox"),
            ("PATRON", "outbox"): ("WATCH", "inbox"),
            ("WATCH", "outbox"): ("EXPLAIN", "inbox"),
            ("EXPLAIN", "outbox"): ("ECHO", "inbox"),
            ("WATCH", "stop"): ("PATRON", "control"),
            ("PATRON", "signal"): ("WATCH", "control"),
            ("WATCH", "signal"): ("EXPLAIN", "control"),
            ("EXPLAIN", "signal"): ("ECHO", "control"),
        },
        READER=reader,
        PATRON=patron,
        WATCH=watch,
        EXPLAIN=Explainer(prefix),
        ECHO=ConsoleEchoer(),
    )


async def leaveAndStop(patron: TorrentPatron, graph: Graphline) -> None:
    """Wait for the graph, then for the patron's service (and its session) to stop."""
    await graph.finished
    if patron.service is not None:
        await patron.service.finished


# -- self-contained run ----------------------------------------------------------------------


def sha256File(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


async def selfTest(reactor: Any, size: int) -> int:
    root = tempfile.mkdtemp(prefix="pcpkit-torrent-example-")
    try:
        seedDir, getDir = os.path.join(root, "seed"), os.path.join(root, "download")
        os.makedirs(seedDir)
        os.makedirs(getDir)
        payload = os.path.join(seedDir, "payload.bin")
        with open(payload, "wb") as f:
            f.write(os.urandom(size))
        torrentFile = os.path.join(root, "payload.torrent")
        with open(torrentFile, "wb") as f:
            f.write(makeTorrent(payload, pieceSize=64 * 1024))
        print(f"made {torrentFile}: {size} random bytes in 64 KiB pieces", flush=True)

        # The seeder: the .torrent of data already in seedDir (seed=True: it must check out).
        seeder = TorrentPatron(tickInterval=1.0, savePath=seedDir)
        seedWatch = UntilDone(expected=None)
        seeding = consoleClient(TorrentFileReader([torrentFile], seed=True), seeder,
                                seedWatch, "[seed] ")
        seeding.activate()
        await seedWatch.started.addTimeout(30, reactor)
        assert seeder.session is not None
        port = seeder.session.listenPort

        # The downloader: other settings (save path), so another service and session, told
        # where the seed listens.
        getter = TorrentPatron(tickInterval=0.25, savePath=getDir)
        getWatch = UntilDone(expected=1)
        download = consoleClient(
            TorrentFileReader([torrentFile], peers=[("127.0.0.1", port)]), getter, getWatch,
            "[get]  ",
        )
        download.activate()
        await download.finished.addTimeout(60, reactor)
        if getter.service is not None:
            await getter.service.finished

        seeder.inboxes["control"].deliver(producerFinished())
        await leaveAndStop(seeder, seeding)

        if getWatch.failed or not getWatch.done:
            print(f"FAILED: {'; '.join(getWatch.failed) or 'the download did not finish'}")
            return 1
        want, got = sha256File(payload), sha256File(os.path.join(getDir, "payload.bin"))
        if got != want:
            print(f"FAILED: SHA-256 of the copy {got} differs from the payload's {want}")
            return 1
        print(f"OK: SHA-256 {got} of the downloaded copy matches the seeded payload")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- downloading a real torrent ----------------------------------------------------------------


async def download(reactor: Any, args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {"listen_interfaces": args.listen}
    if args.dht:
        settings.update(enable_dht=True, enable_lsd=True, enable_upnp=True, enable_natpmp=True)
    os.makedirs(args.output, exist_ok=True)
    patron = TorrentPatron(tickInterval=2.0, savePath=os.path.abspath(args.output),
                           settings=settings)
    watch = UntilDone(expected=1)
    graph = consoleClient(TorrentFileReader([args.torrent], peers=args.peer), patron, watch)
    graph.activate()
    await leaveAndStop(patron, graph)
    if watch.failed or not watch.done:
        print(f"FAILED: {'; '.join(watch.failed) or 'the download did not finish'}")
        return 1
    where = watch.created[0].savefolder if watch.created else args.output
    print(f"OK: downloaded into {where}")
    return 0


def peer(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("torrent", nargs="?", metavar="TORRENT",
                        help=".torrent file or magnet link (none: a self-contained run)")
    parser.add_argument("--peer", action="append", default=[], type=peer,
                        metavar="HOST:PORT", help="connect to this peer (repeatable)")
    parser.add_argument("-o", "--output", default=".", metavar="DIR",
                        help="folder to download into (default: here)")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="ADDRESS:PORT",
                        help="libtorrent listen interface (default: 127.0.0.1:0)")
    parser.add_argument("--dht", action="store_true",
                        help="turn on DHT, local peer discovery, UPnP and NAT-PMP")
    parser.add_argument("--size", type=int, default=8, metavar="MIB",
                        help="payload of the self-contained run, MiB (default: 8)")
    args = parser.parse_args(argv)
    if args.torrent and not args.torrent.startswith("magnet:") and not os.path.isfile(
            args.torrent):
        parser.error(f"no such .torrent file: {args.torrent}")

    outcome: list[int] = []

    async def run(reactor: Any) -> None:
        if args.torrent:
            outcome.append(await download(reactor, args))
        else:
            outcome.append(await selfTest(reactor, args.size * MiB))

    try:
        react(lambda reactor: ensureDeferred(run(reactor)))  # type: ignore[no-untyped-call]
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code)  # run() failed: react() printed the traceback
    if not outcome:  # the reactor was stopped (Ctrl-C, SIGTERM) before run() ended
        print("interrupted", file=sys.stderr)
        return 130
    return outcome[0]


if __name__ == "__main__":
    sys.exit(main())
