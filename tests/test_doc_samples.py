"""
Every Python sample of README.md and docs/ runs: the complete ones are executed, in a fresh
interpreter in an empty directory, and print what their ``expect`` comment says. The
convention (fragments, expected output, test modules) is in :mod:`tests.docsamples` and
``docs/contributing.rst``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docsamples import Sample, collect, missing, run

SAMPLES, PROBLEMS = collect()
COMPLETE = [s for s in SAMPLES if s.fragment is None]


def test_every_sample_is_complete_or_a_fragment_on_purpose() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)
    # the harness finds the samples at all (a parser that finds none would pass vacuously)
    assert len(COMPLETE) >= 8 and len(SAMPLES) > len(COMPLETE)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sample", COMPLETE, ids=[s.name for s in COMPLETE])
def test_sample_runs(sample: Sample, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    args = []
    if "rabbitmq" in sample.needs:
        args.append(request.getfixturevalue("rabbit").url)
    result = run(sample, tmp_path, *args)
    output = result.stdout + result.stderr if sample.runner != "python" else result.stdout
    assert result.returncode == 0, (
        f"{sample.name} exited {result.returncode}:\n{output}\n{result.stderr}"
    )
    lost = missing(sample.expect, output)
    assert not lost, f"{sample.name} did not print {lost!r}; it printed:\n{output}"


def test_missing_output_is_caught() -> None:
    """The output check can fail: order matters, ``...`` matches anything in a line."""
    assert missing(["a ... c", "d"], "x\na b c\nd\n") == []
    assert missing(["d", "a ... c"], "a b c\nd\n") == ["a ... c"]
    assert missing(["nothing"], "something else\n") == ["nothing"]
