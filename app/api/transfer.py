"""Transfer endpoints: the agent's transfer tool (called by Ultravox with a per-call
credential) and the providers' callbacks while a transfer runs (signed like their webhooks)."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import SettingsDep
from app.api.webhooks import webhook_request
from app.providers.base import WebhookError
from app.store import StoreError
from app.transfer.flow import TOOL_PATH, TransferDesk
from app.transfer.tool import TOKEN_HEADER

logger = logging.getLogger("app.transfer")

router = APIRouter(prefix="/transfer", tags=["transfer"])

# The tool's JSON is a few short strings; anything larger is not from Ultravox.
MAX_TOOL_BODY_BYTES = 16 * 1024


async def get_desk(request: Request) -> TransferDesk | None:
    desk: TransferDesk | None = getattr(request.app.state, "transfers", None)
    return desk


DeskDep = Annotated[TransferDesk | None, Depends(get_desk)]
NOT_CONFIGURED = "no route offers transfers"


def _plain(status_code: int, text: str) -> Response:
    return Response(f"{text}\n", status_code=status_code, media_type="text/plain")


@router.post(TOOL_PATH.removeprefix("/transfer"))
async def transfer_tool(request: Request, desk: DeskDep) -> Response:
    """The agent's transfer tool: hand the caller to one of the route's targets."""
    if desk is None:
        return JSONResponse({"result": "not_found"}, status_code=404)
    token = request.headers.get(TOKEN_HEADER, "")
    if not token:  # refused before the body is read: strangers cost nothing
        return JSONResponse({"result": "forbidden"}, status_code=403)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_TOOL_BODY_BYTES:
        return JSONResponse({"result": "too_large"}, status_code=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_TOOL_BODY_BYTES:
            return JSONResponse({"result": "too_large"}, status_code=413)
    answer = await desk.request(token, bytes(body))
    if answer.status_code == 403:
        logger.warning("transfer.tool_forbidden", extra={"fields": {"status": 403}})
    headers = {"X-Ultravox-Agent-Reaction": answer.reaction} if answer.reaction else None
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


@router.api_route("/{provider}/{transfer_id}/{step}", methods=["GET", "POST"])
async def transfer_callback(
    provider: str,
    transfer_id: str,
    step: str,
    request: Request,
    settings: SettingsDep,
    desk: DeskDep,
) -> Response:
    """A provider's callback during a transfer: dial outcomes, whisper, key presses."""
    if desk is None:
        return _plain(404, NOT_CONFIGURED)
    try:
        webhook = await webhook_request(request, settings.public_base_url)
        answer = await desk.callback(provider, transfer_id, step, webhook)
    except WebhookError as exc:
        logger.warning(
            "transfer.callback_refused",
            extra={"fields": {"provider": provider, "step": step, "status": exc.status_code}},
        )
        return _plain(exc.status_code, str(exc))
    except StoreError as exc:
        logger.warning("transfer.store_unavailable", extra={"fields": {"error": str(exc)}})
        return _plain(503, "the shared store is unavailable")
    return Response(content=answer.body, media_type=answer.media_type)
