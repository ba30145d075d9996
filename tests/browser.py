"""Open an HTML file in headless Chromium (Debian's package) and report what a reader sees.

Chromium runs with the flags this machine needs (no sandbox as root, no
background networking) and a fresh profile; ``--dump-dom`` returns the DOM
after scripts ran, and ``--enable-logging=stderr`` prints every console
message as an ``INFO:CONSOLE`` line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]

    @property
    def charts(self) -> int:
        """Plotly charts drawn (each draws one ``main-svg`` root, plus overlays)."""
        return len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', self.dom))

    @property
    def drawn_svgs(self) -> int:
        return self.dom.count('class="main-svg"')


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(path: Path, timeout: float = 120) -> Rendered:
    """Load ``path`` in headless Chromium; return the final DOM and the console messages."""
    binary = chromium()
    assert binary, "chromium is not installed (apt-get install chromium; .ci/run does it)"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(result.stdout, console)
