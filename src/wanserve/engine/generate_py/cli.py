"""`python -m wanserve.engine.generate_py`: the generate.py runner's own command line.

    --spec SPEC.json --config CONFIG [--events SINK] [--node-rank N]

SINK as for `python -m wanserve.engine run`: `-`/`stdout` (default), a file, or a redis://
stream. `--node-rank` (several nodes: the config's `nnodes` > 1) is this node's rank; only node
0 reports to SINK, the others print their events to stdout.
`python -m wanserve.engine run --runner generate-py --generate-py-config CONFIG` runs the same
`run_from_files`. Logs go to stderr; the exit code is an ExitCode.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import ExitCode
from wanserve.domain.spec import VideoSpec
from wanserve.engine.generate_py.command import GeneratePyConfig
from wanserve.engine.generate_py.runner import GeneratePyRunner

__all__ = ["main", "run_from_files"]


def run_from_files(
    spec_path: Path, config_path: Path, events: str | None, node_rank: int = 0
) -> ExitCode:
    """Run the VideoSpec in `spec_path` with the GeneratePyConfig in `config_path`, events to
    the sink `events` names (what both command lines do); on a node other than the first,
    to stdout (node 0 speaks for the group)."""
    from wanserve.engine.sinks import open_sink

    spec = VideoSpec.model_validate_json(spec_path.read_text())
    config = GeneratePyConfig.from_file(config_path)
    runner = GeneratePyRunner(config, node_rank=node_rank)
    sink = open_sink(events if node_rank == 0 else None)
    try:
        return runner.run(spec, sink)
    finally:
        sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wanserve.engine.generate_py")
    parser.add_argument("--spec", type=Path, required=True, help="VideoSpec JSON file")
    parser.add_argument("--config", type=Path, required=True, help="GeneratePyConfig JSON/YAML")
    parser.add_argument("--events", default=None, help="-/stdout, a file, or redis://...?stream=K")
    parser.add_argument("--node-rank", type=int, default=0, help="this node (nnodes > 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        return int(run_from_files(args.spec, args.config, args.events, args.node_rank))
    except InvalidRequest as exc:
        parser.error(str(exc))
