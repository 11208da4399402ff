"""
The ``pcpkit`` command, run as a user runs it: a subprocess (the installed ``pcpkit`` script
next to ``sys.executable``, else ``python -m pcpkit.cli``), on 127.0.0.1 only, every wait
bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pcpkit._progress import Progress, formatDuration
from pcpkit.cli import main
from tests.torrentutil import smallDiskFixture  # noqa: F401 - the "smallDisk" fixture

MiB = 1024 * 1024

_script = Path(sys.executable).with_name("pcpkit")
PCPKIT: list[str] = [str(_script)] if _script.exists() else [sys.executable, "-m", "pcpkit.cli"]


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``pcpkit ARGS`` to completion."""
    return subprocess.run(
        [*PCPKIT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assertOneLineError(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    __tracebackhide__ = True
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


class Running:
    """A ``pcpkit`` subprocess whose stdout is read line by line, with deadlines."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*PCPKIT, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = b""
        self.err = b""

    def waitFor(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Read stdout until ``pattern`` matches it; fail after ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                found = re.search(pattern, self.out.decode("utf-8", "replace"))
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not sel.select(0):
                    self.kill()
                    raise AssertionError(
                        f"no {pattern!r} in the output of {self.proc.args}:\n"
                        f"{self.out.decode()}\n{self.err.decode()}"
                    )
                if sel.select(min(left, 0.5)):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    self.out += chunk

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Send ``sig``, wait for the exit; return the exit status."""
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 30) -> int:
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), True)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.out += out
        self.err += err
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.kill()


def start(started: list[Running], *args: str, cwd: Path) -> Running:
    r = Running(args, cwd)
    started.append(r)
    return r


def payload(path: Path, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


# -- bad input: one line, exit 2 --------------------------------------------------------------


def test_get_of_random_bytes_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "garbage.torrent").write_bytes(random.Random(5).randbytes(4096))
    result = run("get", "garbage.torrent", cwd=tmp_path)
    assertOneLineError(result, 2, "garbage.torrent", "not a .torrent")
    assert result.stdout == ""


def test_get_of_a_missing_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assertOneLineError(run("get", "nothing-here.torrent", cwd=tmp_path), 2, "no such file")


@pytest.mark.parametrize(
    "magnet",
    [
        "magnet:?xt=urn:btih:nothex",
        "magnet:?dn=no-infohash-at-all",
        "magnet:",
    ],
)
def test_get_of_an_invalid_magnet_is_one_line_and_exit_2(tmp_path: Path, magnet: str) -> None:
    assertOneLineError(run("get", magnet, cwd=tmp_path), 2, "magnet")


