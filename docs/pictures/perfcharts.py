"""
The performance tables of docs/performance.md as charts: docs/_static/perf-p1.svg, -p2, -p3,
-p7, -p8.

    python docs/pictures/perfcharts.py         # needs matplotlib: pip install -e '.[bench]'

The figures are read from the tables of docs/performance.md (the latest table of each
section where a section has several runs), so the charts show what the page records; rerun
this after recording new figures there. A table that cannot be found or read stops the
script with a message naming it, rather than drawing something else.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent
PAGE = DOCS / "performance.md"
STATIC = DOCS / "_static"

Table = tuple[list[str], list[list[str]]]


def tables(section: str) -> list[Table]:
    """The Markdown tables under the ``## {section}`` heading, in page order."""
    lines = PAGE.read_text().splitlines()
    start = next((i for i, t in enumerate(lines) if t.startswith(f"## {section}")), None)
    if start is None:
        sys.exit(f"perfcharts: no '## {section}' section in {PAGE}")
    found: list[Table] = []
    i = start + 1
    while i < len(lines) and not lines[i].startswith("## "):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"\|[-: |]+\|$", lines[i + 1])
        ):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            found.append((header, rows))
        else:
            i += 1
    return found


def pick(section: str, first: str, last: bool = False) -> Table:
    """The first (or last) table of a section whose first header cell is ``first``."""
    matching = [t for t in tables(section) if t[0][0] == first]
    if not matching:
        sys.exit(f"perfcharts: no table starting with column {first!r} under '## {section}'")
    return matching[-1] if last else matching[0]


def number(text: str) -> float:
    """The first number in a cell ("1,275,827", "612.6 MiB/s", "**1.34x**")."""
    match = re.search(r"[0-9][0-9,]*(\.[0-9]+)?", text)
    if match is None:
        raise ValueError(f"no number in {text!r}")
    return float(match.group(0).replace(",", ""))


def seconds(text: str) -> tuple[float, bool]:
    """A time cell as seconds, and whether it is a lower bound ("> 60 s")."""
    value = number(text)
    unit = re.search(r"(ms|µs|us|s)\b", text)
    scale = {"ms": 1e-3, "µs": 1e-6, "us": 1e-6, "s": 1.0}[unit.group(1) if unit else "s"]
    return value * scale, text.lstrip().startswith(">")


def column(header: list[str], name: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        sys.exit(f"perfcharts: no column {name!r} in a table with columns {header}")


def setup() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "pcpkit"
    matplotlib.rcParams["font.size"] = 9
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, name: str) -> None:
    fig.tight_layout()
    path = STATIC / name
    fig.savefig(path, format="svg", metadata={"Date": None})
    sys.stdout.write(f"wrote {path}\n")


def p1(plt: Any) -> None:
    header, rows = pick("P1", "writes")
    cols = {
        "pcpkit": column(header, "pcpkit"),
        "twisted.protocols.pcp, producer registered": column(
            header, "twisted, producer registered"
        ),
        "twisted.protocols.pcp, no producer": column(header, "twisted, no producer"),
    }
    colours = ["#1f5fa8", "#e07b00", "#9e9e9e"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels = [r[0] for r in rows]
    width = 0.27
    for k, (name, c) in enumerate(cols.items()):
        values = [seconds(r[c]) for r in rows]
        xs = [i + (k - 1) * width for i in range(len(rows))]
        bars = ax.bar(xs, [v for v, _ in values], width, label=name, color=colours[k])
        for bar, (v, bound) in zip(bars, values, strict=True):
            if bound:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
                ax.annotate(
                    f"> {v:g} s", (bar.get_x() + width / 2, v), ha="center", va="bottom", fontsize=8
                )
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)
    ax.set_xticks(range(len(rows)), [f"{w} writes" for w in labels])
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("P1: 100-byte writes into a paused proxy, then drained (hatched: stopped at 60 s)")
    ax.legend(fontsize=7, loc="upper left")
    save(fig, "perf-p1.svg")


