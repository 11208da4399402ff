"""
The documentation's pictures and checks keep working: the committed images are the ones their
scripts make, the performance tables the charts read are still there, the flow-control run
holds its bounds, and the reference check tells broken internal references from others.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest_twisted
from twisted.internet import reactor

DOCS = Path(__file__).resolve().parent.parent / "docs"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_layers_svg_is_what_its_script_draws() -> None:
    layers = load(DOCS / "pictures" / "layers.py")
    assert (DOCS / "_static" / "layers.svg").read_text() == layers.svg()


def test_the_tables_the_charts_read_are_there() -> None:
    charts = load(DOCS / "pictures" / "perfcharts.py")
    header, rows = charts.pick("P1", "writes")
    assert [r[0] for r in rows] == ["10^4", "10^5", "10^6"]
    assert charts.seconds(rows[0][header.index("pcpkit")])[0] > 0
    assert charts.seconds("> 60 s") == (60.0, True)
    assert charts.seconds("4.3 ms") == (0.0043, False)
    for section, first, col in [
        ("P2", "contender", "hops/s"),
        ("P7", "contender", "rate"),
        ("P8", "workload", "pcpkit msg/s"),
    ]:
        header, rows = charts.pick(section, first, last=True)
        assert rows and all(charts.number(r[header.index(col)]) > 0 for r in rows)
    header, rows = [t for t in charts.tables("P3") if "MB/s (median)" in t[0]][-1]
    cpu = header.index("relay CPU s/GiB")
    assert all(charts.number(r[cpu]) > 0 for r in rows if r[0] != "direct")
    for name in (
        "perf-p1.svg",
        "perf-p2.svg",
        "perf-p3.svg",
        "perf-p7.svg",
        "perf-p8.svg",
        "flowcontrol.svg",
    ):
        assert (DOCS / "_static" / name).stat().st_size > 1000, name


@pytest_twisted.ensureDeferred
async def test_flow_control_run_holds_its_bounds() -> None:
    """The run the contract picture is drawn from: paused at high, resumed at low, in order."""
    flow = load(DOCS / "pictures" / "flowcontrol.py")
    flow.TOTAL = 2 * 1024 * 1024
    recorder = await flow.record(reactor)
    assert max(b for _, b in recorder.samples) <= flow.HIGH + flow.CHUNK
    kinds = [what for _, what in recorder.events]
    assert kinds.count("pause") >= 3
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), "they alternate"
    # paused at the high watermark, resumed only at the low one: no flapping in between
    assert all(held >= flow.HIGH for held in recorder.heldAt["pause"])
    assert all(held <= flow.HIGH // 2 for held in recorder.heldAt["resume"])


def test_checklinks_tells_internal_references_from_others() -> None:
    check = load(DOCS / "checklinks.py")
    broken = [
        "docs/x.rst:3: WARNING: unknown document: 'nosuchpage' [ref.doc]",
        "docs/x.rst:4: WARNING: undefined label: 'nolabel' [ref.ref]",
        "docs/x.rst:5: WARNING: py:class reference target not found: pcpkit.NoSuch [ref.class]",
        "docs/x.rst:6: WARNING: image file not readable: _static/none.svg [image.not_readable]",
    ]
    ignored = [
        "x: WARNING: py:class reference target not found: twisted.internet.defer.Deferred",
        "x: WARNING: py:class reference target not found: pcpkit._pause.Pauser [ref.class]",
        "x: WARNING: py:class reference target not found: pcpkit.chassis._Chassis [ref.class]",
    ]
    assert all(check.OWN.search(w) and not check.PRIVATE.search(w) for w in broken)
    assert not any(check.OWN.search(w) and not check.PRIVATE.search(w) for w in ignored)
