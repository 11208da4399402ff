"""
Kamaelia programs built on ``AdaptiveCommsComponent`` run on real Axon and on pcpkit: the
collector sees the same sequence (harness: ``tests/kamaeliadiff.py``).

A dynamic fan-out adds an outbox per subscriber and deletes one mid-stream; a server in the
style of Kamaelia's ``ServerCore`` adds an inbox pair per connection, tracks the connection's
handler as a resource and deletes the boxes when it closes; a threaded hub adds and deletes
boxes from its thread. Several components feed one sorter, whose output does not depend on
how the two schedulers interleave them.
"""

from __future__ import annotations

import pytest

from tests.kamaeliadiff import compare

pytest.importorskip("Axon")
pytest.importorskip("Kamaelia")

#: Shared by the programs: a source of commands, and a sorter that emits what it gathered,
#: sorted, once told the input has ended.
COMMON = """
from Axon.Component import component
from Axon.AdaptiveCommsComponent import AdaptiveCommsComponent
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Pipeline import Pipeline

class Commands(component):
    def __init__(self, commands):
        super(Commands, self).__init__()
        self.commands = commands
    def main(self):
        for c in self.commands:
            self.send(c, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Sorter(component):
    def main(self):
        got = []
        while True:
            while self.dataReady("inbox"):
                got.append(self.recv("inbox"))
            if self.dataReady("control"):
                msg = self.recv("control")
                while self.dataReady("inbox"):
                    got.append(self.recv("inbox"))
                for item in sorted(got, key=repr):
                    self.send(item, "outbox")
                self.send(msg, "signal")
                return
            self.pause()
            yield 1
"""

FANOUT = (
    COMMON
    + """
class Subscriber(component):
    def __init__(self, label):
        super(Subscriber, self).__init__()
        self.label = label
    def main(self):
        n = 0
        while True:
            while self.dataReady("inbox"):
                self.send((self.label, n, self.recv("inbox")), "outbox")
                n += 1
            if self.dataReady("control"):
                self.recv("control")
                while self.dataReady("inbox"):
                    self.send((self.label, n, self.recv("inbox")), "outbox")
                    n += 1
                return
            self.pause()
            yield 1

class FanOut(AdaptiveCommsComponent):
    # one outbox per subscriber; ("sub", x) adds one, ("unsub", x) deletes it mid-stream
    def main(self):
        subs = {}
        leaving = []
        while True:
            while self.dataReady("inbox"):
                msg = self.recv("inbox")
                if isinstance(msg, tuple) and msg[0] == "sub":
                    sub = Subscriber(msg[1])
                    out = self.addOutbox("to_" + msg[1])
                    sig = self.addOutbox("sig_" + msg[1])
                    self.send(("fresh name", out == "to_" + msg[1]), "outbox")
                    lk = self.link((self, out), (sub, "inbox"))
                    self.link((self, sig), (sub, "control"))
                    self.link((sub, "outbox"), (self, "outbox"), passthrough=2)
                    self.trackResourceInformation(sub, [], [out, sig], (msg[1], lk))
                    subs[msg[1]] = sub
                    self.addChildren(sub)
                    sub.activate()
                elif isinstance(msg, tuple) and msg[0] == "unsub":
                    sub = subs.pop(msg[1])
                    _, (out, sig), (label, lk) = self.retrieveTrackedResourceInformation(sub)
                    self.unlink(thelinkage=lk)  # Axon wants links gone before the box
                    self.deleteOutbox(out)
                    try:
                        self.send("lost", out)
                    except KeyError:
                        self.send(("send to deleted outbox", "KeyError"), "outbox")
                    self.send(producerFinished(self), sig)
                    leaving.append(sub)
                else:
                    for sub in subs.values():
                        _, (out, sig), (label, lk) = self.retrieveTrackedResourceInformation(sub)
                        self.send(msg, out)
            for sub in [s for s in leaving if s._isStopped()]:
                leaving.remove(sub)
                _, (out, sig), (label, lk) = self.retrieveTrackedResourceInformation(sub)
                self.unlink(sub)
                self.deleteOutbox(sig)
                self.ceaseTrackingResource(sub)
                self.removeChild(sub)
                self.send(("left", label), "outbox")
            if self.dataReady("control") and not leaving:
                ending = self.recv("control")
                for sub in subs.values():
                    _, (out, sig), (label, lk) = self.retrieveTrackedResourceInformation(sub)
                    self.send(producerFinished(self), sig)
                while not all(s._isStopped() for s in subs.values()):
                    self.pause()
                    yield 1
                added = sorted(k for k in self.outboxes if k.startswith(("to_", "sig_")))
                self.send(("boxes", added), "outbox")
                self.send(ending, "signal")
                return
            self.pause()
            yield 1

system = Pipeline(
    Commands([("sub", "A"), 1, 2, ("sub", "B"), 3, 4, ("unsub", "A"), 5, 6, ("sub", "C"), 7]),
    FanOut(),
    Sorter(),
    Collector(),
)
"""
)


def test_dynamic_fanout_adds_and_deletes_outboxes() -> None:
    record = compare(FANOUT)
    data = [
        r for r in record if r.startswith("('A'") or r.startswith("('B'") or r.startswith("('C'")
    ]
    assert data == [
        "('A', 0, 1)",
        "('A', 1, 2)",
        "('A', 2, 3)",
        "('A', 3, 4)",
        "('B', 0, 3)",
        "('B', 1, 4)",
        "('B', 2, 5)",
        "('B', 3, 6)",
        "('B', 4, 7)",
        "('C', 0, 7)",
    ]
    assert "('left', 'A')" in record
    assert "('boxes', ['sig_B', 'sig_C', 'to_B', 'to_C'])" in record
    assert "('send to deleted outbox', 'KeyError')" in record
    assert record[-1] == "ipc:producerFinished"


