"""
Resume data never lists a piece whose data has not reached the disk: the torrent's data files
are synced before the resume file is written, and the resume file before it is renamed into
place. A download is reported complete only once its data is synced. (A power loss cannot be
made here; the order of the system calls that give the guarantee can be watched, on real
files, in real daemons and transfers.)
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import libtorrent as lt
import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError

from pcpkit.torrent.daemon import TorrentDaemon
from pcpkit.torrent.maker import infohashOf
from pcpkit.torrent.session import TorrentError
from pcpkit.torrent.transfer import Transfer, download, syncFiles, writeResumeData
from tests.test_twistd_torrent import drop, seeder
from tests.torrentutil import (
    MiB,
    Sessions,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    smallDiskFixture,  # noqa: F401 - the "smallDisk" fixture
    withTimeout,
)
from tests.waitutil import waitUntil

Events = list[tuple[str, str]]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Events]:
    """``("fsync", path)``, ``("replace", destination)`` and ``("remove", path)`` in the order
    they happen."""
    seen: Events = []
    fsync, replace, remove = os.fsync, os.replace, os.remove

    def spyFsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def spyReplace(src: str, dst: str) -> None:
        replace(src, dst)
        seen.append(("replace", os.path.abspath(dst)))

    def spyRemove(path: str) -> None:
        seen.append(("remove", os.path.abspath(path)))  # (asked: it may not exist)
        remove(path)

    monkeypatch.setattr(os, "fsync", spyFsync)
    monkeypatch.setattr(os, "replace", spyReplace)
    monkeypatch.setattr(os, "remove", spyRemove)
    yield seen


def assertEverySaveSyncedFirst(events: Events, resume: Path, data: Path) -> int:
    """
    Each replace of ``resume`` came after a sync of the new resume file, and was followed by
    a sync of its folder; once ``data`` exists (it has been synced once), each came after a
    sync of ``data`` too, all since the replace before it. Returns how many saves synced
    ``data``.
    """
    resume, data = resume.resolve(), data.resolve()
    tmp, dataSync = f"{resume}.tmp", ("fsync", str(data))
    saves, since, dataSeen = 0, [], False
    for i, (what, path) in enumerate(events):
        if what == "replace" and path == str(resume):
            dataSeen = dataSeen or dataSync in since
            if dataSeen:
                assert dataSync in since, (since, events)
                saves += 1
            assert since[-1] == ("fsync", tmp), (since, events)
            assert ("fsync", str(resume.parent)) in events[i + 1 :], events
            since = []
        else:
            since.append((what, path))
    return saves


async def cancelMidDownload(transfer: Transfer) -> None:
    """Cancel ``transfer`` once it has a few pieces, and wait for its clean-up."""

    def someDone() -> bool:
        status = transfer.status()
        return status is not None and status["piecesDone"] >= 2

    await waitUntil(someDone, 30, "a few pieces to be downloaded")
    transfer.cancel()
    with pytest.raises(CancelledError):
        await transfer
    await withTimeout(transfer.close(), 10)


def test_writeResumeData_syncs_the_data_then_the_resume_file_then_its_folder(
    tmp_path: Path, events: Events
) -> None:
    data = tmp_path / "save"
    data.mkdir()
    (data / "a.bin").write_bytes(b"a" * 1000)
    (data / "b.bin").write_bytes(b"b" * 1000)
    os.mkfifo(data / "pipe")  # opened for a look only: a FIFO nobody writes never blocks it
    state = tmp_path / "state"
    state.mkdir()
    resume = state / "t.resume"
    files = [str(data / name) for name in ("a.bin", "missing.bin", "b.bin", "pipe")]
    writeResumeData(str(resume), b"resume data", files)
    assert resume.read_bytes() == b"resume data"
    assert events == [
        ("fsync", str(data / "a.bin")),
        ("fsync", str(data / "b.bin")),
        ("fsync", f"{resume}.tmp"),
        ("replace", str(resume)),
        ("fsync", str(state)),
    ]
    assert os.listdir(state) == ["t.resume"]
    assert syncFiles([str(data / "missing.bin"), str(data / "pipe")]) == 0


def test_writeResumeData_keeps_the_old_resume_data_when_a_data_file_cannot_be_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 100)
    resume = tmp_path / "f.resume"
    resume.write_bytes(b"old resume data")
    before = hashlib.sha256(resume.read_bytes()).hexdigest()

    def failingFsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failingFsync)
    with pytest.raises(OSError, match="Input/output error"):
        writeResumeData(str(resume), b"new resume data", [str(tmp_path / "f.bin")])
    assert hashlib.sha256(resume.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "f.resume"]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_daemon_syncs_the_data_before_each_save_of_resume_data(
    sessions: Sessions, tmp_path: Path, events: Events
) -> None:
    size = 4 * MiB
    seed, _, data, raw = await seeder(
        sessions, tmp_path / "seed", "f.bin", size, seed=31, rateLimit=2 * MiB
    )
    infohash = infohashOf(raw)
    save, watch, state = tmp_path / "save", tmp_path / "watch", tmp_path / "state"
    daemon = TorrentDaemon(
        savePath=str(save),
        watchDir=str(watch),
        stateDir=str(state),
        httpEndpoint="tcp:0:interface=127.0.0.1",
        listenInterfaces="127.0.0.1:0",
        peers=[("127.0.0.1", seed.listenPort)],
        tickInterval=0.2,
        pollInterval=0.05,
        resumeInterval=0.2,
    )
    daemon.startService()
    try:
        drop(watch, "f.torrent", raw)
        await waitUntil(lambda: daemon.session is not None, 5, "the session")

        def finished() -> bool:
            session = daemon.session
            ids = session.torrentIds() if session is not None else []
            return bool(ids) and session is not None and session.status(ids[0])["isSeeding"]

        await waitUntil(finished, 30, "the download to finish")
    finally:
        await withTimeout(daemon.stopService(), 20)
    got = (save / "f.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    saves = assertEverySaveSyncedFirst(events, state / f"{infohash}.resume", save / "f.bin")
    # saves while it downloaded (every resumeInterval), at the finish and at the stop
    assert saves >= 3, events


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_cancelled_download_syncs_its_data_before_its_resume_data(
    sessions: Sessions, tmp_path: Path, events: Events
) -> None:
    seed, _, data, raw = await seeder(
        sessions, tmp_path / "seed", "f.bin", 8 * MiB, seed=32, rateLimit=1 * MiB
    )
    target, resume = tmp_path / "target", tmp_path / "f.resume"
    getter = sessions()
    transfer = download(
        getter, raw, str(target), resumeFile=str(resume), peers=[("127.0.0.1", seed.listenPort)]
    )

    await cancelMidDownload(transfer)
    assert assertEverySaveSyncedFirst(events, resume, target / "f.bin") == 1
    # what the resume data lists is on disk: resumed with no peer, it is not checked again
    again = download(getter, raw, str(target), resumeFile=str(resume))
    await waitUntil(lambda: again.torrentid is not None, 10, "the torrent to be added")

    def resumed() -> bool:
        status = again.status()
        return status is not None and status["state"] == "downloading"

    await waitUntil(resumed, 10, "the resumed torrent to start downloading")
    assert again.torrentid is not None
    handle = getter.handle(again.torrentid)
    have = [i for i, on in enumerate(handle.status(lt.status_flags_t.query_pieces).pieces) if on]
    assert len(have) >= 2, have
    got = (target / "f.bin").read_bytes()
    piece = int(handle.torrent_file().piece_length())
    for i in have:
        assert got[i * piece : (i + 1) * piece] == data[i * piece : (i + 1) * piece], i
    again.cancel()
    with pytest.raises(CancelledError):
        await again
    await withTimeout(again.close(), 10)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_cancelled_download_says_why_its_resume_data_was_not_saved(
    sessions: Sessions, tmp_path: Path, smallDisk: Path
) -> None:
    seed, _, data, raw = await seeder(
        sessions, tmp_path / "seed", "f.bin", 8 * MiB, seed=33, rateLimit=1 * MiB
    )
    filler = smallDisk / "filler"
    with open(filler, "wb") as f:  # the disk the resume file goes to is full
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    resume = smallDisk / "f.resume"
    transfer = download(
        sessions(),
        raw,
        str(tmp_path / "target"),
        resumeFile=str(resume),
        peers=[("127.0.0.1", seed.listenPort)],
    )
    assert transfer.resumeError is None
    await cancelMidDownload(transfer)
    assert transfer.resumeError is not None and "No space left" in transfer.resumeError
    assert sorted(os.listdir(smallDisk)) == ["filler"]  # no partial resume file either


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_download_is_complete_once_its_data_is_synced(
    sessions: Sessions, tmp_path: Path, events: Events
) -> None:
    seed, _, data, raw = await seeder(sessions, tmp_path / "seed", "f.bin", 2 * MiB, seed=33)
    target, resume = tmp_path / "target", tmp_path / "f.resume"
    getter = sessions()
    transfer = download(
        getter, raw, str(target), resumeFile=str(resume), peers=[("127.0.0.1", seed.listenPort)]
    )
    await withTimeout(transfer, 30)
    # the data was synced, and only then the resume file removed (a power loss in between
    # leaves resume data that lists only what is on disk)
    synced = events.index(("fsync", str(target / "f.bin")))
    assert events.index(("remove", str(resume))) > synced, events
    assert hashlib.sha256((target / "f.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    await transfer.close()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_download_whose_data_cannot_be_synced_fails_naming_the_error(
    sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed, _, data, raw = await seeder(sessions, tmp_path / "seed", "f.bin", 1 * MiB, seed=34)
    target = tmp_path / "target"
    fsync = os.fsync

    def failingFsync(fd: int) -> None:
        # what a disk that lost the written pages reports at the sync
        if os.readlink(f"/proc/self/fd/{fd}") == str(target / "f.bin"):
            raise OSError(errno.EIO, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failingFsync)
    getter = sessions()
    transfer = download(getter, raw, str(target), peers=[("127.0.0.1", seed.listenPort)])
    with pytest.raises(TorrentError, match=r"cannot sync the data of f\.bin to disk: Input/output"):
        await withTimeout(transfer, 30)
    await withTimeout(transfer.close(), 10)
    assert getter.torrentIds() == []
    # nothing of the seed's data was touched
    assert (
        hashlib.sha256((tmp_path / "seed" / "f.bin").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_data_changed_after_its_resume_data_is_checked_not_trusted(
    sessions: Sessions, tmp_path: Path
) -> None:
    """
    A piece the resume data lists, edited after the save: trusted, the download was reported
    complete with the edited bytes in it. Data newer than its resume data is checked.
    """
    seed, _, data, raw = await seeder(
        sessions, tmp_path / "seed", "f.bin", 8 * MiB, seed=35, rateLimit=2 * MiB
    )
    target, resume = tmp_path / "target", tmp_path / "f.resume"
    getter = sessions()
    peers = [("127.0.0.1", seed.listenPort)]
    transfer = download(getter, raw, str(target), resumeFile=str(resume), peers=peers)

    await cancelMidDownload(transfer)
    # flip a byte of every piece the resume data lists, after the save
    params = lt.read_resume_data(resume.read_bytes())
    piece = int(params.ti.piece_length())
    have = [i for i, on in enumerate(params.have_pieces) if on]
    assert have
    path = target / "f.bin"
    with open(path, "r+b") as f:
        for i in have:
            f.seek(i * piece)
            byte = f.read(1)
            f.seek(i * piece)
            f.write(bytes([byte[0] ^ 0xFF]))
    later = resume.stat().st_mtime + 2
    os.utime(path, (later, later))
    again = download(getter, raw, str(target), resumeFile=str(resume), peers=peers)
    await withTimeout(again, 40)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    await again.close()
