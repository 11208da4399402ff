"""
``pcpkit.torrent.transfer`` (download / seed) and the engine's data safety, against real
libtorrent sessions on 127.0.0.1: a seed never writes to the user's data, even with a live
seeder of the real data in the swarm; a full disk (a real, small tmpfs) is an error that is
shown, never reported as completion, and never served.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError

from pcpkit.testing import RecordingConsumer
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.session import TorrentDataMismatch, TorrentError, TorrentStatus
from pcpkit.torrent.stream import streamFile
from pcpkit.torrent.transfer import Transfer, TransferResult, download, seed
from tests.torrentutil import (
    MAX_FAILCOUNT,
    PLAINTEXT,
    FailingPeer,
    MiB,
    OpenTracker,
    Sessions,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    smallDiskFixture,  # noqa: F401 - the "smallDisk" fixture
    trackerFixture,  # noqa: F401 - the "tracker" fixture
    waitUntil,
    withTimeout,
    writePayload,
)

PIECE = 256 * 1024


def sha256File(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- seeding never writes --------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_seed_of_wrong_data_never_writes_it_with_a_live_seeder_in_the_swarm(
    sessions: Sessions, tracker: OpenTracker, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    data = writePayload(real, "big.bin", 6 * MiB, seed=21)
    raw = makeTorrent(real / "big.bin", trackers=[tracker.announceURL], pieceSize=PIECE)
    infohash = infohashOf(raw)
    await tracker.start([infohash])
    # a live seeder of the real data, findable through the tracker and told to the seed
    good = sessions()
    await withTimeout(seed(good, raw, str(real)), 15)
    await tracker.waitForSeeds(infohash)

    user = sessions()
    cases = {
        "zeros": bytes(len(data)),
        "half": data[: len(data) // 2] + bytes(len(data) - len(data) // 2),
        "short": data[: len(data) // 3],
    }
    for label, content in cases.items():
        folder = tmp_path / f"user-{label}"
        folder.mkdir()
        (folder / "big.bin").write_bytes(content)
        before = sha256File(folder / "big.bin")
        attempt = seed(user, raw, str(folder), peers=[("127.0.0.1", good.listenPort)])
        with pytest.raises(TorrentDataMismatch) as info:
            await withTimeout(attempt, 20)
        assert info.value.piecesDone < info.value.piecesTotal
        assert "missing or wrong" in info.value.reason
        await attempt.close()
        assert sha256File(folder / "big.bin") == before, label
        assert (folder / "big.bin").stat().st_size == len(content), label
        assert sorted(os.listdir(folder)) == ["big.bin"], label  # no part or resume file
    assert user.torrentIds() == []
    # the same session seeds the real data
    ok = await withTimeout(seed(user, raw, str(real)), 15)
    assert isinstance(ok, TransferResult) and ok.downloaded == 0
    assert sha256File(real / "big.bin") == hashlib.sha256(data).hexdigest()


# -- download, progress, resume, cancellation ------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_download_reports_progress_and_counts_only_what_it_fetched(
    sessions: Sessions, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    data = writePayload(source, "f.bin", 4 * MiB, seed=22)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    seeder, getter = sessions(), sessions()
    await withTimeout(seed(seeder, raw, str(source)), 15)
    # half the data is already there: only the other half is fetched
    target = tmp_path / "target"
    target.mkdir()
    (target / "f.bin").write_bytes(data[: 2 * MiB])
    resume = tmp_path / "f.resume"
    resume.write_bytes(b"not resume data")  # unusable: ignored, the data is checked
    statuses: list[TorrentStatus] = []
    transfer = download(
        getter,
        raw,
        str(target),
        resumeFile=str(resume),
        peers=[("127.0.0.1", seeder.listenPort)],
        onStatus=statuses.append,
    )
    assert isinstance(transfer, Transfer)
    result = await withTimeout(transfer, 30)
    assert (target / "f.bin").read_bytes() == data
    assert result.totalSize == len(data) and result.name == "f.bin"
    assert 2 * MiB <= result.downloaded < 2 * MiB + 4 * PIECE, result.downloaded
    assert statuses and all(s["torrentid"] == result.torrentid for s in statuses)
    # complete: the resume file is gone; the torrent seeds until closed
    await waitUntil(lambda: not resume.exists(), 5, "the resume file to go")
    assert transfer.status() is not None and transfer.status()["isSeeding"]  # type: ignore[index]
    await transfer.close()
    assert getter.torrentIds() == [] and transfer.status() is None


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_cancel_saves_resume_data_and_a_resumed_download_fetches_the_rest(
    sessions: Sessions, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    data = writePayload(source, "f.bin", 3 * MiB, seed=23)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    getter = sessions()
    target, resume = tmp_path / "target", tmp_path / "f.resume"
    # nobody to download from: it waits until cancelled
    transfer = download(getter, raw, str(target), resumeFile=str(resume))
    await waitUntil(lambda: transfer.torrentid is not None, 10, "the torrent to be added")
    transfer.cancel()
    with pytest.raises(CancelledError):
        await transfer
    await withTimeout(transfer.close(), 10)
    assert resume.stat().st_size > 0 and getter.torrentIds() == []

    seeder = sessions()
    await withTimeout(seed(seeder, raw, str(source)), 15)
    again = download(
        getter, raw, str(target), resumeFile=str(resume), peers=[("127.0.0.1", seeder.listenPort)]
    )
    result = await withTimeout(again, 30)
    assert (target / "f.bin").read_bytes() == data and result.downloaded >= len(data)
    assert not resume.exists()
    await again.close()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_download_retries_a_peer_that_was_not_listening_yet(
    sessions: Sessions, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    data = writePayload(source, "f.bin", 1 * MiB, seed=24)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    seeder = sessions()
    port = await withTimeout(seeder.whenListening(), 10)
    getter = sessions()
    # the seeder has no such torrent yet: the first connections are dropped
    transfer = download(
        getter, raw, str(tmp_path / "out"), peers=[("127.0.0.1", port)], peerRetry=0.3
    )
    await waitUntil(lambda: transfer.torrentid is not None, 10, "the torrent to be added")
    await withTimeout(seed(seeder, raw, str(source)), 15)
    await withTimeout(transfer, 30)
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    await transfer.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("caller", ["seed", "download"])
@pytest_twisted.ensureDeferred
async def test_a_peer_is_retried_after_more_failures_than_max_failcount(
    sessions: Sessions, tmp_path: Path, caller: str
) -> None:
    source = tmp_path / "source"
    data = writePayload(source, "f.bin", 1 * MiB, seed=28)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    out = str(tmp_path / "out")
    fake = FailingPeer()
    port = fake.port
    first = sessions(settings=PLAINTEXT)
    peers = [("127.0.0.1", port)]
    start = seed if caller == "seed" else download
    folder = str(source) if caller == "seed" else out
    with pytest.raises(ValueError, match="peerRetry must be above 0"):
        start(first, raw, folder, peers=peers, peerRetry=0)
    assert first.torrentIds() == []
    transfer = start(first, raw, folder, peers=peers, peerRetry=0.2)
    # libtorrent drops a peer after max_failcount failed connections unless told again
    failures = MAX_FAILCOUNT + 1
    try:
        await waitUntil(lambda: fake.attempts >= failures, 30, f"{failures} failed attempts")
    finally:
        await fake.stop()
    # the real peer takes the port over: the next retry finds it
    second = sessions(
        settings={
            "listen_interfaces": f"127.0.0.1:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
        }
    )
    assert await withTimeout(second.whenListening(), 10) == port
    if caller == "seed":
        await withTimeout(transfer, 15)
        other = download(second, raw, out)
        await withTimeout(other, 30)
    else:
        other = seed(second, raw, str(source))
        await withTimeout(transfer, 30)
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    await transfer.close()
    await other.close()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_download_of_chosen_files_only(sessions: Sessions, tmp_path: Path) -> None:
    share = tmp_path / "share"
    a = writePayload(share, "a.bin", 1 * MiB, seed=25)
    writePayload(share, "b.bin", 2 * MiB, seed=26)
    c = writePayload(share, "c.bin", 1 * MiB, seed=27)
    raw = makeTorrent(share, pieceSize=PIECE)
    seeder, getter = sessions(), sessions()
    await withTimeout(seed(seeder, raw, str(tmp_path)), 15)
    with pytest.raises(ValueError, match="no file 7"):
        download(getter, raw, str(tmp_path / "out"), files=[7])
    transfer = download(
        getter, raw, str(tmp_path / "out"), files=[0, 2], peers=[("127.0.0.1", seeder.listenPort)]
    )
    result = await withTimeout(transfer, 30)
    assert (tmp_path / "out" / "share" / "a.bin").read_bytes() == a
    assert (tmp_path / "out" / "share" / "c.bin").read_bytes() == c
    assert not (tmp_path / "out" / "share" / "b.bin").exists()
    assert result.totalSize == len(a) + len(c)
    await transfer.close()


# -- a full disk -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_full_disk_is_an_error_never_a_completion_and_is_not_streamed(
    sessions: Sessions, smallDisk: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    writePayload(source, "big.bin", 12 * MiB, seed=28)  # larger than the 8 MiB disk
    raw = makeTorrent(source / "big.bin", pieceSize=PIECE)
    seeder, getter = sessions(), sessions()
    await withTimeout(seed(seeder, raw, str(source)), 15)
    resume = tmp_path / "big.resume"
    transfer = download(
        getter,
        raw,
        str(smallDisk),
        resumeFile=str(resume),
        peers=[("127.0.0.1", seeder.listenPort)],
    )
    with pytest.raises(TorrentError, match="No space left on device"):
        await withTimeout(transfer, 30)
    tid = transfer.torrentid
    assert tid is not None
    status = getter.status(tid)
    assert status["error"] and "No space left" in status["error"]
    assert status["activity"].startswith("error: ")
    assert status["state"] == "error"
    assert not status["isFinished"] and not status["isSeeding"]
    assert status["fractionDone"] < 1.0
    # nothing of it is served: what is on disk was not all written
    consumer = RecordingConsumer()
    with pytest.raises(TorrentError, match="No space left"):
        await withTimeout(streamFile(getter, tid, 0, consumer), 10)
    assert consumer.data == b""
    # it stays stopped and unfinished; closing saves no resume data for it
    await withTimeout(transfer.close(), 10)
    assert not resume.exists()


@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("ignore:Using readBody")
@pytest_twisted.ensureDeferred
async def test_daemon_on_a_full_disk_shows_the_error_and_never_finishes(
    sessions: Sessions, smallDisk: Path, tmp_path: Path
) -> None:
    from twisted.web.client import Agent, readBody

    from pcpkit.torrent.daemon import TorrentDaemon
    from tests.torrentutil import reactor

    source = tmp_path / "source"
    writePayload(source, "big.bin", 12 * MiB, seed=29)
    raw = makeTorrent(source / "big.bin", pieceSize=PIECE)
    infohash = infohashOf(raw)
    seeder = sessions()
    await withTimeout(seed(seeder, raw, str(source)), 15)
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "big.torrent").write_bytes(raw)
    daemon = TorrentDaemon(
        # the state folder is on the full disk too (the default, inside the save path)
        savePath=str(smallDisk),
        watchDir=str(watch),
        stateDir=None,
        httpEndpoint="tcp:0:interface=127.0.0.1",
        listenInterfaces="127.0.0.1:0",
        peers=[("127.0.0.1", seeder.listenPort)],
        tickInterval=0.2,
        pollInterval=0.1,
        resumeInterval=0.2,
    )
    daemon.startService()
    try:
        await waitUntil(
            lambda: (
                daemon.httpPort is not None
                and daemon.session is not None
                and bool(daemon.session.torrentIds())
            ),
            10,
            "the torrent to start",
        )
        base = f"http://127.0.0.1:{daemon.httpPort.getHost().port}"
        agent = Agent(reactor)

        async def get(path: str) -> tuple[int, bytes]:
            response = await withTimeout(agent.request(b"GET", (base + path).encode()), 10)
            return response.code, await withTimeout(readBody(response), 10)

        async def statusOf() -> dict[str, object]:
            code, body = await get("/status.json")
            assert code == 200
            (entry,) = json.loads(body)
            return entry  # type: ignore[no-any-return]

        session = daemon.session
        (tid,) = session.torrentIds()
        await waitUntil(lambda: session.status(tid)["error"] is not None, 30, "the disk error")
        entry = await statusOf()
        assert "No space left" in str(entry["error"])
        assert entry["state"] == "error" and not entry["isFinished"]
        assert float(entry["fractionDone"]) < 1.0  # type: ignore[arg-type]
        code, body = await get(f"/stream/{infohash}/0")
        assert code == 503 and b"No space left" in body
        code, page = await get("/")
        assert b"No space left" in page
    finally:
        await withTimeout(daemon.stopService(), 20)
    # failed resume writes leave no empty leftovers in the state folder
    state = smallDisk / ".pcpkit-state"
    assert state.is_dir() and not [p.name for p in state.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_seed_whose_data_changes_never_downloads_into_it(
    sessions: Sessions, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    data = writePayload(real, "big.bin", 4 * MiB, seed=30)
    raw = makeTorrent(real / "big.bin", pieceSize=PIECE)
    good = sessions()
    await withTimeout(seed(good, raw, str(real)), 15)
    peer = [("127.0.0.1", good.listenPort)]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "big.bin").write_bytes(data)
    user = sessions()
    seeding = seed(user, raw, str(mine), peers=peer, peerRetry=0.3)
    await withTimeout(seeding, 15)
    # the user's file changes under the running seed, and libtorrent checks it again
    damaged = data[: 2 * MiB] + bytes(2 * MiB)
    (mine / "big.bin").write_bytes(damaged)
    tid = seeding.torrentid
    assert tid is not None
    user.handle(tid).force_recheck()

    def rechecked() -> bool:
        status = user.status(tid)
        return status["piecesDone"] < status["piecesTotal"] and "checking" not in status["state"]

    await waitUntil(rechecked, 15, "the recheck to find the damage")
    # the control: a download of the same damaged copy from the same peer repairs it ...
    control = tmp_path / "control"
    control.mkdir()
    (control / "big.bin").write_bytes(damaged)
    repaired = download(sessions(), raw, str(control), peers=peer)
    await withTimeout(repaired, 30)
    assert (control / "big.bin").read_bytes() == data
    # ... while the seed, dialling the same peer all along, wrote nothing (without upload
    # mode it fetches the missing pieces from that peer as the control did)
    assert (mine / "big.bin").read_bytes() == damaged
    assert user.status(tid)["totalDownloaded"] == 0
    await repaired.close()
    await seeding.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("complete", [True, False])
@pytest_twisted.ensureDeferred
async def test_a_seed_creates_no_file_in_the_users_folder(
    sessions: Sessions, tmp_path: Path, complete: bool
) -> None:
    """
    libtorrent creates a torrent's empty files when it is added, even in upload mode: a seed
    of a folder holding an empty file created it in the user's folder (whether or not the
    check then passed). A seed writes nothing.
    """
    made = tmp_path / "made" / "album"
    a = writePayload(made, "a.bin", 500_000, seed=51)
    (made / "empty.txt").write_bytes(b"")
    raw = makeTorrent(made, pieceSize=16384)
    users = tmp_path / "users"
    writePayload(users / "album", "a.bin", 500_000, seed=51 if complete else 52)
    before = hashlib.sha256((users / "album" / "a.bin").read_bytes()).hexdigest()
    session = sessions()
    transfer = seed(session, raw, str(users))
    if complete:
        await withTimeout(transfer, 20)
        assert transfer.status()["isSeeding"]  # type: ignore[index]
    else:
        with pytest.raises(TorrentDataMismatch):
            await withTimeout(transfer, 20)
    await withTimeout(transfer.close(), 10)
    assert sorted(p.name for p in (users / "album").iterdir()) == ["a.bin"]
    assert hashlib.sha256((users / "album" / "a.bin").read_bytes()).hexdigest() == before
    assert (hashlib.sha256(a).hexdigest() == before) is complete
