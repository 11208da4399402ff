"""examples/chat_server.py and examples/tee.py run as a user would run them."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

from tests.exampleutil import runExample


def test_chat_server_selftest() -> None:
    result = runExample("chat_server.py", "--selftest", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout.splitlines()
    match = re.search(
        r"never reads: (\d+) lines dropped, its queue never above (\d+)", result.stdout
    )
    assert match is not None, result.stdout
    assert int(match.group(1)) > 0 and int(match.group(2)) <= 64


def test_chat_server_bad_option() -> None:
    result = runExample("chat_server.py", "--queue", "0", timeout=30)
    assert result.returncode != 0
    assert "--queue" in result.stderr


def test_chat_server_port_busy() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runExample("chat_server.py", "--port", str(port), timeout=30)
    assert result.returncode != 0
    assert f"--port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_tee_selftest() -> None:
    result = runExample("tee.py", "--selftest", "--size", "8", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "copies identical" in result.stdout and "OK" in result.stdout.splitlines()


def test_tee_copies_and_refuses_to_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    result = runExample("tee.py", str(src), str(a), str(b), "--rate", f"{b}=2000000")
    assert result.returncode == 0, result.stdout + result.stderr
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hashlib.sha256(a.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(b.read_bytes()).hexdigest() == digest
    a.write_bytes(b"keep me")
    result = runExample("tee.py", str(src), str(a))
    assert result.returncode != 0
    assert "exists; pass --force" in result.stderr
    assert a.read_bytes() == b"keep me"
    result = runExample("tee.py", str(src), str(a), "--rate", "nope=1")
    assert result.returncode != 0 and "--rate" in result.stderr
    result = runExample("tee.py", str(src), str(tmp_path / "no" / "such" / "dir.bin"))
    assert result.returncode != 0 and "is not a writable directory" in result.stderr
