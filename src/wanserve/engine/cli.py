"""`python -m wanserve.engine run|serve`: the engine's process entry points (also under torchrun).

    run   --spec FILE [--events SINK] [--ulysses N] [--cfg-parallel] [--fsdp] [--save-frames F.npy]
    run   --spec FILE --runner generate-py --generate-py-config FILE [--events SINK]
    serve --model ID|DIR [--events SINK] [--ulysses N] [--cfg-parallel] [--fsdp]
          [--commands redis://...?list=KEY [--idle-exit-s S]]
    serve --model ID --runner generate-py --generate-py-config FILE [--events SINK]

`--runner` and `--generate-py-config` default to the settings `engine.runner` and
`engine.generate_py_config` (WANSERVE_ENGINE__RUNNER, ...), so the local backend's processes
run the operator's generate.py when the service is configured so. Logs go to stderr; events go
to the sink (stdout by default); the exit code is an ExitCode.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from wanserve.domain.events import ExitCode

__all__ = ["default_models_dir", "main"]


def default_models_dir() -> Path:
    from wanserve.settings import get_settings

    return get_settings().models_path()


def default_loras_dir(models_dir: Path) -> Path:
    """engine.loras_dir, else `loras/` beside the models directory."""
    from wanserve.settings import get_settings

    return get_settings().engine.loras_dir or Path(models_dir).parent / "loras"


def add_runner_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runner",
        choices=["diffusers", "generate-py"],
        default=None,
        help="diffusers: this engine; generate-py: the operator's Wan2.2 generate.py "
        "(default: the setting engine.runner)",
    )
    parser.add_argument(
        "--generate-py-config",
        type=Path,
        default=None,
        help="GeneratePyConfig file (default: engine.generate_py_config)",
    )


def add_parallel_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", default=None, help="-/stdout, a file, or redis://...?stream=K")
    parser.add_argument("--ulysses", type=int, default=1, help="Ulysses sequence-parallel degree")
    parser.add_argument("--cfg-parallel", action="store_true", help="cond/uncond on 2 rank groups")
    parser.add_argument("--fsdp", action="store_true", help="shard experts and text encoder")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--loras-dir", type=Path, default=None, help="default: loras/ beside it")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wanserve.engine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one VideoSpec (JSON file) and exit")
    run.add_argument("--spec", type=Path, required=True)
    run.add_argument("--save-frames", type=Path, default=None, help="debug: decoded frames .npy")
    add_runner_flags(run)
    add_parallel_flags(run)
    serve = commands.add_parser("serve", help="load once, run specs sent on stdin (warm engine)")
    serve.add_argument("--model", required=True, help="a model id or a checkpoint directory")
    serve.add_argument(
        "--commands", default=None, help="redis://...?list=KEY: read commands there, not stdin"
    )
    serve.add_argument(
        "--idle-exit-s",
        type=float,
        default=0.0,
        help="with --commands: stop after this many seconds without a command (0: never)",
    )
    add_runner_flags(serve)
    add_parallel_flags(serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging()
    _resolve_runner(args)
    if args.runner == "generate-py" or args.generate_py_config:
        _check_generate_py_flags(parser, args)
        if args.command == "serve":
            from wanserve.engine.generate_py.serve import serve_generate_py

            return int(serve_generate_py(args.model, args.generate_py_config, args.events))
        from wanserve.engine.generate_py.cli import run_from_files

        return int(run_from_files(args.spec, args.generate_py_config, args.events))
    from wanserve.engine.parallel import ParallelPlan

    plan = ParallelPlan(ulysses=args.ulysses, cfg_parallel=args.cfg_parallel, fsdp=args.fsdp)
    models_dir = args.models_dir or default_models_dir()
    if args.command == "serve":
        from wanserve.engine.serve import ServeOptions, serve

        loras_dir = args.loras_dir or default_loras_dir(models_dir)
        options = ServeOptions(
            args.model,
            plan,
            models_dir,
            args.events,
            args.device,
            args.dtype,
            loras_dir,
            commands=args.commands,
            idle_exit_s=args.idle_exit_s,
        )
        return int(serve(options))
    return int(_run(args, plan, models_dir))


def _resolve_runner(args: argparse.Namespace) -> None:
    """Flags win; else the settings (only read when a flag is missing)."""
    if args.runner is not None and (args.runner == "diffusers" or args.generate_py_config):
        return
    from wanserve.settings import get_settings

    engine = get_settings().engine
    if args.runner is None:
        args.runner = "generate-py" if engine.runner == "generate_py" else "diffusers"
    if args.runner == "generate-py" and args.generate_py_config is None:
        args.generate_py_config = engine.generate_py_config


def _check_generate_py_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """generate.py takes its parallelism from its config: engine-only flags are errors (exit 2)."""
    if args.runner != "generate-py":
        parser.error("--generate-py-config needs --runner generate-py")
    if args.generate_py_config is None:
        parser.error("--runner generate-py needs --generate-py-config FILE")
    defaults: dict[str, object] = {"ulysses": 1, "cfg_parallel": False, "fsdp": False}
    defaults |= {"save_frames": None, "models_dir": None, "device": "auto", "dtype": "auto"}
    defaults |= {"loras_dir": None, "commands": None, "idle_exit_s": 0.0}
    for name, default in defaults.items():
        if getattr(args, name, default) != default:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} is for --runner diffusers (generate.py reads its config)")


def _run(args: argparse.Namespace, plan: object, models_dir: Path) -> ExitCode:
    from wanserve.domain.spec import VideoSpec
    from wanserve.engine.job import JobOptions, run_job

    options = JobOptions(
        plan=plan,  # type: ignore[arg-type]
        models_dir=models_dir,
        events=args.events,
        device=args.device,
        dtype=args.dtype,
        save_frames=args.save_frames,
        loras_dir=args.loras_dir or default_loras_dir(models_dir),
    )
    return run_job(lambda _rank_ctx: VideoSpec.model_validate_json(args.spec.read_text()), options)


def _setup_logging() -> None:
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("WANSERVE_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s",
    )
    # compat: diffusers and transformers print progress bars and warnings we do not need.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
