"""
HTTP requests answered no faster than the client reads the answers.

Twisted's ``HTTPChannel`` stops reading a connection whose answers pile up unsent, but it
still answers every pipelined request it had already read: a client that sends 100,000
``GET`` requests in one go and reads nothing makes the server hold 100,000 answers (a
gigabyte for the inspector's ``/graph.json``). :class:`FlowControlledRequest` holds such a
request, and stops reading the connection, until the answers before it have drained; only
then does a resource see it. A client that reads its answers, pipelined or not, is answered
as before.

:class:`FlowControlledSite` is the :class:`~twisted.web.server.Site` that makes them; the
daemon's and the inspector's sites are built on it (through
:class:`~pcpkit.hosts.HostCheckedSite`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request, Site
from zope.interface import implementer

__all__ = ["FlowControlledRequest", "FlowControlledSite"]


@implementer(IPushProducer)
class _UntilDrained:
    """
    Registered on a held request: the channel resumes it once the transport has sent what
    was queued, and the request is then processed.
    """

    def __init__(self, request: FlowControlledRequest, site: FlowControlledSite) -> None:
        self.request = request
        self.site = site
        self.done = False
        request.notifyFinish().addErrback(self._gone)

    def _release(self) -> bool:
        if self.done:
            return False
        self.done = True
        self.site.heldRequests -= 1
        return True

    def _gone(self, reason: object) -> None:
        self._release()  # the connection was lost while the request was held

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        if self._release():
            request: Any = self.request
            request.unregisterProducer()
            request.process()

    def stopProducing(self) -> None:
        self._release()


class FlowControlledRequest(Request):
    """
    A request that waits, before any resource sees it, until the answers queued before it
    on its connection have drained (see the module docstring).
    """

    def process(self) -> None:
        transport = self.transport
        site = getattr(self.channel, "site", None)
        if isinstance(site, FlowControlledSite) and getattr(transport, "producerPaused", False):
            # the transport has paused the channel: its buffer is over the limit
            assert transport is not None
            transport.pauseProducing()  # read no more requests meanwhile
            site.heldRequests += 1
            request: Any = self
            request.registerProducer(_UntilDrained(self, site), True)
            return
        self.answer()

    def answer(self) -> None:
        """Process the request now (what ``Request.process`` does)."""
        super().process()  # type: ignore[no-untyped-call,unused-ignore]


class FlowControlledSite(Site):
    """A :class:`~twisted.web.server.Site` of :class:`FlowControlledRequest`."""

    requestFactory = FlowControlledRequest
    #: requests now held until the answers before them drain
    heldRequests = 0
