"""examples/pipeline.py runs as a user would run it and reports an in-order delivery."""

from __future__ import annotations

import re

from tests.exampleutil import runExample


def test_pipeline_example() -> None:
    result = runExample("pipeline.py", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 5000 messages delivered in order through 4 components" in result.stdout
    assert "report thread: 5000 lines, in order, ended by ProducerFinished" in result.stdout
    # the bounded inboxes really pushed back
    match = re.search(r"BoxFull (\d+) times at the source, (\d+) times", result.stdout)
    assert match is not None, result.stdout
    assert int(match.group(1)) > 0 and int(match.group(2)) > 0


def test_pipeline_example_small_count() -> None:
    result = runExample("pipeline.py", "3", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 3 messages delivered in order" in result.stdout
