"""Checkpointed stages: skip what is done, write output and checkpoint in one transaction.

A stage is two functions: ``compute()`` (may call providers or pure maths;
writes nothing) and ``persist(tx, result)`` (writes the stage's output rows in
the given transaction and returns a reference to them).  :func:`run_stage`

* skips the stage when its checkpoint for (flow, as_of) is ``completed``, unless the
  run is forced: a completed stage keeps what it computed from the inputs it saw then
  (a later stage may have changed them: the orders stage moves the book, and so the
  NAV the risk stage reads).  A changed input fingerprint is logged, not acted on;
* ``ingest`` is only kept once the day's ``validate`` has passed: bars it refused were
  moved to quarantine, and the next run fetches them again;
* with ``--force``, recomputes -- except the day's trading decision (``risk``,
  ``optimize``, ``orders``) once that day's ``orders`` stage has completed: the book
  already traded on it, so recomputing from the post-trade book would overwrite the
  decision with numbers nobody traded on and could send orders the day's decision did
  not contain;
* otherwise computes, then persists the output and upserts the checkpoint in
  the **same** transaction, so a crash leaves either both or neither;
* on failure records a ``failed`` checkpoint (its own transaction) and re-raises.

Crash points for the tests: ``TILLER_FAULT_INJECT=<stage>:before_commit`` kills the
process inside a stage's transaction; :func:`fault` marks other points by name (e.g.
``orders:after_submit``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.context import RunContext
from tiller.faults import fault
from tiller.store import Tx
from tiller.store.repo import utcnow

TRADING_DECISION = ("risk", "optimize", "orders")
"""Stages kept as they are, even when forced, once the day's orders stage completed."""

log = logging.getLogger("tiller.checkpoint")


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage in this run."""

    stage: str
    status: str  # completed | skipped | blocked | failed
    output_ref: str | None
    value: Any = None


def fingerprint(*parts: Any) -> str:
    """SHA-256 of the JSON form of ``parts`` (dates and paths via ``str``)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()


def frame_digest(frame: pd.DataFrame | None) -> int:
    """A stable content hash of a frame (values and index), for input fingerprints."""
    if frame is None or frame.empty:
        return 0
    return int(pd.util.hash_pandas_object(frame, index=True).sum())


def run_stage[T](
    ctx: RunContext,
    stage: str,
    input_fingerprint: str,
    compute: Callable[[], T],
    persist: Callable[[Tx, T], tuple[str, str]],
    recompute_on_skip: bool = False,
) -> StageOutcome:
    """Run ``stage`` once for (flow, as_of); see the module docstring.

    ``persist`` returns ``(status, output_ref)``; status is ``completed`` or
    ``blocked`` (the stage ran and its output says later stages must not).
    With ``recompute_on_skip`` a skipped stage still computes its (pure,
    deterministic) value in memory for the stages after it, but writes nothing.
    """
    store = ctx.store
    previous = store.checkpoint(ctx.flow, ctx.as_of, stage)
    if previous is not None and previous.status == "completed" and _keep(ctx, stage):
        if previous.input_fingerprint != input_fingerprint:
            log.info(
                "stage %s for %s is complete; its inputs changed since it ran (a later stage "
                "moved them, or the data or settings changed): kept as it was%s",
                stage,
                ctx.as_of,
                "" if ctx.force else "; rerun with --force to recompute it",
            )
        value = compute() if recompute_on_skip else None
        return StageOutcome(stage, "skipped", previous.output_ref, value)
    started = utcnow()
    try:
        result = compute()
        with store.transaction() as tx:
            status, ref = persist(tx, result)
            store.write_checkpoint(
                tx,
                flow=ctx.flow,
                as_of=ctx.as_of,
                stage=stage,
                status=status,
                run_id=ctx.run_id,
                started_at=started,
                input_fingerprint=input_fingerprint,
                output_ref=ref,
            )
            fault(f"{stage}:before_commit")
    except Exception as exc:
        _record_failure(ctx, stage, started, input_fingerprint, exc)
        raise
    return StageOutcome(stage, status, ref, result)


def _keep(ctx: RunContext, stage: str) -> bool:
    """Whether a completed stage is kept (see the module docstring)."""
    if stage == "ingest" and ctx.flow == "daily-rebalance":
        # data the validation refused was quarantined: fetch it again (a corrected source
        # replaces it) until the day's validation has passed
        checked = ctx.store.checkpoint(ctx.flow, ctx.as_of, "validate")
        if checked is None or checked.status != "completed":
            return False
    if not ctx.force:
        return True
    if ctx.flow != "daily-rebalance" or stage not in TRADING_DECISION:
        return False
    traded = ctx.store.checkpoint(ctx.flow, ctx.as_of, "orders")
    return traded is not None and traded.status == "completed"


def _record_failure(
    ctx: RunContext, stage: str, started: Any, input_fingerprint: str, exc: Exception
) -> None:
    """Mark the stage failed; never let this bookkeeping hide the original error."""
    try:
        with ctx.store.transaction() as tx:
            ctx.store.write_checkpoint(
                tx,
                flow=ctx.flow,
                as_of=ctx.as_of,
                stage=stage,
                status="failed",
                run_id=ctx.run_id,
                started_at=started,
                input_fingerprint=input_fingerprint,
                output_ref=None,
                error=str(exc)[:4000],
            )
    except Exception:  # the database itself may be what failed
        logging.getLogger(__name__).exception("could not record the failure of stage %s", stage)
