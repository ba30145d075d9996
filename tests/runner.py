"""Run ``tiller run daily`` in a child process that can be killed at a named point.

The children are forked from a forkserver that imported Tiller once, so a run costs its
stages, not Python's start-up and imports.  A child is a real process: an injected
fault (``TILLER_FAULT_INJECT``) ends it with ``os._exit(137)`` -- no clean-up, no
rollback other than the database's own, exactly as a ``kill -9``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

PRELOAD = ["tests.runner_warm"]
_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


@dataclass(frozen=True)
class Outcome:
    """How a child run ended: its exit code and (when it got that far) its JSON summary."""

    exitcode: int
    summary: dict[str, Any] | None
    error: str | None


def _child(env: dict[str, str], args: list[str], out: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    from tiller.cli import run_daily_flow
    from tiller.errors import TillerError

    as_of = date.fromisoformat(args[0]) if args else None
    try:
        summary: dict[str, Any] = run_daily_flow(as_of, "--force" in args)
        code = 0 if summary["status"] == "completed" else 1
        payload: dict[str, Any] = {"summary": summary}
    except TillerError as exc:
        code, payload = 2, {"error": str(exc)}
    Path(out).write_text(json.dumps(payload, default=str))
    os._exit(code)


@dataclass
class Running:
    """A child run that was started and not yet waited for."""

    process: Any
    out: Path
    as_of: str

    def wait(self, timeout: float = 300) -> Outcome:
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"run daily {self.as_of} did not finish in {timeout} s")
        payload = json.loads(self.out.read_text()) if self.out.exists() else {}
        self.out.unlink(missing_ok=True)
        return Outcome(
            int(self.process.exitcode or 0), payload.get("summary"), payload.get("error")
        )


def start_daily(env: dict[str, str], as_of: str, *flags: str) -> Running:
    """Start ``tiller run daily --as-of AS_OF [flags]`` with ``env`` in a forked child."""
    handle, name = tempfile.mkstemp(prefix="tiller-run-", suffix=".json")
    os.close(handle)
    out = Path(name)
    out.unlink()
    process = _context().Process(target=_child, args=(env, [as_of, *flags], str(out)))
    process.start()
    return Running(process, out, as_of)


def run_daily(env: dict[str, str], as_of: str, *flags: str, timeout: float = 300) -> Outcome:
    """``tiller run daily --as-of AS_OF [flags]`` with ``env`` in a forked child, waited for."""
    return start_daily(env, as_of, *flags).wait(timeout)
