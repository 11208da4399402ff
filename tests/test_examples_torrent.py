"""The torrent examples run as a new user would run them: no arguments, no network."""

from __future__ import annotations

from pathlib import Path

from tests.exampleutil import runExample


def test_torrent_download_example_selfcontained() -> None:
    result = runExample("torrent_download.py")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # both patrons' messages, explained by BasicTorrentExplainer
    assert "[seed] New torrent 1 created in" in out
    assert "[get]  New torrent 1 created in" in out
    assert "[get]  Torrent 1 has finished downloading" in out
    assert "of the downloaded copy matches the seeded payload" in out
    assert out.rstrip().splitlines()[-1].startswith("OK: SHA-256 ")


def test_torrent_download_example_reports_a_bad_torrent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"this is not bencoded")
    result = runExample("torrent_download.py", str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Torrent failed to start: not a .torrent" in result.stdout
    assert "FAILED: not a .torrent" in result.stdout


def test_torrent_stream_example_selfcontained() -> None:
    result = runExample("torrent_stream.py")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "streaming movie.bin in order" in out
    assert "streamed  16.8 MB (100.0%)" in out
    assert "OK: 16777216 bytes arrived in order; SHA-256 " in out
    assert "matches the seeded payload" in out


def test_torrent_stream_example_slow_consumer_to_a_file(tmp_path: Path) -> None:
    copy = tmp_path / "copy.bin"
    result = runExample("torrent_stream.py", "--size", "4", "--rate", "4", "--output", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 4194304 bytes arrived in order" in result.stdout
    assert copy.stat().st_size == 4 * 1024 * 1024
    # a consumer slower than the download pauses the stream
    assert "the consumer paused the stream 0 times" not in result.stdout
