"""Gathers the routers into one."""

from __future__ import annotations

from fastapi import APIRouter

from .routes import docs, health, history, items, sessions, ui

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(sessions.router)
api_router.include_router(items.router)
api_router.include_router(history.router)
api_router.include_router(ui.router)
api_router.include_router(docs.router)
