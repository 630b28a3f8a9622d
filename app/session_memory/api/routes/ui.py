"""The front door: the session browser, one self-contained page at /ui (no build step, no
external assets), and ``/``, which sends a browser there and other clients an index."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["ui"])

_PAGE = files("session_memory").joinpath("static/ui.html").read_bytes()


@router.get("/ui", include_in_schema=False)
async def ui() -> HTMLResponse:
    """A read-only browser for sessions and their items."""
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False, response_model=None)
async def front_door(request: Request) -> Response:
    """A browser goes to the session browser; any other client gets an index of links."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui", status_code=307)
    return JSONResponse(
        {
            "service": "session-memory",
            "version": request.app.version,
            "ui": "/ui",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "sessions": "/v1/sessions",
            "health": "/healthz",
        }
    )
