"""
The libtorrent engine against real sessions on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import resource
import threading
import time
from pathlib import Path

import libtorrent
import pytest
import pytest_twisted

from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.session import (
    AddedTorrent,
    BaseTorrentSessionObserver,
    InvalidTorrent,
    SessionStopped,
    TorrentAlreadyDownloading,
    TorrentDataMismatch,
    TorrentError,
    TorrentSession,
    TorrentStartError,
    UnknownTorrent,
    UnsafeTorrentPath,
    _unsafeNames,
)
from tests.torrentutil import (
    MiB,
    Recorder,
    Sessions,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    sleep,
    waitUntil,
    withTimeout,
    writePayload,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seedFolder(
    root: Path, size: int, name: str = "payload.bin", seed: int = 1
) -> tuple[Path, bytes, bytes]:
    """A folder holding one payload file, the file's data and a v1 torrent of it."""
    folder = root / f"seed-{name}-{seed}"
    data = writePayload(folder, name, size, seed)
    return folder, data, makeTorrent(folder / name)


async def assertStillServes(session: TorrentSession, root: Path) -> None:
    """The session still starts (and checks) a good torrent."""
    folder, _, raw = seedFolder(root, 256 * 1024, "still-good.bin", seed=99)
    added = await withTimeout(session.addTorrent(raw, savefolder=str(folder), seed=True), 15)
    assert session.status(added.torrentid)["isSeeding"]


# -- the swarm -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_loopback_swarm_32MiB(sessions: Sessions, tmp_path: Path) -> None:
    threadsBefore = threading.active_count()
    folder, data, raw = seedFolder(tmp_path, 32 * MiB)
    seeder = sessions()
    # ticks short enough to see progress rise even when loopback moves 32 MiB in 0.2 s
    downloader = sessions(0.03)
    recorder = Recorder()
    downloader.addObserver(recorder)
    # the alert pump is a reactor reader: no Python thread appears
    assert threading.active_count() == threadsBefore

    seeded = await withTimeout(seeder.addTorrent(raw, savefolder=str(folder), seed=True), 20)
    assert isinstance(seeded, AddedTorrent)
    assert seeded.infohash == infohashOf(raw)
    assert seeded.name == "payload.bin"

    dl = tmp_path / "download"
    added = await withTimeout(downloader.addTorrent(raw, savefolder=str(dl)), 10)
    torrentid, infohash, savefolder, name = added  # a NamedTuple: unpacks as a tuple
    assert (infohash, savefolder, name) == (seeded.infohash, str(dl), "payload.bin")
    assert downloader.torrentIds() == [torrentid]
    assert downloader.torrentIdFor(infohash) == torrentid
    downloader.connectPeer(torrentid, "127.0.0.1", seeder.listenPort)

    await recorder.finished(torrentid, timeout=45)
    assert sha256((dl / "payload.bin").read_bytes()) == sha256(data)

    fractions = [s["fractionDone"] for s in recorder.statuses[torrentid]]
    assert fractions == sorted(fractions), "fractionDone never goes back"
    assert len(set(fractions)) >= 2, f"progress was reported as it rose: {fractions}"
    status = downloader.status(torrentid)
    assert status["fractionDone"] == 1.0
    assert status["totalDone"] == len(data) == status["totalSize"]
    assert status["isSeeding"] and status["timeEst"] == 0.0
    assert status["infohash"] == infohash and status["name"] == "payload.bin"
    assert {"downRate", "upRate", "numPeers", "numSeeds", "activity"} <= set(status)
    assert threading.active_count() == threadsBefore


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_magnet_download_gets_metadata_from_the_seed(
    sessions: Sessions, tmp_path: Path
) -> None:
    folder, data, raw = seedFolder(tmp_path, 3 * MiB)
    seeder, downloader = sessions(), sessions()
    recorder = Recorder()
    downloader.addObserver(recorder)
    await withTimeout(seeder.addTorrent(raw, savefolder=str(folder), seed=True), 15)
    magnet = f"magnet:?xt=urn:btih:{infohashOf(raw)}&dn=payload.bin"
    added = await withTimeout(
        downloader.addTorrent(magnet=magnet, savefolder=str(tmp_path / "m")), 10
    )
    downloader.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
    await recorder.finished(added.torrentid, timeout=40)
    assert (tmp_path / "m" / "payload.bin").read_bytes() == data
    assert downloader.status(added.torrentid)["piecesTotal"] > 0


