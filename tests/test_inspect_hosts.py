"""
The inspector answers only requests whose ``Host`` names it (the guard against DNS rebinding
of :mod:`pcpkit.hosts`): a server in this process showing a running pipeline, asked over TCP
on 127.0.0.1 with hand-written ``Host`` headers on every path, the event stream included;
``--inspect-allowed-host`` on ``twistd pcpkit`` and ``pcpkit demo``.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

import pcpkit.inspect as pi
import pcpkit.torrent.hosts as daemonhosts
from pcpkit import hosts
from pcpkit.hosts import MISDIRECTED, HostCheckedSite
from pcpkit.inspect.web import ALLOWED_HOST_OPTION
from pcpkit.ipc import ShutdownMicroprocess
from pcpkit.tap import Options
from tests.test_daemon_hosts import Answer, exchange
from tests.test_inspect import Gate, slowPipeline

R: Any = reactor
PATHS = ["/", "/graph.json", "/events", "/inspect.js", "/inspect.css", "/no/such/path"]


def request(path: str, hosts: list[str], method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"Host: {h}" for h in hosts)]
    return "\r\n".join([*lines, "Connection: close", "", ""]).encode("latin-1")


async def ask(port: int, path: str, hosts: list[str], method: str = "GET") -> Answer:
    """One request with exactly these ``Host`` headers; the answer once the server closes."""
    answer: Answer = await deferToThread(exchange, port, request(path, hosts, method))
    return answer


def _firstEvent(port: int, host: str) -> bytes:
    """(In a thread.) Open ``/events`` with this ``Host``: what came up to the first event."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request("/events", [host]))
        data = b""
        while b"event: graph" not in data or not data.endswith(b"\n\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def assertMisdirected(answer: Answer, host: str, *secrets: str) -> None:
    code, headers, body = answer
    assert code == MISDIRECTED == 421, answer
    assert headers["content-type"] == "application/json", headers
    error = json.loads(body)["error"]
    assert "\n" not in error
    assert f"Host {host!r} is not a name of this pcpkit inspector" in error, error
    name = host.rsplit(":", 1)[0].lower()
    assert f"{ALLOWED_HOST_OPTION} {name}" in error, error
    for secret in secrets:
        assert secret.encode() not in body


@asynccontextmanager
async def inspected() -> AsyncIterator[tuple[pi.InspectServer, int, Gate]]:
    """An inspector allowing ``media.lan``, and a stalled pipeline for it to show."""
    server = pi.serve("tcp:0:interface=127.0.0.1", allowedHosts=["media.lan"])
    port = (await server.listening).getHost().port
    pipe, src, mid, sink = slowPipeline(count=100)
    pipe.activate()
    try:
        yield server, port, sink
    finally:
        for c in (pipe, src, mid, sink):
            c.inboxes["control"].deliver(ShutdownMicroprocess())
            c.unpause()
        await pipe.finished
        await server.stop()
    assert not pi.isEnabled()


@pytest_twisted.ensureDeferred
async def test_a_foreign_host_gets_nothing_on_any_path() -> None:
    async with inspected() as (server, port, sink):
        await foreignHosts(server, port, sink)


async def foreignHosts(server: pi.InspectServer, port: int, sink: Gate) -> None:
    secret = str(sink)  # the names of the program's parts
    evil = f"evil.example:{port}"
    events: list[dict[str, Any]] = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        for path in PATHS:
            for method in ("GET", "HEAD", "POST"):
                answer = await ask(port, path, [evil], method)
                if method == "HEAD":
                    assert answer[0] == 421 and answer[2] == b"", (path, answer)
                else:
                    assertMisdirected(answer, evil, secret, f"c{sink.id}")
            assertMisdirected(await ask(port, path, ["EVIL.example"]), "EVIL.example", secret)
    finally:
        globalLogPublisher.removeObserver(observer)
    # the event stream was never opened for them
    assert server.clients == [] and server.updates == 0
    # logged once per name
    refusals = [e for e in events if "refused HTTP requests" in e.get("log_format", "")]
    assert [e["why"].split(" is not")[0] for e in refusals] == [
        f"Host {evil!r}",
        "Host 'EVIL.example'",
    ]

    # several Host headers (one of them good), malformed ones: refused
    code, _, body = await ask(port, "/graph.json", [f"127.0.0.1:{port}", evil])
    assert code == 421 and json.loads(body) == {"error": "the request has several Host headers"}
    for bad in ("", f"::1:{port}", "[::1", "a b", "media.lan:x"):
        code, _, body = await ask(port, "/graph.json", [bad])
        assert code == 421, (bad, body)
        assert f"{ALLOWED_HOST_OPTION} NAME" in json.loads(body)["error"]
    # names that only look like the allowed one
    for host in ("media.lan.evil.example", "xmedia.lan", "lan"):
        assertMisdirected(await ask(port, "/graph.json", [host]), host, secret)


@pytest_twisted.ensureDeferred
async def test_its_own_names_get_everything() -> None:
    async with inspected() as (server, port, sink):
        await ownNames(port, sink)


async def ownNames(port: int, sink: Gate) -> None:
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        "LOCALHOST.",
        f"[::1]:{port}",
        f"192.0.2.7:{port}",  # any literal address: a page cannot rebind an address
        f"media.lan:{port}",
        "Media.LAN.",
    ):
        code, headers, page = await ask(port, "/", [host])
        assert code == 200 and b"inspect.js" in page, host
        code, headers, body = await ask(port, "/graph.json", [host])
        assert code == 200 and headers["content-type"] == "application/json", host
        assert any(c["id"] == f"c{sink.id}" for c in json.loads(body)["components"])
        code, _, script = await ask(port, "/inspect.js", [host])
        assert code == 200 and len(script) > 500
        stream = await deferToThread(_firstEvent, port, host)
        assert stream.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in stream, stream
        assert f"c{sink.id}".encode() in stream.split(b"event: graph", 1)[1]
    # the rule is still the inspector's: a POST is refused for what it is, not for its Host
    assert (await ask(port, "/graph.json", ["media.lan"], "POST"))[0] == 405
    # a request without Host (HTTP/1.0: not a browser's) is answered
    answer = await deferToThread(exchange, port, b"GET /graph.json HTTP/1.0\r\n\r\n")
    assert answer[0] == 200 and "components" in json.loads(answer[2])


