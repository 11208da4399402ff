"""
Offline check of the documentation's internal references: ``python docs/checklinks.py``.

``sphinx-build -b linkcheck`` needs the network; this does not. It builds the docs in
nitpicky mode (``-n``), where every cross-reference that does not resolve is a warning, and
fails on those that point into the project: ``:doc:``, ``:ref:``, ``:numref:``, a missing
image, a relative link in a Markdown page, and Python references (``:class:``, ``:func:``,
``:meth:``, ``:mod:``, ...) to ``pcpkit`` names. Unresolved references to other projects'
names (Twisted, zope, the standard library: there is no intersphinx inventory offline) and
to pcpkit's private names (``pcpkit._pause``, ``_Chassis``: not documented on purpose) are
counted, not failed. Exit status 1 lists the broken references, one a line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
#: Warnings about the project's own references (anything else unresolved is outside it).
OWN = re.compile(
    r"undefined label|unknown document|unknown target|"
    r"image file not readable|"
    r"Failed to create a cross reference|cross-reference target not found|"
    r"reference target not found: (?:[\w.]*\.)?pcpkit|"
    r"py:\w+ reference target not found: ~?pcpkit"
)

#: A reference to a private name: a dotted path with a segment starting with "_".
PRIVATE = re.compile(r"target not found: ~?[\w.]*\._\w")


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sphinx",
                "-n",
                "-q",
                "-b",
                "html",
                "-d",
                f"{out}/doctrees",
                str(DOCS),
                f"{out}/html",
            ],
            capture_output=True,
            text=True,
        )
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    broken = [w for w in warnings if OWN.search(w) and not PRIVATE.search(w)]
    for line in broken:
        print(line)
    print(
        f"checklinks: {len(broken)} broken internal reference(s); "
        f"{len(warnings) - len(broken)} unresolved reference(s) to other projects or "
        "private names ignored"
    )
    if result.returncode != 0:
        print(result.stderr[-2000:])
        return 1
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
