"""
The code samples of ``README.md`` and ``docs/``: found, classified and run.

The convention (also in ``docs/contributing.rst``):

* A Python sample is a ``.. code-block:: python`` block in reStructuredText or a
  ```` ```python ```` fence in Markdown. A ``::`` literal block must not hold Python code
  (it would be neither run nor highlighted): the check fails if one starts like a program.
* A sample is a **complete program** unless an invisible comment right before it says
  otherwise: ``.. fragment: REASON`` (reST) or ``<!-- fragment: REASON -->`` (Markdown).
  The reason is required.
* A test module is run by its test runner: ``.. run: pytest`` or ``.. run: trial`` right
  before it (``<!-- run: pytest -->`` in Markdown) saves it as ``test_sample.py`` and runs
  ``python -m pytest`` or ``python -m twisted.trial`` on it instead.
* ``.. needs: rabbitmq`` before a complete program (next to the other comments) runs it
  with a throw-away RabbitMQ broker (``tests/rabbitutil.py``), whose URL is its first
  argument.
* A complete program must say what it prints: an invisible comment right after it,
  ``.. expect: LINE`` (more lines indented below it) or ``<!-- expect: LINE -->``. Each
  expected line must appear, in order, among the lines the program prints; ``...`` in a
  line matches anything.
* The harness runs each complete program with the checkout's ``pcpkit`` in a fresh
  interpreter, in an empty temporary directory, with a timeout; only 127.0.0.1 is used by
  the samples. A non-zero exit or missing output fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("**/*.rst")),
    *sorted((ROOT / "docs").glob("**/*.md")),
]
PROGRAM_START = re.compile(r"(from \S+ import |import \S+|class \w+|def \w+|async def \w+)")


RUNNERS = {
    "python": ["sample.py"],
    "pytest": ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"],
    "trial": ["-m", "twisted.trial", "test_sample"],
}


#: what ``.. needs:`` may name
SERVICES = {"rabbitmq"}


@dataclass
class Sample:
    page: Path
    line: int  # 1-based line of the block's first code line
    code: str
    fragment: str | None = None  # the reason, when a fragment
    expect: list[str] = field(default_factory=list)
    timeout: float = 30
    runner: str = "python"  # or "pytest", "trial"
    needs: list[str] = field(default_factory=list)  # services, such as "rabbitmq"

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _indentOf(text: str) -> int:
    return len(text) - len(text.lstrip())


def _rstBlock(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The indented body starting at ``start`` (more indented than ``indent``)."""
    body: list[str] = []
    i = start
    while i < len(lines):
        text = lines[i]
        if text.strip() and _indentOf(text) <= indent:
            break
        body.append(text)
        i += 1
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
        start += 1
    return body, i


def _rstComment(lines: list[str], i: int, name: str) -> tuple[str, list[str]] | None:
    """The comment ``.. NAME: FIRST`` at line ``i``: (first line, continuation lines)."""
    match = re.fullmatch(rf"(\s*)\.\. {name}:(.*)", lines[i])
    if match is None:
        return None
    more, _ = _rstBlock(lines, i + 1, len(match.group(1)))
    return match.group(2).strip(), [m.strip() for m in more if m.strip()]


def _previous(lines: list[str], i: int) -> int:
    """The index of the nearest non-blank line before ``i`` (-1 if none)."""
    i -= 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    return i


