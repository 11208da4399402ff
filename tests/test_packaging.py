"""
Packaging checks that are fast enough for the suite: the version is written once and shown by
``pcpkit --version``, and twistd finds the plugin from wherever pcpkit is installed.

The slow half (building the sdist and wheel, checking the wheel holds the plugin, installing it
into a fresh venv and running ``twistd pcpkit --help``, ``pcpkit --version`` and ``pcpkit
demo`` outside the checkout, and the minimum Twisted and libtorrent) is in ``.ci/run``.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

import pcpkit
from pcpkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_command_shows_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"pcpkit {pcpkit.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", pcpkit.__version__)


def test_version_is_written_in_one_place() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["version"] == "attr: pcpkit.__version__"
    for name in ("setup.cfg", "pyproject.toml", "docs/conf.py", "README.md"):
        assert pcpkit.__version__ not in (ROOT / name).read_text(), name
    # and the changelog has an entry for it
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(pcpkit.__version__)}\b", changelog, re.M)


def test_twistd_finds_the_plugin() -> None:
    # Twisted scans twisted/plugins/ on sys.path: the checkout's own (an editable install
    # puts the checkout on sys.path) or site-packages' (a wheel installs the file there).
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "pcpkit" in makers, sorted(makers)
    pcpkitMaker = makers["pcpkit"]
    assert pcpkitMaker.module == "pcpkit.tap"  # type: ignore[attr-defined]
    commands = {command[0] for command in pcpkitMaker.options.subCommands}  # type: ignore[attr-defined]
    assert {"relay", "torrent", "demo"} <= commands
