"""Waiting for a condition on the running reactor, for the tests that use the real one."""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.task import deferLater


async def waitUntil(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "", step: float = 0.01
) -> None:
    """
    Poll ``condition`` every ``step`` seconds on the reactor until it holds; fail naming
    ``what`` (or the condition) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await deferLater(reactor, step, lambda: None)
