"""Liveness and readiness probes, and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ...problems import ServiceUnavailable
from ...storage import StoreError
from ..deps import services_of
from ..errors import problem_responses
from ..schemas import HealthResponse

__all__ = ["router"]

router = APIRouter(tags=["health"])

logger = logging.getLogger("session_memory")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    operation_id="ops-metrics",
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, items written and read, batch sizes, errors."""
    registry = services_of(request.app).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


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
async def readyz(request: Request) -> HealthResponse:
    """The store answers a query; 503 when it does not."""
    try:
        await services_of(request.app).store.ping()
    except StoreError as exc:
        # The driver's text can name hosts, users and paths: it goes to the log only.
        logger.warning("readiness check failed: %s", exc)
        raise ServiceUnavailable("the database did not answer") from exc
    return HealthResponse(status="ready")
