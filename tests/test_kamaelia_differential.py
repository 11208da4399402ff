"""
Kamaelia programs run on real Axon and on pcpkit: the collector sees the same sequence.

Each program is written as Kamaelia users write them (Axon's docstrings: a generator ``main``
that sends and yields, ``noSpaceInBox`` retry code, ``threadedcomponent``); see
``tests/kamaeliadiff.py`` for the harness and how to add programs.
"""

from __future__ import annotations

import pytest

from tests.kamaeliadiff import compare

pytest.importorskip("Axon")
pytest.importorskip("Kamaelia")

EXPECTED = [repr(i) for i in range(300)] + ["ipc:producerFinished"]

PLAIN_SEND_INTO_BOUNDED_INBOX = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Feed(component):
    def main(self):
        for i in range(300):
            self.send(i, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Burst(component):
    # several sends per step, never catching anything
    def main(self):
        for i in range(0, 300, 7):
            for j in range(i, min(i + 7, 300)):
                self.send(j, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Double(component):
    def main(self):
        while True:
            while self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
            if self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1

system = Pipeline(%s(), Double(), Collector(size=4, perStep=1))
"""


@pytest.mark.parametrize("feed", ["Feed", "Burst"])
def test_plain_send_into_an_adapters_bounded_inbox(feed: str) -> None:
    # On pcpkit the collector's inbox has the parking bound of an adapter: Feed is parked,
    # never told BoxFull; on Axon the inbox is unbounded. Same output.
    assert compare(PLAIN_SEND_INTO_BOUNDED_INBOX % feed) == EXPECTED


AXON_SETINBOXSIZE_RETRY = """
from Axon.Component import component
from Axon.AxonExceptions import noSpaceInBox
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Sender(component):
    def main(self):
        for i in range(300):
            while True:
                try:
                    self.send(i, "outbox")
                    break
                except noSpaceInBox:
                    self.pause()
                    yield 1
            yield 1
        self.send(producerFinished(self), "signal")

class Sized(component):
    def __init__(self):
        super(Sized, self).__init__()
        %s

    def main(self):
        while True:
            if self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")   # one per step: a slow stage
            elif self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            else:
                self.pause()
            yield 1

system = Pipeline(Sender(), Sized(), Collector())
"""


@pytest.mark.parametrize(
    "how", ['self.setInboxSize("inbox", 3)', 'self.inboxes["inbox"].setSize(3)']
)
def test_axon_bound_and_retry_on_noSpaceInBox(how: str) -> None:
    assert compare(AXON_SETINBOXSIZE_RETRY % how) == EXPECTED


THREADED_SEND = """
from Axon.ThreadedComponent import threadedcomponent
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class ThreadFeed(threadedcomponent):
    def main(self):
        for i in range(300):
            self.send(i, "outbox")
        self.send(producerFinished(self), "signal")

system = Pipeline(ThreadFeed(), Collector(size=4, perStep=1))
"""


def test_threaded_send_into_a_bounded_inbox() -> None:
    assert compare(THREADED_SEND) == EXPECTED


UNLINKED_OUTBOX = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Graphline import Graphline

class Feed(component):
    Outboxes = {"outbox": "data", "log": "never linked", "signal": "end"}
    def main(self):
        for i in range(300):
            self.send(i, "outbox")
            self.send(("log", i), "log")     # nobody listens: Axon discards, pcpkit keeps
            yield 1
        self.send(producerFinished(self), "signal")

system = Graphline(
    FEED=Feed(),
    OUT=Collector(size=4, perStep=2),
    linkages={("FEED", "outbox"): ("OUT", "inbox"), ("FEED", "signal"): ("OUT", "control")},
)
"""


def test_send_into_an_unlinked_outbox_does_not_hold_the_sender_back() -> None:
    assert compare(UNLINKED_OUTBOX) == EXPECTED


FEED_INTO_TCPCLIENT = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Internet.TCPClient import TCPClient

data = bytes(range(256)) * 256 * 200   # 12.5 MiB, 200 sends of 64 KiB

class Feed(component):
    # issue 9's program: a plain send per step into the TCP client's inbox
    def main(self):
        for i in range(0, len(data), 65536):
            self.send(data[i:i + 65536], "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

CONNECTIONS = 1
system = Pipeline(Feed(), TCPClient("127.0.0.1", SINK_PORT), Collector())
"""


def test_plain_send_into_the_tcp_clients_bounded_inbox() -> None:
    # On pcpkit, TCPClient's inbox has a parking bound of 64 messages: Feed is parked, not
    # crashed with BoxFull after 64 sends (the issue); the bytes arrive whole on both.
    assert compare(FEED_INTO_TCPCLIENT, timeout=60) == ["ipc:producerFinished"]


AXON_COMPONENT_API = """
from Axon.Component import component
from Axon.AxonExceptions import noSpaceInBox
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Sender(component):
    def main(self):
        for i in range(300):
            while True:
                try:
                    self.send(i, "outbox")
                    break
                except noSpaceInBox:
                    self.pause()
                    yield 1
            if i %% 7 == 0:
                yield 1
        self.send(producerFinished(self), "signal")

class InboxLoop(component):
    # Kamaelia's other idiom: for msg in self.Inbox("inbox")
    def main(self):
        while True:
            for msg in self.Inbox("inbox"):
                self.send(msg, "outbox")
            if not self.dataReady("inbox") and self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1

class OldStyle(component):
    # Axon's older protocol: no main, three hooks
    def initialiseComponent(self):
        self.count = 0
        return 1

    def mainBody(self):
        while self.dataReady("inbox"):
            self.send(self.recv("inbox"), "outbox")
            self.count += 1
        if self.dataReady("control"):
            self.send(self.recv("control"), "signal")
            return 0
        if not self.anyReady():
            self.pause()
        return 1

    def closeDownComponent(self):
        return 1

stages = [InboxLoop(), OldStyle(), InboxLoop()]
%s
system = Pipeline(Sender(), *stages, Collector())
"""


@pytest.mark.parametrize(
    "bounds",
    [
        "pass",
        'stages[0].inboxes["inbox"].setSize(3)',
    ],
)
def test_inbox_iterator_and_mainbody_protocol(bounds: str) -> None:
    # Inbox() and initialiseComponent/mainBody/closeDownComponent, which Kamaelia's own
    # modules use; bounded, the Sender meets noSpaceInBox on both and is woken by the Inbox()
    # loop's takes. (WaitComplete is not compared: on kamaelia-axon 1.14.32 under Python 3
    # the generator that yields it is never resumed; tests/test_axon_api.py checks pcpkit's
    # against Axon's documentation.)
    assert compare(AXON_COMPONENT_API % bounds) == EXPECTED


# A component that finishes leaves its inbox behind: on Axon what is sent on piles up in it;
# on pcpkit the inbox is closed (bounded: what does not fit is dropped), and a sender parked
# on it is let go. It hung: Source stayed parked on the finished Seq's inbox for good.
SEND_INTO_A_FINISHED_COMPONENT = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Chassis.Seq import Seq

class Source(component):
    def main(self):
        for i in range(200):
            self.send(i, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class TakeN(component):
    # reads n messages, then ends: a header reader in a Seq (which messages it gets depends
    # on how far the source ran ahead, so it says only that it took one)
    def __init__(self, n):
        super(TakeN, self).__init__()
        self.n = n
    def main(self):
        got = 0
        while got < self.n:
            while self.dataReady("inbox") and got < self.n:
                self.recv("inbox")
                self.send("took one", "outbox")
                got += 1
            if got < self.n:
                self.pause()
                yield 1
        self.send(producerFinished(self), "signal")

system = Pipeline(Source(), Seq(TakeN(2), TakeN(3)), Collector())
"""


def test_sending_into_a_finished_component_ends() -> None:
    assert compare(SEND_INTO_A_FINISHED_COMPONENT) == ["'took one'"] * 5 + ["ipc:producerFinished"]


# TCPClient ends when the server hangs up; a component that does not know yet sends on.
SEND_TO_A_CLOSED_CONNECTION = """
import socket, threading
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Graphline import Graphline
from Kamaelia.Internet.TCPClient import TCPClient

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)

def serve():
    conn, _ = listener.accept()
    conn.recv(100)
    conn.sendall(b"bye\\n")
    conn.close()
    listener.close()

threading.Thread(target=serve, daemon=True).start()

class Chatty(component):
    def main(self):
        self.send(b"hello\\n", "outbox")
        while not self.dataReady("control"):
            self.pause()
            yield 1
        self.send(self.recv("control"), "outbox2")
        for i in range(200):
            self.send(b"more\\n", "outbox")
            yield 1
        self.send("chatty done", "outbox2")
        self.send(producerFinished(self), "signal")
    Outboxes = ["outbox", "outbox2", "signal"]

system = Graphline(
    CHAT=Chatty(),
    TCP=TCPClient("127.0.0.1", listener.getsockname()[1]),
    OUT=Collector(),
    linkages={
        ("CHAT", "outbox"): ("TCP", "inbox"),
        ("TCP", "signal"): ("CHAT", "control"),
        ("CHAT", "outbox2"): ("OUT", "inbox"),
        ("CHAT", "signal"): ("OUT", "control"),
    },
)
"""


def test_sending_to_a_tcp_client_whose_server_hung_up_ends() -> None:
    assert compare(SEND_TO_A_CLOSED_CONNECTION) == [
        "ipc:producerFinished",
        "'chatty done'",
        "ipc:producerFinished",
    ]


CIRCULAR_PIPELINE = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Starter(component):
    def main(self):
        self.send(0, "outbox")
        while True:
            while self.dataReady("inbox"):
                n = self.recv("inbox")
                RECORD.append(repr(n))
                if n >= 5:
                    self.send(producerFinished(self), "signal")
                    return
                self.send(n, "outbox")
            self.pause()
            yield 1

class Inc(component):
    def main(self):
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                self.send(self.recv("inbox") + 1, "outbox")
            self.pause()
            yield 1

system = Pipeline(Starter(), Inc(), circular=True)
"""


def test_a_circular_pipeline_feeds_the_last_back_to_the_first() -> None:
    # (it was ignored: the token never came back, and the program hung)
    assert compare(CIRCULAR_PIPELINE) == ["1", "2", "3", "4", "5"]


# Kamaelia's chassis unplug finished children (removeChild): a link from a component still
# running to one that ended goes, and what it sends there afterwards is owed to nobody. Its
# producerFinished to another listener raised UndeliveredMessages on pcpkit.
UNPLUGGED_FINISHED_CHILD = """
from Axon.Component import component
from Axon.Ipc import producerFinished

class Src(component):
    Outboxes = {"outbox": "data", "log": "a copy for the logger", "signal": "end"}
    def main(self):
        for i in range(300):
            self.send(i, "outbox")
            self.send(("log", i), "log")
            yield 1
        self.send(producerFinished(self), "signal")

class FirstFew(component):
    # a logger that wants only the first 3 messages, then ends
    def main(self):
        n = 0
        while n < 3:
            while self.dataReady("inbox") and n < 3:
                self.recv("inbox")
                n += 1
            if n < 3:
                self.pause()
                yield 1

class Parent(component):
    def main(self):
        src, log, out = Src(), FirstFew(), Collector()
        self.link((src, "outbox"), (out, "inbox"))
        self.link((src, "signal"), (out, "control"))
        self.link((src, "log"), (log, "inbox"))
        self.addChildren(src, log, out)
        for c in (src, log, out):
            c.activate()
        while not self.childrenDone():
            self.pause()
            yield 1

    def childrenDone(self):
        for child in self.childComponents():
            if child._isStopped():
                self.removeChild(child)
        return 0 == len(self.childComponents())

system = Parent()
"""


def test_unplugging_a_finished_child_strands_nothing_owed() -> None:
    assert compare(UNPLUGGED_FINISHED_CHILD) == EXPECTED


THREAD_WAKES_A_PAUSED_COMPONENT = """
import threading, time
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Waiter(component):
    # a plain Python thread does the work and wakes the component with unpause()
    def __init__(self):
        super(Waiter, self).__init__()
        self.results = []
        self.lock = threading.Lock()

    def work(self):
        for i in range(3):
            time.sleep(0.05)
            with self.lock:
                self.results.append(i)
            self.unpause()

    def main(self):
        threading.Thread(target=self.work, daemon=True).start()
        got = 0
        while got < 3:
            with self.lock:
                new, self.results = self.results, []
            for r in new:
                self.send(r, "outbox")
                got += 1
            if got < 3:
                self.pause()
            yield 1
        self.send(producerFinished(self), "signal")

system = Pipeline(Waiter(), Collector())
"""


def test_a_plain_thread_wakes_a_paused_component() -> None:
    # Axon's wake-ups are thread-safe; pcpkit's unpause() from a thread waited for a timer
    assert compare(THREAD_WAKES_A_PAUSED_COMPONENT) == ["0", "1", "2", "ipc:producerFinished"]


PLUG_INTO_A_PLUGSPLITTER = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Chassis.Graphline import Graphline
from Kamaelia.Util.Splitter import PlugSplitter, Plug

class Src(component):
    def main(self):
        for i in range(4):
            self.send(i, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

sp = PlugSplitter()
system = Graphline(S=Pipeline(Src(), sp), P=Plug(sp, Collector()), linkages={})
"""

TWO_PLUGS_MERGED = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Chassis.Graphline import Graphline
from Kamaelia.Util.Splitter import PlugSplitter, Plug

class Src(component):
    def main(self):
        for _ in range(5):
            yield 1
        for i in range(4):
            self.send(i, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Tag(component):
    def __init__(self, t):
        super(Tag, self).__init__()
        self.t = t

    def main(self):
        while True:
            while self.dataReady("inbox"):
                self.send((self.t, self.recv("inbox")), "outbox")
            if self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1

class Merge(component):
    Inboxes = ["inbox", "control", "in2", "ctl2"]

    def main(self):
        done = 0
        got = []
        while done < 2:
            while self.dataReady("inbox"):
                got.append(self.recv("inbox"))
            while self.dataReady("in2"):
                got.append(self.recv("in2"))
            while self.dataReady("control"):
                self.recv("control")
                done += 1
            while self.dataReady("ctl2"):
                self.recv("ctl2")
                done += 1
            if done < 2:
                self.pause()
            yield 1
        for g in sorted(got):
            self.send(g, "outbox")
        self.send(producerFinished(self), "signal")

sp = PlugSplitter()
system = Graphline(
    S=Pipeline(Src(), sp), A=Plug(sp, Tag("a")), B=Plug(sp, Tag("b")), M=Merge(), C=Collector(),
    linkages={
        ("A", "outbox"): ("M", "inbox"), ("A", "signal"): ("M", "control"),
        ("B", "outbox"): ("M", "in2"), ("B", "signal"): ("M", "ctl2"),
        ("M", "outbox"): ("C", "inbox"), ("M", "signal"): ("C", "control"),
    },
)
"""


def test_a_plug_into_a_plugsplitter_gets_everything() -> None:
    # Kamaelia's own PlugSplitter/Plug example: the source could finish before the plug's
    # first step, leaving its addsink unread (a hang) or the first item missed
    assert compare(PLUG_INTO_A_PLUGSPLITTER) == ["0", "1", "2", "3", "ipc:producerFinished"]


def test_two_plugs_each_get_everything() -> None:
    expected = [repr((t, i)) for t in "ab" for i in range(4)] + ["ipc:producerFinished"]
    assert compare(TWO_PLUGS_MERGED) == expected


LOOK_BEFORE_SENDING = """
from Axon.Component import component
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Pipeline import Pipeline

class Sender(component):
    # looks at the outbox before sending, and sleeps while the inbox it feeds is full
    def main(self):
        i = 0
        while i < 20:
            if self.outboxes["outbox"].isFull():
                self.pause()
                yield 1
                continue
            self.send(i, "outbox")
            i += 1
            yield 1
        self.send(producerFinished(self), "signal")

class Small(component):
    def __init__(self):
        super(Small, self).__init__()
        self.inboxes["inbox"].setSize(3)

    def main(self):
        while True:
            if self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
            elif self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            else:
                self.pause()
            yield 1
            yield 1
            yield 1

system = Pipeline(Sender(), Small(), Collector())
"""


def test_looking_at_outbox_isFull_before_sending() -> None:
    # pcpkit's isFull() looked at the outbox itself (always empty when linked): BoxFull
    assert compare(LOOK_BEFORE_SENDING) == [repr(i) for i in range(20)] + ["ipc:producerFinished"]


DELIVER_INTO_CONTROL = """
from Axon.Component import component
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Chassis.Graphline import Graphline

class Forever(component):
    def main(self):
        i = 0
        while True:
            if self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.send(i, "outbox"); i += 1
            yield 1

class Supervisor(component):
    def __init__(self, victim):
        super(Supervisor, self).__init__()
        self.victim = victim
    def main(self):
        for _ in range(3):
            yield 1
        self.victim._deliver(producerFinished(self), "control")

class Last(component):
    def main(self):
        last = None
        while True:
            while self.dataReady("inbox"):
                last = self.recv("inbox")
            if self.dataReady("control"):
                self.send(last is not None, "outbox")
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1

f = Forever()
system = Graphline(F=f, S=Supervisor(f), L=Last(), C=Collector(),
   linkages={("F","outbox"):("L","inbox"),("F","signal"):("L","control"),("L","outbox"):("C","inbox"),("L","signal"):("C","control")})
"""

BOUNDED_LINKS = """
from Axon.Component import component
from Axon.AxonExceptions import noSpaceInBox
from Axon.Ipc import producerFinished
from Kamaelia.Chassis.Graphline import Graphline

class Sender(component):
    def main(self):
        for i in range(10):
            while True:
                try:
                    self.send(i, "outbox")
                    break
                except noSpaceInBox:
                    self.pause()
                    yield 1
            yield 1
        self.send(producerFinished(self), "signal")

class Parent(component):
    def main(self):
        s, c = Sender(), Collector()
        self.link((s, "outbox"), (c, "inbox"), pipewidth=2)
        self.link((s, "signal"), (c, "control"), synchronous=True)
        self.addChildren(s, c)
        s.activate(); c.activate()
        while not (s._isStopped() and c._isStopped()):
            self.pause()
            yield 1

system = Parent()
"""


def test_deliver_straight_into_an_inbox() -> None:
    # Axon's _deliver (Kamaelia's SingleServer uses it): AttributeError on pcpkit before
    assert compare(DELIVER_INTO_CONTROL) == ["True", "ipc:producerFinished"]


def test_link_pipewidth_and_synchronous_bound_the_inbox() -> None:
    # link(..., pipewidth=2) / synchronous=True: TypeError on pcpkit before
    assert compare(BOUNDED_LINKS) == [repr(i) for i in range(10)] + ["ipc:producerFinished"]


SEQ_OF_READERS = """
from Axon.Component import component
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Chassis.Seq import Seq

class Src(component):
    def main(self):
        for i in range(12):
            self.send(i, "outbox")
            for _ in range(5): yield 1
        self.send(None, "outbox")

class TakeN(component):
    def __init__(self, tag, n):
        super(TakeN, self).__init__()
        self.tag, self.n = tag, n
    def main(self):
        got = 0
        while got < self.n:
            while self.dataReady("inbox") and got < self.n:
                self.send((self.tag, self.recv("inbox")), "outbox"); got += 1
            if got < self.n:
                if self.dataReady("control"):
                    self.send(self.recv("control"), "signal"); return
                self.pause()
            yield 1

class Rest(component):
    def main(self):
        while True:
            while self.dataReady("inbox"):
                m = self.recv("inbox")
                if m is None: return
                self.send(("rest", m), "outbox")
            if self.dataReady("control"):
                self.send(self.recv("control"), "signal"); return
            self.pause()
            yield 1

seqitems = [TakeN("a", 3), TakeN("b", 3), Rest()]
system = Pipeline(Src(), Seq(*seqitems), Collector())
"""


def test_seq_children_that_read_their_inbox() -> None:
    # generator batching let the source run ahead: the first child ended with items 3-9
    # unread, the second took the end marker and the program hung
    tags = ["a"] * 3 + ["b"] * 3 + ["rest"] * 6
    assert compare(SEQ_OF_READERS) == [repr(t) for t in zip(tags, range(12), strict=True)] + [
        "ipc:producerFinished"
    ]
