"""A Ray Serve replica of several ranks gives the one-process video (tests/fixtures/ray.py).

The application is deployed straight from `build` and called through its handle, as the `ray`
backend does; the request asks the replica for the decoded frames too (`save_frames`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.engine.conftest import OneRankRun, make_spec
from wanserve.domain.events import ResultEvent, parse_event

serve = pytest.importorskip("ray.serve")

from wanserve.backends.ray.app import build  # noqa: E402
from wanserve.backends.ray.config import AppArgs  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def _generate(name: str, args: AppArgs, spec: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Deploy `args` as `name`, run `spec` on its replica; (the result item, all events)."""
    handle = serve.run(build(args.model_dump()), name=name, route_prefix=None)
    items = list(handle.options(stream=True).generate.remote({"spec": spec, "save_frames": True}))
    events = [parse_event(item["event"]) for item in items if "event" in item]
    placed = next(item for item in items if "rank0" in item)
    result = next(item for item in items if "files" in item)
    return {**result, "nodes": placed["nodes"]}, events


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"equal-{request.node.name[-20:].strip('_').replace('_', '-')}"
    yield name
    serve.delete(name)  # its CPUs, for the next test on this Ray


LAYOUTS = {
    "ulysses-packed": ("STRICT_PACK", {"ulysses": 2}),
    "ulysses-spread": ("SPREAD", {"ulysses": 2}),
    "cfg-fsdp": ("STRICT_PACK", {"cfg_parallel": True, "fsdp": True}),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_two_rank_replica_gives_the_one_process_frames(
    ray_cluster: str, tiny_a14b: Path, one_rank_run: OneRankRun, app_name: str, layout: str
) -> None:
    # ray_cluster: this process joined the session's two-node Ray
    strategy, plan = LAYOUTS[layout]
    args = AppArgs(
        model=tiny_a14b.name,
        models_dir=str(tiny_a14b.parent),
        ranks=2,
        device="cpu",
        placement_strategy=strategy,  # type: ignore[arg-type]
        cpus_per_rank=1,
        **plan,
    )
    out = Path(tempfile.mkdtemp())
    spec = make_spec(tiny_a14b, out / "unused")  # the replica loaded it; it sets the output
    result, events = _generate(app_name, args, spec)
    assert isinstance(events[-1], ResultEvent), events
    assert events[-1].frames == 9
    (out / "frames.npy").write_bytes(result["files"]["frames.npy"])
    frames = np.load(out / "frames.npy")
    assert frames.shape == one_rank_run.frames.shape
    assert np.abs(frames - one_rank_run.frames).max() <= 1e-4
    nodes = result["nodes"]
    assert len(nodes) == 2
    if strategy == "SPREAD":  # one rank on each node of the cluster
        assert nodes[0] != nodes[1]
    else:
        assert nodes[0] == nodes[1]
