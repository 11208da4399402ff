"""
Peers that find each other only through a real tracker (a local opentracker), and a second
BitTorrent implementation (aria2c) on both ends of a transfer.

Nothing is skipped: without opentracker or aria2c installed these tests fail, saying
which Debian package to install.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import pytest_twisted

from pcpkit.torrent.maker import infohashOf, makeTorrent
from tests.torrentutil import (
    MiB,
    OpenTracker,
    Recorder,
    Sessions,
    aria2c,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    trackerFixture,  # noqa: F401 - the "tracker" fixture
    withTimeout,
    writePayload,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def trackedTorrent(
    tracker: OpenTracker, folder: Path, size: int, seed: int
) -> tuple[bytes, bytes, str]:
    """Payload in ``folder``, a v1 torrent announcing to the tracker, the tracker started."""
    data = writePayload(folder, "payload.bin", size, seed)
    raw = makeTorrent(folder / "payload.bin", trackers=[tracker.announceURL])
    infohash = infohashOf(raw)
    await tracker.start([infohash])
    return data, raw, infohash


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_peers_find_each_other_through_opentracker(
    sessions: Sessions, tracker: OpenTracker, tmp_path: Path
) -> None:
    data, raw, infohash = await trackedTorrent(tracker, tmp_path / "seed", 6 * MiB, seed=11)
    seeder, downloader = sessions(), sessions()
    recorder = Recorder()
    downloader.addObserver(recorder)
    await withTimeout(seeder.addTorrent(raw, savefolder=str(tmp_path / "seed"), seed=True), 15)
    await tracker.waitForSeeds(infohash)
    # no connectPeer: DHT, LSD and PEX are off, so the tracker is the only way
    added = await withTimeout(downloader.addTorrent(raw, savefolder=str(tmp_path / "dl")), 10)
    await recorder.finished(added.torrentid, timeout=40)
    assert sha256((tmp_path / "dl" / "payload.bin").read_bytes()) == sha256(data)
    assert tracker.scrape(infohash)[0] >= 1


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_aria2c_downloads_what_pcpkit_seeds(
    sessions: Sessions, tracker: OpenTracker, tmp_path: Path
) -> None:
    data, raw, infohash = await trackedTorrent(tracker, tmp_path / "seed", 8 * MiB, seed=12)
    seeder = sessions()
    await withTimeout(seeder.addTorrent(raw, savefolder=str(tmp_path / "seed"), seed=True), 15)
    await tracker.waitForSeeds(infohash)

    torrentFile = tmp_path / "payload.torrent"
    torrentFile.write_bytes(raw)
    target = tmp_path / "aria2-dl"
    target.mkdir()
    # --seed-time=0: exit as soon as the download is complete and verified
    process = aria2c(torrentFile, target, "--seed-time=0")
    try:
        code = await withTimeout(process.ended, 70)
    finally:
        await process.stop()
    assert code == 0, f"aria2c failed ({code}):\n{process.text()}"
    assert sha256((target / "payload.bin").read_bytes()) == sha256(data)


@pytest.mark.timeout(90)
@pytest_twisted.ensureDeferred
async def test_pcpkit_downloads_what_aria2c_seeds(
    sessions: Sessions, tracker: OpenTracker, tmp_path: Path
) -> None:
    source = tmp_path / "aria2-seed"
    data, raw, infohash = await trackedTorrent(tracker, source, 8 * MiB, seed=13)
    torrentFile = tmp_path / "payload.torrent"
    torrentFile.write_bytes(raw)
    # -V: verify the data first; --seed-ratio=0.0: then seed until we stop it
    process = aria2c(torrentFile, source, "-V", "--seed-ratio=0.0")
    try:
        await tracker.waitForSeeds(infohash, timeout=30)
        downloader = sessions()
        recorder = Recorder()
        downloader.addObserver(recorder)
        added = await withTimeout(downloader.addTorrent(raw, savefolder=str(tmp_path / "dl")), 10)
        await recorder.finished(added.torrentid, timeout=60)
        assert process.running, f"aria2c ended early:\n{process.text()}"
    finally:
        await process.stop()
    assert sha256((tmp_path / "dl" / "payload.bin").read_bytes()) == sha256(data)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_hybrid_and_v2_torrents_work_between_pcpkit_sessions(
    sessions: Sessions, tmp_path: Path
) -> None:
    # (aria2 1.36 cannot join these; libtorrent sessions can)
    for version in ("hybrid", "v2"):
        folder = tmp_path / version
        data = writePayload(folder, "payload.bin", 2 * MiB, seed=14)
        raw = makeTorrent(folder / "payload.bin", version=version)
        seeder, downloader = sessions(), sessions()
        recorder = Recorder()
        downloader.addObserver(recorder)
        seeded = await withTimeout(seeder.addTorrent(raw, savefolder=str(folder), seed=True), 15)
        added = await withTimeout(
            downloader.addTorrent(raw, savefolder=str(tmp_path / f"dl-{version}")), 10
        )
        assert added.infohash == seeded.infohash == infohashOf(raw)
        assert len(added.infohash) == (40 if version == "hybrid" else 64)
        downloader.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
        await recorder.finished(added.torrentid, timeout=20)
        assert (tmp_path / f"dl-{version}" / "payload.bin").read_bytes() == data
