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

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater

from pcpkit.component import Box, Component, Scheduler, Stopped
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


# -- put's written-out delivery is send's ------------------------------------------------------


class _Idle(Component):
    def main(self) -> Any:
        self.pause()
        yield 1


_RECEIVER_STATES = {
    # (_queued, _paused): asleep, queued to run, paused in a step that is running
    "asleep": (False, True),
    "queued": (True, False),
    "pausing": (True, True),
}


def _world(bound: int | None, park: bool) -> tuple[Component, Component, Scheduler]:
    clock = Clock()
    scheduler = Scheduler(clock)
    sender, receiver = _Idle(), _Idle()
    sender.outboxes["spare"] = Box(sender, "spare", False)  # never linked
    sender.link((sender, "outbox"), (receiver, "inbox"))
    sender.link((sender, "signal"), (receiver, "control"))
    receiver.setInboxSize("inbox", bound, park=park)
    receiver.activate(scheduler)
    sender.activate(scheduler)
    clock.advance(0)  # both ran once and sleep
    return sender, receiver, scheduler


def _observed(sender: Component, receiver: Component, scheduler: Scheduler) -> object:
    boxes = [receiver.inboxes["inbox"], receiver.inboxes["control"], sender.outboxes["spare"]]
    return (
        [(list(b.queue), b.putCount) for b in boxes],
        (receiver._queued, receiver._paused, receiver._poked),
        [r is receiver for r in scheduler.runQueue],
        sender._sentShutdown,
    )


@settings(max_examples=200, deadline=None)
@given(
    bound=st.one_of(st.none(), st.integers(min_value=40, max_value=64)),
    park=st.booleans(),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["outbox", "signal", "spare"]),
            st.sampled_from(sorted(_RECEIVER_STATES)),
            st.sampled_from(["data", "shutdown"]),
        ),
        max_size=30,
    ),
)
def test_put_delivers_as_send_does(
    bound: int | None, park: bool, ops: list[tuple[str, str, str]]
) -> None:
    """
    ``put`` writes out ``send``'s delivery for an inbox with room (a call per message
    spared): for every box kind, message kind and receiver state, the boxes, the counts and
    the receiver's wake-up come out the same as after ``send``.
    """
    viaSend, viaPut = _world(bound, park), _world(bound, park)
    for i, (boxname, state, kind) in enumerate(ops):
        msg: object = ShutdownMicroprocess() if kind == "shutdown" else i
        for world in (viaSend, viaPut):
            world[1]._queued, world[1]._paused = _RECEIVER_STATES[state]
            world[1]._poked = False
        viaSend[0].send(msg, boxname)
        coro = viaPut[0].put(msg, boxname)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the test's boxes always have room
            raise AssertionError(f"put({msg!r}, {boxname!r}) waited though there was room")
        assert _observed(*viaPut) == _observed(*viaSend)
