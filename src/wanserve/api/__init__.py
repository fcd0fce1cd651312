"""The HTTP API: OpenAI-compatible Videos API, SSE events, health, metrics and the web page."""
