"""Progress bars for the long commands (``tiller backtest``, ``tiller stress``,
``tiller data ingest``, ``tiller run daily``): done/total, elapsed time and ETA, drawn with
rich on a terminal, and nothing at all otherwise.

The work reports through plain callbacks, ``progress(done, total)``, so the engine and
the stages know nothing about terminals::

    with TerminalProgress.for_command(as_json) as bars:
        backtest(settings, start, end, progress=bars.task("backtest"))

Nothing is drawn when ``--json`` is given or stdout is not a terminal (a pipe, a file, a
test's captured output): then every callback is a no-op and rich is not even imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

ProgressCallback = Callable[[int, int], None]
NamedProgressCallback = Callable[[str, int, int], None]


def _ignore(*_: Any) -> None:
    return None


def wanted(as_json: bool, stream: IO[str] | None = None) -> bool:
    """Whether to draw progress: not for ``--json``, and only when ``stream`` (stdout by
    default) is a terminal."""
    if as_json:
        return False
    out = stream if stream is not None else sys.stdout
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class TerminalProgress:
    """A context manager holding one rich progress display (or none when disabled).

    Parameters
    ----------
    enabled:
        Draw anything at all.
    console:
        The rich console to draw on (default: stdout, the terminal that was checked).
    """

    def __init__(self, enabled: bool, console: Any | None = None) -> None:
        self.enabled = enabled
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    @classmethod
    def for_command(cls, as_json: bool) -> TerminalProgress:
        """Enabled on a terminal unless ``--json`` was given."""
        return cls(wanted(as_json))

    def __enter__(self) -> TerminalProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console or Console(file=sys.stdout),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task(self, description: str) -> ProgressCallback:
        """A ``progress(done, total)`` callback drawing one bar named ``description``.

        The bar is shown at once (pulsing while its total is unknown, e.g. while data
        loads); each call sets how much is done out of how much.
        """
        if self._progress is None:
            return _ignore
        bar = self._bar(description)
        progress = self._progress

        def update(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        return update

    def named(self, template: str = "{name}") -> NamedProgressCallback:
        """A ``progress(name, done, total)`` callback drawing one bar per name (e.g. one
        per stress scenario), each bar labelled ``template.format(name=name)``."""
        if self._progress is None:
            return _ignore
        progress = self._progress

        def update(name: str, done: int, total: int) -> None:
            progress.update(self._bar(template.format(name=name)), completed=done, total=total)

        return update

    def _bar(self, description: str) -> Any:
        if description not in self._tasks:
            self._tasks[description] = self._progress.add_task(description, total=None)
        return self._tasks[description]
