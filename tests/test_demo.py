"""
``pcpkit demo`` and ``twistd -n pcpkit demo`` as a new user runs them (subprocesses), and
the demo in-process: it must leave the reactor clean and no temporary folder behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

import pcpkit
from pcpkit.demo import DemoResult, DemoService, Interrupted, Stopper, runDemo
from tests.test_cli import PCPKIT, Running
from tests.torrentutil import waitUntil, withTimeout

HEX64 = re.compile(r"sha256 verified: ([0-9a-f]{64})$", re.M)
REPO = Path(pcpkit.__file__).resolve().parent.parent


def demoEnv(tmp: Path) -> dict[str, str]:
    """The environment, with TMPDIR in ``tmp`` so that what the demo leaves can be seen."""
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)
    return env


def checkDemoOutput(stdout: str, stderr: str) -> str:
    __tracebackhide__ = True
    assert "Traceback" not in stdout + stderr, stdout + stderr
    verified = HEX64.search(stdout)
    assert verified, stdout
    digest = verified.group(1)
    # the payload's hash, as printed before the swarm, is the one verified at the end
    assert "payload: " in stdout and f"sha256 {digest}" in stdout
    for heading in ("swarm (", "relay (", "pauses applied", "peak memory"):
        assert heading in stdout, stdout
    return digest


def runDemoCommand(tmp: Path, *args: str, timeout: float = 120) -> tuple[str, float]:
    temp = tmp / "tmp"
    temp.mkdir()
    started = time.monotonic()
    result = subprocess.run(
        [*PCPKIT, "demo", *args],
        cwd=tmp,
        env=demoEnv(temp),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    checkDemoOutput(result.stdout, result.stderr)
    assert list(temp.iterdir()) == [], "the demo left files behind"
    return result.stdout, seconds


def test_pcpkit_demo_small(tmp_path: Path) -> None:
    stdout, _ = runDemoCommand(tmp_path, "--size", "8")
    assert "8 MiB over 127.0.0.1" in stdout
    assert "swarm (opentracker)" in stdout  # opentracker is installed here (.ci/run)


def test_pcpkit_demo_with_direct_peers(tmp_path: Path) -> None:
    stdout, _ = runDemoCommand(tmp_path, "--size", "4", "--no-tracker")
    assert "swarm (direct peers)" in stdout


def test_pcpkit_demo_default_64_mib_well_under_a_minute(tmp_path: Path) -> None:
    stdout, seconds = runDemoCommand(tmp_path, timeout=90)
    assert "64 MiB over 127.0.0.1" in stdout
    assert seconds < 60, f"the default demo took {seconds:.1f}s"


def test_twistd_pcpkit_demo(tmp_path: Path) -> None:
    twistd = Path(sys.executable).with_name("twistd")
    argv = [str(twistd)] if twistd.exists() else [sys.executable, "-m", "twisted"]
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = demoEnv(temp)
    # an editable install does not put the source tree's twisted/plugins on sys.path
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [*argv, "-n", "--pidfile=", "--logfile=-", "pcpkit", "demo", "--size", "8"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    found = re.search(r"sha256 verified: ([0-9a-f]{64})", result.stdout)
    assert found, result.stdout
    assert "demo finished: " in result.stdout
    assert "Main loop terminated" in result.stdout
    assert list(temp.iterdir()) == []


def test_ctrl_c_interrupts_the_demo_and_cleans_up(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    demo = Running(["demo", "--size", "256"], tmp_path, env=demoEnv(temp))
    try:
        demo.waitFor(r"seeding with", timeout=60)
        assert demo.interrupt(signal.SIGINT, timeout=60) == 130
    finally:
        demo.kill()
    assert "Traceback" not in demo.stderr + demo.stdout
    assert "interrupted" in demo.stderr
    assert "sha256 verified" not in demo.stdout
    assert list(temp.iterdir()) == []


# -- in-process --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_run_demo_in_process_leaves_a_clean_reactor(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await withTimeout(
        ensureDeferred(runDemo(2, write=lines.append, tempParent=str(tmp_path))),
        60,
    )
    assert isinstance(result, DemoResult)
    assert f"sha256 verified: {result.sha256}" in lines
    assert result.size == 2 * 1024 * 1024
    assert result.swarmSeconds > 0 and result.relaySeconds > 0
    assert result.peakMemory > 0
    assert list(tmp_path.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_stopper_interrupts_the_demo_which_cleans_up(tmp_path: Path) -> None:
    lines: list[str] = []
    stopper = Stopper()
    d = ensureDeferred(runDemo(64, write=lines.append, stopper=stopper, tempParent=str(tmp_path)))
    await waitUntil(lambda: any(line.startswith("seeding with") for line in lines), 30, "the seed")
    stopper.stop()
    with pytest.raises(Interrupted):
        await withTimeout(d, 30)
    assert list(tmp_path.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_demo_service_stopped_early_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    service = DemoService(sizeMiB=64)
    service.startService()
    await waitUntil(lambda: bool(list(tmp_path.iterdir())), 10, "the demo's folder")
    await waitUntil(
        lambda: any((p / "seed").exists() for p in tmp_path.iterdir()), 10, "the seed folder"
    )
    stopped: Any = service.stopService()
    assert stopped is not None
    await withTimeout(stopped, 30)
    assert service.failure is not None and service.failure.check(Interrupted)
    assert list(tmp_path.iterdir()) == []
