"""Sphinx configuration for pcpkit's documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pcpkit"
author = "The pcpkit developers"
copyright = "2026, The pcpkit developers"
# The version is written once, in pcpkit/__init__.py.
release = version = __import__("pcpkit").__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Type hints name Twisted and zope types the docs do not (and cannot) resolve offline.
nitpicky = False
suppress_warnings = ["ref.python"]
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
html_theme = "alabaster"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
