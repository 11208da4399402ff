"""
``pcpkit remote``: the command run as a user runs it (a subprocess) against a running
``twistd -n pcpkit torrent --http ...`` daemon (a child process) fed by a seeder session on
127.0.0.1 in this process. The commands run in threads so that the reactor keeps the seeder
and the daemon's process going.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from pcpkit.torrent.maker import infohashOf, makeTorrent
from tests.test_cli import PCPKIT, assertOneLineError
from tests.test_twistd_torrent import (  # noqa: F401 - the "daemons" fixture
    Daemons,
    daemonsFixture,
)
from tests.torrentutil import (  # noqa: F401 - the "sessions" fixture
    MiB,
    Sessions,
    sessionsFixture,
    withTimeout,
    writePayload,
)


async def remote(
    port: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pcpkit remote --http PORT ARGS`` to completion, in a thread."""
    import os

    environment = {k: v for k, v in os.environ.items() if k != "PCPKIT_TOKEN"}
    environment.update(env or {})

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PCPKIT, "remote", "--http", str(port), *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=environment,
        )

    result: subprocess.CompletedProcess[str] = await deferToThread(call)
    return result


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    __tracebackhide__ = True
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout.splitlines()


@pytest.mark.timeout(150)
@pytest_twisted.ensureDeferred
async def test_remote_add_list_pause_resume_rm(
    daemons: Daemons, sessions: Sessions, tmp_path: Path
) -> None:
    seedDir = tmp_path / "seed"
    data = writePayload(seedDir, "talk.ogg", 1 * MiB + 7, seed=8)
    raw = makeTorrent(seedDir / "talk.ogg", pieceSize=16384)
    infohash = infohashOf(raw)
    torrentFile = tmp_path / "talk.torrent"
    torrentFile.write_bytes(raw)
    (tmp_path / "garbage.torrent").write_bytes(b"not a torrent")
    seeder = sessions()
    await withTimeout(seeder.addTorrent(raw, savefolder=str(seedDir), seed=True), 20)
    state = tmp_path / "state"
    daemon = await daemons(
        tmp_path / "save", stateDir=state, peers=[("127.0.0.1", seeder.listenPort)]
    ).start()
    port = daemon.port
    token = (state / "api-token").read_text().strip()
    withState = ("--state-dir", str(state))

    assert ok(await remote(port, "list")) == ["no torrents"]  # reading needs no token

    # changes without the token, or with a wrong one, are refused and change nothing
    assertOneLineError(await remote(port, "add", str(torrentFile)), 2, "token", "--state-dir")
    assertOneLineError(
        await remote(port, "--token", "x" * 30, "add", str(torrentFile)), 1, "wrong API token"
    )
    assert ok(await remote(port, "list")) == ["no torrents"]

    # add: a good file, then a duplicate and garbage, each refused in one line
    assert ok(await remote(port, *withState, "add", str(torrentFile))) == [
        f"added talk.ogg ({infohash})"
    ]
    result = await remote(
        port, *withState, "add", str(torrentFile), str(tmp_path / "garbage.torrent")
    )
    assert result.returncode == 1 and result.stdout == ""
    errors = result.stderr.splitlines()
    assert len(errors) == 2 and "already in the daemon" in errors[0]
    assert "garbage.torrent" in errors[1] and "Traceback" not in result.stderr
    assertOneLineError(
        await remote(port, *withState, "add", str(tmp_path / "missing.torrent")),
        2,
        "cannot read",
    )

    finished = await daemon.waitFor(infohash, lambda t: t["isFinished"], 30, "the download")
    assert finished["totalDone"] == len(data)
    assert (tmp_path / "save" / "talk.ogg").read_bytes() == data

    lines = ok(await remote(port, "list"))
    assert len(lines) == 1 and lines[0].startswith(infohash[:12]) and "100.0%" in lines[0]
    assert lines[0].endswith("talk.ogg")
    listed = [json.loads(line) for line in ok(await remote(port, "--json", "list"))]
    assert [t["infohash"] for t in listed] == [infohash]

    # pause by a prefix of the info-hash, resume by name (the token from the environment)
    assert ok(await remote(port, *withState, "pause", infohash[:6])) == [f"paused {infohash}"]
    await daemon.waitFor(infohash, lambda t: t["paused"], 10, "the torrent paused")
    env = {"PCPKIT_TOKEN": token}
    assert ok(await remote(port, "resume", "talk.ogg", env=env)) == [f"resumed {infohash}"]
    await daemon.waitFor(infohash, lambda t: not t["paused"], 10, "the torrent resumed")
    assertOneLineError(
        await remote(port, "pause", "no-such-torrent", env=env), 1, "no torrent 'no-such-torrent'"
    )

    # rm keeps the files
    assert ok(await remote(port, "--token", token, "rm", infohash)) == [f"removed {infohash}"]
    assert ok(await remote(port, "list")) == ["no torrents"]
    assert (tmp_path / "save" / "talk.ogg").read_bytes() == data

    # a name that holds terminal escapes and a line break is printed escaped, on one line
    forged = "c" * 40
    magnet = f"magnet:?xt=urn:btih:{forged}&dn=ok%1B%5B2J%1B%5D0%3Bpwned%07%0AFORGED"
    assert ok(await remote(port, *withState, "add", magnet))[0].startswith("added ok")
    result = await remote(port, "list")
    [line] = ok(result)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert line.endswith("ok\\x1b[2J\\x1b]0;pwned\\x07\\nFORGED"), line


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_remote_without_a_daemon_and_bad_options(tmp_path: Path) -> None:
    from tests.torrentutil import freePort

    port = freePort()
    assertOneLineError(await remote(port, "list"), 1, "cannot reach the daemon", str(port))
    assertOneLineError(await remote(port, "--state-dir", str(tmp_path), "list"), 2, "api-token")
    result = await remote(0, "list")
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    # a token that cannot be one is a usage error naming where it came from
    assertOneLineError(
        await remote(port, "--token", "t\u00f6ken" + "x" * 20, "pause", "x"),
        2,
        "--token: not an API token",
    )
    assertOneLineError(
        await remote(port, "pause", "x", env={"PCPKIT_TOKEN": "short"}),
        2,
        "PCPKIT_TOKEN: not an API token",
    )
