"""The Wan2.2 engine: runs a VideoSpec in one process or under torchrun (`engine` extra)."""
