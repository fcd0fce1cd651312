"""`wanserve up`, `wanserve api`, `wanserve worker`: the service processes.

`up` runs everything on one machine (embedded Valkey, SQLite, the API with the web page and one
dispatcher with the local backend); `api` and `worker` are the production processes and read
everything from WANSERVE_* settings. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wanserve.cli.app import app

__all__ = ["api", "up", "worker"]


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address to bind the API and web page to.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port of the API and web page.")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where queue, database, videos and models live.")
    ] = None,
    allow_open: Annotated[
        bool, typer.Option(help="Allow a non-loopback bind without API keys.")
    ] = False,
) -> None:
    """Run the whole service on this machine: queue, store, API + web page, one worker."""
    from wanserve.cli.embedded import run_up, up_settings

    settings = up_settings(host=host, port=port, data_dir=data_dir, allow_open=allow_open)
    raise typer.Exit(run_up(settings))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (WANSERVE_API__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (WANSERVE_API__PORT).")] = None,
) -> None:
    """Run the API server (production): store, queue and artifacts from WANSERVE_* settings."""
    from wanserve.cli.processes import run_api
    from wanserve.settings import get_settings

    settings = get_settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update={"api": settings.api.model_copy(update=overrides)})
    raise typer.Exit(run_api(settings))


@app.command()
def worker(
    worker_id: Annotated[str | None, typer.Option(help="Name of this worker in leases.")] = None,
) -> None:
    """Run one dispatcher (production): leases tasks and runs them on the configured backend."""
    from wanserve.cli.processes import run_worker
    from wanserve.settings import get_settings

    raise typer.Exit(run_worker(get_settings(), worker_id=worker_id))
