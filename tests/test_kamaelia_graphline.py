"""
Graphline/Pipeline/children programs from Kamaelia's documentation, run on real Axon and on
pcpkit: what reaches the collectors must be the same. Each run is a subprocess with a
timeout, so a hang on either side is a failure rather than a stuck suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kamaelia_programs_graphline import PROGRAMS

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


def run(name: str, runtime: str) -> object:
    code = (
        "from tests.kamaelia_programs_graphline import runProgram; "
        f"runProgram({name!r}, {runtime!r})"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name!r} on {runtime} did not end within {TIMEOUT} s")
    assert proc.returncode == 0, f"{name!r} on {runtime} failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [n for n, _ in PROGRAMS])
def test_same_result_on_axon_and_pcpkit(name: str) -> None:
    axon = run(name, "axon")
    assert axon, f"{name!r} collected nothing on Axon: the program checks nothing"
    assert run(name, "pcpkit") == axon
