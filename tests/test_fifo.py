from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcpkit._fifo import ByteFIFO, asBytes


def test_asBytes_accepts_bytes_like_and_copies_mutables() -> None:
    b = b"abc"
    assert asBytes(b) is b
    ba = bytearray(b"xyz")
    out = asBytes(ba)
    ba[0] = 0
    assert out == b"xyz"
    assert asBytes(memoryview(b"mv")) == b"mv"


@pytest.mark.parametrize("bad", ["text", 3, None, ["a"]])
def test_asBytes_rejects_other_types_naming_them(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        asBytes(bad)


@given(st.lists(st.binary(max_size=50)), st.lists(st.integers(0, 80)))
def test_fifo_pop_preserves_order_and_size(chunks: list[bytes], pops: list[int]) -> None:
    fifo = ByteFIFO()
    for c in chunks:
        fifo.append(c)
    whole = b"".join(chunks)
    assert len(fifo) == len(whole)
    out = []
    for n in pops:
        out.append(fifo.pop(n))
        assert len(fifo) == len(whole) - sum(map(len, out))
    out.extend(fifo.popAll())
    assert b"".join(out) == whole
    assert len(fifo) == 0 and not fifo


def test_appendleft_puts_back_at_head() -> None:
    fifo = ByteFIFO()
    fifo.append(b"world")
    fifo.appendleft(b"hello ")
    assert fifo.chunks == 2
    assert fifo.popChunk() == b"hello "
    assert b"".join(fifo.popAll()) == b"world"
