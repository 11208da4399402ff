"""
``AdaptiveCommsComponent`` and ``ThreadedAdaptiveCommsComponent``: boxes added and deleted at
run time, resource tracking, and what deleting a linked box does to its links, its messages
and the senders waiting on it. Most tests drive a ``Scheduler`` on a ``task.Clock``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from pcpkit.adaptive import AdaptiveCommsComponent
from pcpkit.component import (
    BoxFull,
    Component,
    Scheduler,
    UnknownBox,
)
from pcpkit.ipc import producerFinished
from pcpkit.threaded import (
    ThreadedAdaptiveCommsComponent,
    threadedadaptivecommscomponent,
)
from tests.componentutil import Collector, Source
from tests.test_parking import Feed, Putter


def settle(clock: Clock, turns: int = 50) -> None:
    for _ in range(turns):
        clock.advance(0)


# -- names ------------------------------------------------------------------------------------


def test_added_boxes_take_the_requested_name_or_a_unique_variant() -> None:
    a = AdaptiveCommsComponent()
    assert a.addInbox("conn") == "conn"
    second = a.addInbox("conn")
    third = a.addInbox("conn")
    assert second != "conn" and second.startswith("conn")
    assert len({"conn", second, third}) == 3
    assert {"conn", second, third} <= set(a.inboxes)
    # the defaults are Axon's: named after "inbox" / "outbox", which the component has
    box = a.addInbox()
    assert box.startswith("inbox") and box != "inbox"
    out = a.addOutbox()
    assert out.startswith("outbox") and out != "outbox"
    assert a.addOutbox("conn") == "conn"  # inboxes and outboxes are separate namespaces
    assert a.inboxes[second].isInbox and not a.outboxes["conn"].isInbox
    assert a.inboxes[second].owner is a and a.inboxes[second].name == second


def test_added_boxes_carry_messages_like_declared_ones() -> None:
    a = AdaptiveCommsComponent()
    b = AdaptiveCommsComponent()
    out = a.addOutbox("to_b")
    inb = b.addInbox("from_a")
    a.link((a, out), (b, inb))
    a.send("hello", out)
    assert b.dataReady(inb) == 1
    assert b.recv(inb) == "hello"
    b.setInboxSize(inb, 1)
    a.send("one", out)
    with pytest.raises(BoxFull):
        a.send("two", out)


def test_unknown_and_deleted_boxes_raise_keyerror_as_in_axon() -> None:
    a = AdaptiveCommsComponent()
    with pytest.raises(UnknownBox):
        a.deleteInbox("nope")
    with pytest.raises(KeyError):
        a.deleteOutbox("nope")
    name = a.addInbox("x")
    out = a.addOutbox("y")
    a.deleteInbox(name)
    a.deleteOutbox(out)
    assert name not in a.inboxes and out not in a.outboxes
    with pytest.raises(KeyError):
        a.dataReady(name)
    with pytest.raises(KeyError):
        a.recv(name)
    with pytest.raises(KeyError):
        a.send("m", out)
    with pytest.raises(KeyError):
        a.deleteInbox(name)


def test_a_deleted_name_that_no_link_names_is_used_again_as_in_axon() -> None:
    a = AdaptiveCommsComponent()
    b = Component()
    name = a.addInbox("conn")
    a.link((b, "outbox"), (a, name))
    a.deleteInbox(name)
    assert a.postoffice == []
    assert a.addInbox("conn") == "conn"


def test_a_name_a_third_components_link_still_names_is_retired() -> None:
    a = AdaptiveCommsComponent()
    b = Component()
    graph = Component()  # links two others, as a Graphline does
    name = a.addInbox("conn")
    lk = graph.link((b, "outbox"), (a, name))
    a.deleteInbox(name)
    # unlinked all the same: b's outbox leads nowhere now
    assert b.outboxes["outbox"].final is b.outboxes["outbox"]
    assert lk in graph.postoffice  # the Linkage object stays where it was made
    again = a.addInbox("conn")
    assert again != "conn"
    graph.unlink(thelinkage=lk)  # harmless: it no longer links anything
    assert graph.postoffice == []
    assert a.inboxes[again].sources == []


def test_the_other_end_of_a_third_components_link_is_retired_too() -> None:
    a, b = AdaptiveCommsComponent(), AdaptiveCommsComponent()
    graph = Component()
    name = a.addInbox("conn")
    out = b.addOutbox("fan")
    lk = graph.link((b, out), (a, name))
    a.deleteInbox(name)
    assert b.outboxes[out].target is None
    b.deleteOutbox(out)  # lk, left in graph's postoffice, still names it
    assert lk in graph.postoffice
    assert b.addOutbox("fan") != "fan"


# -- resources --------------------------------------------------------------------------------


def test_resource_tracking_as_in_axon() -> None:
    a = AdaptiveCommsComponent()
    inb = a.addInbox("conn")
    out = a.addOutbox("conn")
    handler = object()
    a.trackResource(handler, inb)
    assert a.retrieveTrackedResource(inb) is handler
    with pytest.raises(KeyError):
        a.trackResource(handler, "missing")
    with pytest.raises(KeyError):
        a.retrieveTrackedResource("inbox")
    a.trackResourceInformation(handler, [inb], [out], {"peer": "127.0.0.1"})
    assert a.retrieveTrackedResourceInformation(handler) == ([inb], [out], {"peer": "127.0.0.1"})
    with pytest.raises(KeyError):
        a.trackResourceInformation("other", [inb], ["missing"], None)
    with pytest.raises(KeyError):
        a.retrieveTrackedResourceInformation("other")  # nothing was stored on the failure
    a.ceaseTrackingResource(handler)
    with pytest.raises(KeyError):
        a.retrieveTrackedResourceInformation(handler)
    with pytest.raises(KeyError):
        a.ceaseTrackingResource(handler)
    # as in Axon, deleting the inbox does not forget its resource
    a.deleteInbox(inb)
    assert a.retrieveTrackedResource(inb) is handler


# -- deleting linked boxes ----------------------------------------------------------------------


def test_deleting_an_inbox_linked_both_ways_unlinks_everything() -> None:
    a = AdaptiveCommsComponent()
    b, c, child = Component(), Component(), Component()
    name = a.addInbox("conn")
    box = a.inboxes[name]
    lkA = a.link((b, "outbox"), (a, name))  # made by a
    lkC = c.link((c, "outbox"), (a, name))  # made by the sender
    lkP = a.link((a, name), (child, "inbox"), passthrough=1)  # on to a child
    b.send("queued", "outbox")
    assert child.recv("inbox") == "queued"  # the passthrough delivered it
    a.deleteInbox(name)
    assert box.sources == [] and box.target is None
    for lk in (lkA, lkC, lkP):
        assert lk not in a.postoffice and lk not in c.postoffice
    assert b.outboxes["outbox"].final is b.outboxes["outbox"]
    assert c.outboxes["outbox"].final is c.outboxes["outbox"]
    assert child.inboxes["inbox"].sources == []
    # what they send now waits in their outboxes: nothing reaches the dead box
    before = box.putCount
    b.send("after", "outbox")
    c.send("after", "outbox")
    assert box.putCount == before and len(box) == 0
    assert list(b.outboxes["outbox"].queue) == ["after"]
    # ... and goes on when they are linked again
    other = a.addInbox("conn")
    a.link((b, "outbox"), (a, other))
    assert a.recv(other) == "after"


def test_deleting_an_outbox_linked_both_ways_unlinks_everything() -> None:
    a = AdaptiveCommsComponent()
    child, sink = Component(), Component()
    out = a.addOutbox("fan")
    box = a.outboxes[out]
    a.link((child, "outbox"), (a, out), passthrough=2)
    lk = sink.link((a, out), (sink, "inbox"))
    child.send("via a", "outbox")
    assert sink.recv("inbox") == "via a"
    a.deleteOutbox(out)
    assert box.sources == [] and box.target is None
    assert a.postoffice == [] and lk not in sink.postoffice
    assert sink.inboxes["inbox"].sources == []
    child.send("later", "outbox")
    assert sink.dataReady("inbox") == 0 and len(box) == 0
    assert list(child.outboxes["outbox"].queue) == ["later"]


def test_messages_in_a_deleted_box_are_dropped_with_it() -> None:
    a = AdaptiveCommsComponent()
    src = Component()
    inb = a.addInbox("conn")
    a.link((src, "outbox"), (a, inb))
    for i in range(3):
        src.send(i, "outbox")
    assert a.dataReady(inb) == 3
    box = a.inboxes[inb]
    a.deleteInbox(inb)
    assert len(box) == 0
    out = a.addOutbox("o")
    a.send("stranded", out)  # unlinked: waits in the outbox
    obox = a.outboxes[out]
    a.deleteOutbox(out)
    assert len(obox) == 0


# -- senders waiting on a deleted inbox are woken ----------------------------------------------


def waitingSender(kind: str) -> Component:
    # (the senders of the parking tests: a plain send per step, Axon's retry loop, put)
    if kind == "parked":
        return Feed(list(range(10)))
    if kind == "boxfull":
        return Source(range(10))
    return Putter(10)


@pytest.mark.parametrize("kind", ["parked", "boxfull", "put"])
def test_a_sender_waiting_on_a_deleted_inbox_is_woken(kind: str) -> None:
    clock = Clock()
    sched = Scheduler(clock)
    a = AdaptiveCommsComponent()  # not running: nobody drains its inbox
    inb = a.addInbox("conn")
    a.setInboxSize(inb, 2, park=(kind == "parked"))
    sender = waitingSender(kind)
    a.link((sender, "outbox"), (a, inb))
    sender.activate(sched)
    settle(clock)
    assert not sender.finished.called  # it waits on the full inbox ...
    assert a.dataReady(inb) >= 2
    a.deleteInbox(inb)
    settle(clock)
    # ... and, woken, goes on: the rest waits in its own outbox, not in the dead box
    assert sender.finished.called
    assert a.inboxes.get(inb) is None
    assert len(sender.outboxes["outbox"]) == 10 - 2 - (1 if kind == "parked" else 0)


# -- threaded --------------------------------------------------------------------------------


class ThreadedHub(ThreadedAdaptiveCommsComponent):
    """
    Its thread adds an inbox, asks (on ``outbox``) to be fed into it, reads three messages,
    deletes it and reports; ``control`` ends it.
    """

    def main(self) -> None:
        name = self.addInbox("feed")
        self.send(("feed me", name), "outbox")
        got: list[Any] = []
        while len(got) < 3:
            while self.dataReady(name):
                got.append(self.recv(name))
            if len(got) < 3:
                self.pause(0.5)
        self.deleteInbox(name)
        out = self.addOutbox("report")
        self.send(("report on", out), "outbox")
        self.pause(5)  # until linked: the reactor side answers on inbox
        self.recv("inbox")
        self.send(got, out)
        self.deleteOutbox(out)
        self.send(name in self.inboxes or out in self.outboxes, "outbox")


class Operator(Component):
    """The reactor side: links feeders to the hub's new inbox, a collector to its report."""

    def __init__(self, hub: ThreadedHub, sink: Collector, **argd: Any) -> None:
        super().__init__(**argd)
        self.hub = hub
        self.sink = sink
        self.feeder = Component()

    def main(self) -> Generator[int, None, None]:
        replies = 0
        while True:
            while self.dataReady("inbox"):
                msg = self.recv("inbox")
                replies += 1
                if isinstance(msg, tuple) and msg[0] == "feed me":
                    self.link((self.feeder, "outbox"), (self.hub, msg[1]))
                    for i in range(3):
                        self.feeder.send(f"m{i}", "outbox")
                elif isinstance(msg, tuple):
                    self.link((self.hub, msg[1]), (self.sink, "inbox"))
                    self.send("linked", "outbox")
                else:
                    self.sink.got.append(("boxes left", msg))
            if replies == 3:
                return
            self.pause()
            yield 1


