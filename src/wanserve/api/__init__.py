"""The HTTP API: OpenAI-compatible Videos API, SSE events, health, metrics and the web page.

`wanserve.api.app.create_app` builds it. This package imports nothing itself, so the parts a
worker shares with the API (the video object of `schemas`, which webhooks send) load without
FastAPI.
"""
