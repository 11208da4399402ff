"""
A throw-away RabbitMQ node for the AMQP tests, and the consumer process they run.

:class:`RabbitNode` starts Debian's ``rabbitmq-server`` on free ports of 127.0.0.1 with its
own node name, data dir, cookie and ``epmd`` (the facts in issue 14), waits until it accepts
connections, can be killed (``SIGKILL``) and restarted on the same data mid-test, and is
stopped with ``rabbitmqctl stop``, reaping the ``epmd`` it started. The ``rabbit`` fixture is
session-scoped: one node per test session (starting one takes seconds).

Run as ``python -m tests.rabbitutil consume URL QUEUE ...`` this module is the *separate
consumer process* of the tests: an ``AMQPSource`` feeding a deliberately slow sink, which
prints one JSON line (ids in arrival order, redelivery marks, RSS) when done.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LIBEXEC = Path("/usr/lib/rabbitmq/bin")


def freePort() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    # The Debian wrappers in /usr/sbin re-run everything as user rabbitmq with its HOME
    # (and cookie); the scripts behind them run the node as whoever we are, on our dirs.
    path = LIBEXEC / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install rabbitmq-server", pytrace=False)
    return found


class RabbitNode:
    """One RabbitMQ node of our own; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = freePort()
        self.distPort = freePort()
        self.epmdPort = freePort()
        self.nodename = f"pcpkit{os.getpid()}x{uuid.uuid4().hex[:6]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        (root / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(root),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.distPort),
            "ERL_EPMD_PORT": str(self.epmdPort),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(root / "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(root / "no-such-config"),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._out = root / "server.out"

    def start(self, timeout: float = 60.0) -> None:
        """Start the node (again, on the same data, after :meth:`kill`) and wait for it."""
        with open(self._out, "ab") as out:
            self.process = subprocess.Popen(
                [_tool("rabbitmq-server")],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited:\n{self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"rabbitmq-server not listening on {self.port}:\n{self._tail()}"
                    ) from None
                time.sleep(0.1)

    def restart(self) -> None:
        """
        Stop the node cleanly and start it again: everything declared before is then on
        disk, so a later :meth:`kill` cannot take it. (A durable queue declared seconds
        before a ``SIGKILL`` was sometimes gone after the restart: RabbitMQ 3.10 lost its
        record, and the queue's messages with it.)
        """
        self.stop()
        self.start()

    def _tail(self) -> str:
        return self._out.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """``SIGKILL`` the node (its epmd stays): a crash, not a shutdown."""
        p = self.process
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)

    def ctl(self, *args: str, timeout: float = 30) -> str:
        """Run ``rabbitmqctl args`` against this node; its output."""
        done = subprocess.run(
            [_tool("rabbitmqctl"), "-q", *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode()

    def queueCounts(self, queue: str) -> tuple[int, int]:
        """(messages ready, messages unacknowledged) of ``queue``."""
        for line in self.ctl(
            "list_queues", "name", "messages_ready", "messages_unacknowledged"
        ).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"no queue {queue!r} on the broker")

    def consumers(self, queue: str) -> int:
        """How many consumers ``queue`` has."""
        for line in self.ctl("list_queues", "name", "consumers").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        raise AssertionError(f"no queue {queue!r} on the broker")

    def declare(self, queue: str, durable: bool = True) -> None:
        """Declare ``queue`` (purged if it existed), with a blocking pika connection."""
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            ch.queue_declare(queue, durable=durable)
            ch.queue_purge(queue)
        finally:
            conn.close()

    def stop(self) -> None:
        """``rabbitmqctl stop``, then reap the node and the epmd it started."""
        p = self.process
        if p is not None and p.poll() is None:
            try:
                self.ctl("stop", timeout=60)
                p.wait(60)
            except (AssertionError, subprocess.TimeoutExpired):
                self.kill()
        subprocess.run(
            ["epmd", "-port", str(self.epmdPort), "-kill"],
            env=self.env,
            capture_output=True,
            check=False,
        )


@pytest.fixture(name="rabbit", scope="session")
def rabbitFixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


# -- the consumer process ---------------------------------------------------------------------


def _rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def consumerMain(argv: list[str]) -> int:
    """
    Consume ``queue`` through an ``AMQPSource`` into a slow sink until ``count`` distinct
    ids (the ASCII number before the first space of each body) have arrived, or until a body
    ``END`` arrives; print one JSON line with what was seen.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per message")
    parser.add_argument("--inbox", type=int, default=32)
    parser.add_argument("--reconnect", action="store_true")
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.logger import globalLogBeginner, textFileLogObserver

    # what the source says (faults, reconnections) goes to stderr, which the tests show
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    from pcpkit.amqp import AMQPSource
    from pcpkit.component import Component
    from pcpkit.ipc import ErrorInformation, ShutdownMicroprocess

    ids: list[int] = []
    redelivered: list[int] = []
    errors: list[str] = []
    rss: dict[str, int] = {"first": 0, "max": 0}
    source = AMQPSource(args.queue, url=args.url, reconnect=args.reconnect)

    class SlowSink(Component):
        Inboxes = {"inbox": "AMQPMessages", "control": "unused"}
        Outboxes = {"outbox": "unused", "signal": "unused"}

        async def main(self) -> None:
            seen: set[int] = set()
            while True:
                msg = await self.get("inbox")
                if msg.body == b"END":
                    break
                n = int(msg.body.split(b" ", 1)[0])
                if not ids:
                    print("consuming", flush=True)  # what a test can wait for
                ids.append(n)
                if msg.redelivered:
                    redelivered.append(n)
                seen.add(n)
                now = _rss()
                rss["first"] = rss["first"] or now
                rss["max"] = max(rss["max"], now)
                if args.delay:
                    await deferLater(reactor, args.delay, lambda: None)
                if args.count and len(seen) >= args.count:
                    break
            # close now: what was taken is acknowledged, anything still queued here is
            # left to the broker to deliver to another consumer
            source.inboxes["control"].deliver(ShutdownMicroprocess(self))

    class Signals(Component):
        Inboxes = {"inbox": "the source's signal", "control": "unused"}

        async def main(self) -> None:
            while True:
                msg = await self.get("inbox")
                if isinstance(msg, ErrorInformation):
                    errors.append(str(msg))
                else:
                    return

    sink = SlowSink()
    sink.setInboxSize("inbox", args.inbox)
    signals = Signals()
    source.link((source, "outbox"), (sink, "inbox"))
    source.link((source, "signal"), (signals, "inbox"))

    def finish(_: object) -> None:
        reactor.stop()  # type: ignore[attr-defined]

    def start() -> None:
        for c in (sink, signals, source):
            c.activate()
        signals.finished.addBoth(finish)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    print(
        json.dumps(
            {
                "ids": ids,
                "redelivered": redelivered,
                "errors": errors,
                "rssFirst": rss["first"],
                "rssMax": rss["max"],
                "acked": source.acked,
                "connections": source.connections,
            }
        )
    )
    return 0


def consumerCommand(url: str, queue: str, *options: str) -> list[str]:
    """The argv of a consumer process (see :func:`consumerMain`)."""
    return [sys.executable, "-m", "tests.rabbitutil", "consume", url, queue, *options]


def parseConsumerOutput(out: bytes) -> dict[str, Any]:
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert lines, f"the consumer printed no result: {out[-2000:]!r}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["consume"]:
        sys.exit(consumerMain(sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} consume URL QUEUE [options]")
