"""
makeTorrent, the info-hash and magnet helpers, BasicTorrentExplainer and the TIPC messages.
"""

from __future__ import annotations

from pathlib import Path

import libtorrent
import pytest

from pcpkit.torrent import ipc
from pcpkit.torrent.maker import (
    BasicTorrentExplainer,
    InvalidTorrent,
    infohashOf,
    makeTorrent,
    parseMagnet,
    torrentName,
)
from tests.torrentutil import writePayload


def decoded(raw: bytes) -> dict[bytes, object]:
    value = libtorrent.bdecode(raw)
    assert isinstance(value, dict)
    return value


def test_make_a_v1_torrent_of_a_file(tmp_path: Path) -> None:
    writePayload(tmp_path, "data.bin", 1_000_000)
    raw = makeTorrent(
        tmp_path / "data.bin",
        trackers=["http://127.0.0.1:1/announce", ["http://a/announce", "http://b/announce"]],
        pieceSize=32 * 1024,
        comment="hello",
    )
    meta = decoded(raw)
    info = meta[b"info"]
    assert isinstance(info, dict)
    assert info[b"name"] == b"data.bin" and info[b"length"] == 1_000_000
    assert info[b"piece length"] == 32 * 1024
    assert b"meta version" not in info and b"file tree" not in info  # v1 only
    assert meta[b"comment"] == b"hello" and meta[b"created by"] == b"pcpkit"
    assert meta[b"announce"] == b"http://127.0.0.1:1/announce"
    assert meta[b"announce-list"] == [
        [b"http://127.0.0.1:1/announce"],
        [b"http://a/announce", b"http://b/announce"],
    ]
    assert len(infohashOf(raw)) == 40 and torrentName(raw) == "data.bin"


def test_make_a_torrent_of_a_directory_and_report_progress(tmp_path: Path) -> None:
    folder = tmp_path / "album"
    for i in range(3):
        writePayload(folder / "sub", f"t{i}.bin", 100_000 + i, seed=i)
    seen: list[tuple[int, int]] = []
    raw = makeTorrent(folder, pieceSize=16 * 1024, progress=lambda d, t: seen.append((d, t)))
    info = decoded(raw)[b"info"]
    assert isinstance(info, dict) and info[b"name"] == b"album"
    files = info[b"files"]
    assert isinstance(files, list)
    assert sorted(f[b"path"] for f in files) == [[b"sub", f"t{i}.bin".encode()] for i in range(3)]
    total = seen[-1][1]
    assert seen[-1] == (total, total) and len(seen) == total


@pytest.mark.parametrize(("version", "hexlen"), [("v1", 40), ("hybrid", 40), ("v2", 64)])
def test_versions(tmp_path: Path, version: str, hexlen: int) -> None:
    writePayload(tmp_path, "f.bin", 100_000)
    raw = makeTorrent(tmp_path / "f.bin", version=version)
    info = decoded(raw)[b"info"]
    assert isinstance(info, dict)
    assert (b"meta version" in info) == (version != "v1")
    assert (b"pieces" in info) == (version != "v2")
    assert len(infohashOf(raw)) == hexlen


def test_maker_errors_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(FileNotFoundError) as info:
        makeTorrent(missing)
    assert info.value.filename == str(missing) and str(missing) in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        makeTorrent(tmp_path / "empty")
    writePayload(tmp_path, "f.bin", 10)
    with pytest.raises(ValueError, match="power of two"):
        makeTorrent(tmp_path / "f.bin", pieceSize=3 * 16384)
    with pytest.raises(ValueError, match="power of two"):
        makeTorrent(tmp_path / "f.bin", pieceSize=8192)
    with pytest.raises(ValueError, match="'v1', 'v2' or 'hybrid'"):
        makeTorrent(tmp_path / "f.bin", version="v3")
    with pytest.raises(InvalidTorrent, match="not a .torrent"):
        infohashOf(b"garbage")


def test_parse_magnet() -> None:
    ih = "ab" * 20
    magnet = parseMagnet(f"magnet:?xt=urn:btih:{ih}&dn=Some+Name&tr=http%3A%2F%2Ft%2Fannounce")
    assert magnet.infohash == ih and magnet.name == "Some Name"
    assert magnet.trackers == ["http://t/announce"]
    assert parseMagnet(f"magnet:?xt=urn:btih:{ih}").name == ih
    for bad in ("magnet:?xt=urn:btih:nothex", "magnet:?dn=x", "ftp://x", ""):
        with pytest.raises(InvalidTorrent, match="invalid magnet link"):
            parseMagnet(bad)


