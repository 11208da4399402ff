"""
tee for files, from building blocks: one ``FileReader`` fanned out to several
``FileWriter``s with ``fanOut``. Every branch is bounded: a slow destination pauses the
reader instead of filling memory, and every copy is byte-identical.

    python examples/tee.py SOURCE DEST [DEST ...] [--rate DEST=BYTES_PER_SECOND] [--force]
    python examples/tee.py --selftest [--size MIB]   # 3 copies, one throttled, sha256-checked

Destinations that exist are refused unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from pcpkit.chassis import Pipeline
from pcpkit.component import Component
from pcpkit.file import FileReader, FileWriter
from pcpkit.util import MessageRateLimit, fanOut

CHUNK = 65536


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def writer(path: Path, rate: float | None) -> Component:
    if rate is None:
        return FileWriter(path)
    # chunks per second, no pre-buffering: a throttled destination
    return Pipeline(MessageRateLimit(rate / CHUNK, buffer=0), FileWriter(path))


async def tee(source: Path, dests: list[Path], rates: dict[Path, float]) -> Any:
    fan = fanOut(*[writer(d, rates.get(d)) for d in dests])
    pipeline = Pipeline(FileReader(source, chunksize=CHUNK), fan)
    pipeline.activate()
    await pipeline.finished
    return fan


def maxRssMiB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def selftest(mib: int) -> int:
    with tempfile.TemporaryDirectory(prefix="pcpkit-tee-") as tmp:
        source = Path(tmp) / "source.bin"
        with open(source, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(mib):
                f.write(bytes([i % 256]) + block[1:])
        expected = sha256(source)
        dests = [Path(tmp) / f"copy{i}.bin" for i in range(3)]
        # the third copy at a quarter of the others' likely speed, but not too slow to wait
        rates = {dests[2]: max(mib * (1 << 20) / 4.0, 8 << 20)}
        rssBefore = maxRssMiB()
        start = time.perf_counter()
        fan = await tee(source, dests, rates)
        elapsed = time.perf_counter() - start
        ok = all(sha256(d) == expected for d in dests)
        print(
            f"{mib} MiB to 3 files (one throttled to {rates[dests[2]] / 2**20:.0f} MiB/s) in "
            f"{elapsed:.1f}s: copies {'identical' if ok else 'DIFFER'} (sha256 {expected[:16]}), "
            f"source paused {fan.pauses} times, peak RSS {maxRssMiB():.0f} MiB "
            f"(was {rssBefore:.0f} MiB before)"
        )
        bounded = all(o.peak <= o.bound for o in fan.outlets)
        print("OK" if ok and bounded and fan.pauses > 0 else "FAIL")
        return 0 if ok and bounded and fan.pauses > 0 else 1


def parseRates(specs: list[str], dests: list[Path]) -> dict[Path, float]:
    rates: dict[Path, float] = {}
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        path = Path(name)
        if not sep or path not in dests:
            raise SystemExit(f"tee.py: --rate {spec!r}: expected DEST=RATE for a DEST given")
        try:
            rates[path] = float(value)
        except ValueError:
            raise SystemExit(f"tee.py: --rate {spec!r}: {value!r} is not a number") from None
        if rates[path] <= 0:
            raise SystemExit(f"tee.py: --rate {spec!r}: the rate must be positive")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path)
    parser.add_argument("dests", nargs="*", type=Path)
    parser.add_argument("--rate", action="append", default=[], help="DEST=BYTES_PER_SECOND")
    parser.add_argument("--force", action="store_true", help="overwrite existing DESTs")
    parser.add_argument("--selftest", action="store_true", help="run the self-test and exit")
    parser.add_argument("--size", type=int, default=64, help="self-test size in MiB")
    args = parser.parse_args()
    if not args.selftest:
        if args.source is None or not args.dests:
            parser.error("give a SOURCE and at least one DEST (or --selftest)")
        if not args.source.is_file():
            parser.error(f"SOURCE {args.source} is not a readable file")
        for d in args.dests:
            if d.exists() and not args.force:
                parser.error(f"DEST {d} exists; pass --force to overwrite it")
            parent = d.parent if str(d.parent) else Path(".")
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                parser.error(f"DEST {d}: {parent} is not a writable directory")
        rates = parseRates(args.rate, args.dests)
    outcome: list[int] = []

    def run() -> None:
        if args.selftest:
            d = ensureDeferred(selftest(args.size))
        else:
            d = ensureDeferred(tee(args.source, args.dests, rates))

        def done(result: Any) -> None:
            if isinstance(result, int):
                outcome.append(result)
            elif hasattr(result, "getErrorMessage"):
                print(f"tee.py: {result.getErrorMessage()}", file=sys.stderr)
                outcome.append(1)
            else:
                print(f"copied {args.source} to {len(args.dests)} destinations")
                outcome.append(0)
            reactor.stop()  # type: ignore[attr-defined]

        d.addBoth(done)

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
