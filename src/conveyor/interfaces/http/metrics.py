"""``GET /metrics``: the stream's Prometheus metrics in the text format."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from conveyor.interfaces.http.schemas import error_responses
from conveyor.observability.metrics import CONTENT_TYPE, RunMetrics


async def run_metrics(request: Request) -> RunMetrics:
    """The app's metrics registry (a dependency)."""
    metrics: RunMetrics = request.app.state.metrics
    return metrics


router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
async def metrics_text(metrics: Annotated[RunMetrics, Depends(run_metrics)]) -> Any:
    """The stream's Prometheus metrics (text format)."""
    body = await asyncio.to_thread(metrics.exposition)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)