def test_messages_have_kamaelia_fields_and_readable_lines() -> None:
    status = ipc.TIPCTorrentStatusUpdate(
        3,
        {
            "fractionDone": 0.42,
            "downRate": 1_234_567,
            "upRate": 0,
            "numPeers": 3,
            "name": "movie.mkv",
            "activity": "downloading",
            "timeEst": 75.0,
        },
    )
    assert str(status) == (
        "torrent 3 (movie.mkv): 42.0% done, 1.2 MB/s down, 0 B/s up, 3 peers, downloading"
    )
    create = ipc.TIPCCreateNewTorrent(rawmetainfo=b"d...e", savefolder="/tmp/x")
    assert (create.rawmetainfo, create.magnet, create.savefolder) == (b"d...e", None, "/tmp/x")
    assert "5 bytes" in str(create) and "/tmp/x" in str(create)
    assert "magnet" in str(ipc.TIPCCreateNewTorrent(magnet="magnet:?xt=urn:btih:" + "a" * 40))
    close = ipc.TIPCCloseTorrent(4)
    assert close.deleteFiles is False and str(close) == "close torrent 4"
    assert "delete" in str(ipc.TIPCCloseTorrent(4, deleteFiles=True))
    make = ipc.TIPCMakeTorrent("http://t/announce", 18, "title", "comment", "/src")
    assert (make.trackerurl, make.log2piecesizebytes, make.title, make.comment, make.srcfile) == (
        "http://t/announce",
        18,
        "title",
        "comment",
        "/src",
    )
    assert "262.1 kB" in str(make)
    assert str(ipc.TIPCNewTorrentCreated(1, "/d")) == "torrent 1 started, saving into /d"
    assert str(ipc.TIPCTorrentStartFail("bad")) == "torrent failed to start: bad"
    assert "torrent 2" in str(ipc.TIPCTorrentAlreadyDownloading(2))
    assert str(ipc.TIPCTorrentFinished(5)) == "torrent 5 finished"
    assert str(ipc.TIPCTorrentClosed(5)) == "torrent 5 closed"
    assert str(ipc.TIPCUnknownTorrent(6)) == "no torrent 6 in this client"
    assert str(ipc.TIPCTorrentError(7, "oops")) == "torrent 7 error: oops"
    passOn = ipc.TIPCServicePassOn(("patron", "inbox"), close)
    assert passOn.replyService == ("patron", "inbox") and passOn.message is close
    assert "close torrent 4" in str(passOn)
    assert ipc.TIPCServiceAdd("r").replyService == "r"
    assert "remove" in str(ipc.TIPCServiceRemove("r"))
    for cls in (ipc.TIPCServiceAdd, ipc.TIPCTorrentFinished, ipc.TIPCCloseTorrent):
        assert issubclass(cls, ipc.TIPC)
    assert ipc.formatBytes(999) == "999 B" and ipc.formatBytes(1_500_000_000) == "1.5 GB"


def test_explainer() -> None:
    explain = BasicTorrentExplainer().explain
    assert explain(ipc.TIPCNewTorrentCreated(1, "/d")) == "New torrent 1 created in /d"
    assert explain(ipc.TIPCTorrentStartFail("x")) == "Torrent failed to start: x"
    assert "already downloading" in explain(ipc.TIPCTorrentAlreadyDownloading(2))
    assert explain(ipc.TIPCTorrentFinished(3)) == "Torrent 3 has finished downloading"
    line = explain(
        ipc.TIPCTorrentStatusUpdate(
            4,
            {
                "fractionDone": 0.5,
                "downRate": 2_000_000,
                "upRate": 1000,
                "numPeers": 2,
                "name": "n",
                "timeEst": 125.0,
                "activity": "downloading",
            },
        )
    )
    assert line == (
        "Torrent 4 (n): 50.0% done, 2.0 MB/s down, 1.0 kB/s up, 2 peers, 2m05s left [downloading]"
    )
    assert explain(ipc.TIPCCloseTorrent(1)) == "Request: close torrent 1"
    assert explain(ipc.TIPCTorrentClosed(1)) == "Torrent 1 closed"
    assert explain(ipc.TIPCUnknownTorrent(9)) == "There is no torrent 9"
    assert explain(ipc.TIPCTorrentError(2, "disk full")) == "Torrent 2 error: disk full"
    assert explain("anything") == "anything"
    assert explain(b"12345") == "5 B of data"
