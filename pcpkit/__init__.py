"""
pcpkit: flow-controlled producer/consumer toolkit for Twisted.

The byte level is :mod:`pcpkit.pcp`; the message level is :mod:`pcpkit.component` with
:mod:`pcpkit.chassis`, :mod:`pcpkit.threaded` and :mod:`pcpkit.bridge`.
"""

from __future__ import annotations

from pcpkit.chassis import Graphline, Pipeline
from pcpkit.component import (
    BoxAlreadyLinked,
    BoxFull,
    Component,
    EmptyBox,
    Scheduler,
    Stopped,
    UndeliveredMessages,
    UnknownBox,
    noSpaceInBox,
)
from pcpkit.ipc import (
    ErrorInformation,
    NewComponent,
    ProducerFinished,
    Shutdown,
    ShutdownMicroprocess,
    SocketShutdown,
    errorInformation,
    newComponent,
    producerFinished,
    shutdown,
    shutdownMicroprocess,
    socketShutdown,
)
from pcpkit.pcp import (
    BasicProducerConsumerProxy,
    ProducerConsumerProxy,
    ProxyClosedError,
)
from pcpkit.transport import TransportConsumer

__version__ = "0.2.0"

__all__ = [
    "BasicProducerConsumerProxy",
    "ProducerConsumerProxy",
    "ProxyClosedError",
    "BoxAlreadyLinked",
    "BoxFull",
    "Component",
    "EmptyBox",
    "Graphline",
    "Pipeline",
    "Scheduler",
    "UndeliveredMessages",
    "ErrorInformation",
    "NewComponent",
    "ProducerFinished",
    "Shutdown",
    "ShutdownMicroprocess",
    "SocketShutdown",
    "Stopped",
    "TransportConsumer",
    "UnknownBox",
    "errorInformation",
    "newComponent",
    "noSpaceInBox",
    "producerFinished",
    "shutdown",
    "shutdownMicroprocess",
    "socketShutdown",
]
