"""session-memory: a networked session store for AI agents (the service)."""

from __future__ import annotations

from .config import Settings
from .main import create_app

__all__ = ["Settings", "create_app"]