SERVER = (
    COMMON
    + """
class Handler(component):
    # one connection: the lines it reads, then the end of the connection
    def __init__(self, lines):
        super(Handler, self).__init__()
        self.lines = lines
    def main(self):
        for line in self.lines:
            self.send(line, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Server(AdaptiveCommsComponent):
    # ServerCore's pattern: an inbox pair per connection, the handler tracked as a resource
    def main(self):
        conns = []
        while True:
            while self.dataReady("inbox"):
                _, cid, lines = self.recv("inbox")
                handler = Handler(lines)
                data = self.addInbox("inbox")  # taken: a variant comes back
                ctl = self.addInbox("ctl_" + cid)
                self.send(("names", cid, data != "inbox" and data.startswith("inbox"),
                           ctl == "ctl_" + cid), "outbox")
                self.link((handler, "outbox"), (self, data))
                self.link((handler, "signal"), (self, ctl))
                self.trackResource(handler, data)
                self.trackResource(handler, ctl)
                self.trackResourceInformation(handler, [data, ctl], [], cid)
                self.addChildren(handler)
                handler.activate()
                conns.append((data, ctl))
            for data, ctl in list(conns):
                handler = self.retrieveTrackedResource(data)
                _, _, cid = self.retrieveTrackedResourceInformation(handler)
                while self.dataReady(data):
                    self.send((cid, "line", self.recv(data)), "outbox")
                if self.dataReady(ctl):
                    self.recv(ctl)
                    conns.remove((data, ctl))
                    self.unlink(handler)
                    self.deleteInbox(data)
                    self.deleteInbox(ctl)
                    self.ceaseTrackingResource(handler)
                    self.removeChild(handler)
                    try:
                        self.dataReady(data)
                    except KeyError:
                        self.send((cid, "closed", "inbox gone"), "outbox")
                    try:
                        self.retrieveTrackedResourceInformation(handler)
                    except KeyError:
                        self.send((cid, "closed", "untracked"), "outbox")
                    if self.retrieveTrackedResource(ctl) is handler:
                        self.send((cid, "closed", "resource kept"), "outbox")
            if self.dataReady("control") and not conns:
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1

system = Pipeline(
    Commands([("connect", "c1", ["hello", "world"]),
              ("connect", "c2", ["one"]),
              ("connect", "c3", ["x", "y", "z"])]),
    Server(),
    Sorter(),
    Collector(),
)
"""
)


def test_server_with_an_inbox_pair_per_connection() -> None:
    record = compare(SERVER)
    for cid, lines in (("c1", ["hello", "world"]), ("c2", ["one"]), ("c3", ["x", "y", "z"])):
        assert [r for r in record if r.startswith(f"('{cid}', 'line'")] == [
            repr((cid, "line", line)) for line in sorted(lines)
        ]
        for what in ("inbox gone", "untracked", "resource kept"):
            assert repr((cid, "closed", what)) in record
        assert repr(("names", cid, True, True)) in record
    assert record[-1] == "ipc:producerFinished"


THREADED_HUB = (
    COMMON
    + """
from Axon.ThreadedComponent import threadedadaptivecommscomponent
from Kamaelia.Chassis.Graphline import Graphline

class Sub(component):
    # tags what it gets; "end" on its inbox ends it
    def __init__(self, label):
        super(Sub, self).__init__()
        self.label = label
    def main(self):
        while True:
            while self.dataReady("inbox"):
                msg = self.recv("inbox")
                if msg == "end":
                    self.send(producerFinished(self), "signal")
                    return
                self.send((self.label, msg), "outbox")
            self.pause()
            yield 1

class Hub(threadedadaptivecommscomponent):
    # its thread adds an outbox per subscriber, links it, and deletes one mid-stream
    def __init__(self, subs):
        super(Hub, self).__init__()
        self.subs = subs
    def main(self):
        outs = []
        for sub in self.subs:
            out = self.addOutbox("to_sub")
            outs.append((out, self.link((self, out), (sub, "inbox")), sub))
        for i in range(6):
            for out, lk, sub in outs:
                self.send(i, out)
            if i == 2:
                out, lk, sub = outs.pop(0)
                self.send("end", out)
                self.unlink(thelinkage=lk)
                self.deleteOutbox(out)
        for out, lk, sub in outs:
            self.send("end", out)

class TwoEnds(component):
    # passes the end on once both subscribers have ended
    def main(self):
        ends = 0
        while ends < 2:
            if self.dataReady("control"):
                self.recv("control")
                ends += 1
            else:
                self.pause()
                yield 1
        self.send(producerFinished(self), "signal")

A, B = Sub("A"), Sub("B")
system = Graphline(
    HUB=Hub([A, B]), A=A, B=B, ENDS=TwoEnds(), SORT=Sorter(), OUT=Collector(),
    linkages={
        ("A", "outbox"): ("SORT", "inbox"),
        ("B", "outbox"): ("SORT", "inbox"),
        ("A", "signal"): ("ENDS", "control"),
        ("B", "signal"): ("ENDS", "control"),
        ("ENDS", "signal"): ("SORT", "control"),
        ("SORT", "outbox"): ("OUT", "inbox"),
        ("SORT", "signal"): ("OUT", "control"),
    },
)
"""
)


def test_threaded_hub_adds_and_deletes_outboxes_from_its_thread() -> None:
    assert compare(THREADED_HUB) == [
        *(repr(("A", i)) for i in range(3)),
        *(repr(("B", i)) for i in range(6)),
        "ipc:producerFinished",
    ]
