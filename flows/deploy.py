"""Deployments on a Prefect work pool: ``tiller deploy --pool NAME``.

The production alternative to ``tiller serve``: ``daily-rebalance`` and
``weekly-review`` are registered with the Prefect server (same names, cron schedules,
descriptions and tags as the served deployments in ``flows/serve.py``) on a *process*
work pool, and every run is executed by a ``prefect worker start --pool NAME`` process,
on this machine or another one.

There is no image and no remote code storage: the code is a Tiller checkout on the
worker's machine. Each deployment's pull step sets the flow run's working directory to
that checkout (``code_dir``, by default this checkout; workers elsewhere need a checkout
at the same path, or deploy with ``--code-dir``), and the flow file is loaded from there
by the worker's own Python, so a worker started from the checkout's environment
(``uv run prefect worker start ...``) runs the flows with it. Nothing of Tiller's
configuration is stored in the deployment: the flow run inherits the worker's
environment, so ``TILLER_*`` settings and API keys come from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tiller.errors import TillerError

POOL_DEPLOYMENTS = ("daily-rebalance", "weekly-review", "research-sweep")
CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding flows/, tiller/, config/


@dataclass(frozen=True)
class Deployed:
    """One deployment registered on the pool."""

    name: str  # flow/deployment, as ``prefect deployment run`` takes it
    deployment_id: str
    schedules: list[str]


def pool_deployments(code_dir: Path = CHECKOUT) -> list[Any]:
    """The served deployments that go to a work pool, with their code in ``code_dir``.

    They are the objects ``flows/serve.py`` builds (one definition for both set-ups),
    given a local storage (a pull step that sets the working directory to ``code_dir``)
    and an entrypoint relative to the checkout rather than to this process's cwd."""
    from prefect.runner.storage import LocalStorage

    from flows.serve import deployments

    chosen = [d for d in deployments() if d.name in POOL_DEPLOYMENTS]
    for deployment in chosen:
        assert deployment.entrypoint, deployment.name  # to_deployment sets file:function
        path, _, function = deployment.entrypoint.rpartition(":")
        flow_file = (Path.cwd() / path).resolve()
        deployment.entrypoint = f"{flow_file.relative_to(CHECKOUT).as_posix()}:{function}"
        deployment.storage = LocalStorage(path=str(code_dir))
    return chosen


def _ensure_pool(pool: str, create: bool) -> None:
    """Check the work pool exists; create it as a process pool when asked to."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
        except ObjectNotFound:
            if not create:
                raise TillerError(
                    f"work pool {pool!r} does not exist on the Prefect server: pass "
                    f"--create-pool, or create it with `prefect work-pool create {pool} "
                    "--type process`"
                ) from None
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type=ProcessWorker.type,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            return
        if found.type != ProcessWorker.type:
            raise TillerError(
                f"work pool {pool!r} is a {found.type!r} pool: Tiller deploys to a process "
                "pool (its workers run the flows from a checkout with its environment)"
            )


def _api_url() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise TillerError(
            "PREFECT_API_URL is not set: point it at the Prefect server the workers poll, "
            "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return str(url)


def deploy_to_pool(
    pool: str, create_pool: bool = False, code_dir: Path | None = None
) -> list[Deployed]:
    """Register ``daily-rebalance`` and ``weekly-review`` on the process work pool ``pool``
    of the server at ``PREFECT_API_URL`` (created when missing and ``create_pool``);
    runs then wait for a ``prefect worker start --pool POOL`` to pick them up."""
    import httpx
    from prefect.deployments.runner import deploy

    url = _api_url()
    folder = (code_dir or CHECKOUT).expanduser().resolve()
    if code_dir is None and not (folder / "flows" / "daily_rebalance.py").is_file():
        raise TillerError(f"{folder} is not a Tiller checkout: pass --code-dir")
    chosen = pool_deployments(folder)
    try:
        _ensure_pool(pool, create_pool)
        ids = deploy(  # sync here: async_dispatch runs the sync variant outside a loop
            *chosen,
            work_pool_name=pool,
            build=False,
            push=False,
            print_next_steps_message=False,
            ignore_warnings=True,  # the "use serve for local development" hint
        )
    except httpx.TransportError as exc:
        raise TillerError(f"cannot reach the Prefect server at {url}: {exc}") from exc
    except httpx.HTTPStatusError as exc:
        raise TillerError(f"the Prefect server at {url} refused the deployment: {exc}") from exc
    return [
        Deployed(
            name=f"{d.flow_name}/{d.name}",
            deployment_id=str(deployment_id),
            schedules=[
                f"{s.schedule.cron} {s.schedule.timezone}"
                for s in d.schedules
                if getattr(s.schedule, "cron", None)
            ],
        )
        for d, deployment_id in zip(chosen, cast(list[Any], ids), strict=True)
    ]
