"""The session browser: one self-contained page at /ui (no build step, no external assets)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(tags=["ui"])

_PAGE = files("session_memory").joinpath("static/ui.html").read_bytes()


@router.get("/ui", include_in_schema=False)
async def ui() -> HTMLResponse:
    """A read-only browser for sessions and their items."""
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})
