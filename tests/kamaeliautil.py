"""Running real Kamaelia/Axon components, for differential tests against pcpkit's."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import Axon
from Axon.Ipc import producerFinished, shutdownMicroprocess
from Kamaelia.Chassis.Pipeline import Pipeline
from Kamaelia.Util.DataSource import DataSource


class _Collect(Axon.Component.component):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                self.got.append(self.recv("inbox"))
            while self.dataReady("control"):
                if isinstance(self.recv("control"), (producerFinished, shutdownMicroprocess)):
                    while self.dataReady("inbox"):
                        self.got.append(self.recv("inbox"))
                    return
            self.pause()
            yield 1


def runKamaelia(items: list[Any], component: Any) -> list[Any]:
    """Run Kamaelia's ``DataSource(items) -> component -> collector`` on Axon's scheduler."""
    collect = _Collect()
    Pipeline(DataSource(list(items)), component, collect).run()
    return collect.got