@pytest_twisted.ensureDeferred
async def test_threaded_variant_adds_and_deletes_boxes_from_its_thread() -> None:
    assert threadedadaptivecommscomponent is ThreadedAdaptiveCommsComponent
    hub = ThreadedHub()
    sink = Collector()
    op = Operator(hub, sink)
    op.link((hub, "outbox"), (op, "inbox"))
    op.link((op, "outbox"), (hub, "inbox"))
    for c in (sink, op, hub):
        c.activate()
    d: Deferred[Any] = hub.finished
    await d.addTimeout(20, reactor)
    await op.finished.addTimeout(20, reactor)
    assert sink.got == [["m0", "m1", "m2"], ("boxes left", False)]
    assert op.feeder.outboxes["outbox"].final is op.feeder.outboxes["outbox"]
    sink.inboxes["control"].deliver(producerFinished())
    await sink.finished.addTimeout(20, reactor)


class Burst(ThreadedAdaptiveCommsComponent):
    def main(self) -> None:
        for i in range(5):
            self.send(i, "o")


@pytest_twisted.ensureDeferred
async def test_deleting_an_outbox_drops_what_the_thread_could_not_deliver_yet() -> None:
    hub = Burst()
    sink = Component()  # never runs: its inbox stays full
    sink.setInboxSize("inbox", 2)
    out = hub.addOutbox("o")  # (on the reactor thread: done at once)
    assert out == "o"
    hub.link((hub, out), (sink, "inbox"))
    hub.activate()
    for _ in range(2000):  # the thread has returned with 3 messages still to deliver
        if hub._thread is not None and not hub._thread.is_alive() and sink.dataReady() == 2:
            break
        await deferLater(reactor, 0.005)
    assert not hub.finished.called  # it waits for its messages to go out ...
    hub.deleteOutbox(out)
    await hub.finished.addTimeout(20, reactor)  # ... and ends once they are dropped
    assert list(sink.inboxes["inbox"].queue) == [0, 1]


