"""session-memory: a networked session store for AI agents (the service).

Packages, and what each may import: ``storage`` (the data; only ``config``),
``items`` (the item operations; ``storage``, ``problems``, ``observability``),
``api`` (FastAPI routes, the API's definition; all but ``middleware``) and
``middleware`` (the ASGI chain in front of the app; all but ``api``). ``problems``
holds every problem type; the wire protocol is ``session_memory_client.protocol``.
"""

from __future__ import annotations

from .config import Settings
from .main import create_app

__all__ = ["Settings", "create_app"]
