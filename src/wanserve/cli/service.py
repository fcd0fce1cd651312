"""`wanserve` commands: service (registered on the root app)."""

from __future__ import annotations

from wanserve.cli.app import app  # noqa: F401
