"""Fan-out (pcpkit.util.fanout): every branch bounded, the source paused by the full ones."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogPublisher

from pcpkit import Component, ProducerFinished
from pcpkit.chassis import Pipeline
from pcpkit.file import FileReader, FileWriter
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.util import (
    DROP,
    Plug,
    PlugSplitter,
    Splitter,
    TwoWaySplitter,
    addsink,
    fanOut,
    removesink,
)
from pcpkit.util.sequencing import MessageRateLimit
from tests.componentutil import Source
from tests.utilutil import Paced, clockScheduler, runUntil
from tests.waitutil import waitUntil


class Gate(Component):
    """A sink that takes nothing until :meth:`open` is called, then everything."""

    def __init__(self, bound: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.setInboxSize("inbox", bound)
        self.isOpen = False
        self.got: list[Any] = []

    def open(self) -> None:
        self.isOpen = True
        self.unpause()

    def main(self) -> Generator[int, None, list[Any]]:
        while True:
            if self.isOpen:
                while self.dataReady("inbox"):
                    self.got.append(self.recv("inbox"))
                if self.dataReady("control"):
                    return self.got
            self.pause()
            yield 1


def test_splitter_boxes_are_kamaelias() -> None:
    from Kamaelia.Util.Splitter import PlugSplitter as KPlugSplitter
    from Kamaelia.Util.Splitter import Splitter as KSplitter
    from Kamaelia.Util.TwoWaySplitter import TwoWaySplitter as KTwoWay

    assert set(KSplitter.Inboxes) <= set(Splitter.Inboxes)
    assert set(KSplitter.Outboxes) <= set(Splitter.Outboxes)
    assert set(KPlugSplitter.Inboxes) == set(PlugSplitter.Inboxes)
    assert set(KPlugSplitter.Outboxes) == set(PlugSplitter.Outboxes)
    assert set(KTwoWay.Outboxes) == set(TwoWaySplitter.Outboxes)


@pytest_twisted.ensureDeferred
async def test_splitter_sinks_join_and_leave_at_run_time() -> None:
    splitter = Splitter()
    a, b = MessageCollector(), MessageCollector()
    a.activate()
    b.activate()
    splitter.activate()
    config = splitter.inboxes["configuration"]
    inbox = splitter.inboxes["inbox"]
    config.deliver(addsink(a))
    for i in range(10):
        inbox.deliver(i)
    await a.waitFor(10, timeout=5)
    config.deliver(addsink(b))
    for i in range(10, 20):
        inbox.deliver(i)
    await b.waitFor(10, timeout=5)
    config.deliver(removesink(a))
    for i in range(20, 30):
        inbox.deliver(i)
    await b.waitFor(20, timeout=5)
    assert a.messages == list(range(20))
    assert b.messages == list(range(10, 30))
    splitter.inboxes["control"].deliver(ProducerFinished())
    await runComponent(splitter, 5)
    a.stop()
    b.stop()
    await a.finished
    await b.finished


@pytest_twisted.ensureDeferred
async def test_a_full_branch_pauses_the_source_until_it_drains() -> None:
    fast = MessageCollector()
    slow = Gate(bound=4)
    feeder = Source(range(500))
    fan = fanOut(fast, slow)
    p = Pipeline(feeder, fan)
    p.activate()
    # the slow branch fills, the splitter stops taking, its own inbox fills, the source waits
    # (until the splitter's inbox drains to its low watermark)
    await waitUntil(lambda: fan.outlets.paused and feeder.sent >= fan.inboxSize)
    assert len(fan.inboxes["inbox"]) > fan.inboxes["inbox"].low
    assert fan.pauses == 1
    assert slow.dataReady("inbox") == 4
    # 4 in the slow inbox, one held for it, the splitter's inbox full (+ one step of the
    # feeder's sends, with a parking bound)
    assert feeder.sent <= 4 + 1 + fan.inboxSize + Source.step
    assert len(fast.messages) == 5
    slow.open()
    await runComponent(p, 10)
    assert fast.messages == list(range(500))
    assert slow.got == list(range(500))
    assert fan.pauses > 1
    assert fan.dropped == 0
    for outlet in fan.outlets:
        assert outlet.peak <= outlet.bound


@pytest_twisted.ensureDeferred
async def test_counted_pauses_resume_when_the_last_full_branch_drains() -> None:
    slow1, slow2 = Gate(bound=3), Gate(bound=3)
    fan = fanOut(slow1, slow2)
    p = Pipeline(Source(range(100)), fan)
    p.activate()
    await waitUntil(lambda: fan.outlets.pauser.count == 2)
    # the first drained branch does not resume the source: the other still holds its pause
    got = len(fan.inboxes["inbox"])
    slow1.open()
    await waitUntil(lambda: fan.outlets.pauser.count == 1 and slow1.dataReady("inbox") == 0)
    assert fan.outlets.paused
    assert len(fan.inboxes["inbox"]) == got
    assert slow1.got == [0, 1, 2, 3]
    slow2.open()
    await runComponent(p, 10)
    assert slow1.got == slow2.got == list(range(100))


@pytest_twisted.ensureDeferred
async def test_drop_branch_never_stalls_the_others_and_counts() -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        fast = MessageCollector()
        dead = Gate(bound=4)
        fan = fanOut(fast, dead, drop=[dead])
        feeder = Source(range(500))
        p = Pipeline(feeder, fan)
        p.activate()
        await fast.waitFor(500, timeout=10)
        assert fast.messages == list(range(500))
        (outlet,) = [o for o in fan.outlets if o.policy == DROP]
        assert outlet.dropped == 496
        assert fan.dropped == 496
        assert outlet.peak == 4
        assert dead.dataReady("inbox") == 4
        # the drop branch never paused the source (beyond the grace before its drops began)
        assert outlet.pauses == 0
        dead.open()
        await runComponent(p, 5)
        assert dead.got == [0, 1, 2, 3]
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("dropping messages" in e.get("log_format", "") for e in events)


@pytest_twisted.ensureDeferred
async def test_a_branch_that_finished_is_removed_instead_of_stalling() -> None:
    fast = MessageCollector()
    quitter = Gate(bound=2)
    fan = fanOut(fast, quitter)
    quitterOutlet = fan.outlets.find((quitter, "inbox"))
    p = Pipeline(Source(range(200)), fan)
    p.activate()
    await waitUntil(lambda: fan.outlets.paused)
    quitter.inboxes["control"].deliver(ProducerFinished())
    quitter.open()  # takes what it has, sees control, ends
    await runComponent(p, 10)
    assert fast.messages == list(range(200))
    assert quitterOutlet is not None and quitterOutlet not in fan.outlets.outlets


@pytest_twisted.ensureDeferred
async def test_plugsplitter_and_plugs_fan_out_data_and_control() -> None:
    a, b = MessageCollector(), MessageCollector()
    b.setInboxSize("inbox", 2)
    splitter = PlugSplitter(Source(range(300)))
    plugA, plugB = Plug(splitter, a), Plug(splitter, b)
    plugA.activate()
    plugB.activate()
    await runComponent(splitter, 10)
    await runComponent(plugA, 5)
    await runComponent(plugB, 5)
    assert a.messages == b.messages == list(range(300))
    assert isinstance(a.controlMessages[-1], ProducerFinished)
    assert isinstance(b.controlMessages[-1], ProducerFinished)
    assert splitter.pauses >= 1


@pytest_twisted.ensureDeferred
async def test_two_way_splitter() -> None:
    one, two = MessageCollector(), MessageCollector()
    two.setInboxSize("inbox", 3)
    split = TwoWaySplitter()
    feeder = Source(range(100))
    split.link((feeder, "outbox"), (split, "inbox"))
    split.link((feeder, "signal"), (split, "control"))
    split.link((split, "outbox"), (one, "inbox"))
    split.link((split, "outbox2"), (two, "inbox"))
    split.link((split, "signal"), (one, "control"))
    split.link((split, "signal2"), (two, "control"))
    for c in (one, two, feeder):
        c.activate()
    await runComponent(split, 10)
    assert await one.finished == list(range(100))
    assert await two.finished == list(range(100))


def test_bad_arguments() -> None:
    a = MessageCollector()
    with pytest.raises(ValueError, match="policy"):
        Splitter(policy="sometimes")
    with pytest.raises(ValueError, match="not one of the destinations"):
        fanOut(a, drop=[MessageCollector()])
    with pytest.raises(TypeError, match="components"):
        fanOut(a, "b")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(0, 300),
    branches=st.lists(
        st.tuples(
            st.lists(st.integers(0, 8), min_size=1, max_size=5),  # pace
            st.integers(0, 3),  # idle turns
            st.one_of(st.none(), st.integers(1, 12)),  # own inbox bound
            st.booleans(),  # drop policy
        ),
        min_size=1,
        max_size=4,
    ),
    size=st.one_of(st.none(), st.integers(1, 10)),
)
def test_fanout_random_branch_speeds_lose_duplicate_reorder_nothing(
    count: int, branches: list[tuple[list[int], int, int | None, bool]], size: int | None
) -> None:
    """
    Pause branches get everything in order; drop branches get an in-order subsequence and
    ``got + dropped == count``; no destination ever holds more than its bound.
    """
    with clockScheduler() as (clock, activate):
        sinks = [Paced([max(1, p) for p in pace], idle, bound) for pace, idle, bound, _ in branches]
        drop = [s for s, b in zip(sinks, branches, strict=True) if b[3]]
        fan = fanOut(*sinks, size=size, drop=drop)
        outlets = {o.key[0]: o for o in fan.outlets if o.key is not None}  # type: ignore[index]
        p = Pipeline(Source(range(count)), fan)
        activate(p)

        def bounded() -> None:
            for o in fan.outlets:
                assert len(o.destination) <= o.bound

        runUntil(clock, lambda: p.finished.called, bounded)
    for sink, (_, _, bound, dropping) in zip(sinks, branches, strict=True):
        assert sink.maxQueued <= (bound or size or 64)
        if dropping:
            assert sink.got == sorted(set(sink.got))  # in order, no duplicates
            assert len(sink.got) + outlets[sink].dropped == count
        else:
            assert sink.got == list(range(count))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest_twisted.ensureDeferred
async def test_large_stream_to_three_files_one_throttled(tmp_path: Path) -> None:
    """
    64 MiB (the issue's 256 MiB run is examples/tee.py and benchmarks/bench_util.py: this
    size keeps the test to a few seconds) to three FileWriters, one behind a rate limit.
    """
    size = 64 * 1024 * 1024
    src = tmp_path / "source.bin"
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(size // len(block)):
            chunk = bytes([i % 256]) + block[1:]
            digest.update(chunk)
            f.write(chunk)
    outs = [tmp_path / f"out{i}.bin" for i in range(3)]
    throttled = Pipeline(MessageRateLimit(2000, buffer=0), FileWriter(outs[2]))
    fan = fanOut(FileWriter(outs[0]), FileWriter(outs[1]), throttled)
    p = Pipeline(FileReader(src, chunksize=65536), fan)
    base = _rss()
    peak = [base]

    def sample() -> None:
        peak[0] = max(peak[0], _rss())

    sampler = LoopingCall(sample)
    sampler.start(0.02)
    try:
        await runComponent(p, 60)
    finally:
        sampler.stop()
    for out in outs:
        h = hashlib.sha256()
        with open(out, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        assert h.hexdigest() == digest.hexdigest(), out
    assert fan.pauses > 0  # the throttled branch held the source back
    for outlet in fan.outlets:
        assert outlet.peak <= outlet.bound
    # the whole file is 64 MiB; bounded branches hold a few MiB at most
    assert peak[0] - base < 40 * 1024 * 1024, (peak[0] - base) / 2**20


@pytest_twisted.ensureDeferred
async def test_two_way_splitter_differential() -> None:
    """Kamaelia's TwoWaySplitter and ours, same input: the same two outputs."""
    from Kamaelia.Chassis.Graphline import Graphline as KGraphline
    from Kamaelia.Util.DataSource import DataSource
    from Kamaelia.Util.TwoWaySplitter import TwoWaySplitter as KTwoWay

    from tests.kamaeliautil import _Collect

    items = list(range(50))
    one, two = _Collect(), _Collect()
    KGraphline(
        SRC=DataSource(list(items)),
        SPLIT=KTwoWay(),
        ONE=one,
        TWO=two,
        linkages={
            ("SRC", "outbox"): ("SPLIT", "inbox"),
            ("SRC", "signal"): ("SPLIT", "control"),
            ("SPLIT", "outbox"): ("ONE", "inbox"),
            ("SPLIT", "outbox2"): ("TWO", "inbox"),
            ("SPLIT", "signal"): ("ONE", "control"),
            ("SPLIT", "signal2"): ("TWO", "control"),
        },
    ).run()
    ours1, ours2 = MessageCollector(), MessageCollector()
    split = TwoWaySplitter()
    feeder = Source(items)
    for src, dst in (
        ((feeder, "outbox"), (split, "inbox")),
        ((feeder, "signal"), (split, "control")),
        ((split, "outbox"), (ours1, "inbox")),
        ((split, "outbox2"), (ours2, "inbox")),
        ((split, "signal"), (ours1, "control")),
        ((split, "signal2"), (ours2, "control")),
    ):
        split.link(src, dst)
    for c in (ours1, ours2, feeder):
        c.activate()
    await runComponent(split, 10)
    assert await ours1.finished == one.got
    assert await ours2.finished == two.got
    assert one.got == items


class Breaks(Component):
    """Takes ``after`` messages, then fails, as a writer on a full disk would."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def main(self) -> None:
        async for _ in self.messages("inbox"):
            self.after -= 1
            if self.after == 0:
                raise OSError(28, "No space left on device")


@pytest_twisted.ensureDeferred
async def test_a_failed_destination_fails_the_fanout_and_the_others_get_everything() -> None:
    good = MessageCollector()
    fan = fanOut(good, Breaks(after=10))
    p = Pipeline(Source(range(300)), fan)
    with pytest.raises(OSError, match="No space left"):
        await runComponent(p, 10)
    assert good.messages == list(range(300))
    assert isinstance(fan.failure.value, OSError)  # type: ignore[union-attr]
