"""Prometheus metrics for scraping (see `app/metrics.py` for what is counted)."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics() -> Response:
    """Every `bridge_` metric in Prometheus's text format (see `app.metrics.exposition`)."""
    return Response(content=exposition(), media_type=CONTENT_TYPE_LATEST)
