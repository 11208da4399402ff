"""Framing (pcpkit.util.framing): streaming round-trips, limits, bad input, Kamaelia interop."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols.basic import LineReceiver

from pcpkit import ErrorInformation, ProducerFinished
from pcpkit.chassis import Pipeline
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.util import framing
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
)
from tests.componentutil import Source
from tests.kamaeliautil import runKamaelia
from tests.test_util_fanout import waitUntil


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the (sorted, clipped) positions ``cuts``."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def feedAll(decoder: Any, pieces: list[bytes]) -> list[bytes]:
    got: list[bytes] = []
    for p in pieces:
        got.extend(decoder.feed(p))
    got.extend(decoder.end())
    return got


frames = st.lists(st.binary(max_size=300), max_size=30)
cuts = st.lists(st.integers(0, 10_000), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=200).filter(lambda b: b"\r\n" not in b), max_size=30),
    cuts=cuts,
)
def test_lines_round_trip_at_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    # a frame ending in \r would merge with the delimiter: lines cannot carry that
    frames = [f for f in frames if not f.endswith(b"\r")]
    stream = b"".join(framing.encodeLine(f) for f in frames)
    assert feedAll(LineDecoder(maxLength=300), split(stream, cuts)) == frames


@settings(max_examples=300, deadline=None)
@given(
    maxLength=st.integers(1, 12),
    delimiter=st.sampled_from([b"\r\n", b"\n", b"<END>"]),
    frames=st.lists(st.binary(max_size=12), max_size=12),
    cuts=st.lists(st.integers(0, 200), max_size=40),  # (streams here are short)
)
def test_lines_of_up_to_maxLength_pass_at_any_chunking(
    maxLength: int, delimiter: bytes, frames: list[bytes], cuts: list[int]
) -> None:
    # (a chunk may end inside the delimiter right after a line of maxLength bytes: that
    # line is not too long; it was refused when the chunk ended between "\r" and "\n")
    frames = [f[:maxLength] for f in frames]
    frames = [f for f in frames if (f + delimiter).find(delimiter) == len(f)]
    stream = b"".join(framing.encodeLine(f, delimiter) for f in frames)
    decoder = LineDecoder(delimiter, maxLength=maxLength)
    assert feedAll(decoder, split(stream, cuts)) == frames
    # one byte more is refused, wherever the stream is cut
    line = b"x" * (maxLength + 1) + delimiter
    with pytest.raises(FrameError, match=f"longer than {maxLength}$"):
        feedAll(LineDecoder(delimiter, maxLength=maxLength), split(line, cuts))


@settings(max_examples=150, deadline=None)
@given(frames=frames, cuts=cuts)
def test_netstrings_round_trip_at_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(framing.encodeNetstring(f) for f in frames)
    assert feedAll(NetstringDecoder(maxLength=300), split(stream, cuts)) == frames


@settings(max_examples=150, deadline=None)
@given(frames=frames, cuts=cuts, bits=st.sampled_from([8, 16, 32]))
def test_length_prefixed_round_trip_at_any_chunking(
    frames: list[bytes], cuts: list[int], bits: int
) -> None:
    frames = [f[:255] for f in frames] if bits == 8 else frames
    stream = b"".join(framing.encodeLengthPrefixed(f, bits) for f in frames)
    assert feedAll(LengthPrefixDecoder(bits, maxLength=300), split(stream, cuts)) == frames


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=300), min_size=1, max_size=30),
    cuts=cuts,
    garbage=st.binary(max_size=50).filter(lambda b: b"X" not in b),
)
def test_kamaelia_chunks_round_trip_at_any_chunking(
    frames: list[bytes], cuts: list[int], garbage: bytes
) -> None:
    stream = garbage + b"".join(framing.encodeChunk(f) for f in frames)
    decoder = ChunkDecoder(maxLength=1000)
    assert feedAll(decoder, split(stream, cuts)) == frames
    assert decoder.skipped == len(garbage)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000), cuts=cuts)
def test_lines_match_twisted_linereceiver(data: bytes, cuts: list[int]) -> None:
    theirs: list[bytes] = []

    class Collect(LineReceiver):
        MAX_LENGTH = 100_000

        def lineReceived(self, line: bytes) -> None:
            theirs.append(line)

    receiver = Collect()
    ours: list[bytes] = []
    decoder = LineDecoder(maxLength=100_000)
    for piece in split(data, cuts):
        receiver.dataReceived(piece)
        ours.extend(decoder.feed(piece))
    assert ours == theirs


def test_too_long_line_is_an_error_not_a_buffer() -> None:
    d = LineDecoder(maxLength=100)
    assert d.feed(b"x" * 100) == []
    with pytest.raises(FrameError, match="longer than 100"):
        d.feed(b"x")
    assert d.buffer == b""
    with pytest.raises(FrameError, match="longer than 100"):
        LineDecoder(maxLength=100).feed(b"y" * 101 + b"\r\n")


@pytest.mark.parametrize(
    ("decoder", "data", "match"),
    [
        (NetstringDecoder(), b"abc:", "not a netstring length"),
        (NetstringDecoder(), b"3:abc;", "not followed by ','"),
        (NetstringDecoder(maxLength=10), b"11:", "longer than 10"),
        (NetstringDecoder(), b"999999999999", "not a netstring length"),
        (NetstringDecoder(), b"01:a,", "not a netstring length"),
        (LengthPrefixDecoder(16, maxLength=100), b"\x01\x00", "longer than 100"),
        (ChunkDecoder(maxLength=10), framing.KAMAELIA_SYNC + b"a" * 11, "longer than 10"),
    ],
)
def test_garbage_is_a_frame_error(decoder: Any, data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decoder.feed(data)


def test_truncated_stream_is_an_error_at_the_end() -> None:
    for decoder, data in (
        (LineDecoder(), b"no newline"),
        (NetstringDecoder(), b"5:ab"),
        (LengthPrefixDecoder(), b"\x00\x00\x00\x05ab"),
    ):
        assert decoder.feed(data) == []
        with pytest.raises(FrameError, match="ended inside"):
            decoder.end()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="8, 16 or 32"):
        LengthPrefixDecoder(12)
    with pytest.raises(ValueError, match="must not contain"):
        ChunkDecoder(b"%%")
    with pytest.raises(ValueError, match="empty"):
        LineDecoder(b"")
    with pytest.raises(FrameError, match="fit"):
        framing.encodeLengthPrefixed(b"x" * 256, 8)
    with pytest.raises(FrameError, match="delimiter"):
        framing.encodeLine(b"a\r\nb")


# -- the components ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    ("framer", "deframer"),
    [
        (LineFramer, LineDeframer),
        (NetstringFramer, NetstringDeframer),
        (lambda: LengthPrefixFramer(16), lambda: LengthPrefixDeframer(16)),
        (DataChunker, DataDeChunker),
    ],
)
async def test_components_round_trip_through_a_rechunker(
    framer: Callable[[], Any], deframer: Callable[[], Any]
) -> None:
    messages = [b"message %d " % i + b"z" * (i % 50) for i in range(500)]
    out = MessageCollector()
    p = Pipeline(Source(messages), framer(), Rechunk(7), deframer(), out)
    await runComponent(p, 10)
    assert out.messages == messages
    assert isinstance(out.controlMessages[-1], ProducerFinished)


class Rechunk(Source):
    """Joins everything it gets and sends it on in pieces of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__([])
        self.size = size

    def main(self) -> Generator[int, None, None]:
        buf = b""
        while True:
            while self.dataReady("inbox"):
                buf += self.recv("inbox")
                while len(buf) >= self.size:
                    self.items.append(buf[: self.size])
                    buf = buf[self.size :]
            if self.dataReady("control"):
                self.items.append(buf)
                self.recv("control")
                yield from super().main()
                return
            self.pause()
            yield 1