def _rstSamples(page: Path) -> tuple[list[Sample], list[str]]:
    lines = page.read_text().splitlines()
    samples: list[Sample] = []
    problems: list[str] = []
    for i, text in enumerate(lines):
        directive = re.fullmatch(r"(\s*)\.\. code-block:: python3?\s*", text)
        literal = text.rstrip().endswith("::") and not text.lstrip().startswith("..")
        if not directive and not literal:
            continue
        indent = _indentOf(text)
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].strip().startswith(":")):
            j += 1  # options such as :caption:
        body, end = _rstBlock(lines, j, indent)
        if not body:
            continue
        code = textwrap.dedent("\n".join(body)) + "\n"
        if literal:
            if PROGRAM_START.match(code):
                problems.append(
                    f"{page.relative_to(ROOT)}:{j + 1}: Python in a '::' literal block; "
                    "make it a '.. code-block:: python' (and a fragment if it is one)"
                )
            continue
        sample = Sample(page, j + 1, code)
        before = _previous(lines, i)
        while before >= 0:  # the comments right before the block, nearest first
            while before > 0 and _indentOf(lines[before]) > indent:  # a comment's 2nd line
                before -= 1
            kind = re.match(r"\s*\.\. (fragment|run|needs):", lines[before])
            if kind is None:
                break
            comment = _rstComment(lines, before, kind.group(1))
            assert comment is not None
            text = " ".join([comment[0], *comment[1]]).strip()
            if kind.group(1) == "fragment":
                sample.fragment = text
            elif kind.group(1) == "run":
                sample.runner = text
            else:
                sample.needs += text.split()
            before = _previous(lines, before)
        after = end
        while after < len(lines) and not lines[after].strip():
            after += 1
        expect = _rstComment(lines, after, "expect") if after < len(lines) else None
        if expect is not None:
            sample.expect = [x for x in [expect[0], *expect[1]] if x]
        samples.append(sample)
    return samples, problems


def _mdSamples(page: Path) -> tuple[list[Sample], list[str]]:
    lines = page.read_text().splitlines()
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        if re.fullmatch(r"```(python|py|python3)\s*", lines[i]) is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        sample = Sample(page, i + 2, "\n".join(lines[i + 1 : end]) + "\n")
        before = _previous(lines, i)
        match = (
            re.fullmatch(r"<!-- fragment:(.*)-->", lines[before].strip()) if before >= 0 else None
        )
        if match is not None:
            sample.fragment = match.group(1).strip()
        match = re.fullmatch(r"<!-- run:(.*)-->", lines[before].strip()) if before >= 0 else None
        if match is not None:
            sample.runner = match.group(1).strip()
        after = end + 1
        while after < len(lines) and not lines[after].strip():
            after += 1
        while after < len(lines) and (
            match := re.fullmatch(r"<!-- expect:(.*)-->", lines[after].strip())
        ):
            sample.expect.append(match.group(1).strip())
            after += 1
        samples.append(sample)
        i = end + 1
    return samples, []


def collect() -> tuple[list[Sample], list[str]]:
    """Every Python sample of the README and docs, and the convention's violations."""
    samples: list[Sample] = []
    problems: list[str] = []
    for page in PAGES:
        if "_build" in page.parts:
            continue
        found, bad = (_mdSamples if page.suffix == ".md" else _rstSamples)(page)
        samples += found
        problems += bad
    for sample in samples:
        if set(sample.needs) - SERVICES:
            problems.append(f"{sample.name}: unknown service in needs: {sample.needs}")
        if sample.runner not in RUNNERS:
            problems.append(f"{sample.name}: unknown runner {sample.runner!r}")
        if sample.fragment == "":
            problems.append(f"{sample.name}: a fragment needs a reason")
        if sample.fragment is None and not sample.expect:
            problems.append(
                f"{sample.name}: a complete sample needs an '.. expect:' comment after it "
                "(or mark it '.. fragment: REASON' before it)"
            )
    return samples, problems


def _matches(pattern: str, line: str) -> bool:
    parts = [re.escape(p) for p in pattern.split("...")]
    return re.fullmatch(".*".join(parts), line.strip()) is not None or (
        "..." not in pattern and pattern in line
    )


def missing(expect: list[str], output: str) -> list[str]:
    """The expected lines not found, in order, in ``output``."""
    lines = output.splitlines()
    at = 0
    for n, pattern in enumerate(expect):
        while at < len(lines) and not _matches(pattern, lines[at]):
            at += 1
        if at == len(lines):
            return expect[n:]
        at += 1
    return []


def run(sample: Sample, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a complete sample in ``cwd`` with this checkout's pcpkit first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(cwd)])
    (cwd / ("sample.py" if sample.runner == "python" else "test_sample.py")).write_text(sample.code)
    return subprocess.run(
        [sys.executable, *RUNNERS[sample.runner], *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=sample.timeout,
        stdin=subprocess.DEVNULL,
    )