class TwoWay(ThreadedAdaptiveCommsComponent):
    def main(self) -> None:
        for box in ("a", "a", "o", "o"):
            self.send(f"{box} msg", box)


@pytest_twisted.ensureDeferred
async def test_undelivered_thread_messages_never_reach_a_new_box_of_the_same_name() -> None:
    hub = TwoWay()
    slow, other = Component(), Component()
    slow.setInboxSize("inbox", 1)
    hub.link((hub, hub.addOutbox("a")), (slow, "inbox"))
    hub.addOutbox("o")  # not linked
    hub.activate()
    for _ in range(2000):  # the thread is done; "a"'s second message holds up the queue
        if hub._thread is not None and not hub._thread.is_alive() and slow.dataReady() == 1:
            break
        await deferLater(reactor, 0.005)
    hub.deleteOutbox("o")
    assert hub.addOutbox("o") == "o"  # no link named the old one: the name is free again
    hub.link((hub, "o"), (other, "inbox"))
    assert slow.recv("inbox") == "a msg"  # room again: the rest goes out
    await hub.finished.addTimeout(20, reactor)
    assert slow.recv("inbox") == "a msg"
    assert other.dataReady("inbox") == 0  # what was sent into the old "o" was dropped


# -- invariants under random operations ---------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["addIn", "addOut", "delIn", "delOut", "link", "unlink", "send"]),
        st.integers(0, 2),
        st.integers(0, 20),
        st.integers(0, 20),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_operations_keep_the_invariants(steps: list[tuple[str, int, int, int]]) -> None:
    comps = [AdaptiveCommsComponent() for _ in range(2)]
    graph = Component()  # a third party making links, as a Graphline does
    creators: list[Component] = [*comps, graph]
    dead: dict[int, tuple[Any, int]] = {}  # id -> (box, putCount at deletion)
    sent = 0
    dropped = 0
    names = ["inbox", "control", "outbox", "signal", "a"]

    def pick(boxes: dict[str, Any], i: int) -> str | None:
        keys = sorted(boxes)
        return keys[i % len(keys)] if keys else None

    for op, ci, i, j in steps:
        c = comps[ci % 2]
        if op == "addIn" or op == "addOut":
            boxes = c.inboxes if op == "addIn" else c.outboxes
            before = set(boxes)
            requested = names[i % len(names)]
            # names a Linkage anywhere still refers to, for a deleted box of c
            stale = {
                b.name
                for k in creators
                for lk in k.postoffice
                for b in (lk.source, lk.sink)
                if id(b) in dead and b.owner is c and b.isInbox == (op == "addIn")
            }
            name = c.addInbox(requested) if op == "addIn" else c.addOutbox(requested)
            assert name not in before and name.startswith(requested)
            assert name not in stale
        elif op == "delIn" or op == "delOut":
            boxes = c.inboxes if op == "delIn" else c.outboxes
            victim = pick(boxes, i)
            if victim is None:
                continue
            box = boxes[victim]
            dropped += len(box)
            (c.deleteInbox if op == "delIn" else c.deleteOutbox)(victim)
            dead[id(box)] = (box, box.putCount)
        elif op == "link":
            src = comps[ci % 2]
            dst = comps[(ci + 1) % 2]
            o, n = pick(src.outboxes, i), pick(dst.inboxes, j)
            if o is None or n is None or src.outboxes[o].target is not None:
                continue
            creators[(i + j) % 3].link((src, o), (dst, n))
        elif op == "unlink":
            k = creators[(i + j) % 3]
            if k.postoffice:
                k.unlink(thelinkage=k.postoffice[i % len(k.postoffice)])
        else:
            o = pick(c.outboxes, i)
            if o is None:
                continue
            c.send(("m", sent), o)
            sent += 1
        # no message ever enters a dead box, and no live box leads into one
        for box, count in dead.values():
            assert box.putCount == count and len(box) == 0
            assert box.sources == [] and box.target is None
        live = [b for k in comps for b in (*k.inboxes.values(), *k.outboxes.values())]
        for b in live:
            assert id(b.final) not in dead
        # nothing lost or duplicated: every message is in one live box or was dropped with one
        held = [m for b in live for m in b.queue]
        assert len(held) == len(set(held))
        assert len(held) + dropped == sent
