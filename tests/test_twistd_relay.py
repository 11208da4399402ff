"""
``twistd -n pcpkit relay`` as an operator runs it: a child process relaying between
127.0.0.1 ports, its failures seen by a supervisor, its open-files limit fitted.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from pcpkit.internet._splice import spliceAvailable
from tests.procutil import ProcessRunner, exitCode
from tests.test_twistd_torrent import pluginEnvironment, twistdArgv
from tests.torrentutil import waitUntil, withTimeout


@pytest.fixture(autouse=True)
def pluginPath(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pluginEnvironment(monkeypatch)
    yield


def withFileLimit(soft: int, hard: int, argv: list[str]) -> list[str]:
    """``argv`` run with ``RLIMIT_NOFILE`` set to (soft, hard), as ``ulimit -n`` would."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code, *argv]


def fileLimit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def exchange(port: int) -> bytes:
    """Blocking (run in a thread): send a line through the relay, read what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
        return data


class EchoServer:
    """A blocking echo-until-EOF server in a thread: the relay's target."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def serveOne(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while chunk := conn.recv(100):
                conn.sendall(chunk)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_listen_port_busy_exits_naming_the_option() -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        runner = ProcessRunner(
            twistdArgv("relay", "--listen", str(port), "--connect", "127.0.0.1:9")
        )
        code = await exitCode(runner, 30)
    finally:
        busy.close()
    text = runner.text()
    assert code == 1, text
    assert (
        f"twistd pcpkit relay: --listen tcp:{port}:interface=127.0.0.1: Couldn't listen "
        f"on 127.0.0.1:{port}: [Errno 98] Address already in use."
    ) in text, text
    assert "Traceback" not in text, text


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_bad_endpoints_are_usage_errors() -> None:
    for args, expected in (
        (
            ["--listen", "tcp:99999", "--connect", "127.0.0.1:9"],
            "--listen: bad endpoint 'tcp:99999': port 99999 is out of range",
        ),
        (
            ["--listen", "0", "--connect", "tcp:127.0.0.1"],
            "--connect: bad endpoint 'tcp:127.0.0.1': the port is missing",
        ),
    ):
        runner = ProcessRunner(twistdArgv("relay", *args))
        code = await exitCode(runner, 30)
        assert code != 0, runner.text()
        assert expected in runner.text(), runner.text()
        assert "Traceback" not in runner.text()


async def runRelay(argv: list[str]) -> tuple[ProcessRunner, int]:
    """Start a twistd relay; wait for its listening line; return it and its port."""
    runner = ProcessRunner(argv)
    try:
        await waitUntil(
            lambda: "relay listening on" in runner.text() or not runner.running,
            30,
            "the relay to listen",
        )
        assert runner.running, runner.text()
        line = runner.text().split("relay listening on", 1)[1]
        port = int(line.split("port=", 1)[1].split(")", 1)[0])
    except BaseException:
        await runner.kill()
        raise
    return runner, port


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "splice", [pytest.param(True, id="splice"), pytest.param(False, id="portable")]
)
@pytest_twisted.ensureDeferred
async def test_open_files_limit_caps_max_connections(splice: bool) -> None:
    """
    With ``ulimit -n 1024`` (soft = hard) the relay cannot raise its limit: it caps
    --max-connections to what 1024 descriptors allow, says so once, and still relays.
    """
    if splice and not spliceAvailable():
        pytest.skip("no os.splice on this platform")
    echo = EchoServer()
    argv = twistdArgv(
        "relay",
        "--listen",
        "0",
        "--connect",
        f"127.0.0.1:{echo.port}",
        "--max-connections",
        "5000",
        *([] if splice else ["--no-splice"]),
    )
    runner, port = await runRelay(withFileLimit(1024, 1024, argv))
    try:
        allowed = (1024 - 64) // (6 if splice else 2)
        expected = (
            f"relay: 5000 connections would need {5000 * (6 if splice else 2) + 64} "
            f"open files but the limit is 1024 (ulimit -n): capping max-connections "
            f"at {allowed}"
        )
        assert expected in runner.text(), runner.text()
        assert runner.text().count("capping max-connections") == 1
        served = deferToThread(echo.serveOne)
        assert await withTimeout(deferToThread(exchange, port), 20) == b"ping\n"
        await withTimeout(served, 20)
    finally:
        code = await runner.stop()
        echo.close()
    assert code in (0, -15), runner.text()
    assert "Traceback" not in runner.text(), runner.text()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_open_files_soft_limit_is_raised_to_the_hard_limit() -> None:
    argv = twistdArgv(
        "relay", "--listen", "0", "--connect", "127.0.0.1:9", "--max-connections", "100"
    )
    runner, _ = await runRelay(withFileLimit(256, 4096, argv))
    try:
        pid: Any = runner._process.pid
        assert fileLimit(pid) == (4096, 4096)
        assert "capping max-connections" not in runner.text(), runner.text()
    finally:
        await runner.stop()
