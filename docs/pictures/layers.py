"""
Draw pcpkit's layers as an SVG, by hand (no dependencies): docs/_static/layers.svg.

    python docs/pictures/layers.py

The layers and their modules follow the module map (pcpkit's design notes): a layer uses
only the layers drawn below it.
"""

from __future__ import annotations

import sys
from html import escape
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "_static" / "layers.svg"

#: (layer, what it is, modules), top to bottom; colours from light to dark
LAYERS = [
    (
        "Surfaces",
        "services, commands, tests",
        [
            "twistd pcpkit relay|torrent|demo",
            "pcpkit command",
            "torrent daemon: JSON API, web UI",
            "pcpkit.testing",
        ],
    ),
    (
        "Adapters",
        "the outside world as components",
        [
            "internet.tcp: TCPClient, SimpleServer",
            "internet.threadedtcp",
            "internet.relay",
            "file: FileReader, FileWriter",
            "torrent: TorrentPatron, streamFile",
            "amqp: AMQPSource, AMQPSink",
        ],
    ),
    (
        "Building blocks",
        "every branch bounded",
        [
            "util: fanOut, Splitter",
            "Backplane, PublishTo, SubscribeTo",
            "framing: lines, netstrings",
            "Seq, Carousel, PureTransformer",
        ],
    ),
    (
        "Message level",
        "mailbox components on the reactor",
        [
            "component: Component, boxes",
            "chassis: Pipeline, Graphline",
            "threaded: ThreadedComponent",
            "bridge: InboxConsumer, OutboxProducer",
        ],
    ),
    (
        "Byte level",
        "producer/consumer proxies",
        ["pcp: ProducerConsumerProxy", "transport: TransportConsumer"],
    ),
    (
        "Shared primitives",
        "one pause mechanism, O(1) buffers",
        ["_pause: Pauser, Watermark", "_fifo: ByteFIFO", "ipc: Shutdown, ProducerFinished"],
    ),
]
FILLS = ["#e8f1fb", "#d4e5f7", "#bcd6f2", "#a3c6ec", "#8ab6e6", "#6fa4de"]

WIDTH, LABEL, ROW, GAP, PAD = 960, 250, 74, 10, 12


def svg() -> str:
    height = len(LAYERS) * (ROW + GAP) + 80
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    for i, (name, what, modules) in enumerate(LAYERS):
        y = 10 + i * (ROW + GAP)
        out.append(
            f'<rect x="10" y="{y}" width="{WIDTH - 60}" height="{ROW}" rx="8" '
            f'fill="{FILLS[i]}" stroke="#3a6ea5"/>'
        )
        out.append(
            f'<text x="{PAD + 10}" y="{y + 30}" font-weight="bold" font-size="15">'
            f"{escape(name)}</text>"
        )
        out.append(
            f'<text x="{PAD + 10}" y="{y + 50}" fill="#333" font-size="12">{escape(what)}</text>'
        )
        # module boxes, two rows at most
        perRow = (len(modules) + 1) // 2 if len(modules) > 3 else len(modules)
        boxW = (WIDTH - 60 - LABEL - PAD * (perRow + 1)) / perRow
        for j, module in enumerate(modules):
            r, c = divmod(j, perRow)
            rows = 1 if len(modules) <= perRow else 2
            boxH = (ROW - PAD * (rows + 1)) / rows
            x = 10 + LABEL + PAD + c * (boxW + PAD)
            by = y + PAD + r * (boxH + PAD)
            out.append(
                f'<rect x="{x:.1f}" y="{by:.1f}" width="{boxW:.1f}" height="{boxH:.1f}" '
                'rx="4" fill="white" stroke="#3a6ea5" stroke-width="0.8"/>'
            )
            out.append(
                f'<text x="{x + boxW / 2:.1f}" y="{by + boxH / 2 + 4:.1f}" '
                f'text-anchor="middle" font-size="11.5">{escape(module)}</text>'
            )
    # the arrow: what a layer may use
    x = WIDTH - 28
    top, bottom = 20, len(LAYERS) * (ROW + GAP) - 10
    out.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#333" stroke-width="2"/>')
    out.append(
        f'<polygon points="{x - 6},{bottom - 10} {x + 6},{bottom - 10} {x},{bottom}" fill="#333"/>'
    )
    y = len(LAYERS) * (ROW + GAP) + 30
    out.append(
        f'<text x="10" y="{y}" fill="#333">A layer uses only the layers below it (the '
        "arrow).</text>"
    )
    out.append(
        f'<text x="10" y="{y + 20}" fill="#333">One language of back-pressure at every '
        "seam: pauseProducing / resumeProducing / stopProducing, through the one "
        "Pauser.</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    OUT.write_text(svg())
    sys.stdout.write(f"wrote {OUT}\n")
