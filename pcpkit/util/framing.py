"""
Framing: bytes to messages and back, as plain functions and as components.

Each format has an encoder (a message in, the bytes of its frame out) and a streaming
decoder (:meth:`feed` takes any chunk of bytes and returns the frames it completes; a frame
split across chunks and many frames in one chunk both work):

=====================  =================================  =====================================
format                 functions / decoder                components
=====================  =================================  =====================================
lines                  :func:`encodeLine`,                :class:`LineFramer`,
                       :class:`LineDecoder`               :class:`LineDeframer`
netstrings             :func:`encodeNetstring`,           :class:`NetstringFramer`,
                       :class:`NetstringDecoder`          :class:`NetstringDeframer`
length-prefixed        :func:`encodeLengthPrefixed`,      :class:`LengthPrefixFramer`,
(8/16/32-bit)          :class:`LengthPrefixDecoder`       :class:`LengthPrefixDeframer`
Kamaelia sync-marker   :func:`encodeChunk`,               :class:`DataChunker`,
                       :class:`ChunkDecoder`              :class:`DataDeChunker`
=====================  =================================  =====================================

Decoders never hold more than one frame's worth of bytes: a line longer than ``maxLength``,
a netstring or length prefix announcing more than ``maxLength``, or bytes that are not the
format raise :class:`FrameError` (a ``ValueError``). The deframer components report it on
``signal`` as an :class:`~pcpkit.ipc.ErrorInformation`, then a ``ProducerFinished``, and stop
(see :class:`~pcpkit.util.outlets.Transformer`).

:class:`Marshaller` / :class:`DeMarshaller` wrap a class's ``marshall`` / ``demarshall``
(Kamaelia's ``Kamaelia.Util.Marshalling``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from pcpkit._fifo import asBytes
from pcpkit.util.outlets import Transformer

__all__ = [
    "FrameError",
    "DEFAULT_MAX_LENGTH",
    "encodeLine",
    "LineDecoder",
    "encodeNetstring",
    "NetstringDecoder",
    "encodeLengthPrefixed",
    "LengthPrefixDecoder",
    "KAMAELIA_SYNC",
    "escape",
    "unescape",
    "encodeChunk",
    "ChunkDecoder",
    "LineFramer",
    "LineDeframer",
    "NetstringFramer",
    "NetstringDeframer",
    "LengthPrefixFramer",
    "LengthPrefixDeframer",
    "DataChunker",
    "DataDeChunker",
    "Marshaller",
    "DeMarshaller",
]

#: Default largest frame a decoder accepts (bytes): 16 MiB.
DEFAULT_MAX_LENGTH = 16 * 1024 * 1024
#: Twisted's ``LineReceiver.MAX_LENGTH``: the default longest line.
DEFAULT_MAX_LINE = 16384


class FrameError(ValueError):
    """
    Bytes that cannot be decoded: not the format, or a frame over the length limit.

    ``partial`` holds the frames completed in the same :meth:`feed` before the error (a
    deframer sends them before reporting the error).
    """

    def __init__(self, message: str, partial: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.partial: list[bytes] = partial or []


# -- lines ---------------------------------------------------------------------------------


def encodeLine(line: bytes | bytearray | memoryview | str, delimiter: bytes = b"\r\n") -> bytes:
    """``line`` (``str`` as UTF-8) followed by ``delimiter``; a delimiter inside is refused."""
    data = line.encode("utf-8") if isinstance(line, str) else asBytes(line)
    if delimiter in data:
        raise FrameError(f"a line to send contains the delimiter {delimiter!r}")
    return data + delimiter


class LineDecoder:
    """
    Split a byte stream into lines ending in ``delimiter`` (not included in the lines).

    A line longer than ``maxLength`` bytes raises :class:`FrameError` as soon as that many
    bytes have arrived without a delimiter, so memory stays bounded.
    """

    def __init__(self, delimiter: bytes = b"\r\n", maxLength: int = DEFAULT_MAX_LINE) -> None:
        if not delimiter:
            raise ValueError("the line delimiter must not be empty")
        self.delimiter = bytes(delimiter)
        self.maxLength = maxLength
        self.buffer = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self.buffer + asBytes(data) if self.buffer else asBytes(data)
        lines = buf.split(self.delimiter)
        self.buffer = rest = lines.pop()
        maxLength = self.maxLength
        for i, line in enumerate(lines):
            if len(line) > maxLength:
                self.buffer = b""
                raise FrameError(f"line of {len(line)} bytes is longer than {maxLength}", lines[:i])
        if len(rest) > maxLength:
            # A line of maxLength bytes may be followed by the start of its delimiter (a
            # chunk that ends between "\r" and "\n"): that much is not the line's.
            delimiter = self.delimiter
            n = len(rest) - next(
                (k for k in range(len(delimiter) - 1, 0, -1) if rest.endswith(delimiter[:k])), 0
            )
            if n > maxLength:
                self.buffer = b""
                raise FrameError(f"line of at least {n} bytes is longer than {maxLength}", lines)
        return lines

    def end(self) -> list[bytes]:
        """At the end of the stream: bytes after the last delimiter are an error."""
        if self.buffer:
            n = len(self.buffer)
            self.buffer = b""
            raise FrameError(f"the stream ended inside a line ({n} bytes without a delimiter)")
        return []


# -- netstrings ------------------------------------------------------------------------------


def encodeNetstring(data: bytes | bytearray | memoryview) -> bytes:
    """``b"<length>:<data>,"`` (D. J. Bernstein's netstrings)."""
    data = asBytes(data)
    return b"%d:%s," % (len(data), data)


class NetstringDecoder:
    """Streaming netstring decoder; a length over ``maxLength`` is a :class:`FrameError`."""

    def __init__(self, maxLength: int = DEFAULT_MAX_LENGTH) -> None:
        self.maxLength = maxLength
        self.buffer = bytearray()
        self._digits = len(str(maxLength))

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self.buffer
        buf += asBytes(data)
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n:
            colon = buf.find(b":", pos, pos + self._digits + 1)
            if colon < 0:
                head = bytes(buf[pos : pos + self._digits + 1])
                if not head.isdigit() or len(head) > self._digits:
                    del buf[:pos]
                    raise FrameError(f"not a netstring length: {head[:20]!r}", out)
                break
            head = bytes(buf[pos:colon])
            if not head.isdigit() or (len(head) > 1 and head[0:1] == b"0"):
                del buf[:pos]
                raise FrameError(f"not a netstring length: {head[:20]!r}", out)
            length = int(head)
            if length > self.maxLength:
                del buf[:pos]
                raise FrameError(
                    f"netstring of {length} bytes is longer than {self.maxLength}", out
                )
            end = colon + 1 + length
            if end >= n:
                break
            if buf[end] != 0x2C:  # ","
                del buf[:pos]
                raise FrameError(f"netstring of {length} bytes not followed by ','", out)
            out.append(bytes(buf[colon + 1 : end]))
            pos = end + 1
        del buf[:pos]
        return out

    def end(self) -> list[bytes]:
        if self.buffer:
            n = len(self.buffer)
            self.buffer.clear()
            raise FrameError(f"the stream ended inside a netstring ({n} bytes)")
        return []


# -- length-prefixed ---------------------------------------------------------------------------

_PREFIX = {8: struct.Struct(">B"), 16: struct.Struct(">H"), 32: struct.Struct(">I")}


def _prefix(bits: int) -> struct.Struct:
    try:
        return _PREFIX[bits]
    except KeyError:
        raise ValueError(f"prefix bits must be 8, 16 or 32, not {bits!r}") from None


def encodeLengthPrefixed(data: bytes | bytearray | memoryview, bits: int = 32) -> bytes:
    """``data`` after its length as a ``bits``-bit big-endian unsigned integer."""
    data = asBytes(data)
    prefix = _prefix(bits)
    if len(data) >= 1 << bits:
        raise FrameError(f"{len(data)} bytes do not fit a {bits}-bit length prefix")
    return prefix.pack(len(data)) + data


class LengthPrefixDecoder:
    """Streaming decoder of :func:`encodeLengthPrefixed` frames (``maxLength`` enforced)."""

    def __init__(self, bits: int = 32, maxLength: int = DEFAULT_MAX_LENGTH) -> None:
        self.prefix = _prefix(bits)
        self.bits = bits
        self.maxLength = maxLength
        self.buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self.buffer
        buf += asBytes(data)
        size = self.prefix.size
        unpack = self.prefix.unpack_from
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= size:
            (length,) = unpack(buf, pos)
            if length > self.maxLength:
                del buf[:pos]
                raise FrameError(f"frame of {length} bytes is longer than {self.maxLength}", out)
            end = pos + size + length
            if end > n:
                break
            out.append(bytes(buf[pos + size : end]))
            pos = end
        del buf[:pos]
        return out

    def end(self) -> list[bytes]:
        if self.buffer:
            n = len(self.buffer)
            self.buffer.clear()
            raise FrameError(f"the stream ended inside a frame ({n} bytes)")
        return []


# -- Kamaelia's sync-marker chunks ---------------------------------------------------------------

#: Kamaelia's default sync message (``DataChunker(syncmessage="XXX...")``, 24 ``X``).
KAMAELIA_SYNC = b"X" * 24
_HEXCHARS = frozenset(b"%0123456789abcdef")


def _escapes(syncmessage: bytes) -> list[tuple[bytes, bytes]]:
    # Kamaelia.Support.Data.Escape: each byte of the sync message becomes "%" + hex(byte)
    seen: list[tuple[bytes, bytes]] = []
    for b in syncmessage:
        pair = (bytes([b]), b"%" + format(b, "x").encode("ascii"))
        seen.append(pair)
    return seen


def escape(message: bytes, syncmessage: bytes = KAMAELIA_SYNC) -> bytes:
    """Kamaelia's ``escape``: ``%`` as ``%25``, then each sync byte as ``%<hex>``."""
    result = message.replace(b"%", b"%25")
    for raw, escaped in _escapes(syncmessage):
        result = result.replace(raw, escaped)
    return result


def unescape(message: bytes, syncmessage: bytes = KAMAELIA_SYNC) -> bytes:
    """Kamaelia's ``unescape``: the inverse of :func:`escape`."""
    result = message
    for raw, escaped in _escapes(syncmessage):
        result = result.replace(escaped, raw)
    return result.replace(b"%25", b"%")


def _checkSync(syncmessage: bytes) -> bytes:
    sync = asBytes(syncmessage, "syncmessage")
    if not sync:
        raise ValueError("the sync message must not be empty")
    if _HEXCHARS.intersection(sync):
        # Kamaelia's escaping is ambiguous for these: refuse rather than corrupt data
        raise ValueError(f"a sync message must not contain '%' or 0-9a-f bytes: {sync!r}")
    return sync


def encodeChunk(
    message: bytes | bytearray | memoryview, syncmessage: bytes = KAMAELIA_SYNC
) -> bytes:
    """Kamaelia's ``DataChunker.encodeChunk``: the sync message, then ``message`` escaped."""
    return syncmessage + escape(asBytes(message), syncmessage)


class ChunkDecoder:
    """
    Streaming decoder of :func:`encodeChunk` chunks (Kamaelia's ``DataDeChunker``).

    A chunk is complete when the next sync message arrives, or at :meth:`flush` / :meth:`end`.
    Bytes before the first sync message are skipped (counted in ``skipped``), as Kamaelia
    does, so a receiver can join a stream late; a chunk growing past ``maxLength`` bytes is a
    :class:`FrameError`.
    """

    def __init__(
        self, syncmessage: bytes = KAMAELIA_SYNC, maxLength: int = DEFAULT_MAX_LENGTH
    ) -> None:
        self.syncmessage = _checkSync(syncmessage)
        self.maxLength = maxLength
        self.buffer = bytearray()
        self.synced = False
        self.skipped = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        sync = self.syncmessage
        ls = len(sync)
        buf = self.buffer
        searchFrom = max(0, len(buf) - ls + 1)
        buf += asBytes(data)
        out: list[bytes] = []
        if not self.synced:
            at = buf.find(sync)
            if at < 0:
                # keep only what could be the start of a sync message
                keep = ls - 1
                drop = max(0, len(buf) - keep)
                self.skipped += drop
                del buf[:drop]
                return out
            self.skipped += at
            del buf[:at]
            self.synced = True
            searchFrom = ls
        start = 0
        while True:
            at = buf.find(sync, max(searchFrom, start + ls))
            if at < 0:
                break
            out.append(unescape(bytes(buf[start + ls : at]), sync))
            start = at
        del buf[:start]
        if len(buf) - ls > self.maxLength:
            n = len(buf) - ls
            buf.clear()
            self.synced = False
            raise FrameError(f"chunk of more than {n} bytes is longer than {self.maxLength}", out)
        return out

    def flush(self) -> list[bytes]:
        """The chunk buffered so far, if any, as a complete chunk (Kamaelia's ``flush``)."""
        if not self.synced:
            return []
        chunk = unescape(bytes(self.buffer[len(self.syncmessage) :]), self.syncmessage)
        self.buffer.clear()
        self.synced = False
        return [chunk]

    end = flush


# -- components ---------------------------------------------------------------------------------


class _Encoder(Transformer):
    """A framer: each message becomes the bytes of its frame."""

    Inboxes = {"inbox": "messages to frame", "control": "ProducerFinished, ShutdownMicroprocess"}
    Outboxes = {
        "outbox": "framed bytes, one frame per message",
        "signal": "ErrorInformation for a message that cannot be framed; the shutdown message",
    }

    def encode(self, msg: Any) -> bytes:
        raise NotImplementedError

    def transform(self, msg: Any) -> Iterable[Any]:
        return (self.encode(msg),)


class _Decoder(Transformer):
    """A deframer: bytes in, one message per complete frame out."""

    Inboxes = {"inbox": "bytes, in any chunks", "control": "ProducerFinished, ShutdownMicroprocess"}
    Outboxes = {
        "outbox": "one message per frame",
        "signal": "ErrorInformation then ProducerFinished on bad input; the shutdown message",
    }
    decoder: Any

    def transform(self, msg: Any) -> Iterable[Any]:
        try:
            data = asBytes(msg, f"a message for {type(self).__name__}")
        except TypeError as e:
            raise FrameError(str(e)) from None
        frames: list[bytes] = self.decoder.feed(data)
        return frames

    def final(self) -> Iterable[Any]:
        frames: list[bytes] = self.decoder.end()
        return frames


class LineFramer(_Encoder):
    """Each message (bytes, or ``str`` as UTF-8) out as one line ending in ``delimiter``."""

    def __init__(self, delimiter: bytes = b"\r\n", **argd: Any) -> None:
        super().__init__(**argd)
        self.delimiter = delimiter

    def encode(self, msg: Any) -> bytes:
        return encodeLine(msg, self.delimiter)


class LineDeframer(_Decoder):
    """
    Bytes in, one ``bytes`` message per line out (without the delimiter).

    A line longer than ``maxLength`` (default 16384, as Twisted's ``LineReceiver``), or
    bytes left after the last delimiter at the end of the stream, stop it with an
    ``ErrorInformation``.
    """

    def __init__(
        self, delimiter: bytes = b"\r\n", maxLength: int = DEFAULT_MAX_LINE, **argd: Any
    ) -> None:
        super().__init__(**argd)
        self.decoder = LineDecoder(delimiter, maxLength)


class NetstringFramer(_Encoder):
    """Each bytes message out as one netstring."""

    def encode(self, msg: Any) -> bytes:
        return encodeNetstring(msg)


class NetstringDeframer(_Decoder):
    """Netstrings in (any chunking), one ``bytes`` message each out."""

    def __init__(self, maxLength: int = DEFAULT_MAX_LENGTH, **argd: Any) -> None:
        super().__init__(**argd)
        self.decoder = NetstringDecoder(maxLength)


class LengthPrefixFramer(_Encoder):
    """Each bytes message out after its length (``bits`` = 8, 16 or 32, big-endian)."""

    def __init__(self, bits: int = 32, **argd: Any) -> None:
        super().__init__(**argd)
        _prefix(bits)
        self.bits = bits

    def encode(self, msg: Any) -> bytes:
        return encodeLengthPrefixed(msg, self.bits)


class LengthPrefixDeframer(_Decoder):
    """Length-prefixed frames in (any chunking), one ``bytes`` message each out."""

    def __init__(self, bits: int = 32, maxLength: int = DEFAULT_MAX_LENGTH, **argd: Any) -> None:
        super().__init__(**argd)
        self.decoder = LengthPrefixDecoder(bits, maxLength)


class DataChunker(_Encoder):
    """
    Kamaelia's ``DataChunker``: each message out as ``syncmessage`` followed by the message
    with ``%`` and the sync message's bytes escaped. Bytes in, bytes out (Kamaelia's works
    on ``str``; the bytes are the same).
    """

    def __init__(self, syncmessage: bytes = KAMAELIA_SYNC, **argd: Any) -> None:
        super().__init__(**argd)
        self.syncmessage = _checkSync(syncmessage)

    def encode(self, msg: Any) -> bytes:
        return encodeChunk(msg, self.syncmessage)


class DataDeChunker(_Decoder):
    """
    Kamaelia's ``DataDeChunker``: chunks from :class:`DataChunker`, in any pieces, back to
    messages. A chunk is sent when the next sync message arrives, when anything arrives on
    ``flush``, or at the end of the stream.
    """

    Inboxes = {
        "inbox": "partial message chunks (bytes)",
        "control": "ProducerFinished, ShutdownMicroprocess",
        "flush": "anything: send the chunk buffered so far",
    }

    def __init__(
        self,
        syncmessage: bytes = KAMAELIA_SYNC,
        maxLength: int = DEFAULT_MAX_LENGTH,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.decoder = ChunkDecoder(syncmessage, maxLength)

    def step(self) -> None:
        while self.dataReady("flush"):
            self.recv("flush")
            for chunk in self.decoder.flush():
                self.out.deliver(chunk)


class Marshaller(Transformer):
    """Each message out as ``klass.marshall(message)`` (Kamaelia's ``Marshaller``)."""

    def __init__(self, klass: Any, **argd: Any) -> None:
        super().__init__(**argd)
        self.klass = klass

    def transform(self, msg: Any) -> Iterable[Any]:
        return (self.klass.marshall(msg),)


class DeMarshaller(Transformer):
    """
    Each message out as ``klass.demarshall(message)`` (Kamaelia's ``DeMarshaller``); a
    ``ValueError`` from it stops the component with an ``ErrorInformation``.
    """

    def __init__(self, klass: Any, **argd: Any) -> None:
        super().__init__(**argd)
        self.klass = klass

    def transform(self, msg: Any) -> Iterable[Any]:
        return (self.klass.demarshall(msg),)
