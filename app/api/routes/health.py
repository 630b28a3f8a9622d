"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from ...errors import ServiceUnavailable, problem_responses
from ...schemas import HealthResponse
from ...storage import StoreError
from ..deps import StoreDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, operation_id="health-live")
async def healthz() -> HealthResponse:
    """The process answers."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses=problem_responses(503),
    operation_id="health-ready",
)
async def readyz(store: StoreDep) -> HealthResponse:
    """The store answers a query; 503 when it does not."""
    try:
        await store.ping()
    except StoreError as exc:
        raise ServiceUnavailable(f"the database did not answer: {exc}") from exc
    return HealthResponse(status="ready")
