"""
Control and signal messages passed between components.

Components tell each other to stop, or that they have stopped, by sending these on their
``signal`` outbox to the next component's ``control`` inbox. The lowercase names are the
Kamaelia/Axon spellings, kept so that ported code reads as it did.

``Shutdown`` and its subclasses end a component; ``ErrorInformation`` only informs (a
failing component sends it, then a ``ProducerFinished``).
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

__all__ = [
    "Shutdown",
    "ShutdownMicroprocess",
    "ProducerFinished",
    "SocketShutdown",
    "ErrorInformation",
    "NewComponent",
    "WaitComplete",
    "shutdown",
    "shutdownMicroprocess",
    "producerFinished",
    "socketShutdown",
    "errorInformation",
    "newComponent",
]


class Shutdown:
    """
    Base of the messages that end a component.

    :param caller: the component (or other object) that sent it, if known.
    :param message: an optional human-readable reason or payload.
    """

    def __init__(self, caller: object = None, message: object = None) -> None:
        self.caller = caller
        self.message = message

    def __repr__(self) -> str:
        parts = []
        if self.caller is not None:
            parts.append(f"caller={self.caller!r}")
        if self.message is not None:
            parts.append(f"message={self.message!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __str__(self) -> str:
        text = type(self).__name__
        if self.caller is not None:
            text += f" from {self.caller}"
        if self.message is not None:
            text += f": {self.message}"
        return text

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.caller is self.caller
            and other.message == self.message
        )

    __hash__ = object.__hash__


class ShutdownMicroprocess(Shutdown):
    """Stop now: abandon queued work (a TCP client aborts its connection)."""


class ProducerFinished(Shutdown):
    """The sender has produced everything: finish what is queued, then stop."""


class SocketShutdown(ProducerFinished):
    """
    A connection has closed (sent exactly once by a TCP component, last on ``signal``).

    A kind of ``ProducerFinished``, as in Kamaelia, so code that waits for
    ``producerFinished`` also ends when the socket closes.
    """


class ErrorInformation:
    """
    Something went wrong in ``caller``.

    :param caller: the component that failed.
    :param exception: the exception, if there was one.
    :param message: a human-readable explanation.
    :param failure: the :class:`twisted.python.failure.Failure`, when there is a traceback.
    """

    def __init__(
        self,
        caller: object = None,
        exception: BaseException | None = None,
        message: object = None,
        failure: Failure | None = None,
    ) -> None:
        if failure is not None and exception is None:
            exception = failure.value
        self.caller = caller
        self.exception = exception
        self.message = message
        self.failure = failure

    def __repr__(self) -> str:
        return (
            f"ErrorInformation(caller={self.caller!r}, exception={self.exception!r}, "
            f"message={self.message!r})"
        )

    def __str__(self) -> str:
        what = self.message
        if what is None and self.exception is not None:
            what = f"{type(self.exception).__name__}: {self.exception}"
        return f"error in {self.caller}: {what}"


class NewComponent:
    """
    Axon's ``newComponent``: a generator ``main`` may ``yield NewComponent(c1, c2)`` to
    activate components.
    """

    def __init__(self, *components: Any) -> None:
        self.components = components

    def __repr__(self) -> str:
        return f"NewComponent{self.components!r}"


class WaitComplete:
    """
    Axon's ``WaitComplete(generator)``: a generator ``main`` may ``yield
    WaitComplete(subgenerator)`` to run ``subgenerator`` in its place until it ends; then
    ``main`` goes on after its ``yield``. An exception in ``subgenerator`` is raised in
    ``main`` at that ``yield``. ``self.pause()`` in ``subgenerator`` pauses the component,
    as it does in ``main``. (Axon's ``tag`` keyword is accepted and ignored.)
    """

    def __init__(self, *args: Any, **argd: Any) -> None:
        if not args:
            raise TypeError("WaitComplete(generator): the generator to run is missing")
        self.args = args
        self.argd = argd

    @property
    def generator(self) -> Any:
        """The generator to run."""
        return self.args[0]

    def __repr__(self) -> str:
        return f"WaitComplete({self.args[0]!r})"


shutdown = Shutdown
shutdownMicroprocess = ShutdownMicroprocess
producerFinished = ProducerFinished
socketShutdown = SocketShutdown
errorInformation = ErrorInformation
newComponent = NewComponent
