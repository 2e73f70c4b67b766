"""Transfer endpoints: the agent's transfer tool (called by Ultravox with a per-call
credential) and the providers' callbacks while a transfer runs (signed like their webhooks).
Refusals are raised and answered by app/api/errors.py."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import SettingsDep
from app.api.webhooks import read_body, webhook_request
from app.transfer.flow import TOOL_PATH, TransferDesk, UnknownTransfer
from app.transfer.tool import TOKEN_HEADER, ToolRefused

router = APIRouter(prefix="/transfer", tags=["transfer"])

# The tool's JSON is a few short strings; anything larger is not from Ultravox.
MAX_TOOL_BODY_BYTES = 16 * 1024
NOT_CONFIGURED = "no route offers transfers"


async def get_desk(request: Request) -> TransferDesk | None:
    desk: TransferDesk | None = getattr(request.app.state, "transfers", None)
    return desk


DeskDep = Annotated[TransferDesk | None, Depends(get_desk)]


@router.post(TOOL_PATH.removeprefix("/transfer"))
async def transfer_tool(request: Request, desk: DeskDep) -> Response:
    """The agent's transfer tool: hand the caller to one of the route's targets."""
    if desk is None:
        raise ToolRefused(404, "not_found")
    token = request.headers.get(TOKEN_HEADER, "")
    if not token:  # refused before the body is read: strangers cost nothing
        raise ToolRefused(403, "forbidden")
    answer = await desk.request(token, await read_body(request, MAX_TOOL_BODY_BYTES))
    headers = {}
    if answer.reaction:
        headers["X-Ultravox-Agent-Reaction"] = answer.reaction
    if answer.response_type:
        headers["X-Ultravox-Response-Type"] = answer.response_type
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
        raise UnknownTransfer(NOT_CONFIGURED)
    webhook = await webhook_request(request, settings.public_base_url)
    answer = await desk.callback(provider, transfer_id, step, webhook)
    return Response(content=answer.body, media_type=answer.media_type)
