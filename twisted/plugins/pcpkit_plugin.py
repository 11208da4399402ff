"""twistd plugin discovery for pcpkit: ``twistd -n pcpkit relay|torrent|demo``."""

from twisted.application.service import ServiceMaker

pcpkit = ServiceMaker(
    "pcpkit",
    "pcpkit.tap",
    "pcpkit services: a flow-controlled TCP relay, a torrent daemon, the demo",
    "pcpkit",
)
