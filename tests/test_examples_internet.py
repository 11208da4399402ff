"""The TCP and file examples run as a new user would run them (bounded, 127.0.0.1 only)."""

from __future__ import annotations

from tests.exampleutil import runExample


def test_file_to_tcp_example() -> None:
    result = runExample("file_to_tcp.py", "--size", "120000", "--rate", "200000")
    assert result.returncode == 0, result.stderr
    assert "every byte arrived, in order" in result.stdout
    assert "received 120000 bytes" in result.stdout


def test_echo_server_example_selftest() -> None:
    result = runExample("echo_server.py", "--selftest", "--clients", "10")
    assert result.returncode == 0, result.stderr
    assert "10 of 10 clients got their exact echo" in result.stdout
