"""
P6: the torrent daemon holding 1,000 and 10,000 torrents -- status and control latency,
reactor lag, memory per torrent.

Each size runs in a fresh process of its own (``python bench_daemon.py --child N``): a
:class:`~pcpkit.torrent.daemon.TorrentDaemon` with HTTP on 127.0.0.1 is started, N small
generated torrents (one 1-4 kB file each, their data nowhere: they wait for peers, as a
long-tail library does) are added through :meth:`TorrentDaemon.addTorrent` (500 at a time),
and then, from a client thread holding one keep-alive connection (``http.client``; bodies
read, not decoded):

* ``status page``: ``GET /status.json?offset=R&limit=100`` at random offsets (what the web
  UI asks every 2 s);
* ``api page``: ``GET /api/torrents?offset=R&limit=100``;
* ``control``: ``POST /api/torrents/<random>/pause`` and ``/resume`` in turn, with the
  token;
* ``full list``: ``GET /status.json`` with every torrent, written a slice of 50 torrents
  per reactor turn (``cooperate``), and side by side the same list rendered in one go
  (``json.dumps(torrentList(session))`` as ``/status.json`` did before paging; mounted by
  this script at ``/oneshot.json``).

First, for reference, 3 s without requests (``idle``: the lag of the daemon alone, its
alert pump and timers). While each phase runs, a ``LoopingCall`` every 10 ms on the
daemon's reactor records how late it fires: the reactor lag. RSS per torrent is (RSS with
N torrents - RSS before the first add) / N, from ``/proc/self/statm``.

Usage::

    python benchmarks/bench_daemon.py                  # 1,000 and 10,000 torrents
    python benchmarks/bench_daemon.py --sizes 200      # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # run from a checkout

PIECE = 16384
CHILD_TIMEOUT = 1800.0
PAGE = 100
#: seconds of the phase without requests (the reactor lag of the session alone)
IDLE = 3.0


def fakeTorrent(i: int) -> bytes:
    """A small, distinct single-file torrent (its data exists nowhere)."""
    import libtorrent as lt

    name = f"bench-{i:06d}.bin".encode()
    info = {b"name": name, b"length": 1000 + i % 3000, b"piece length": PIECE}
    info[b"pieces"] = hashlib.sha1(name).digest()
    return bytes(lt.bencode({b"info": info}))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Lag:
    """How late a 10 ms LoopingCall fires on the reactor, per phase."""

    INTERVAL = 0.01

    def __init__(self, reactor: Any) -> None:
        from twisted.internet.task import LoopingCall

        self.samples: list[float] = []
        self.last = time.monotonic()
        self.loop = LoopingCall(self.tick)
        self.loop.clock = reactor
        self.loop.start(self.INTERVAL, now=False)

    def tick(self) -> None:
        now = time.monotonic()
        self.samples.append(max(0.0, now - self.last - self.INTERVAL))
        self.last = now

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples


def child(count: int, requests: int, fullRequests: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, ensureDeferred, gatherResults
    from twisted.internet.threads import deferToThread
    from twisted.web.resource import Resource

    from pcpkit.torrent.daemon import TorrentDaemon
    from pcpkit.torrent.web import torrentList

    root = tempfile.mkdtemp(prefix="pcpkit-bench-daemon-")
    daemon = TorrentDaemon(
        savePath=os.path.join(root, "save"),
        stateDir=os.path.join(root, "state"),
        httpEndpoint="tcp:0:interface=127.0.0.1",
        tickInterval=1.0,
        resumeInterval=3600,
    )
    raws = [fakeTorrent(i) for i in range(count)]

    class OneShot(Resource):
        """The whole list in one go, as /status.json was served before paging."""

        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(torrentList(daemon.session), indent=1).encode()

    async def run() -> dict[str, Any]:

        daemon.startService()
        while daemon.httpPort is None:
            await sleep(0.05)
        assert daemon.site is not None
        daemon.site.resource.putChild(b"oneshot.json", OneShot())
        port = daemon.httpPort.getHost().port
        token = daemon.apiToken
        await sleep(0.5)
        before = rss()
        started = time.monotonic()
        limit = DeferredSemaphore(500)
        await gatherResults([limit.run(daemon.addTorrent, raw) for raw in raws], consumeErrors=True)
        addSeconds = time.monotonic() - started
        infohashes = daemon.infohashes()
        assert len(infohashes) == count, len(infohashes)
        await sleep(5.0)  # the adds' state writes and first status rounds settle
        after = rss()
        lag = Lag(reactor)
        results: dict[str, Any] = {
            "count": count,
            "addSeconds": addSeconds,
            "rssPerTorrent": (after - before) / count,
            "rssMiB": after / 2**20,
        }

        def measure(phase: str, paths: list[tuple[str, str]]) -> list[float]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            times = []
            try:
                for method, path in paths:
                    headers = {"X-Pcpkit-Token": token or ""} if method == "POST" else {}
                    t0 = time.perf_counter()
                    conn.request(method, path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    times.append(time.perf_counter() - t0)
                    if response.status != 200:
                        raise RuntimeError(f"{phase}: {path} -> {response.status} {body[:200]!r}")
            finally:
                conn.close()
            return times

        rng = random.Random(6)
        phases: dict[str, list[tuple[str, str]]] = {
            "status page": [
                ("GET", f"/status.json?offset={rng.randrange(count)}&limit={PAGE}")
                for _ in range(requests)
            ],
            "api page": [
                ("GET", f"/api/torrents?offset={rng.randrange(count)}&limit={PAGE}")
                for _ in range(requests)
            ],
            "control": [
                ("POST", f"/api/torrents/{ih}/{action}")
                for ih in rng.sample(infohashes, min(count, requests // 2))
                for action in ("pause", "resume")
            ],
            "full list (sliced)": [("GET", "/status.json")] * fullRequests,
            "full list (one go)": [("GET", "/oneshot.json")] * fullRequests,
        }
        lag.take()
        await sleep(IDLE)
        lags = lag.take()
        results["idle"] = {
            "n": 0,
            "p50": 0.0,
            "p99": 0.0,
            "lagP99": percentile(lags, 99),
            "lagMax": max(lags),
        }
        for phase, paths in phases.items():
            lag.take()
            times = await deferToThread(measure, phase, paths)
            lags = lag.take()
            results[phase] = {
                "n": len(times),
                "p50": statistics.median(times),
                "p99": percentile(times, 99),
                "lagP99": percentile(lags, 99) if lags else 0.0,
                "lagMax": max(lags) if lags else 0.0,
            }
        lag.loop.stop()
        return results

    async def sleep(seconds: float) -> None:
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds, lambda: None)

    outcome: dict[str, Any] = {}

    def done(result: Any) -> None:
        outcome.update(result if isinstance(result, dict) else {"error": str(result)})
        d = daemon.stopService()
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(done))
    reactor.run()
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(outcome), flush=True)


def runChild(count: int, requests: int, fullRequests: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            HERE,
            "--child",
            str(count),
            "--requests",
            str(requests),
            "--full-requests",
            str(fullRequests),
        ],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"child {count} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        raise SystemExit(f"child {count} failed: {result['error']}\n{out.stderr}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--requests", type=int, default=200, help="requests per phase (200)")
    parser.add_argument(
        "--full-requests", type=int, default=5, help="requests of the full list (5)"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.requests, args.full_requests)
        return 0
    import libtorrent

    import twisted

    print(
        f"P6 daemon scale -- {datetime.date.today()}, Python {platform.python_version()}, "
        f"Twisted {twisted.__version__}, libtorrent {libtorrent.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    rows = []
    for count in args.sizes:
        r = runChild(count, args.requests, args.full_requests)
        rows.append(r)
        print(
            f"\n{count} torrents: added in {r['addSeconds']:.2f} s, RSS {r['rssMiB']:.0f} MiB, "
            f"{r['rssPerTorrent'] / 1024:.1f} KiB per torrent"
        )
        print(
            f"  {'request':<22}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'lag p99 ms':>12}"
            f"{'lag max ms':>12}"
        )
        for phase in (
            "idle",
            "status page",
            "api page",
            "control",
            "full list (sliced)",
            "full list (one go)",
        ):
            m = r[phase]
            p50, p99 = (f"{m[k] * 1000:.1f}" if m["n"] else "-" for k in ("p50", "p99"))
            print(
                f"  {phase:<22}{m['n']:>5}{p50:>10}{p99:>10}"
                f"{m['lagP99'] * 1000:>12.1f}{m['lagMax'] * 1000:>12.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
