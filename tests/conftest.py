"""
Shared fixtures: every test must leave a clean reactor, as trial demands.

After each test we give the reactor a short grace (a few turns, at most one second) for
connections that are already closing, then fail the test if it left behind a pending
``DelayedCall``, a reader or writer, or a non-daemon thread that was not there before.

A child process (a :class:`tests.procutil.ProcessRunner`) still running after a test, even
one that failed or timed out, is killed and waited for first; a test that passed fails for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater

from tests.procutil import ProcessRunner
from tests.rabbitutil import rabbitFixture  # noqa: F401  (one "rabbit" broker per session)

reactor = _reactor


def _state() -> tuple[set[object], set[object], set[threading.Thread]]:
    calls = {c for c in reactor.getDelayedCalls() if c.active()}  # type: ignore[attr-defined]
    selectables = {
        s
        for s in set(reactor.getReaders()) | set(reactor.getWriters())  # type: ignore[attr-defined]
        # the reactor's own wakers appear when it starts, not because of a test
        if "Waker" not in type(s).__name__
    }
    threads = {t for t in threading.enumerate() if t.is_alive()}
    return calls, selectables, threads


def _dirt(
    before: tuple[set[object], set[object], set[threading.Thread]],
) -> list[str]:
    calls, selectables, threads = _state()
    problems = []
    newCalls = calls - before[0]
    if newCalls:
        problems.append(f"pending DelayedCalls: {sorted(map(str, newCalls))}")
    newSel = selectables - before[1]
    if newSel:
        problems.append(f"readers/writers left on the reactor: {sorted(map(repr, newSel))}")
    newThreads = [
        t
        for t in threads - before[2]
        # the reactor's own thread pool is Twisted's to manage
        if not t.name.startswith("PoolThread-twisted.internet.reactor")
    ]
    if newThreads:
        problems.append(f"threads left running: {[t.name for t in newThreads]}")
    return problems


@pytest.fixture(autouse=True)
def cleanReactor(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("dirty_ok"):
        yield
        return
    before = _state()
    yield
    for _ in range(50):
        if not _dirt(before):
            return
        pytest_twisted.blockon(deferLater(reactor, 0.02, lambda: None))
    problems = _dirt(before)
    if problems:
        pytest.fail("test left the reactor dirty: " + "; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def noLeftoverProcesses() -> Iterator[None]:
    # set up after cleanReactor, so torn down before it: the processes go before the check
    yield
    leftover = sorted(ProcessRunner.live, key=id)
    for runner in leftover:
        pytest_twisted.blockon(runner.kill().addTimeout(30, reactor))
    if leftover:
        names = [" ".join(r.argv[:4]) for r in leftover]
        pytest.fail(f"test left child processes running (killed): {names}", pytrace=False)
