"""Helpers shared by the building-block tests (pcpkit.util)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet.task import Clock

from pcpkit import Component


@contextmanager
def clockScheduler() -> Iterator[tuple[Clock, Callable[[Component], object]]]:
    """
    Run components on a ``task.Clock``: pure logic, deterministic, so hypothesis can shrink.
    Yields the clock and the function that activates a component on it. With an injectable
    ``pcpkit.component.Scheduler`` it uses one; before that, the technique of
    tests/test_backpressure.py (the module's scheduler and reactor swapped for the test).
    """
    import pcpkit.component as component_module
    import pcpkit.util.outlets as outlets_module

    clock = Clock()
    Scheduler = getattr(component_module, "Scheduler", None)
    if Scheduler is not None:
        sched = Scheduler(clock)
        yield clock, lambda c: c.activate(scheduler=sched)  # type: ignore[call-arg]
        return
    realGetReactor = component_module.getReactor
    saved = component_module._scheduler  # type: ignore[attr-defined]
    component_module.getReactor = lambda: clock  # type: ignore[assignment]
    outlets_module.getReactor = lambda: clock  # type: ignore[assignment]
    component_module._scheduler = component_module._Scheduler()  # type: ignore[attr-defined]
    try:
        yield clock, lambda c: c.activate()
    finally:
        component_module.getReactor = realGetReactor
        outlets_module.getReactor = realGetReactor
        component_module._scheduler = saved  # type: ignore[attr-defined]


def runUntil(
    clock: Clock,
    done: Callable[[], bool],
    check: Callable[[], None] = lambda: None,
    steps: int = 200_000,
    step: float = 0.0005,
) -> None:
    """Advance ``clock`` until ``done()``, calling ``check()`` after every step."""
    for _ in range(steps):
        if done():
            return
        clock.advance(step)
        check()
    raise AssertionError("stalled: the components did not finish")


class Paced(Component):
    """
    A sink that takes ``pace[i % len(pace)]`` messages, then sleeps one scheduler turn per
    entry of ``idle``; records what it got and the most messages it ever saw queued.
    """

    def __init__(
        self, pace: list[int], idle: int = 0, bound: int | None = None, **argd: Any
    ) -> None:
        super().__init__(**argd)
        self.pace = pace or [1]
        self.idle = idle
        self.got: list[Any] = []
        self.maxQueued = 0
        if bound is not None:
            self.setInboxSize("inbox", bound)

    def main(self) -> Generator[int, None, list[Any]]:
        i = 0
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            for _ in range(self.pace[i % len(self.pace)]):
                if not self.dataReady("inbox"):
                    break
                self.got.append(self.recv("inbox"))
            i += 1
            if self.dataReady("control") and not self.dataReady("inbox"):
                return self.got
            for _ in range(self.idle):
                yield 1
            if not self.dataReady("inbox"):
                self.pause()
            yield 1
