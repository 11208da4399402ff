"""
Differential runs: one Kamaelia program, on real Axon and on pcpkit, outputs compared.

A *program* is the source text of a Kamaelia program written as a Kamaelia user writes it:
it imports from ``Axon`` and ``Kamaelia`` (``from Axon.Component import component``,
``from Kamaelia.Chassis.Pipeline import Pipeline`` ...), ends its data path in the harness's
``Collector`` (already in its namespace), and assigns the top-level component to ``system``.
It must not start a scheduler or a reactor: the harness activates ``system`` and runs it.

:func:`runProgram` runs it in a fresh interpreter (so a hang is a timeout, not a stuck suite)
on ``"axon"`` (the installed ``kamaelia-axon``/``kamaelia``, Axon's own scheduler) or on
``"pcpkit"`` (the same source, with ``Axon``/``Kamaelia`` modules mapped onto pcpkit's, see
:data:`MAPPING`). :func:`compare` runs both and asserts the collector saw the same sequence.

``SINK_PORT`` is a TCP port on 127.0.0.1 where a plain socket server (a thread in the same
process) reads each connection to its end; ``(bytes, sha256)`` of each is compared too.

``Collector(size=None, perStep=None)`` records every message reaching its ``inbox`` (ipc
messages by class name, as ``"ipc:producerFinished"``, anything else by ``repr``), then the
shutdown message on ``control`` that ends it. ``perStep`` makes it slow (that many messages
per step); ``size`` gives its inbox, on pcpkit only, the parking bound pcpkit's adapters put
on theirs (Axon has no such bound), so a program feeding it exercises parking.

To add a program: write its source as a string in a test, call ``compare(source)``, and
assert on the returned sequence if it matters (say, that it is complete). If the program needs
a Kamaelia module that is not in :data:`MAPPING`, add the module name and the pcpkit names it
stands for there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Kamaelia module -> {name in it: "pcpkit.module:name"} for the pcpkit run.
MAPPING: dict[str, dict[str, str]] = {
    "Axon.Component": {"component": "pcpkit.component:Component"},
    "Axon.ThreadedComponent": {
        "threadedcomponent": "pcpkit.threaded:ThreadedComponent",
        "threadedadaptivecommscomponent": "pcpkit.threaded:ThreadedAdaptiveCommsComponent",
    },
    "Axon.AdaptiveCommsComponent": {
        "AdaptiveCommsComponent": "pcpkit.adaptive:AdaptiveCommsComponent"
    },
    "Axon.AxonExceptions": {"noSpaceInBox": "pcpkit.component:BoxFull"},
    "Axon.Ipc": {
        "producerFinished": "pcpkit.ipc:producerFinished",
        "shutdownMicroprocess": "pcpkit.ipc:shutdownMicroprocess",
        "shutdown": "pcpkit.ipc:shutdown",
        "newComponent": "pcpkit.ipc:newComponent",
        "WaitComplete": "pcpkit.ipc:WaitComplete",
    },
    "Kamaelia.Chassis.Pipeline": {"Pipeline": "pcpkit.chassis:Pipeline"},
    "Kamaelia.Chassis.Graphline": {"Graphline": "pcpkit.chassis:Graphline"},
    "Kamaelia.Util.Splitter": {
        "PlugSplitter": "pcpkit.util.fanout:PlugSplitter",
        "Plug": "pcpkit.util.fanout:Plug",
    },
    "Kamaelia.Internet.TCPClient": {"TCPClient": "pcpkit.internet.tcp:TCPClient"},
    "Kamaelia.Util.DataSource": {
        "DataSource": "pcpkit.util.sources:DataSource",
        "TriggeredSource": "pcpkit.util.sources:TriggeredSource",
    },
    "Kamaelia.Util.Chargen": {"Chargen": "pcpkit.util.sources:Chargen"},
    "Kamaelia.File.Writing": {"SimpleFileWriter": "pcpkit.file:SimpleFileWriter"},
    "Kamaelia.File.ReadFileAdaptor": {"ReadFileAdaptor": "pcpkit.file:ReadFileAdaptor"},
    "Kamaelia.Chassis.ConnectedServer": {
        "ServerCore": "pcpkit.internet.tcp:ServerCore",
        "SimpleServer": "pcpkit.internet.tcp:SimpleServer",
    },
    "Kamaelia.Chassis.Seq": {"Seq": "pcpkit.util.sequencing:Seq"},
    "Kamaelia.Chassis.Carousel": {"Carousel": "pcpkit.util.sequencing:Carousel"},
}

COLLECTOR = """
from Axon.Component import component as _base
from Axon.Ipc import producerFinished as _pf, shutdownMicroprocess as _sm

