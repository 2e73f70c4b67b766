"""Liveness and readiness probes."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import BridgeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, bridge: BridgeDep) -> JSONResponse:
    """Ready for calls: at least one provider can be served and the service is not shutting down."""
    providers = {name: adapter.ready for name, adapter in bridge.adapters.items()}
    draining = bool(getattr(request.app.state, "draining", False))
    ready = any(providers.values()) and not draining
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "draining": draining, "providers": providers},
        status_code=200 if ready else 503,
    )
