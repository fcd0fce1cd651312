"""Why a generate.py run failed, read from its exit status and the tail of its output.

`failure_of(returncode, output_tail)` is None for exit 0; otherwise a `GeneratePyFailure`: the
error event's code (`oom`, `invalid_spec` when argparse refused the command line, else
`engine_error`) and a message that starts with the cause (the first exception a worker raised,
torchrun's own ChildFailedError summary skipped) followed by the last lines of the output.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

__all__ = ["GeneratePyFailure", "failure_of"]

_EXCEPTION = re.compile(
    r"^(?:\[(?:default|rank)\d+\]:)?\s*(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Exit)|"
    r"KeyboardInterrupt)(?::\s*(?P<detail>.*))?$"
)


@dataclass(frozen=True, slots=True)
class GeneratePyFailure:
    code: str  # ErrorEvent.code: "oom", "invalid_spec", "engine_error"
    message: str


def failure_of(
    returncode: int, output_tail: list[str], tail_lines: int = 30
) -> GeneratePyFailure | None:
    """None when `returncode` is 0; else the cause, with the tail of the output in the message."""
    if returncode == 0:
        return None
    text = "\n".join(output_tail)
    cause = _cause(output_tail)
    if returncode < 0:
        status = f"was killed by {signal.Signals(-returncode).name}"
    else:
        status = f"exited with code {returncode}"
    message = f"generate.py {status}: {cause or 'no exception in its output'}"
    if output_tail:
        message += "\n--- output (last lines) ---\n" + "\n".join(output_tail[-tail_lines:])
    if "out of memory" in text.lower() or "OutOfMemoryError" in text:
        return GeneratePyFailure("oom", message)
    if returncode == 2 and any(": error: " in line for line in output_tail):
        return GeneratePyFailure("invalid_spec", message)  # argparse refused the command line
    return GeneratePyFailure("engine_error", message)


def _cause(lines: list[str]) -> str | None:
    """The first exception a worker raised (torchrun's own ChildFailedError summary skipped)."""
    for line in lines:
        if ": error: " in line:
            return line.strip()
        m = _EXCEPTION.match(line.strip())
        if m and "ChildFailedError" not in m["name"] and "elastic" not in m["name"]:
            return f"{m['name']}: {m['detail']}" if m["detail"] else m["name"]
    return None
