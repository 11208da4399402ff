"""
First-in first-out buffers with O(1) size accounting.

Both the byte-level proxies (:mod:`pcpkit.pcp`) and the mailbox boxes keep a running
count of what they hold, so asking "how much is buffered?" never walks the buffer.
That is what makes a write O(1) amortised, where ``twisted.protocols.pcp`` sums its
whole buffer on every write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

__all__ = ["ByteFIFO", "asBytes"]

_BYTES_TYPES = (bytes, bytearray, memoryview)


def asBytes(data: object, what: str = "data") -> bytes:
    """
    Return ``data`` as immutable ``bytes``, or raise ``TypeError`` naming its type.

    ``bytes`` is returned as is (no copy). ``bytearray`` and ``memoryview`` are
    copied, because the caller may mutate them after the write returns and a buffer
    must hold what was written, not what it later became.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, _BYTES_TYPES):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError(
            f"{what} must be bytes, bytearray or memoryview, not str "
            f"(encode it first, e.g. {data[:20]!r}.encode('utf-8'))"
        )
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")


class ByteFIFO:
    """
    A queue of byte chunks that knows its total length without summing.

    ``len(fifo)`` is the number of bytes held, ``fifo.chunks`` the number of chunks.
    Chunks are kept as they were appended (no joining on append), so appending is O(1)
    and taking everything for a ``writeSequence`` is O(chunks).

    ``parts`` (the deque of chunks) and ``size`` (their total length) are public so that
    a per-write hot path (the proxies' buffered ``write``) can append without a Python
    call: ``fifo.parts.append(data); fifo.size += len(data)``, ``data`` non-empty bytes.
    Both must always move together.
    """

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: deque[bytes] = deque()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def __repr__(self) -> str:
        return f"<ByteFIFO {self.size} bytes in {len(self.parts)} chunks>"

    @property
    def chunks(self) -> int:
        return len(self.parts)

    def append(self, data: bytes) -> None:
        """Add ``data`` (already ``bytes``) at the tail. Empty chunks are ignored."""
        if data:
            self.parts.append(data)
            self.size += len(data)

    def appendleft(self, data: bytes) -> None:
        """Put ``data`` back at the head (the unsent rest of a partial write)."""
        if data:
            self.parts.appendleft(data)
            self.size += len(data)

    def popAll(self) -> list[bytes]:
        """Remove and return every chunk, oldest first."""
        chunks = list(self.parts)
        self.parts.clear()
        self.size = 0
        return chunks

    def popChunk(self) -> bytes:
        """Remove and return the oldest chunk; ``IndexError`` when empty."""
        data = self.parts.popleft()
        self.size -= len(data)
        return data

    def pop(self, n: int) -> bytes:
        """
        Remove and return up to ``n`` bytes from the head as one ``bytes``.

        Only the chunks needed are joined; a chunk split in two leaves its tail at the head.
        """
        if n <= 0 or not self.parts:
            return b""
        if n >= self.size:
            return b"".join(self.popAll())
        taken: list[bytes] = []
        need = n
        while need:
            head = self.parts[0]
            if len(head) <= need:
                taken.append(self.parts.popleft())
                need -= len(head)
            else:
                taken.append(head[:need])
                self.parts[0] = head[need:]
                need = 0
        self.size -= n
        return b"".join(taken)

    def clear(self) -> None:
        self.parts.clear()
        self.size = 0
