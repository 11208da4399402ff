"""
No torrent writes into a folder its session reserves: the torrent daemon's state folder
(``SAVE/.pcpkit-state`` by default, inside the save path) holds the API token and the files
it restores torrents from, and a torrent named ``.pcpkit-state`` would otherwise overwrite
them. A ``.torrent`` is refused at its add; a magnet link is held in upload mode until its
metadata has been checked, and removed then (nothing of it written).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import libtorrent as lt
import pytest
import pytest_twisted

from pcpkit.torrent.daemon import DaemonStartError, TorrentDaemon
from pcpkit.torrent.maker import infohashOf, makeTorrent
from pcpkit.torrent.session import UnsafeTorrentPath
from tests.test_twistd_torrent import drop
from tests.torrentutil import (
    MiB,
    Recorder,
    Sessions,
    sessionsFixture,  # noqa: F401 - the "sessions" fixture
    withTimeout,
    writePayload,
)
from tests.waitutil import waitUntil

PIECE = 256 * 1024
TOKEN = b"the daemon's own token, 0123456789abcdef\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evilTorrent(root: Path) -> bytes:
    """A torrent of a folder named ``.pcpkit-state`` holding ``api-token`` and a state file."""
    folder = root / ".pcpkit-state"
    folder.mkdir(parents=True)
    (folder / "api-token").write_bytes(b"a token the attacker knows\n" * 40)
    (folder / "0000000000000000000000000000000000000000.json").write_bytes(b"{}" * 40)
    return makeTorrent(folder, pieceSize=16 * 1024)


def victimFolder(tmp_path: Path) -> tuple[Path, Path]:
    """A save path whose state folder holds a token: ``(save, state)``."""
    save = tmp_path / "save"
    state = save / ".pcpkit-state"
    state.mkdir(parents=True)
    (state / "api-token").write_bytes(TOKEN)
    return save, state


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_torrent_whose_files_land_in_a_reserved_folder_is_refused(
    sessions: Sessions, tmp_path: Path
) -> None:
    raw = evilTorrent(tmp_path / "evil")
    save, state = victimFolder(tmp_path)
    before = sha(state / "api-token")
    session = sessions(reservedFolders=[str(state)])
    with pytest.raises(UnsafeTorrentPath) as caught:
        await withTimeout(session.addTorrent(raw, savefolder=str(save)), 10)
    message = str(caught.value)
    assert "'.pcpkit-state/" in message and str(state) in message and "refused" in message
    assert "\n" not in message
    assert session.torrentIds() == []
    assert sha(state / "api-token") == before
    assert sorted(p.name for p in state.iterdir()) == ["api-token"]
    # the same torrent into another folder is fine: only the reserved folder is kept out
    added = await withTimeout(session.addTorrent(raw, savefolder=str(tmp_path / "other")), 10)
    assert session.torrentIds() == [added.torrentid]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_magnet_link_into_a_reserved_folder_is_removed_before_it_writes(
    sessions: Sessions, tmp_path: Path
) -> None:
    raw = evilTorrent(tmp_path / "evil")
    seeder = sessions()
    await withTimeout(seeder.addTorrent(raw, savefolder=str(tmp_path / "evil"), seed=True), 15)
    save, state = victimFolder(tmp_path)
    before = sha(state / "api-token")
    getter = sessions(reservedFolders=[str(state)])
    recorder = Recorder()
    getter.addObserver(recorder)
    magnet = f"magnet:?xt=urn:btih:{infohashOf(raw)}"
    added = await withTimeout(getter.addTorrent(magnet=magnet, savefolder=str(save)), 10)
    getter.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
    await waitUntil(lambda: recorder.removed == [added.torrentid], 30, "the torrent's removal")
    [(tid, reason)] = recorder.errors
    assert tid == added.torrentid and str(state) in reason and "torrent removed" in reason
    assert getter.torrentIds() == []
    assert sha(state / "api-token") == before
    assert sorted(p.name for p in state.iterdir()) == ["api-token"]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_magnet_link_held_for_its_metadata_then_downloads_as_any(
    sessions: Sessions, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    data = writePayload(source, "f.bin", 2 * MiB, seed=41)
    raw = makeTorrent(source / "f.bin", pieceSize=PIECE)
    seeder = sessions()
    await withTimeout(seeder.addTorrent(raw, savefolder=str(source), seed=True), 15)
    save, state = victimFolder(tmp_path)
    getter = sessions(reservedFolders=[str(state)])
    recorder = Recorder()
    getter.addObserver(recorder)
    magnet = f"magnet:?xt=urn:btih:{infohashOf(raw)}"
    added = await withTimeout(getter.addTorrent(magnet=magnet, savefolder=str(save)), 10)
    handle = getter.handle(added.torrentid)
    flags = handle.flags()
    # held: nothing is downloaded, and the queue cannot lift that, until the metadata
    assert flags & lt.torrent_flags.upload_mode and not flags & lt.torrent_flags.auto_managed
    getter.connectPeer(added.torrentid, "127.0.0.1", seeder.listenPort)
    await recorder.finished(added.torrentid, timeout=40)
    assert hashlib.sha256((save / "f.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    flags = handle.flags()
    assert not flags & lt.torrent_flags.upload_mode and flags & lt.torrent_flags.auto_managed
    assert recorder.errors == []


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_a_session_without_reserved_folders_does_not_hold_magnet_links(
    sessions: Sessions, tmp_path: Path
) -> None:
    session = sessions()
    assert session.reservedFolders == ()
    magnet = "magnet:?xt=urn:btih:" + "ab" * 20
    added = await withTimeout(session.addTorrent(magnet=magnet, savefolder=str(tmp_path)), 10)
    assert not session.handle(added.torrentid).flags() & lt.torrent_flags.upload_mode


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_daemon_keeps_torrents_out_of_its_state_folder(
    sessions: Sessions, tmp_path: Path
) -> None:
    raw = evilTorrent(tmp_path / "evil")
    seeder = sessions()
    await withTimeout(seeder.addTorrent(raw, savefolder=str(tmp_path / "evil"), seed=True), 15)
    save, watch = tmp_path / "save", tmp_path / "watch"
    daemon = TorrentDaemon(
        savePath=str(save),
        watchDir=str(watch),
        httpEndpoint="tcp:0:interface=127.0.0.1",
        listenInterfaces="127.0.0.1:0",
        peers=[("127.0.0.1", seeder.listenPort)],
        tickInterval=0.2,
        pollInterval=0.05,
    )
    daemon.startService()
    try:
        state = save / ".pcpkit-state"
        token = state / "api-token"
        assert token.exists()
        before = sha(token)
        # through the API...
        with pytest.raises(UnsafeTorrentPath, match="reserved"):
            await withTimeout(daemon.addTorrent(raw), 10)
        # ... and as a magnet link (held, then removed once its metadata came)
        session = daemon.session
        assert session is not None
        recorder = Recorder()
        session.addObserver(recorder)
        magnet = f"magnet:?xt=urn:btih:{infohashOf(raw)}"
        added = await withTimeout(daemon.addTorrent(magnet=magnet), 10)
        await waitUntil(lambda: added.torrentid in recorder.removed, 30, "the magnet's removal")
        assert daemon.infohashes() == []
        # ... and through the watch folder
        drop(watch, "evil.torrent", raw)
        await waitUntil(lambda: bool(daemon.skippedFiles()), 10, "the watch file to be refused")
        [(name, reason)] = daemon.skippedFiles()
        assert name == "evil.torrent" and "reserved" in reason, reason
        assert daemon.infohashes() == []
        assert sha(token) == before
    finally:
        await withTimeout(daemon.stopService(), 20)


@pytest.mark.parametrize("where", ["the save path", "above the save path"])
def test_a_state_folder_that_holds_the_save_path_is_a_start_error(
    tmp_path: Path, where: str
) -> None:
    save = tmp_path / "save"
    state = save if where == "the save path" else tmp_path
    daemon = TorrentDaemon(savePath=str(save), stateDir=str(state), listenInterfaces="127.0.0.1:0")
    with pytest.raises(DaemonStartError) as caught:
        daemon.startService()
    assert caught.value.parameter == "stateDir"
    assert "a torrent could overwrite the daemon's own files" in str(caught.value)
    assert daemon.session is None
