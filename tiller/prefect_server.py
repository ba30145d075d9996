"""A temporary Prefect server for one CLI run (``tiller run daily --prefect`` without
``PREFECT_API_URL``) that never outlives the process that started it.

Prefect's own ephemeral server is a child process that inherits the caller's stdout and
keeps running when the caller is killed (about 200 MB, reparented to init, and a
``tiller ... | tail -1`` then never ends).  This one is started by Tiller:

* its output goes to ``TILLER_HOME/prefect/server.log``, never to the caller's stdout;
* on Linux the kernel sends it SIGTERM when the process that started it dies, however
  it dies (``prctl(PR_SET_PDEATHSIG)``); otherwise it is stopped when the run ends;
* its pid is in ``TILLER_HOME/prefect/server.pid`` while it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tiller.errors import TillerError

STARTUP_SECONDS = 120.0
DRAIN_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to SIGTERM this child when its parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setsid()  # a signal to the caller's terminal group does not hit it twice


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _send_pending(timeout: float) -> None:
    """Send the flow-run logs and events Prefect still queues to the server while it runs.

    Prefect sends them from background workers that drain at interpreter exit; after the
    server is stopped, that drain retries against a closed port for over a minute before
    giving up ("Error logging to API").  Prefect's own test harness drains them the same
    way before it stops its server."""
    if "prefect" not in sys.modules:  # no flow ran in this process
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # never fail a finished run over its logs
            worker.drain_all(timeout=timeout)


@contextlib.contextmanager
def temporary_server(home: Path) -> Iterator[str]:
    """Start a Prefect server on a free 127.0.0.1 port; yield its API URL (also set as
    ``PREFECT_API_URL`` for this process while the block runs); stop it afterwards.

    Raises
    ------
    TillerError
        The server did not answer within :data:`STARTUP_SECONDS` (its log is named).
    """
    folder = home / "prefect"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    executable = Path(sys.executable).with_name("prefect")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "prefect"]
    log_path = folder / "server.log"
    pid_path = folder / "server.pid"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    pid_path.write_text(str(process.pid))
    previous = os.environ.get("PREFECT_API_URL")
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise TillerError(
                    f"the temporary Prefect server did not start (see {log_path}); start one "
                    "with `prefect server start` and set PREFECT_API_URL, or run without "
                    "--prefect"
                )
            time.sleep(0.25)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        _send_pending(DRAIN_SECONDS)
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        pid_path.unlink(missing_ok=True)
