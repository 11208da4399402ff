"""
Typed access to the Twisted things mypy cannot see through.

``twisted.internet.reactor`` is installed at run time, so its static type is an opaque module;
and ``Failure()`` (capture the current exception) is an untyped call. Everything in pcpkit
goes through these helpers instead of sprinkling ``type: ignore``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.defer import TimeoutError as _DeferTimeout
from twisted.python.failure import Failure

__all__ = [
    "getReactor",
    "currentFailure",
    "inReactorThread",
    "connectProtocol",
    "Interrupted",
    "Stopper",
    "withTimeout",
    "whenFired",
]

T = TypeVar("T")


def getReactor() -> Any:
    """The global reactor (looked up on each call, so tests may install another first)."""
    from twisted.internet import reactor

    return reactor


def currentFailure() -> Failure:
    """A :class:`Failure` for the exception being handled."""
    return Failure()  # type: ignore[no-untyped-call,unused-ignore]


def inReactorThread() -> bool:
    """Whether the caller runs on the reactor's thread."""
    from twisted.python import threadable

    return bool(threadable.isInIOThread())  # type: ignore[no-untyped-call,unused-ignore]


def onForeignThread() -> bool:
    """
    Whether the caller runs on a thread other than the running reactor's (before the reactor
    has run, no thread is foreign: a test driving a ``Clock`` calls from the main thread).
    """
    from twisted.python import threadable

    io = threadable.ioThread
    return io is not None and io != threadable.getThreadID()  # type: ignore[no-untyped-call,unused-ignore]


def connectProtocol(endpoint: Any, protocol: Any) -> Any:
    """``endpoints.connectProtocol``, typed: a Deferred firing with ``protocol``."""
    from twisted.internet import endpoints

    return endpoints.connectProtocol(endpoint, protocol)  # type: ignore[no-untyped-call,unused-ignore]


# -- Deferred helpers ----------------------------------------------------------------------


def withTimeout(d: Deferred[T], seconds: float, what: str, reactor: Any = None) -> Deferred[T]:
    """
    ``d``, cancelled after ``seconds`` and then failing with the builtin
    :class:`TimeoutError` saying ``"timed out after 10s waiting for WHAT"``.
    """

    def timedOut(failure: Failure) -> Failure:
        if isinstance(failure.value, _DeferTimeout):
            raise TimeoutError(f"timed out after {seconds:g}s waiting for {what}")
        return failure

    d.addTimeout(seconds, getReactor() if reactor is None else reactor)
    d.addErrback(timedOut)
    return d


def whenFired(d: Deferred[Any]) -> Deferred[None]:
    """
    A new Deferred firing with ``None`` (or ``d``'s failure) when ``d`` fires, leaving
    ``d``'s own result to its other callbacks: several parties can wait on one Deferred.
    """
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if isinstance(result, Failure):
            out.errback(result)
            # reported through ``out``; ``d`` must not log it again as unhandled
            return None
        out.callback(None)
        return result

    d.addBoth(fire)
    return out


class Interrupted(Exception):
    """The work was asked to stop (Ctrl-C, SIGTERM, ``stopService``) before it completed."""


class Stopper:
    """
    Cooperative interruption for coroutines on the reactor.

    Await what might take long through :meth:`wait`; after :meth:`stop` every such wait
    (and every later one) fails with :class:`Interrupted`, so the coroutine's ``finally``
    blocks run and can still await their clean-up (which they do without :meth:`wait`).
    Unlike ``Deferred.cancel`` on a coroutine's Deferred, the coroutine decides when it is
    done, and its Deferred fires only then.
    """

    def __init__(self, reactor: Any = None) -> None:
        self.stopped = False
        self._reactor = reactor
        self._waiting: dict[Deferred[Any], Deferred[Any]] = {}

    def stop(self) -> None:
        """Interrupt every wait, now and to come. Calling it again does nothing."""
        if self.stopped:
            return
        self.stopped = True
        waiting, self._waiting = self._waiting, {}
        for out, inner in waiting.items():
            if not out.called:
                out.errback(Interrupted())
            inner.cancel()

    def wait(self, waitable: Deferred[T] | Coroutine[Any, Any, T]) -> Deferred[T]:
        """
        A Deferred with ``waitable``'s result, or failing with :class:`Interrupted` as soon
        as :meth:`stop` is called (``waitable`` is then cancelled and its result dropped).
        """
        inner: Deferred[T] = (
            waitable if isinstance(waitable, Deferred) else ensureDeferred(waitable)
        )
        out: Deferred[T] = Deferred()
        if self.stopped:
            inner.addErrback(lambda _: None)
            inner.cancel()
            out.errback(Interrupted())
            return out
        self._waiting[out] = inner

        def fire(result: object) -> None:
            self._waiting.pop(out, None)
            if out.called:
                return None
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)  # type: ignore[arg-type]
            return None

        inner.addBoth(fire)
        return out

    def sleep(self, seconds: float) -> Deferred[None]:
        """An interruptible ``deferLater``."""
        from twisted.internet.task import deferLater

        reactor = getReactor() if self._reactor is None else self._reactor
        return self.wait(deferLater(reactor, seconds, lambda: None))
