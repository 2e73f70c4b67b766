"""Prometheus metrics for scraping (see `app/metrics.py` for what is counted)."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics() -> Response:
    """Every `bridge_` metric (and the Python process's own) in Prometheus's text format."""
    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)
