"""Gathers the routers into one: the route table's API, then the probes, browser and docs."""

from __future__ import annotations

from fastapi import APIRouter

from .register import table_router
from .routes import docs, health, ui

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(table_router())
api_router.include_router(ui.router)
api_router.include_router(docs.router)
