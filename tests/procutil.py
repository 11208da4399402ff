"""
Child processes on the reactor for the tests. Every :class:`ProcessRunner` still running at
the end of a test is killed and waited for (tests/conftest.py), and the test fails for it: a
test stops what it starts, in a ``finally``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from twisted.internet import protocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

reactor: Any = _reactor


class ProcessRunner(protocol.ProcessProtocol):
    """
    A child process on the reactor, its output kept (bounded).

    ``output`` holds stdout and stderr as they came; ``outputs[1]`` and ``outputs[2]`` hold
    each on its own. ``ended`` is a new Deferred at each use, firing with the exit code
    (``-N``: killed by signal N): a wait that times out (and so is cancelled) leaves the
    process and the other waits alone.
    """

    MAX_OUTPUT = 256 * 1024

    #: the runners whose process has not ended yet
    live: ClassVar[set[ProcessRunner]] = set()

    def __init__(
        self, argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.output = bytearray()
        self.outputs: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.code: int | None = None
        self._waiters: list[Deferred[int]] = []
        self.running = False
        self._process: Any = reactor.spawnProcess(
            self,
            self.argv[0],
            self.argv,
            env=os.environ.copy() if env is None else env,
            path=cwd,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.running = True
        ProcessRunner.live.add(self)

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if len(self.output) < self.MAX_OUTPUT:
            self.output += data
        kept = self.outputs.setdefault(childFD, bytearray())
        if len(kept) < self.MAX_OUTPUT:
            kept += data

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        ProcessRunner.live.discard(self)
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            value: Any = reason.value
            code = value.exitCode if value.exitCode is not None else -(value.signal or 1)
        else:  # pragma: no cover
            code = -1
        self.code = code
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(code)

    @property
    def ended(self) -> Deferred[int]:
        d: Deferred[int] = Deferred(lambda d: self._waiters.remove(d))
        if self.code is not None:
            d.callback(self.code)
        else:
            self._waiters.append(d)
        return d

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def stop(self, timeout: float = 5) -> Deferred[int]:
        """SIGTERM (then SIGKILL) the process if it runs; fires with its exit code."""
        if self.running:
            self._process.signalProcess("TERM")
            if self._kill is None or not self._kill.active():
                self._kill = reactor.callLater(timeout, self._killIfRunning)
        return self.ended

    def kill(self) -> Deferred[int]:
        """SIGKILL the process if it runs; fires with its exit code once it has ended."""
        self._killIfRunning()
        return self.ended

    _kill: Any = None

    def _killIfRunning(self) -> None:
        if self.running:
            self._process.signalProcess("KILL")


async def exitCode(runner: ProcessRunner, timeout: float) -> int:
    """
    The exit code of a process that should end by itself within ``timeout`` seconds; if it
    does not (or the wait fails), it is killed and waited for before the failure goes on.
    """
    try:
        code: int = await runner.ended.addTimeout(timeout, reactor)
        return code
    finally:
        await runner.kill()
