"""
The ``Host`` names the torrent daemon answers: its guard against DNS rebinding.

The rule is :mod:`pcpkit.hosts`, shared with the inspector: the daemon answers ``localhost``,
any literal IP address, the name ``--http`` listens on (``tcp:8080:interface=NAME``) and the
names given with ``--allowed-host NAME`` (repeatable; ``'*'``: any name, behind a reverse
proxy that checks the name); any other ``Host`` gets ``421`` naming ``--allowed-host``. The
names here are those of :mod:`pcpkit.hosts`, but for :class:`AllowedHosts`, whose refusals
name the torrent daemon.
"""

from __future__ import annotations

from pcpkit import hosts
from pcpkit.hosts import ANY_HOST, DEFAULT_NAMES, OPTION, checkHostName, hostName

__all__ = ["ANY_HOST", "DEFAULT_NAMES", "OPTION", "AllowedHosts", "hostName", "checkHostName"]


class AllowedHosts(hosts.AllowedHosts):
    """
    The daemon's rule (:class:`pcpkit.hosts.AllowedHosts`): its refusals say "Host ... is
    not a name of this torrent daemon" and name ``--allowed-host``.
    """

    service = "torrent daemon"
    option = OPTION