# -- idle ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_idle_session_uses_no_cpu_and_no_thread(sessions: Sessions, tmp_path: Path) -> None:
    threadsBefore = threading.active_count()
    folder, _, raw = seedFolder(tmp_path, 1 * MiB)
    session = sessions(tickInterval=1.0)
    await withTimeout(session.addTorrent(raw, savefolder=str(folder), seed=True), 10)
    await sleep(0.5)  # let the check and the first ticks settle
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    await sleep(5.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.monotonic() - wall
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu / elapsed < 0.01, f"idle session used {cpu:.3f}s CPU in {elapsed:.1f}s"
    assert threading.active_count() == threadsBefore


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"this is not a torrent at all", "not a .torrent"),
        (b"", "empty"),
        (b"d4:infod4:name1:aee", "piece length"),
        (b"i42e", "no 'info' dictionary"),
    ],
    ids=["garbage", "empty", "incomplete-info", "not-a-dict"],
)
@pytest_twisted.ensureDeferred
async def test_undecodable_metainfo_is_a_clear_error(
    sessions: Sessions, tmp_path: Path, raw: bytes, match: str
) -> None:
    session = sessions()
    with pytest.raises(InvalidTorrent, match=match) as info:
        await session.addTorrent(raw)
    assert isinstance(info.value, TorrentStartError) and info.value.reason
    await assertStillServes(session, tmp_path)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_truncated_torrent_is_a_clear_error(sessions: Sessions, tmp_path: Path) -> None:
    _, _, raw = seedFolder(tmp_path, 1 * MiB)
    session = sessions()
    for cut in (len(raw) // 2, len(raw) - 1, 10):
        with pytest.raises(InvalidTorrent, match="not a .torrent"):
            await session.addTorrent(raw[:cut])
    await assertStillServes(session, tmp_path)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("magnet", "match"),
    [
        ("magnet:?xt=urn:btih:zzzz", "invalid info-hash"),
        ("magnet:?dn=nothing", "missing info-hash"),
        ("http://example.com/x.torrent", "unsupported URL protocol"),
        ("", "invalid magnet"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_magnet_is_a_clear_error(
    sessions: Sessions, tmp_path: Path, magnet: str, match: str
) -> None:
    session = sessions()
    with pytest.raises(InvalidTorrent, match=match):
        await session.addTorrent(magnet=magnet)
    await assertStillServes(session, tmp_path)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_wrong_arguments_are_clear_errors(sessions: Sessions, tmp_path: Path) -> None:
    session = sessions()
    with pytest.raises(InvalidTorrent, match="nothing to start"):
        await session.addTorrent()
    with pytest.raises(InvalidTorrent, match="not both"):
        await session.addTorrent(b"x", magnet="magnet:?xt=urn:btih:" + "a" * 40)
    with pytest.raises(InvalidTorrent, match="not str"):
        await session.addTorrent("d4:info...")  # type: ignore[arg-type]
    with pytest.raises(InvalidTorrent, match="invalid resume data"):
        await session.addTorrent(resumedata=b"garbage")
    with pytest.raises(ValueError, match="paused"):
        await session.addTorrent(b"x", seed=True, paused=True)
    await assertStillServes(session, tmp_path)


def craftedTorrent(info: dict[bytes, object]) -> bytes:
    """A v1 .torrent with a hand-made info dictionary (pieces hashed over 40 kB of 'A')."""
    data = b"A" * 40000
    pieceLength = 16384
    pieces = b"".join(
        hashlib.sha1(data[i : i + pieceLength]).digest() for i in range(0, len(data), pieceLength)
    )
    info = {b"piece length": pieceLength, b"pieces": pieces, **info}
    return bytes(libtorrent.bencode({b"info": info}))


ESCAPES = {
    "dotdot-name": {b"name": b"../../escape.txt", b"length": 40000},
    "dotdot-path": {
        b"name": b"dir",
        b"files": [{b"length": 40000, b"path": [b"..", b"..", b"evil"]}],
    },
    "absolute-path": {b"name": b"dir", b"files": [{b"length": 40000, b"path": [b"/etc/passwd"]}]},
    "dotdot-name-dir": {b"name": b"..", b"files": [{b"length": 40000, b"path": [b"x"]}]},
    "backslash": {b"name": b"dir", b"files": [{b"length": 40000, b"path": [b"..\\..\\x"]}]},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("info", ESCAPES.values(), ids=ESCAPES.keys())
@pytest_twisted.ensureDeferred
async def test_names_escaping_the_save_folder_are_refused(
    sessions: Sessions, tmp_path: Path, info: dict[bytes, object]
) -> None:
    root = tmp_path / "root"
    save = root / "a" / "b" / "save"
    save.mkdir(parents=True)
    session = sessions()
    raw = craftedTorrent(info)
    with pytest.raises(UnsafeTorrentPath, match="unsafe file name"):
        await session.addTorrent(raw, savefolder=str(save))
    # nothing was written anywhere under root but the (empty) save folder
    written = [p for p in root.rglob("*") if p.is_file()]
    assert written == []
    await assertStillServes(session, tmp_path)


def test_libtorrent_sanitises_names_too() -> None:
    # defence in depth for metadata we cannot check up front: libtorrent never keeps ".."
    for info in ESCAPES.values():
        ti = libtorrent.torrent_info(craftedTorrent(info))
        files = ti.layout()
        for i in range(files.num_files()):
            parts = Path(files.file_path(i)).parts
            assert ".." not in parts and not Path(files.file_path(i)).is_absolute()
    assert _unsafeNames({b"name": b"fine", b"file tree": {b"..": {b"": {b"length": 1}}}}) == [".."]
    assert _unsafeNames({b"name": b"C:evil"}) == ["C:evil"]
    assert _unsafeNames({b"name": b"ok", b"files": [{b"path": [b"a", b"b.c"]}]}) == []


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_unknown_torrent_ids_are_clear_errors(sessions: Sessions, tmp_path: Path) -> None:
    session = sessions()
    with pytest.raises(UnknownTorrent, match="no torrent with id 42"):
        await session.removeTorrent(42)
    with pytest.raises(UnknownTorrent):
        await session.saveResumeData(7)
    for call in (session.status, session.handle, session.infohash):
        with pytest.raises(UnknownTorrent):
            call(3)
    with pytest.raises(UnknownTorrent):
        session.connectPeer(3, "127.0.0.1", 1)
    with pytest.raises(UnknownTorrent):
        session.torrentIdFor("ab" * 20)
    await assertStillServes(session, tmp_path)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_duplicates_answer_already_downloading(sessions: Sessions, tmp_path: Path) -> None:
    folder, _, raw = seedFolder(tmp_path, 1 * MiB)
    session = sessions()
    first = session.addTorrent(raw, savefolder=str(folder))
    # still in flight: the duplicate is caught before libtorrent sees it
    with pytest.raises(TorrentAlreadyDownloading) as info:
        await session.addTorrent(raw, savefolder=str(tmp_path / "elsewhere"))
    added = await withTimeout(first, 10)
    assert info.value.torrentid == added.torrentid
    magnet = f"magnet:?xt=urn:btih:{added.infohash}"
    with pytest.raises(TorrentAlreadyDownloading, match=f"as torrent {added.torrentid}"):
        await session.addTorrent(magnet=magnet)
    assert session.torrentIds() == [added.torrentid]
    with pytest.raises(ValueError, match="IP address"):
        session.connectPeer(added.torrentid, "localhost", 6881)
    with pytest.raises(ValueError, match="port"):
        session.connectPeer(added.torrentid, "127.0.0.1", 70000)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_seeding_from_wrong_data_is_a_clear_error(sessions: Sessions, tmp_path: Path) -> None:
    folder, data, raw = seedFolder(tmp_path, 2 * MiB)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    (wrong / "payload.bin").write_bytes(bytes(damaged))
    session = sessions()
    recorder = Recorder()
    session.addObserver(recorder)
    with pytest.raises(TorrentDataMismatch, match="missing or wrong") as info:
        await withTimeout(session.addTorrent(raw, savefolder=str(wrong), seed=True), 15)
    assert 0 < info.value.piecesDone < info.value.piecesTotal
    assert f"{info.value.piecesDone} of {info.value.piecesTotal} pieces" in info.value.reason
    with pytest.raises(TorrentDataMismatch, match=r"0 of \d+ pieces"):
        empty = str(tmp_path / "empty")
        await withTimeout(session.addTorrent(raw, savefolder=empty, seed=True), 15)
    # the torrent was removed, the files kept, and nothing was reported for it
    await waitUntil(lambda: not session.torrentIds(), 5, "the torrent to go")
    assert (wrong / "payload.bin").read_bytes() == bytes(damaged)
    assert recorder.statuses == {} and recorder.removed == []
    # without seed=True the same folder simply starts downloading what is wrong
    added = await withTimeout(session.addTorrent(raw, savefolder=str(wrong)), 10)
    await waitUntil(
        lambda: session.status(added.torrentid)["state"] == "downloading", 10, "the check"
    )
    status = session.status(added.torrentid)
    assert 0 < status["piecesDone"] < status["piecesTotal"] and not status["isSeeding"]
    await assertStillServes(session, tmp_path)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_disk_errors_reach_the_observers(sessions: Sessions, tmp_path: Path) -> None:
    folder, _, raw = seedFolder(tmp_path, 1 * MiB)
    seeder, downloader = sessions(), sessions()
    recorder = Recorder()
    downloader.addObserver(recorder)
    await withTimeout(seeder.addTorrent(raw, savefolder=str(folder), seed=True), 10)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")  # the save folder would have to be inside a regular file
    added = await withTimeout(downloader.addTorrent(raw, savefolder=str(blocker / "dl")), 10)
    downloader.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
    await waitUntil(lambda: bool(recorder.errors), 20, "a torrent error")
    tid, reason = recorder.errors[0]
    assert tid == added.torrentid and "a-file" in reason
    await waitUntil(lambda: downloader.status(tid)["error"] is not None, 5, "the error status")
    assert downloader.status(tid)["activity"].startswith("error")
    await assertStillServes(downloader, tmp_path)


# -- removing, resume data, stopping -------------------------------------------------------


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_remove_with_and_without_deleting_files(sessions: Sessions, tmp_path: Path) -> None:
    session = sessions()
    recorder = Recorder()
    session.addObserver(recorder)
    keep, _, rawKeep = seedFolder(tmp_path, 512 * 1024, "keep.bin")
    gone, _, rawGone = seedFolder(tmp_path, 512 * 1024, "gone.bin", seed=2)
    a = await withTimeout(session.addTorrent(rawKeep, savefolder=str(keep), seed=True), 10)
    b = await withTimeout(session.addTorrent(rawGone, savefolder=str(gone), seed=True), 10)
    await withTimeout(session.removeTorrent(a.torrentid), 10)
    await withTimeout(session.removeTorrent(b.torrentid, deleteFiles=True), 10)
    assert (keep / "keep.bin").exists()
    assert not (gone / "gone.bin").exists()
    assert sorted(recorder.removed) == [a.torrentid, b.torrentid]
    assert session.torrentIds() == []
    with pytest.raises(UnknownTorrent):
        session.status(a.torrentid)
    # ids are never reused; the same torrent can come back
    again = await withTimeout(session.addTorrent(rawKeep, savefolder=str(keep), seed=True), 10)
    assert again.torrentid > b.torrentid


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_resume_data_restarts_without_the_metainfo(
    sessions: Sessions, tmp_path: Path
) -> None:
    folder, _, raw = seedFolder(tmp_path, 1 * MiB)
    first = sessions()
    added = await withTimeout(first.addTorrent(raw, savefolder=str(folder), seed=True), 10)
    both = [first.saveResumeData(added.torrentid), first.saveResumeData(added.torrentid)]
    resume, resume2 = [await withTimeout(d, 10) for d in both]
    assert isinstance(resume, bytes) and resume == resume2
    await first.stop()

    second = sessions()
    again = await withTimeout(second.addTorrent(resumedata=resume), 10)
    assert again.infohash == added.infohash and again.savefolder == str(folder)
    await waitUntil(lambda: second.status(again.torrentid)["isSeeding"], 10, "seeding")
    # resume data plus explicit metainfo and folder works too
    third = sessions()
    withBoth = await withTimeout(
        third.addTorrent(raw, savefolder=str(folder), resumedata=resume), 10
    )
    assert withBoth.infohash == added.infohash


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_stop_fails_what_waits_and_leaves_nothing(sessions: Sessions, tmp_path: Path) -> None:
    folder, _, raw = seedFolder(tmp_path, 1 * MiB)
    session = sessions()
    pending = session.addTorrent(raw, savefolder=str(folder))
    started = time.monotonic()
    await session.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(SessionStopped):
        await pending
    with pytest.raises(SessionStopped):
        await session.addTorrent(raw)
    with pytest.raises(SessionStopped):
        session.status(1)
    assert session.listenPort == 0 and session.stopped
    await session.stop()  # again: nothing happens


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_a_failing_observer_does_not_stop_the_pump(
    sessions: Sessions, tmp_path: Path
) -> None:
    class Broken(BaseTorrentSessionObserver):
        def torrentStatus(self, torrentid: int, status: object) -> None:  # type: ignore[override]
            raise RuntimeError("observer bug")

    session = sessions(tickInterval=0.1)
    session.addObserver(Broken())
    recorder = Recorder()
    session.addObserver(recorder)
    folder, _, raw = seedFolder(tmp_path, 512 * 1024)
    added = await withTimeout(session.addTorrent(raw, savefolder=str(folder)), 10)
    await waitUntil(lambda: added.torrentid in recorder.statuses, 10, "a status")
    await assertStillServes(session, tmp_path)


def test_settings_are_applied_and_validated(sessions: Sessions) -> None:
    session = sessions(settings={"enable_dht": False, "listen_interfaces": "127.0.0.1:0"})
    settings = session.libtorrentSession.get_settings()
    assert settings["enable_dht"] is False and settings["enable_lsd"] is False
    assert settings["allow_multiple_connections_per_ip"] is True
    assert session.listenPort > 0
    with pytest.raises(ValueError):
        sessions(tickInterval=0)
    with pytest.raises(ValueError, match="unknown name in settings_pack: bogus"):
        sessions(settings={"bogus": 1})
    with pytest.raises(ValueError, match="invalid libtorrent settings"):
        sessions(settings={"enable_dht": "yes"})


def test_errors_carry_their_reason() -> None:
    e = TorrentError("why")
    assert e.reason == "why" and str(e) == "why"
    assert issubclass(UnsafeTorrentPath, InvalidTorrent)
    assert issubclass(TorrentAlreadyDownloading, TorrentStartError)


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_paused_add_waits_for_resume(sessions: Sessions, tmp_path: Path) -> None:
    folder, _, raw = seedFolder(tmp_path, 512 * 1024)
    session = sessions()
    added = await withTimeout(session.addTorrent(raw, savefolder=str(folder), paused=True), 10)
    status = session.status(added.torrentid)
    assert status["paused"] and status["activity"] == "paused"
    session.handle(added.torrentid).resume()
    await waitUntil(lambda: session.status(added.torrentid)["isSeeding"], 10, "seeding")
