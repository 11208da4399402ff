"""
Sources: :class:`DataSource`, :func:`TriggeredSource`, :class:`Chargen` (the Kamaelia names
and boxes: ``Kamaelia.Util.DataSource``, ``Kamaelia.Util.Chargen``).

A source sends one message per step and yields, so it is paced by the inbox it feeds: a
parking bound parks it, an Axon bound (``BoxFull``) pauses it until that inbox has room, and
other components and the reactor get their turns in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable
from typing import Any

from pcpkit.component import BoxFull, Component
from pcpkit.ipc import ProducerFinished
from pcpkit.util.sequencing import PureTransformer

__all__ = ["DataSource", "TriggeredSource", "Chargen"]


class DataSource(Component):
    """
    Send each of ``messages`` out of ``outbox``, one per step, then ``ProducerFinished`` on
    ``signal`` and end (Kamaelia's DataSource)::

        Pipeline(DataSource([b"hello", b"world"]), ConsoleEchoer()).run()

    ``messages`` may be any iterable (Kamaelia takes a list); it is read as it is sent.
    A ``ShutdownMicroprocess`` on ``control`` stops it early and is passed on along
    ``signal`` instead of ``ProducerFinished``; other control messages are ignored.
    """

    Inboxes = {"inbox": "unused", "control": "ShutdownMicroprocess stops it early"}
    Outboxes = {
        "outbox": "the messages, in order",
        "signal": "ProducerFinished at the end (or the ShutdownMicroprocess)",
    }

    #: Whether the end of ``messages`` is signalled with ``ProducerFinished``.
    finishes = True

    def __init__(self, messages: Iterable[Any], **argd: Any) -> None:
        super().__init__(**argd)
        # (not ``self.messages``, as Kamaelia's: that is Component's async iterator)
        self.items = messages
        self.sent = 0

    def main(self) -> Generator[int, None, None]:
        for msg in self.items:
            while True:
                stop = self._takeShutdownMicroprocess()
                if stop is not None:
                    self.send(stop, "signal")
                    return
                try:
                    # A parking bound parks us here; an Axon bound raises BoxFull and
                    # registers our wake-up for when it has room.
                    self.send(msg, "outbox")
                    break
                except BoxFull:
                    self.pause()
                    yield 1
            self.sent += 1
            yield 1
        if self.finishes:
            self.send(ProducerFinished(self), "signal")


class Chargen(DataSource):
    """
    Send ``"Hello World"`` out of ``outbox`` for ever, one per step (Kamaelia's Chargen),
    paced by the inbox it feeds. Unlike Kamaelia's (which ignores its inboxes) a
    ``ShutdownMicroprocess`` on ``control`` ends it, passed on along ``signal``.
    """

    Inboxes = {"inbox": "unused", "control": "ShutdownMicroprocess ends it"}
    Outboxes = {"outbox": '"Hello World", for ever', "signal": "the ShutdownMicroprocess"}

    finishes = False

    def __init__(self, **argd: Any) -> None:
        super().__init__(itertools.repeat("Hello World"), **argd)


def TriggeredSource(msg: Any) -> PureTransformer:
    """
    A component that sends ``msg`` for each message on its ``inbox`` (Kamaelia's prefab of
    the same name: a :class:`~pcpkit.util.sequencing.PureTransformer` of ``lambda _: msg``,
    so ``msg`` ``None`` sends nothing).
    """
    return PureTransformer(lambda _: msg)