@pytest_twisted.ensureDeferred
async def test_any_name_and_the_listening_name() -> None:
    server = pi.serve("tcp:0:interface=127.0.0.1", allowedHosts=["*"])
    try:
        port = (await server.listening).getHost().port
        code, _, body = await ask(port, "/graph.json", [f"proxied.example:{port}"])
        assert code == 200 and "components" in json.loads(body)
        # even '*' does not answer a request that says two things
        assert (await ask(port, "/graph.json", ["a.example", "b.example"]))[0] == 421
    finally:
        await server.stop()
    # the name it listens on is one of its names (not bound here: the rule only)
    rule = pi.InspectServer("tcp:0:interface=Box.Lan").allowedHosts
    assert rule.allows([b"box.lan:8090"]) and not rule.allows([b"other.lan"])
    loopback = pi.InspectServer(8090).allowedHosts
    assert loopback.allows([b"localhost:8090"]) and not loopback.allows([b"box.lan"])
    # a rule of one's own is used as it is
    own = hosts.AllowedHosts(["a.lan"], service="graph viewer", option="--viewer-host")
    assert pi.InspectServer(0, allowedHosts=own).allowedHosts is own
    assert "this graph viewer" in own.refusal([b"b.lan"]) and "--viewer-host b.lan" in (
        own.refusal([b"b.lan"])
    )


def test_a_bad_allowed_name_is_refused_before_anything_starts() -> None:
    for bad, why in (("", "is empty"), ("media.lan:8090", "without a port"), ("a/b", "not a host")):
        with pytest.raises(ValueError, match=why) as info:
            pi.serve(0, allowedHosts=[bad])
        assert "\n" not in str(info.value)
        assert not pi.isEnabled()