def test_get_of_a_truncated_torrent_and_of_a_folder(tmp_path: Path) -> None:
    payload(tmp_path / "f.bin", 100_000)
    assert run("make", "f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    raw = (tmp_path / "f.torrent").read_bytes()
    (tmp_path / "cut.torrent").write_bytes(raw[: len(raw) // 2])
    assertOneLineError(run("get", "cut.torrent", cwd=tmp_path), 2, "cut.torrent")
    assertOneLineError(run("get", ".", cwd=tmp_path), 2, "folder")
    assertOneLineError(run("get", "f.torrent", "-o", "f.bin", cwd=tmp_path), 2, "not a folder")


@pytest.mark.parametrize(
    "listen,connect,words",
    [
        ("0", "tcp:onlyahost", ("connect", "port")),
        ("tcp:99999", "tcp:127.0.0.1:80", ("listen", "out of range")),
        ("0", "127.0.0.1:70000", ("connect", "out of range")),
        ("tcp:notaport", "tcp:127.0.0.1:80", ("listen", "notaport")),
    ],
)
def test_relay_on_a_bad_endpoint_is_one_line_and_exit_2(
    tmp_path: Path, listen: str, connect: str, words: tuple[str, ...]
) -> None:
    assertOneLineError(run("relay", listen, connect, cwd=tmp_path), 2, "pcpkit relay", *words)


def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    assertOneLineError(run("frobnicate", cwd=tmp_path), 2, "invalid choice")
    assertOneLineError(run("get", cwd=tmp_path), 2, "required")
    assertOneLineError(
        run("relay", "0", "127.0.0.1:1", "--buffer", "lots", cwd=tmp_path), 2, "--buffer"
    )
    assertOneLineError(run("get", "x.torrent", "--peer", "nohostport", cwd=tmp_path), 2, "--peer")
    assertOneLineError(run("demo", "--size", "0", cwd=tmp_path), 2, "--size")
    assertOneLineError(run("make", "missing.bin", cwd=tmp_path), 2, "missing.bin")
    (tmp_path / "empty").mkdir()
    assertOneLineError(run("make", "empty", cwd=tmp_path), 2, "no files")
    payload(tmp_path / "f.bin", 50_000)
    assertOneLineError(
        run("make", "f.bin", "--piece-size", "1000", cwd=tmp_path), 2, "power of two"
    )
    assertOneLineError(run("seed", "missing-folder", cwd=tmp_path), 2, "missing-folder")
    nothing = run(cwd=tmp_path)
    assert nothing.returncode == 2 and "Traceback" not in nothing.stderr
    helped = run("get", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--peer" in helped.stdout


def test_main_in_process_returns_the_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.torrent").write_bytes(b"d4:junk")
    assert main(["get", str(tmp_path / "junk.torrent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a .torrent" in err


# -- make, seed, get ---------------------------------------------------------------------------


def test_make_then_get_from_a_seed_process(tmp_path: Path, running: list[Running]) -> None:
    data = payload(tmp_path / "data" / "file.bin", 3 * MiB + 12345, seed=7)
    made = run(
        "make",
        "data/file.bin",
        "-o",
        "file.torrent",
        "--piece-size",
        "64K",
        "-t",
        "http://127.0.0.1:9/announce",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "wrote file.torrent" in made.stdout and "pieces of 65.5 kB" in made.stdout
    infohash = re.search(r"infohash ([0-9a-f]{40})", made.stdout)
    assert infohash

    seed = start(running, "seed", "file.torrent", "-o", "data", cwd=tmp_path)
    port = int(seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    assert infohash.group(1) in seed.stdout
    got = run(
        "get", "file.torrent", "-o", "out", "--peer", f"127.0.0.1:{port}", cwd=tmp_path, timeout=60
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert "downloaded file.bin" in got.stdout
    assert (tmp_path / "out" / "file.bin").read_bytes() == data
    assert "Traceback" not in got.stderr

    # Ctrl-C stops the seed cleanly: exit 0, no traceback, and nothing written beside the
    # user's data (no resume file: a seed checks its data in full each time)
    assert seed.interrupt(signal.SIGINT) == 0, seed.stderr
    assert "Traceback" not in seed.stderr, seed.stderr
    assert "stopped seeding" in seed.stdout
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["file.bin"]
    assert not list((tmp_path / "out").glob("*.pcpkit-resume"))


def test_seed_a_path_then_get_its_magnet(tmp_path: Path, running: list[Running]) -> None:
    folder = tmp_path / "share"
    a = payload(folder / "a.bin", 1 * MiB, seed=1)
    b = payload(folder / "sub" / "b.bin", 300_000, seed=2)
    seed = start(running, "seed", "share", "--save-torrent", "share.torrent", cwd=tmp_path)
    magnet = seed.waitFor(r"(magnet:\?\S+)").group(1)
    assert "x.pe=127.0.0.1:" in magnet  # the seed's address travels in the link
    assert (tmp_path / "share.torrent").exists()
    # no --peer: the magnet link names the seed
    got = run("get", magnet, "-o", "out", cwd=tmp_path, timeout=60)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "out" / "share" / "a.bin").read_bytes() == a
    assert (tmp_path / "out" / "share" / "sub" / "b.bin").read_bytes() == b
    # SIGTERM is a Ctrl-C too
    assert seed.interrupt(signal.SIGTERM) == 0, seed.stderr
    assert "Traceback" not in seed.stderr


def test_interrupted_download_saves_resume_data_and_exits_130(
    tmp_path: Path, running: list[Running]
) -> None:
    payload(tmp_path / "data" / "f.bin", 1 * MiB)
    assert run("make", "data/f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    # no peer to download from: it waits until interrupted
    get = start(running, "get", "f.torrent", "-o", "out", cwd=tmp_path)
    get.waitFor(r"downloading f\.bin into")
    assert get.interrupt(signal.SIGINT) == 130
    assert "Traceback" not in get.stderr
    assert "interrupted" in get.stderr
    assert (tmp_path / "out" / "f.bin.pcpkit-resume").stat().st_size > 0


def test_what_each_stop_signal_means() -> None:
    from pcpkit.cli import SIGNAL_REPEAT, StopSignals

    times = iter([10.0, 10.0, 10.0 + SIGNAL_REPEAT / 2, 10.0 + SIGNAL_REPEAT, 99.0])
    signals = StopSignals(clock=lambda: next(times))
    assert [signals.meaning() for _ in range(5)] == [
        "stop",  # the first: clean up and end
        "repeat",  # the same one delivered twice (timeout and the process group)
        "repeat",
        "force",  # a second Ctrl-C: end at once
        "force",
    ]


def test_one_stop_delivered_twice_is_still_a_clean_stop(
    tmp_path: Path, running: list[Running]
) -> None:
    """
    ``timeout`` sends its SIGTERM to the command and to the command's process group: the
    second copy was taken as a second Ctrl-C, the clean-up was cut short (exit 1, "coroutine
    ignored GeneratorExit", or no resume file).
    """
    payload(tmp_path / "data" / "f.bin", 8 * MiB, seed=3)
    seed = start(running, "seed", "data/f.bin", "--save-torrent", "f.torrent", cwd=tmp_path)
    port = seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    # a download under way (slowed down): its clean-up has work to do
    get = start(
        running,
        *("get", "f.torrent", "-o", "out", "--peer", f"127.0.0.1:{port}", "--max-down", "1M"),
        cwd=tmp_path,
    )
    get.waitFor(r"downloading f\.bin into")
    time.sleep(1.0)
    get.proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)  # the first is being acted on when the copy comes
    assert get.interrupt(signal.SIGTERM) == 130, get.stderr
    assert "Traceback" not in get.stderr and "Exception ignored" not in get.stderr
    assert (tmp_path / "out" / "f.bin.pcpkit-resume").stat().st_size > 0


def test_get_seed_keeps_seeding_until_ctrl_c(tmp_path: Path, running: list[Running]) -> None:
    data = payload(tmp_path / "data" / "f.bin", 2 * MiB, seed=9)
    assert run("make", "data/f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    first = start(running, "seed", "f.torrent", "-o", "data", cwd=tmp_path)
    port1 = first.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    second = start(
        running,
        "get",
        "f.torrent",
        "-o",
        "mid",
        "--seed",
        "--peer",
        f"127.0.0.1:{port1}",
        cwd=tmp_path,
    )
    port2 = second.waitFor(r"seeding f\.bin on 127\.0\.0\.1:(\d+)", timeout=60).group(1)
    assert first.interrupt() == 0
    # the first seed is gone: the third peer can only get it from the second
    got = run(
        "get", "f.torrent", "-o", "last", "--peer", f"127.0.0.1:{port2}", cwd=tmp_path, timeout=60
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "last" / "f.bin").read_bytes() == data
    assert second.interrupt() == 0, second.stderr
    assert "Traceback" not in second.stderr


def test_seed_of_wrong_data_fails_with_one_line(tmp_path: Path) -> None:
    payload(tmp_path / "data" / "f.bin", 1 * MiB, seed=1)
    assert run("make", "data/f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    payload(tmp_path / "other" / "f.bin", 1 * MiB, seed=2)
    assertOneLineError(
        run("seed", "f.torrent", "-o", "other", cwd=tmp_path, timeout=60),
        1,
        "missing or wrong",
        "(0 of ",
    )
    (tmp_path / "empty").mkdir()
    assertOneLineError(run("seed", "f.torrent", "-o", "empty", cwd=tmp_path), 2, "not in")


def test_make_versions(tmp_path: Path) -> None:
    payload(tmp_path / "f.bin", 200_000)
    for version, digits in (("v1", 40), ("v2", 64), ("hybrid", 40)):
        made = run("make", "f.bin", "--version", version, "-o", f"{version}.torrent", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        found = re.search(r"infohash ([0-9a-f]+)", made.stdout)
        assert found and len(found.group(1)) == digits


# -- relay ---------------------------------------------------------------------------------------


def test_relay_forwards_and_stops_on_ctrl_c(tmp_path: Path, running: list[Running]) -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen()
        target.settimeout(20)
        targetPort = target.getsockname()[1]
        relay = start(
            running, "relay", "0", f"127.0.0.1:{targetPort}", "--buffer", "64K", cwd=tmp_path
        )
        relayPort = int(relay.waitFor(r"relaying 127\.0\.0\.1:(\d+) ->").group(1))
        data = random.Random(3).randbytes(200_000)
        with socket.create_connection(("127.0.0.1", relayPort), timeout=20) as client:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            conn, _ = target.accept()
            with conn:
                conn.settimeout(20)
                got = bytearray()
                while chunk := conn.recv(65536):
                    got += chunk
                assert bytes(got) == data
                conn.sendall(b"answer")
            # the target's close reaches the client after its answer
            back = bytearray()
            while chunk := client.recv(65536):
                back += chunk
            assert bytes(back) == b"answer"
    assert relay.interrupt() == 0, relay.stderr
    assert "Traceback" not in relay.stderr
    assert "relay stopped: 1 connection(s)" in relay.stdout


def test_relay_on_a_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assertOneLineError(run("relay", str(port), "127.0.0.1:9", cwd=tmp_path), 1, "cannot listen")
    # an interface that does not resolve cannot be listened on either
    assertOneLineError(
        run("relay", "bogus:1", "tcp:127.0.0.1:80", cwd=tmp_path), 1, "cannot listen", "bogus"
    )


# -- the progress display ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_lines_are_periodic() -> None:
    clock, out = Clock(), io.StringIO()
    p = Progress("copying", 1000, stream=out, tty=False, interval=2, clock=clock)
    for i in range(1, 11):
        clock.now += 0.5
        p.update(i * 100)
    p.finish("done")
    lines = out.getvalue().splitlines()
    # one line per 2 s of work, then the final message: no carriage returns
    assert "\r" not in out.getvalue()
    assert lines[-1] == "done"
    assert 2 <= len(lines) - 1 <= 3
    assert lines[0].startswith("copying: ") and "%" in lines[0] and "ETA" in lines[0]


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    clock, out = Clock(), io.StringIO()
    p = Progress("get", 4 * MiB, stream=out, tty=True, clock=clock)
    clock.now += 1
    p.update(MiB, rate=MiB)
    text = out.getvalue()
    assert text.startswith("\r") and "25.0%" in text and "ETA 3s" in text and "#" in text
    p.finish()
    assert out.getvalue().endswith("\r")
    assert formatDuration(None) == "--" and formatDuration(3725) == "1h02m"


# -- data safety, failing loudly, options for scripts ---------------------------------------


def sha256Of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_seed_of_wrong_data_never_writes_it_with_a_live_seeder(
    tmp_path: Path, running: list[Running]
) -> None:
    payload(tmp_path / "data" / "f.bin", 2 * MiB, seed=31)
    assert (
        run("make", "data/f.bin", "-o", "f.torrent", "--piece-size", "64K", cwd=tmp_path).returncode
        == 0
    )
    good = start(running, "seed", "f.torrent", "-o", "data", cwd=tmp_path)
    port = good.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    wrong = tmp_path / "wrong" / "f.bin"
    wrong.parent.mkdir()
    wrong.write_bytes(bytes(2 * MiB))  # zeros: the right size, the wrong data
    before = sha256Of(wrong)
    result = run("seed", "f.torrent", "-o", "wrong", "--peer", f"127.0.0.1:{port}", cwd=tmp_path)
    assertOneLineError(
        result, 1, "cannot seed f.bin", "missing or wrong", "(0 of 32 pieces", "0.0%"
    )
    assert sha256Of(wrong) == before and wrong.stat().st_size == 2 * MiB
    assert sorted(p.name for p in wrong.parent.iterdir()) == ["f.bin"]
    assert good.interrupt() == 0


def test_listen_on_a_busy_port_is_an_error(tmp_path: Path) -> None:
    payload(tmp_path / "f.bin", 100_000)
    assert run("make", "f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (("get", "f.torrent", "-o", "out"), ("seed", "f.torrent")):
            assertOneLineError(
                run(*command, "--listen", f"127.0.0.1:{port}", cwd=tmp_path),
                1,
                f"--listen 127.0.0.1:{port}",
                "in use",
            )


def test_make_rejects_bad_trackers_empty_files_and_piece_sizes(tmp_path: Path) -> None:
    payload(tmp_path / "f.bin", 100_000)
    assertOneLineError(
        run("make", "f.bin", "-t", "notaurl", cwd=tmp_path),
        2,
        "--tracker",
        "'notaurl' is not a tracker URL",
    )
    assertOneLineError(run("seed", "f.bin", "-t", "ftp://x/announce", cwd=tmp_path), 2, "--tracker")
    (tmp_path / "empty.bin").write_bytes(b"")
    assertOneLineError(run("make", "empty.bin", cwd=tmp_path), 2, "empty.bin", "empty (0 bytes)")
    (tmp_path / "hollow").mkdir()
    (tmp_path / "hollow" / "zero").write_bytes(b"")
    assertOneLineError(run("make", "hollow", cwd=tmp_path), 2, "hollow", "empty (0 bytes)")
    assertOneLineError(run("seed", "empty.bin", cwd=tmp_path), 2, "empty (0 bytes)")
    for bad in ("3000", "8K", "lots", "0", "-4"):
        assertOneLineError(
            run("make", "f.bin", "--piece-size", bad, cwd=tmp_path), 2, "--piece-size"
        )
    assert not list(tmp_path.glob("*.torrent"))
    made = run("make", "f.bin", "--piece-size", "32KiB", "-q", cwd=tmp_path)
    assert made.returncode == 0 and made.stdout == "" and made.stderr == ""


def test_a_fifo_named_as_a_torrent_is_refused_not_waited_on(tmp_path: Path) -> None:
    # opening it for reading blocked until a writer came: the command hung
    os.mkfifo(tmp_path / "f.torrent")
    for args in (("get", "f.torrent"), ("get", "f.torrent", "--list")):
        assertOneLineError(run(*args, cwd=tmp_path, timeout=20), 2, "not a regular file")
    # (seed takes a path that is not a regular .torrent file as data to share)
    assertOneLineError(run("seed", "f.torrent", cwd=tmp_path, timeout=20), 2, "f.torrent")


def test_a_torrent_is_never_written_into_the_data_it_describes(tmp_path: Path) -> None:
    """
    ``make -o`` or ``seed --save-torrent`` naming the data, or a path inside its folder,
    wrote the .torrent over the user's file (and ``seed`` then failed its own check).
    """
    payload(tmp_path / "data.bin", 300_000, seed=5)
    payload(tmp_path / "album" / "a.bin", 200_000, seed=6)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*.bin")}
    for args in (
        ("make", "data.bin", "-o", "data.bin"),
        ("make", "album", "-o", "album/a.bin"),
        ("make", "album", "-o", "album/new.torrent"),
        ("make", "album", "-o", "album"),  # a folder: album/album.torrent
    ):
        assertOneLineError(run(*args, cwd=tmp_path), 2, "-o", "inside the data being shared")
    for target in ("data.bin", "./data.bin"):
        assertOneLineError(
            run("seed", "data.bin", "--save-torrent", target, cwd=tmp_path),
            2,
            "--save-torrent",
            "inside the data being shared",
        )
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*.bin")}
    assert after == before
    assert not list(tmp_path.rglob("*.torrent")) and not list(tmp_path.rglob("*.tmp"))
    # beside the data is fine
    assert run("make", "album", "-o", "album.torrent", "-q", cwd=tmp_path).returncode == 0


class _RefusingTracker:
    """An HTTP tracker on 127.0.0.1 that answers every announce with a failure reason."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"d14:failure reason14:not authorizede"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/announce"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_tracker_errors_show_in_the_progress_line(tmp_path: Path, running: list[Running]) -> None:
    tracker = _RefusingTracker()
    try:
        payload(tmp_path / "data" / "f.bin", 100_000)
        assert (
            run("make", "data/f.bin", "-o", "f.torrent", "-t", tracker.url, cwd=tmp_path).returncode
            == 0
        )
        plain = start(running, "get", "f.torrent", "-o", "out", cwd=tmp_path)
        plain.waitFor(r"tracker: http://127\.0\.0\.1:\d+/announce: not authorized")
        assert plain.interrupt() == 130
        scripted = start(running, "get", "f.torrent", "-o", "out2", "--json", cwd=tmp_path)
        scripted.waitFor(r'"trackerError": "[^"]*not authorized"')
        assert scripted.interrupt() == 130
        for line in scripted.stdout.splitlines():
            assert "event" in json.loads(line)
    finally:
        tracker.close()


def test_resumed_download_counts_this_run_and_removes_its_resume_file(
    tmp_path: Path, running: list[Running]
) -> None:
    data = payload(tmp_path / "data" / "f.bin", 2 * MiB, seed=32)
    assert (
        run("make", "data/f.bin", "-o", "f.torrent", "--piece-size", "64K", cwd=tmp_path).returncode
        == 0
    )
    # the first half is there already, with the resume data of an interrupted run
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f.bin").write_bytes(data[:MiB])
    first = start(running, "get", "f.torrent", "-o", "out", cwd=tmp_path)
    first.waitFor(r"downloading f\.bin into")
    assert first.interrupt() == 130
    resume = tmp_path / "out" / "f.bin.pcpkit-resume"
    assert resume.stat().st_size > 0
    seed = start(running, "seed", "f.torrent", "-o", "data", cwd=tmp_path)
    port = seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    got = run(
        "get", "f.torrent", "-o", "out", "--peer", f"127.0.0.1:{port}", "--json", cwd=tmp_path
    )
    assert got.returncode == 0, got.stderr
    events = [json.loads(line) for line in got.stdout.splitlines()]
    (done,) = [e for e in events if e["event"] == "downloaded"]
    assert done["size"] == 2 * MiB
    # This run fetched the missing half, not the whole file. libtorrent counts every payload
    # byte received, so a few pieces requested twice in end-game mode may add to it.
    assert MiB <= done["fetched"] < MiB + MiB // 2, done
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert not resume.exists()
    assert seed.interrupt() == 0


def test_seed_retries_a_peer_that_was_not_ready(tmp_path: Path, running: list[Running]) -> None:
    data = payload(tmp_path / "data" / "f.bin", 1 * MiB, seed=33)
    assert run("make", "data/f.bin", "-o", "f.torrent", cwd=tmp_path).returncode == 0
    # the seed is told of a peer that is not ready: its port answers and hangs up at once
    notReady = socket.socket()
    notReady.bind(("127.0.0.1", 0))
    notReady.listen(8)
    notReady.settimeout(30)
    port = notReady.getsockname()[1]
    seed = start(
        running, "seed", "f.torrent", "-o", "data", "--peer", f"127.0.0.1:{port}", cwd=tmp_path
    )
    seed.waitFor(r"listening on")
    with notReady:
        # more attempts than libtorrent's max_failcount (3): the downloader starts late
        for attempt in range(5):
            try:
                conn, _ = notReady.accept()
            except TimeoutError:
                pytest.fail(f"the seed gave up on its --peer after {attempt} attempt(s)")
            # a reset: no TIME_WAIT left on the port the downloader takes next
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
    # the downloader knows no peer: only the seed's retries can find it
    got = run("get", "f.torrent", "-o", "out", "--listen", f"127.0.0.1:{port}", "-q", cwd=tmp_path)
    assert got.returncode == 0 and got.stdout == "", got.stdout + got.stderr
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert seed.interrupt() == 0


def test_max_down_limits_the_rate(tmp_path: Path, running: list[Running]) -> None:
    data = payload(tmp_path / "data" / "f.bin", 1 * MiB, seed=34)
    assert (
        run("make", "data/f.bin", "-o", "f.torrent", "--piece-size", "16K", cwd=tmp_path).returncode
        == 0
    )
    seed = start(running, "seed", "f.torrent", "-o", "data", "--max-up", "2M", cwd=tmp_path)
    port = seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    limit = 256 * 1024
    got = run(
        "get",
        "f.torrent",
        "-o",
        "out",
        "--peer",
        f"127.0.0.1:{port}",
        "--json",
        "--max-down",
        "256K",
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    events = [json.loads(line) for line in got.stdout.splitlines()]
    rates = [e["downRate"] for e in events if e["event"] == "status"]
    # 1 MiB at 256 KiB/s takes about four seconds: several status lines, none far above
    assert len(rates) >= 4 and max(rates) <= 1.5 * limit, rates
    assert seed.interrupt() == 0


def test_list_and_choose_files(tmp_path: Path, running: list[Running]) -> None:
    share = tmp_path / "share"
    a = payload(share / "a.bin", 300_000, seed=35)
    payload(share / "b.bin", 600_000, seed=36)
    c = payload(share / "sub" / "c.bin", 200_000, seed=37)
    assert run("make", "share", "-o", "share.torrent", cwd=tmp_path).returncode == 0
    listed = run("get", "share.torrent", "--list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2"]
    assert lines[2].endswith(os.path.join("share", "sub", "c.bin"))
    files = [
        json.loads(line)
        for line in run(
            "get", "share.torrent", "--list", "--json", cwd=tmp_path
        ).stdout.splitlines()
    ]
    assert [(f["index"], f["size"]) for f in files] == [(0, 300_000), (1, 600_000), (2, 200_000)]
    assertOneLineError(
        run("get", "share.torrent", "--files", "0,7", cwd=tmp_path), 2, "--files", "no file 7"
    )
    assertOneLineError(run("get", "share.torrent", "--files", "x", cwd=tmp_path), 2, "--files")
    seed = start(running, "seed", "share.torrent", "-o", ".", cwd=tmp_path)
    port = seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    got = run(
        "get",
        "share.torrent",
        "-o",
        "out",
        "--files",
        "0,2",
        "--peer",
        f"127.0.0.1:{port}",
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "share" / "a.bin").read_bytes() == a
    assert (tmp_path / "out" / "share" / "sub" / "c.bin").read_bytes() == c
    assert not (tmp_path / "out" / "share" / "b.bin").exists()
    assert seed.interrupt() == 0


def test_a_full_disk_fails_the_download_with_its_error(
    tmp_path: Path, running: list[Running], smallDisk: Path
) -> None:
    payload(tmp_path / "data" / "big.bin", 12 * MiB, seed=38)  # the disk holds 8 MiB
    assert run("make", "data/big.bin", "-o", "big.torrent", cwd=tmp_path).returncode == 0
    seed = start(running, "seed", "big.torrent", "-o", "data", cwd=tmp_path)
    port = seed.waitFor(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    got = run(
        "get", "big.torrent", "-o", str(smallDisk), "--peer", f"127.0.0.1:{port}", cwd=tmp_path
    )
    assertOneLineError(got, 1, "pcpkit get:", "No space left on device")
    assert "downloaded big.bin" not in got.stdout
    # never reported complete, and no resume file claiming pieces that are not on disk
    assert not list(smallDisk.glob("*.pcpkit-resume*"))
    assert seed.interrupt() == 0