@pytest_twisted.ensureDeferred
async def test_garbage_gives_error_information_and_a_clean_stop() -> None:
    out = MessageCollector()
    deframer = NetstringDeframer()
    stream = [b"3:abc,", b"2:de,xx:garbage", b"more garbage", b"and more"]
    p = Pipeline(Source(stream), deframer, out)
    await runComponent(p, 5)  # ends: nothing left waiting
    assert out.messages == [b"abc", b"de"]
    error, end = out.controlMessages
    assert isinstance(error, ErrorInformation)
    assert isinstance(error.exception, FrameError)
    assert "not a netstring length" in str(error.message)
    assert isinstance(end, ProducerFinished)
    assert deframer.discarded == 2


@pytest_twisted.ensureDeferred
async def test_too_long_line_component_does_not_buffer_it() -> None:
    out = MessageCollector()
    deframer = LineDeframer(maxLength=1000)
    chunks = [b"ok\r\n"] + [b"x" * 500] * 100
    p = Pipeline(Source(chunks), deframer, out)
    await runComponent(p, 5)
    assert out.messages == [b"ok"]
    assert isinstance(out.controlMessages[0], ErrorInformation)
    assert len(deframer.decoder.buffer) == 0
    assert deframer.discarded == 97


@pytest_twisted.ensureDeferred
async def test_str_into_a_deframer_is_refused() -> None:
    out = MessageCollector()
    p = Pipeline(Source(["text"]), LineDeframer(), out)
    await runComponent(p, 5)
    assert "str" in str(out.controlMessages[0].message)


