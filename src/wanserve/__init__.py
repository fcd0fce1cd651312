"""wanserve: Wan2.2 video generation as an online service."""

__version__ = "0.1.0"
__all__ = ["__version__"]
