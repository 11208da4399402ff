"""
Kamaelia programs about Graphline, Pipeline and children, written as a Kamaelia user writes
them, to run unchanged on real Axon/Kamaelia and on pcpkit (through an import mapping).

``PROGRAMS`` is a list of ``(name, source)``. Each source imports only Axon/Kamaelia names,
runs its system with ``.run()`` and leaves what reached its collectors in ``RESULT`` (plain
JSON values). :func:`runProgram` runs one in *this* process on either runtime and prints
``RESULT`` as JSON: it is meant to be the body of a subprocess (one per run, since a reactor
runs once per process), so a hang is bounded by the caller's timeout.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

#: What every program starts with: the components the programs share.
PRELUDE = """
from Axon.Component import component
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Graphline import Graphline
from Kamaelia.Chassis.Pipeline import Pipeline

RESULT = {}

def kind(msg):
    if isinstance(msg, shutdownMicroprocess):
        return "shutdownMicroprocess"
    if isinstance(msg, producerFinished):
        return "producerFinished"
    return repr(msg)

class Source(component):
    def __init__(self, items):
        super(Source, self).__init__()
        self.items = items
    def main(self):
        for item in self.items:
            self.send(item, "outbox")
            yield 1
        self.send(producerFinished(self), "signal")

class Pinger(component):
    def __init__(self, tosend, box="signal"):
        super(Pinger, self).__init__()
        self.tosend = tosend
        self.box = box
    def main(self):
        for msg in self.tosend:
            self.send(msg, self.box)
            yield 1

class Waiter(component):
    def __init__(self, name):
        super(Waiter, self).__init__()
        self.label = name
    def main(self):
        while not self.dataReady("control"):
            self.pause()
            yield 1
        msg = self.recv("control")
        RESULT.setdefault("waiters", []).append([self.label, kind(msg)])
        RESULT["waiters"].sort()
        self.send(msg, "signal")

class Upper(component):
    def main(self):
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                self.send(self.recv("inbox").upper(), "outbox")
            self.pause()
            yield 1
        while self.dataReady("inbox"):
            self.send(self.recv("inbox").upper(), "outbox")
        self.send(self.recv("control"), "signal")

class Collector(component):
    def __init__(self, name="collector"):
        super(Collector, self).__init__()
        self.label = name
    def main(self):
        got = RESULT.setdefault(self.label, [])
        while True:
            while self.dataReady("inbox"):
                got.append(self.recv("inbox"))
            if self.dataReady("control"):
                got.append(kind(self.recv("control")))
                while self.dataReady("inbox"):
                    got.append(self.recv("inbox"))
                return
            self.pause()
            yield 1
"""

_SHUTDOWN_FANOUT = """
Pipeline(
    Pinger([producerFinished()]),
    Graphline(TO_SHUTDOWN1=Waiter("1"), TO_SHUTDOWN2=Waiter("2"), TO_SHUTDOWN3=Waiter("3"),
              linkages={}),
    Collector(),
).run()
"""

_LINKED_SHUTDOWN = """
Pipeline(
    Pinger([producerFinished()]),
    Graphline(
        TO_SHUTDOWN1=Waiter("1"), TO_SHUTDOWN2=Waiter("2"), TO_SHUTDOWN3=Waiter("3"),
        linkages={
            ("TO_SHUTDOWN1", "signal"): ("TO_SHUTDOWN2", "control"),
            ("TO_SHUTDOWN2", "signal"): ("TO_SHUTDOWN3", "control"),
        },
    ),
    Collector(),
).run()
"""

_SHUTDOWNMICROPROCESS_FANOUT = """
Pipeline(
    Pinger([shutdownMicroprocess()]),
    Graphline(W=Waiter("w"), linkages={}),
    Collector(),
).run()
"""

_SIGNAL_WHEN_DONE = """
Pipeline(
    Graphline(SRC=Source(["a", "b"]), linkages={("SRC", "outbox"): ("self", "outbox")}),
    Upper(),
    Collector(),
).run()
"""

_SIGNAL_LINKED = """
Pipeline(
    Graphline(SRC=Source(["a"]), UP=Upper(),
              linkages={("SRC", "outbox"): ("UP", "inbox"),
                        ("SRC", "signal"): ("UP", "control"),
                        ("UP", "outbox"): ("self", "outbox"),
                        ("UP", "signal"): ("self", "signal")}),
    Collector(),
).run()
"""

_BOXES_NAMED_IN_LINKAGES = """
Graphline(
    FEED=Source(["v1", "v2"]),
    AV=Graphline(VIDEO=Upper(),
                 linkages={("self", "video"): ("VIDEO", "inbox"),
                           ("VIDEO", "outbox"): ("self", "videoout")}),
    OUT=Collector(),
    linkages={
        ("FEED", "outbox"): ("AV", "video"),
        ("FEED", "signal"): ("AV", "control"),
        ("AV", "videoout"): ("OUT", "inbox"),
        ("AV", "signal"): ("OUT", "control"),
    },
).run()
"""

_AXON_ISSTOPPED_EXAMPLE = """
class Parent(component):
    def main(self):
        src = Source(["x", "y", "z"])
        dst = Collector()

        lnk = self.link( (src,"outbox"), (dst,"inbox") )
        self.link( (src,"signal"), (dst,"control") )

        self.addChildren(src,dst)    # we will be woken if they terminate
        src.activate()
        dst.activate()

        while not dst._isStopped() and not src._isStopped():
            self.pause()
            yield 1

        self.unlink(thelinkage = lnk)
        self.removeChild(src)
        self.removeChild(dst)
        RESULT["parent"] = "done"

