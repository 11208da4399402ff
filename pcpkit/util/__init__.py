"""
Building blocks: the components Kamaelia and tubes programs are composed from, every branch
bounded.

* :mod:`pcpkit.util.fanout`: :class:`Splitter`, :class:`PlugSplitter`, :class:`Plug`,
  :class:`TwoWaySplitter`, :func:`fanOut`;
* :mod:`pcpkit.util.backplane`: :class:`Backplane`, :class:`PublishTo`, :class:`SubscribeTo`;
* :mod:`pcpkit.util.framing`: lines, netstrings, length-prefixed, :class:`DataChunker` /
  :class:`DataDeChunker`, :class:`Marshaller` / :class:`DeMarshaller`;
* :mod:`pcpkit.util.sequencing`: :class:`Carousel`, :class:`Seq`, :class:`PureTransformer`,
  :class:`MessageRateLimit`, :class:`OneShot`, :class:`TriggeredOneShot`;
* :mod:`pcpkit.util.sources`: :class:`DataSource`, :func:`TriggeredSource`, :class:`Chargen`;
* :mod:`pcpkit.util.console`: :class:`ConsoleReader`, :class:`ConsoleEchoer`;
* :mod:`pcpkit.util.outlets`: the bounded outlets they all send through (:data:`PAUSE`,
  :data:`DROP`).
"""

from __future__ import annotations

from pcpkit.util.backplane import (
    Backplane,
    BackplaneExists,
    PublishTo,
    SubscribeTo,
    findBackplane,
)
from pcpkit.util.console import ConsoleEchoer, ConsoleReader
from pcpkit.util.fanout import (
    FanOut,
    Plug,
    PlugSplitter,
    Splitter,
    TwoWaySplitter,
    addsink,
    fanOut,
    removesink,
)
from pcpkit.util.framing import (
    ChunkDecoder,
    DataChunker,
    DataDeChunker,
    DeMarshaller,
    FrameError,
    LengthPrefixDecoder,
    LengthPrefixDeframer,
    LengthPrefixFramer,
    LineDecoder,
    LineDeframer,
    LineFramer,
    Marshaller,
    NetstringDecoder,
    NetstringDeframer,
    NetstringFramer,
    encodeChunk,
    encodeLengthPrefixed,
    encodeLine,
    encodeNetstring,
)
from pcpkit.util.outlets import DROP, PAUSE, Outlet, Outlets, Transformer, boundInbox
from pcpkit.util.sequencing import (
    Carousel,
    MessageRateLimit,
    OneShot,
    PureTransformer,
    Seq,
    TriggeredOneShot,
)
from pcpkit.util.sources import Chargen, DataSource, TriggeredSource

__all__ = [
    "Backplane",
    "BackplaneExists",
    "PublishTo",
    "SubscribeTo",
    "findBackplane",
    "ConsoleEchoer",
    "ConsoleReader",
    "FanOut",
    "Plug",
    "PlugSplitter",
    "Splitter",
    "TwoWaySplitter",
    "addsink",
    "fanOut",
    "removesink",
    "ChunkDecoder",
    "DataChunker",
    "DataDeChunker",
    "DeMarshaller",
    "FrameError",
    "LengthPrefixDecoder",
    "LengthPrefixDeframer",
    "LengthPrefixFramer",
    "LineDecoder",
    "LineDeframer",
    "LineFramer",
    "Marshaller",
    "NetstringDecoder",
    "NetstringDeframer",
    "NetstringFramer",
    "encodeChunk",
    "encodeLengthPrefixed",
    "encodeLine",
    "encodeNetstring",
    "DROP",
    "PAUSE",
    "Outlet",
    "Outlets",
    "Transformer",
    "boundInbox",
    "Carousel",
    "MessageRateLimit",
    "OneShot",
    "PureTransformer",
    "Seq",
    "TriggeredOneShot",
    "Chargen",
    "DataSource",
    "TriggeredSource",
]