@pytest_twisted.ensureDeferred
async def test_dechunker_flush_inbox() -> None:
    out = MessageCollector()
    dechunker = DataDeChunker()
    dechunker.link((dechunker, "outbox"), (out, "inbox"))
    out.activate()
    dechunker.activate()
    dechunker.inboxes["inbox"].deliver(framing.encodeChunk(b"one") + framing.encodeChunk(b"two"))
    await out.waitFor(1, timeout=5)
    dechunker.inboxes["flush"].deliver("flush")
    assert await out.waitFor(2, timeout=5) == [b"one", b"two"]
    dechunker.inboxes["control"].deliver(ProducerFinished())
    await runComponent(dechunker, 5)
    out.stop()
    await out.finished


# -- Kamaelia: the same bytes both ways, and the same components side by side ------------------

kamaeliaText = st.text(st.characters(max_codepoint=255), max_size=200)


@settings(max_examples=150, deadline=None)
@given(text=kamaeliaText)
def test_kamaelia_chunker_frames_parse_here_and_ours_parse_there(text: str) -> None:
    from Kamaelia.Protocol.Framing import DataChunker as KChunker
    from Kamaelia.Protocol.Framing import DataDeChunker as KDeChunker

    raw = text.encode("latin-1")
    theirs = KChunker().encodeChunk(text).encode("latin-1")
    ours = framing.encodeChunk(raw)
    assert ours == theirs
    d = ChunkDecoder()
    assert d.feed(theirs) == [] and d.flush() == [raw]
    assert KDeChunker().decodeChunk(ours.decode("latin-1")) == text


@pytest_twisted.ensureDeferred
async def test_kamaelia_chunker_component_differential() -> None:
    from Kamaelia.Protocol.Framing import DataChunker as KChunker

    texts = ["hello", "%", "XXXXXXXXXXXXXXXXXXXXXXXXX", "a%58b", "", "%25X%"]
    theirs = runKamaelia(texts, KChunker())
    ours = await runOurs([t.encode("latin-1") for t in texts], DataChunker())
    assert [t.encode("latin-1") for t in theirs] == ours


class JSON:
    """A ``klass`` for Marshaller / DeMarshaller."""

    @staticmethod
    def marshall(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True)

    @staticmethod
    def demarshall(text: str) -> Any:
        return json.loads(text)


@pytest_twisted.ensureDeferred
async def test_marshaller_differential() -> None:
    from Kamaelia.Util.Marshalling import DeMarshaller as KDe
    from Kamaelia.Util.Marshalling import Marshaller as KMa

    objs: list[Any] = [1, "two", [3, 4], {"five": 6}, None]
    assert await runOurs(objs, Marshaller(JSON)) == runKamaelia(objs, KMa(JSON))
    texts = [JSON.marshall(o) for o in objs]
    assert await runOurs(texts, DeMarshaller(JSON)) == runKamaelia(texts, KDe(JSON)) == objs


@pytest_twisted.ensureDeferred
async def test_bad_input_to_demarshaller_stops_cleanly() -> None:
    out = await runOurs(["1", "not json", "2"], DeMarshaller(JSON), control=True)
    assert out[0] == 1
    assert isinstance(out[1], ErrorInformation)


async def runOurs(items: list[Any], component: Any, control: bool = False) -> list[Any]:
    """Run Source(items) -> component -> collector; the collector's inbox (and control)."""
    out = MessageCollector()
    p = Pipeline(Source(items), component, out)
    await runComponent(p, 10)
    if control:
        return out.messages + out.controlMessages
    return out.messages


@pytest_twisted.ensureDeferred
async def test_framer_whose_consumer_went_away_ends_cleanly() -> None:
    """A connection closed under a framer: what it could not deliver is counted, not kept."""
    framer = LineFramer(b"\n")
    gone = MessageCollector()
    gone.setInboxSize("inbox", 2)  # never activated: takes nothing
    linkage = framer.link((framer, "outbox"), (gone, "inbox"))
    signals = MessageCollector()
    framer.link((framer, "signal"), (signals, "control"))
    signals.activate()
    framer.activate()
    for i in range(10):
        framer.inboxes["inbox"].deliver(b"%d" % i)
    await waitUntil(lambda: framer.out.paused)
    framer.unlink(thelinkage=linkage)  # as SimpleServer does when the peer goes
    framer.inboxes["control"].deliver(ProducerFinished())
    await runComponent(framer, 5)
    assert gone.dataReady("inbox") == 2
    assert framer.outlet.dropped == 8
    assert len(framer.outboxes["outbox"]) == 0
    await signals.finished
