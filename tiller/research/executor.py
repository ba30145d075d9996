"""Where a study's chunks run: in this process, or on a Dask cluster.

``serial``
    one chunk after the other in this process;
``local``
    a Dask ``LocalCluster`` started and stopped here: one single-threaded worker process
    per core, BLAS, OpenMP and MKL pinned to one thread each (N workers x N BLAS threads
    would oversubscribe the cores);
``tcp://HOST:PORT``
    an existing Dask scheduler (``dask scheduler``, with ``dask worker`` processes on
    other machines, each with Tiller installed).

The price history goes to the workers once (``scatter(broadcast=True)``), not with every
task; each point's result comes back as soon as it is finished and is released on the
cluster at once, so a worker that dies later has nothing finished to recompute (the
Prefect-Dask runner recomputes finished tasks when a worker dies, prefect #15442).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, Self

from tiller.backtest.engine import MarketHistory
from tiller.errors import TillerError
from tiller.research.compute import PointResult, Task, compute

PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ExecutorError(TillerError, ValueError):
    """The executor cannot be used (the message says what to fix)."""


class Executor(Protocol):
    """Runs chunks of tasks on the shared history; yields each chunk's results."""

    name: str

    @property
    def workers(self) -> int: ...

    def run(
        self, chunks: Sequence[list[Task]], market: MarketHistory
    ) -> Iterator[list[PointResult]]: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


POINTS_PER_TASK = 1
"""A point is a backtest of a second or more: a thousand times Dask's per-task overhead
(about a millisecond), so each point is its own task.  Larger tasks would save nothing and
lose more: a worker killed in the middle of a task takes every point of that task with it,
finished or not, and Dask computes them again elsewhere."""


def chunked(tasks: Sequence[Task], size: int = POINTS_PER_TASK) -> list[list[Task]]:
    """``tasks`` in consecutive chunks of ``size``."""
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), max(size, 1))]


class SerialExecutor:
    """Every chunk in this process, in order."""

    name = "serial"

    @property
    def workers(self) -> int:
        return 1

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(
        self, chunks: Sequence[list[Task]], market: MarketHistory
    ) -> Iterator[list[PointResult]]:
        for chunk in chunks:
            yield compute(chunk, market)


class DaskExecutor:
    """Chunks on a Dask cluster: a ``LocalCluster`` (``address`` None) or a scheduler."""

    def __init__(
        self, address: str | None = None, workers: int | None = None, timeout: float = 10.0
    ):
        self.address = address
        self.timeout = timeout
        self.requested = workers or os.cpu_count() or 1
        self.name = address or "local"
        self._cluster: Any = None
        self._client: Any = None

    @property
    def workers(self) -> int:
        if self._client is None:
            return self.requested
        return max(1, len(self._client.scheduler_info()["workers"]))

    def __enter__(self) -> DaskExecutor:
        from distributed import Client, LocalCluster

        if self.address is None:
            self._cluster = LocalCluster(
                n_workers=self.requested,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=PINNED_THREADS,  # passed on to each worker's nanny
            )
            self._client = Client(self._cluster)
            return self
        try:
            self._client = Client(self.address, timeout=f"{self.timeout}s")
        except (OSError, TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {self.address} ({reason}); start "
                "`dask scheduler` there and `dask worker ADDRESS` on each machine, or use "
                "--executor local"
            ) from None
        if not self._client.scheduler_info()["workers"]:
            self._client.wait_for_workers(1, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def run(
        self, chunks: Sequence[list[Task]], market: MarketHistory
    ) -> Iterator[list[PointResult]]:
        from distributed import as_completed

        client = self._client
        if client is None:
            raise ExecutorError("the Dask executor is used outside its `with` block")
        if not chunks:
            return
        shared = client.scatter(market, broadcast=True)
        futures = [
            client.submit(compute, chunk, shared, key=f"tiller-points-{chunk[0].point_hash[:16]}")
            for chunk in chunks
        ]
        for future, results in as_completed(futures, with_results=True):
            future.release()
            yield results
        shared.release()


def executor_for(spec: str, workers: int | None = None) -> Executor:
    """``serial``, ``local`` or ``tcp://HOST:PORT`` (module docstring).

    Raises
    ------
    ExecutorError
        Anything else.
    """
    if spec == "serial":
        return SerialExecutor()
    if spec == "local":
        return DaskExecutor(None, workers)
    if spec.startswith(("tcp://", "tls://")) and ":" in spec.split("://", 1)[1]:
        return DaskExecutor(spec, workers)
    raise ExecutorError(
        f"--executor {spec!r}: use serial, local, or tcp://HOST:PORT of a running Dask scheduler"
    )
