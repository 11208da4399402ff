"""
Make docs/_static/inspect-demo.png: the inspector's page while ``pcpkit demo`` runs.

    PYTHONPATH=. python docs/inspect_screenshot.py [--size MIB] [--out PATH]

It starts ``pcpkit demo --inspect PORT`` as a child process, opens the page in headless
Chromium (Debian's chromium and chromedriver) and saves a screenshot once the graph shows the
demo's relay step (its Pipeline, the TCP client's bridges and the relayed connection).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graph(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/graph.json", timeout=5) as r:
        return json.load(r)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="demo payload in MiB")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "_static" / "inspect-demo.png")
    )
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    port = freePort()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcpkit.cli",
            "demo",
            "--size",
            str(args.size),
            "--inspect",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                graph(port)
                break
            except OSError:
                time.sleep(0.2)
        driver.get(f"http://127.0.0.1:{port}/")
        best = 0  # the longest waits-on chain shot so far
        relayed = False
        while time.monotonic() < deadline and demo.poll() is None:
            # what the page itself drew last (it lags graph.json by up to a tenth of a second)
            g = driver.execute_script("return window.pcpkitGraph || null;")
            if g is None:
                time.sleep(0.05)
                continue
            kinds = {n["kind"] for n in g["nodes"]}
            if "relayConnection" not in kinds:
                if relayed:
                    break  # the relay step is over
                time.sleep(0.05)
                continue
            relayed = True
            longest = max((len(w["chain"]) for w in g["waitsOn"]), default=0)
            if longest > best:
                driver.save_screenshot(args.out)
                best = longest
                print(f"saved {args.out} (a waits-on chain of {longest})")
            time.sleep(0.03)
        if not best:
            print("the demo ended before its relay step was seen", file=sys.stderr)
            return 1
        return 0
    finally:
        driver.quit()
        demo.terminate()
        demo.wait()


if __name__ == "__main__":
    sys.exit(main())
