"""The HTTP API: OpenAI-compatible Videos API, SSE events, health, metrics and the web page."""

from wanserve.api.app import create_app

__all__ = ["create_app"]
