"""
A small mailbox-component program: generator, async and threaded components in one Pipeline.

::

    Lines (generator) -> Upper (async def) -> Counter (generator) -> Report (thread)

``Lines`` makes lines of text in memory and sends them as fast as it can; every inbox after
it is bounded, so it keeps running into ``BoxFull`` and pausing until the next component has
drained its inbox. ``Upper`` upper-cases (``await self.put`` simply waits when the next inbox
is full). ``Counter`` counts messages and characters. ``Report`` runs in its own thread, as
blocking code would, checks that the lines arrive complete and in order, and prints a summary.
A ``producerFinished`` from ``Lines`` travels down the chain behind the last line and ends
each component in turn; ``Pipeline.run()`` runs the reactor until they all have.

Run it::

    python examples/pipeline.py [LINES]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import Any

from pcpkit import BoxFull, Component, producerFinished
from pcpkit.chassis import Pipeline
from pcpkit.threaded import ThreadedComponent

WORDS = "the quick brown fox jumps over the lazy dog".split()


class Lines(Component):
    """Sends ``count`` numbered lines, holding one back while the next inbox is full."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.boxFull = 0

    def main(self) -> Generator[int, None, None]:
        for i in range(self.count):
            line = f"line {i:06d}: " + " ".join(WORDS[: 1 + i % len(WORDS)])
            while True:
                try:
                    self.send(line, "outbox")
                    break
                except BoxFull:
                    # Woken when that inbox has drained to its low watermark.
                    self.boxFull += 1
                    self.pause()
                    yield 1
            if self.dataReady("control"):  # told to stop early
                self.send(self.recv("control"), "signal")
                return
        self.send(producerFinished(self), "signal")
        yield 1


class Upper(Component):
    """``async def`` main: ends on the shutdown message, which is forwarded for it."""

    async def main(self) -> None:
        async for line in self.messages("inbox"):
            await self.put(line.upper(), "outbox")


class Counter(Component):
    """Axon-style pass-through that counts what goes by."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.characters = 0
        self.boxFull = 0

    def main(self) -> Generator[int, None, None]:
        held: list[str] = []
        while True:
            while held or self.dataReady("inbox"):
                line = held.pop() if held else self.recv("inbox")
                try:
                    self.send(line, "outbox")
                except BoxFull:
                    self.boxFull += 1
                    held.append(line)
                    break
                self.count += 1
                self.characters += len(line)
            if not held and not self.dataReady("inbox") and self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1


class Report(ThreadedComponent):
    """Runs in its own thread: checks the order and prints a summary when told to stop."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.inOrder = True
        self.ending: Any = None

    def main(self) -> int:
        while True:
            while self.dataReady("inbox"):
                line: str = self.recv("inbox")
                if not line.startswith(f"LINE {self.received:06d}: THE"):
                    self.inOrder = False
                self.received += 1
            # The shutdown message was sent after the last line, so once it is here every
            # line is in the inbox already.
            if self.dataReady("control") and not self.dataReady("inbox"):
                self.ending = self.recv("control")
                print(
                    f"report thread: {self.received} lines, "
                    f"{'in order' if self.inOrder else 'OUT OF ORDER'}, ended by {self.ending}"
                )
                return self.received
            self.pause(1.0)


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 5000
    lines = Lines(count)
    upper = Upper()
    counter = Counter()
    report = Report()
    # Bounded inboxes: at most 16 / 16 / 8 lines wait at each hop, whatever the speeds.
    upper.setInboxSize("inbox", 16)
    counter.setInboxSize("inbox", 16)
    report.setInboxSize("inbox", 8)

    started = time.perf_counter()
    Pipeline(lines, upper, counter, report).run()
    elapsed = time.perf_counter() - started

    print(f"counter: {counter.count} messages, {counter.characters} characters; {elapsed:.2f} s")
    print(
        f"back-pressure: BoxFull {lines.boxFull} times at the source, "
        f"{counter.boxFull} times at the counter (inbox bounds 16/16/8)"
    )
    ok = report.received == count == counter.count and report.inOrder
    if ok:
        print(f"OK: {count} messages delivered in order through 4 components")
        return 0
    print(f"FAILED: sent {count}, counted {counter.count}, received {report.received}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