RECORD = []

def _norm(msg):
    kind = type(msg)
    if kind.__module__ in ("Axon.Ipc", "pcpkit.ipc"):
        # pcpkit's SocketShutdown is a ProducerFinished, which is what Kamaelia's TCPClient
        # sends: compare by the Kamaelia class it stands for
        names = [k.__name__ for k in kind.__mro__]
        name = "producerFinished" if "ProducerFinished" in names else kind.__name__
        return "ipc:" + name[0].lower() + name[1:]
    return repr(msg)

class Collector(_base):
    def __init__(self, size=None, perStep=None):
        super().__init__()
        self.perStep = perStep
        if size is not None and RUNTIME == "pcpkit":
            self.setInboxSize("inbox", size, park=True)

    def main(self):
        while True:
            n = 0
            while self.dataReady("inbox") and (self.perStep is None or n < self.perStep):
                RECORD.append(_norm(self.recv("inbox")))
                n += 1
            if self.dataReady("inbox"):
                yield 1
                continue
            if self.dataReady("control"):
                msg = self.recv("control")
                RECORD.append(_norm(msg))
                if isinstance(msg, (_pf, _sm)):
                    return
            self.pause()
            yield 1
"""


def _installMapping() -> None:
    import importlib

    for modname, names in MAPPING.items():
        parts = modname.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                mod = types.ModuleType(name)
                mod.__path__ = []  # a package, so submodules resolve
                sys.modules[name] = mod
                if i > 1:
                    setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], mod)
        mod = sys.modules[modname]
        for attr, target in names.items():
            tmod, tname = target.split(":")
            setattr(mod, attr, getattr(importlib.import_module(tmod), tname))


def _child(runtime: str, path: str) -> None:
    """Run in the subprocess: execute the program, run ``system``, print the record."""
    if runtime == "pcpkit":
        _installMapping()
    import hashlib
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server: list[list[Any]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            h, n = hashlib.sha256(), 0
            with conn:
                while data := conn.recv(65536):
                    h.update(data)
                    n += len(data)
            server.append([n, h.hexdigest()])

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    ns: dict[str, Any] = {
        "RUNTIME": runtime,
        "__name__": "kamaelia_program",
        "SINK_PORT": listener.getsockname()[1],
    }
    exec(compile(COLLECTOR, "<collector>", "exec"), ns)
    source = Path(path).read_text()
    exec(compile(source, "<program>", "exec"), ns)
    system = ns["system"]
    if runtime == "axon":
        from Axon.Scheduler import scheduler

        system.activate()
        scheduler.run.runThreads()
    else:
        system.run()
    expected = ns.get("CONNECTIONS", 0)
    for _ in range(500):  # the server may still be reading the last bytes
        if len(server) >= expected:
            break
        serving.join(0.01)
    listener.close()
    print(json.dumps({"record": ns["RECORD"], "server": server}))


def runProgram(source: str, runtime: str, timeout: float = 30) -> dict[str, Any]:
    """
    What running ``source`` on ``runtime`` produced: ``record``, the sequence the
    ``Collector`` saw, and ``server``, ``[bytes, sha256]`` per connection to ``SINK_PORT``
    (the program sets ``CONNECTIONS`` to how many it makes, so the harness waits for them).
    """
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(textwrap.dedent(source))
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.kamaeliadiff", runtime, f.name],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
                env=env,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"the program hung on {runtime} (no end within {timeout}s):\n{e.stderr!r}"
            ) from None
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise AssertionError(f"the program failed on {runtime}:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(source: str, timeout: float = 30) -> list[str]:
    """
    Run ``source`` on Axon and on pcpkit; assert the collector saw the same sequence and the
    sink server got the same bytes; return the sequence.
    """
    onAxon = runProgram(source, "axon", timeout)
    onPcpkit = runProgram(source, "pcpkit", timeout)
    assert onPcpkit["record"] == onAxon["record"], (
        f"pcpkit saw {onPcpkit['record']!r}\nAxon saw {onAxon['record']!r}"
    )
    assert onPcpkit["server"] == onAxon["server"], (
        f"pcpkit's server got {onPcpkit['server']!r}; Axon's got {onAxon['server']!r}"
    )
    record: list[str] = onAxon["record"]
    return record


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