def p2(plt: Any) -> None:
    header, rows = pick("P2", "contender", last=True)
    c = column(header, "hops/s")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [r[0] for r in rows]
    values = [number(r[c]) / 1e6 for r in rows]
    colours = ["#1f5fa8" if n.startswith("pcpkit") else "#9e9e9e" for n in names]
    ax.barh(names, values, color=colours)
    for y, v in enumerate(values):
        ax.annotate(
            f"{v:.2f} M", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.invert_yaxis()
    ax.set_xlabel("million message hops per second (10-stage pipeline, higher is better)")
    ax.set_title("P2: message hops/s, pcpkit (blue) vs asyncio and Kamaelia Axon")
    save(fig, "perf-p2.svg")


def p3(plt: Any) -> None:
    # the latest throughput table (the connection-rate tables start with "contender" too)
    found = [t for t in tables("P3") if "MB/s (median)" in t[0]]
    if not found:
        sys.exit("perfcharts: no P3 table with an 'MB/s (median)' column")
    header, rows = found[-1]
    rate, cpu = column(header, "MB/s (median)"), column(header, "relay CPU s/GiB")
    relays = [r for r in rows if r[0] != "direct"]  # no relay: nothing to compare on CPU
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    names = [r[0] for r in relays]
    colours = ["#1f5fa8" if n.startswith("pcpkit") else "#9e9e9e" for n in names]
    left.barh(names, [number(r[rate]) for r in relays], color=colours)
    left.set_xlabel("MB/s through the relay (higher is better)")
    right.barh(names, [number(r[cpu]) for r in relays], color=colours)
    right.set_xlabel("relay CPU seconds per GiB (lower is better)")
    left.invert_yaxis()
    fig.suptitle("P3: 1 GiB through a loopback TCP relay, pcpkit (blue) vs others", fontsize=10)
    save(fig, "perf-p3.svg")


def p7(plt: Any) -> None:
    header, rows = pick("P7", "contender")
    c = column(header, "rate")
    messages = [(r[0], number(r[c])) for r in rows if "msg/s" in r[c]]
    mib = [(r[0], number(r[c])) for r in rows if "MiB/s" in r[c]]
    if not messages or not mib:
        sys.exit("perfcharts: the P7 table has no msg/s or no MiB/s rows")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, data, unit in ((left, messages, "thousand messages/s"), (right, mib, "MiB/s")):
        names = [n for n, _ in data]
        scale = 1e3 if unit.startswith("thousand") else 1.0
        values = [v / scale for _, v in data]
        colours = [
            "#1f5fa8"
            if "pcpkit" in n or n.startswith("lines-decoder") or n.startswith("lines-component")
            else "#9e9e9e"
            for n in names
        ]
        ax.barh(names, values, color=colours)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
    left.set_title("fan-out (4) and Backplane (10)")
    right.set_title("line framing")
    fig.suptitle("P7: building blocks, pcpkit (blue) vs asyncio and Twisted", fontsize=10)
    save(fig, "perf-p7.svg")


def p8(plt: Any) -> None:
    header, rows = pick("P8", "workload")
    a, b = column(header, "pcpkit msg/s"), column(header, "plain pika msg/s")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [r[0].replace("**", "") for r in rows]
    width = 0.38
    for k, (c, label, colour) in enumerate(
        ((a, "pcpkit", "#1f5fa8"), (b, "plain pika", "#9e9e9e"))
    ):
        xs = [i + (k - 0.5) * width for i in range(len(rows))]
        ax.bar(xs, [number(r[c]) / 1e3 for r in rows], width, label=label, color=colour)
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylabel("thousand messages/s")
    ax.set_title("P8: RabbitMQ through AMQPSource/AMQPSink vs plain pika (Twisted adapter)")
    ax.legend(fontsize=8)
    save(fig, "perf-p8.svg")


if __name__ == "__main__":
    plt = setup()
    for chart in (p1, p2, p3, p7, p8):
        chart(plt)
