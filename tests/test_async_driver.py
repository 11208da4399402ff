"""
The scheduler drives ``async def`` mains itself (``coroutine.send`` with pcpkit's own waiters):
what ``ensureDeferred`` used to give them must still hold. Awaiting any Deferred works (fired
later, already fired, failed), as do awaiting coroutines, ``inlineCallbacks`` functions and
bare yields; exceptions, ``Stopped`` and ``finished`` behave as before; each main runs in a
context of its own. All on a ``task.Clock``: deterministic.
"""

from __future__ import annotations

import contextvars
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater

from pcpkit.component import Component, Scheduler, Stopped
from pcpkit.ipc import ShutdownMicroprocess
from tests.componentutil import drive, outcome

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def test_deferreds_fired_later_already_fired_and_failed() -> None:
    clock = Clock()
    seen: list[object] = []

    class C(Component):
        async def main(self) -> str:
            seen.append(await deferLater(clock, 5, lambda: "later"))
            seen.append(await succeed("now"))
            try:
                await fail(ValueError("boom"))
            except ValueError as e:
                seen.append(str(e))
            seen.append(await self.get("inbox"))  # a pcpkit wait after Deferred waits
            return "done"

    c = C()
    c.inboxes["inbox"].deliver("msg")
    c.activate(Scheduler(clock))
    drive(clock, c)
    assert seen == ["later", "now", "boom", "msg"]
    assert outcome(c.finished) == "done"
    assert not clock.getDelayedCalls()


def test_many_already_fired_deferreds_do_not_recurse() -> None:
    clock = Clock()

    class C(Component):
        async def main(self) -> int:
            total = 0
            for i in range(5000):  # deeper than the recursion limit if each resumed nested
                total += await succeed(i)
            return total

    c = C().activate(Scheduler(clock))
    drive(clock, c)
    assert outcome(c.finished) == sum(range(5000))


def test_coroutines_inlinecallbacks_and_bare_yields() -> None:
    clock = Clock()

    async def helper(x: int) -> int:
        await deferLater(clock, 1, lambda: None)
        return x * 2

    @inlineCallbacks
    def old(x: int) -> Any:
        y = yield deferLater(clock, 1, lambda: x + 1)
        return y

    class Bare:
        def __await__(self) -> Any:
            got = yield "not a Deferred"  # sent straight back, as ensureDeferred does
            return got

    class C(Component):
        async def main(self) -> list[object]:
            return [await helper(2), await old(4), await Bare()]

    c = C().activate(Scheduler(clock))
    drive(clock, c)
    assert outcome(c.finished) == [4, 5, "not a Deferred"]


def test_an_exception_after_a_deferred_fails_finished_and_signals() -> None:
    clock = Clock()

    class C(Component):
        async def main(self) -> None:
            await deferLater(clock, 1, lambda: None)
            raise KeyError("after")

    class Listener(Component):
        async def main(self) -> list[object]:
            return [await self.get("control"), await self.get("control")]

    c, listener = C(), Listener()
    c.link((c, "signal"), (listener, "control"))
    sched = Scheduler(clock)
    listener.activate(sched)
    c.activate(sched)
    drive(clock, c, listener)
    failure = outcome(c.finished)
    assert failure.check(KeyError)
    kinds = [type(m).__name__ for m in outcome(listener.finished)]
    assert kinds == ["ErrorInformation", "ProducerFinished"]


def test_a_deferred_failing_later_is_thrown_into_main() -> None:
    clock = Clock()
    d: Deferred[None] = Deferred()

    class C(Component):
        async def main(self) -> None:
            await d

    c = C().activate(Scheduler(clock))
    clock.advance(1)
    assert not c.finished.called
    d.errback(RuntimeError("later failure"))
    assert outcome(c.finished).check(RuntimeError)


def test_stopped_while_waiting_ends_normally() -> None:
    clock = Clock()
    after: list[str] = []

    class C(Component):
        async def main(self) -> None:
            try:
                await self.get("inbox")
            except Stopped:
                after.append("stopped")
                raise

    c = C().activate(Scheduler(clock))
    clock.advance(1)
    c.inboxes["control"].deliver(ShutdownMicroprocess())
    drive(clock, c)
    assert after == ["stopped"]
    assert outcome(c.finished) is None


def test_each_main_runs_in_its_own_context() -> None:
    clock = Clock()
    seen: dict[str, list[str]] = {"a": [], "b": []}

    class C(Component):
        async def main(self) -> None:
            seen[self.tag].append(var.get())
            var.set(self.tag)
            await deferLater(clock, 1, lambda: None)
            seen[self.tag].append(var.get())
            await self.get("inbox")
            seen[self.tag].append(var.get())

    sched = Scheduler(clock)
    a, b = C(tag="a"), C(tag="b")
    a.activate(sched)
    b.activate(sched)
    clock.advance(1)
    a.inboxes["inbox"].deliver(1)
    b.inboxes["inbox"].deliver(2)
    drive(clock, a, b)
    assert seen == {"a": ["unset", "a", "a"], "b": ["unset", "b", "b"]}
    assert var.get() == "unset"
