"""distqueue for asyncio code."""

from .cache import Cache

__all__ = ["Cache"]
