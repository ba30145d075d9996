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
from typing import Any

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


class Page:
    """A page in headless Chromium driven over the DevTools protocol: open a URL, run
    JavaScript in it (e.g. click a tab of a single-page app), read what a reader sees.

    ``with Page() as page: page.open(url); page.wait_for_text("Artifacts")``.
    """

    def __init__(self, timeout: float = 60) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: Any = None
        self._next = 0

    def __enter__(self) -> Page:
        import json
        import time
        import urllib.request

        from websockets.sync.client import connect

        binary = chromium()
        assert binary, "chromium is not installed (apt-get install chromium; .ci/run does it)"
        flags = [f for f in FLAGS if not f.startswith("--virtual-time-budget")]
        self._process = subprocess.Popen(
            [
                binary,
                *flags,
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        self._socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._socket is not None:
            self._socket.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._profile.cleanup()

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        import json

        self._next += 1
        ident = self._next
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=self.timeout))
            if message.get("id") == ident:
                assert "error" not in message, message["error"]
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self._call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The page's visible text (``document.body.innerText``)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """Poll until the visible text contains every one of ``needles``; return it."""
        import time

        deadline = time.monotonic() + (timeout or self.timeout)
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"the page never showed {missing}; it shows: {text[:3000]}")

    def click_text(self, label: str, selector: str = "button, a, [role=tab]") -> bool:
        """Click the first element matching ``selector`` whose text is ``label``."""
        script = (
            f"(() => {{ const el = [...document.querySelectorAll({json_str(selector)})]"
            f".find(e => e.innerText && e.innerText.trim() === {json_str(label)});"
            " if (!el) return false; el.click(); return true; })()"
        )
        return bool(self.evaluate(script))


def json_str(value: str) -> str:
    import json

    return json.dumps(value)