Parent().run()
"""

_TCPCLIENT_KAMAELIA_SIGNATURE = """
import socket, threading
from Kamaelia.Internet.TCPClient import TCPClient

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]

def serve():
    conn, _ = listener.accept()
    conn.settimeout(10)
    conn.sendall(b"hello from the server")
    conn.shutdown(socket.SHUT_WR)
    heard = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            break
        heard += chunk
    RESULT["server heard"] = heard.decode()
    conn.close()
    listener.close()

server = threading.Thread(target=serve)
server.start()

class ByteCollector(component):
    def main(self):
        data = b""
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                data += self.recv("inbox")
            self.pause()
            yield 1
        while self.dataReady("inbox"):
            data += self.recv("inbox")
        RESULT["collector"] = [data.decode(), kind(self.recv("control"))]

# delay and connect_timeout given positionally, as Kamaelia's signature has them
Pipeline(TCPClient("127.0.0.1", port, 0.2, 10), ByteCollector()).run()
server.join(10)
"""

PROGRAMS: list[tuple[str, str]] = [
    ("shutdown fan-out", _SHUTDOWN_FANOUT),
    ("linked shutdown", _LINKED_SHUTDOWN),
    ("shutdownMicroprocess fan-out", _SHUTDOWNMICROPROCESS_FANOUT),
    ("signal when done", _SIGNAL_WHEN_DONE),
    ("signal linked", _SIGNAL_LINKED),
    ("boxes named in linkages", _BOXES_NAMED_IN_LINKAGES),
    ("Axon _isStopped example", _AXON_ISSTOPPED_EXAMPLE),
    ("TCPClient Kamaelia signature", _TCPCLIENT_KAMAELIA_SIGNATURE),
]


def installPcpkitShim() -> None:
    """Make ``import Axon...`` / ``import Kamaelia...`` give pcpkit's modules."""
    import pcpkit.chassis
    import pcpkit.component
    import pcpkit.internet.tcp
    import pcpkit.ipc
    import pcpkit.threaded

    mapping: dict[str, Any] = {
        "Axon.Component": pcpkit.component,
        "Axon.Ipc": pcpkit.ipc,
        "Axon.ThreadedComponent": pcpkit.threaded,
        "Axon.AxonExceptions": pcpkit.component,
        "Kamaelia.Chassis.Graphline": pcpkit.chassis,
        "Kamaelia.Chassis.Pipeline": pcpkit.chassis,
        "Kamaelia.Internet.TCPClient": pcpkit.internet.tcp,
    }
    for name, module in mapping.items():
        sys.modules[name] = module
    for package in ("Axon", "Kamaelia", "Kamaelia.Chassis", "Kamaelia.Internet"):
        sys.modules[package] = types.ModuleType(package)
    for name, module in mapping.items():
        parent, _, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, module)
    sys.modules["Kamaelia"].Chassis = sys.modules["Kamaelia.Chassis"]  # type: ignore[attr-defined]
    sys.modules["Kamaelia"].Internet = sys.modules["Kamaelia.Internet"]  # type: ignore[attr-defined]


def runProgram(name: str, runtime: str) -> None:
    """Run program ``name`` on ``runtime`` ("axon" or "pcpkit"); print its RESULT as JSON."""
    source = dict(PROGRAMS)[name]
    if runtime == "pcpkit":
        installPcpkitShim()
    elif runtime != "axon":
        raise ValueError(f"runtime must be 'axon' or 'pcpkit', not {runtime!r}")
    namespace: dict[str, Any] = {"__name__": "__kamaelia_program__"}
    exec(compile(PRELUDE + source, f"<{name}>", "exec"), namespace)
    print(json.dumps(namespace["RESULT"], sort_keys=True))