def test_the_daemon_keeps_its_names() -> None:
    """``pcpkit.torrent.hosts`` is the shared rule, its refusals naming the daemon."""
    assert daemonhosts.hostName is hosts.hostName
    assert daemonhosts.checkHostName is hosts.checkHostName
    rule = daemonhosts.AllowedHosts(["nas.lan"])
    assert isinstance(rule, hosts.AllowedHosts) and rule.allows([b"NAS.lan:8080"])
    why = rule.refusal([b"evil.example:8080"])
    assert why.startswith("Host 'evil.example:8080' is not a name of this torrent daemon")
    assert "--allowed-host evil.example" in why
    from pcpkit.torrent.web import DaemonSite

    assert issubclass(DaemonSite, HostCheckedSite)


# -- the options ---------------------------------------------------------------------------


def test_twistd_options_check_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    options = Options()
    options.parseOptions(
        [
            "demo",
            "--inspect",
            "0",
            "--inspect-allowed-host",
            "Box.Lan.",
            "--inspect-allowed-host",
            "*",
        ]
    )
    assert options.subOptions["inspect-allowed-host"] == ["box.lan", "*"]
    for argv, line in (
        (
            ["relay", "--listen", "0", "--connect", "127.0.0.1:9", "--inspect", "0",
             "--inspect-allowed-host", "box.lan:8090"],
            "--inspect-allowed-host: 'box.lan:8090' is not a host name",
        ),
        (["torrent", "--save-path", "x", "--inspect-allowed-host", "box.lan"],
         "--inspect-allowed-host needs --inspect ENDPOINT"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            Options().parseOptions(argv)
        assert info.value.code == 1
        assert line in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_twistd_inspect_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_inspect import INSPECTOR_LINE
    from tests.test_twistd_torrent import pluginEnvironment, twistdArgv
    from tests.torrentutil import ProcessRunner, waitUntil

    pluginEnvironment(monkeypatch)
    argv = ["relay", "--listen", "0", "--connect", "127.0.0.1:9", "--inspect", "0"]
    runner = ProcessRunner(twistdArgv(*argv, "--inspect-allowed-host", "media.lan"))
    try:
        await waitUntil(
            lambda: INSPECTOR_LINE in runner.text() or not runner.running, 30, "the inspector"
        )
        assert runner.running, runner.text()
        port = int(runner.text().split(INSPECTOR_LINE, 1)[1].split("/", 1)[0])
        code, _, body = await ask(port, "/graph.json", [f"media.lan:{port}"])
        assert code == 200 and any(n["kind"] == "relay" for n in json.loads(body)["nodes"])
        evil = f"evil.example:{port}"
        assertMisdirected(await ask(port, "/graph.json", [evil]), evil, "Relay")
        await waitUntil(lambda: "refused HTTP requests" in runner.text(), 10, "the log line")
    finally:
        await runner.stop()


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_pcpkit_demo_inspect_allowed_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from tests.test_cli import PCPKIT
    from tests.test_twistd_torrent import pluginEnvironment
    from tests.torrentutil import ProcessRunner, waitUntil

    for argv, line in (
        (["--inspect", "0", "--inspect-allowed-host", "a:80"],
         "pcpkit demo: argument --inspect-allowed-host: 'a:80' is not a host name"),
        (["--inspect-allowed-host", "media.lan"],
         "pcpkit demo: --inspect-allowed-host needs --inspect ENDPOINT"),
    ):  # fmt: skip
        bad = subprocess.run([*PCPKIT, "demo", *argv], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and bad.stderr.startswith(line), bad.stderr
        assert len(bad.stderr.splitlines()) == 1

    # a demo long enough to be asked while it runs, stopped once it has answered
    pluginEnvironment(monkeypatch)
    demo = ["demo", "--size", "128", "--no-tracker", "--inspect", "0"]
    runner = ProcessRunner([*PCPKIT, *demo, "--inspect-allowed-host", "media.lan"], str(tmp_path))
    line = "inspector: http://127.0.0.1:"
    try:
        await waitUntil(lambda: line in runner.text() or not runner.running, 30, "the inspector")
        assert runner.running, runner.text()
        port = int(runner.text().split(line, 1)[1].split("/", 1)[0])
        code, _, body = await ask(port, "/graph.json", ["media.lan"])
        assert code == 200 and "components" in json.loads(body)
        assertMisdirected(await ask(port, "/graph.json", ["evil.example"]), "evil.example")
    finally:
        await runner.stop()
