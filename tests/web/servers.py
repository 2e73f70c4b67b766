"""Real loopback servers for the browser tests: the bridge itself, and a stand-in Ultravox
whose REST API creates calls and whose joinUrl WebSocket records who connected."""

import asyncio
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

STANDIN_CALL_ID = "5d1e0000-0000-4000-8000-00000000web1"


@dataclass
class Joined:
    """One WebSocket connection to a call's joinUrl."""

    path: str
    query: dict[str, str]
    closed_by: str | None = None


@dataclass
class HangUp:
    """One `send_data_message` request, and the status the stand-in answered it with."""

    call_id: str
    body: Any
    status: int


@dataclass
class Progress:
    """What the stand-in's `GET /api/calls/{id}` says of a call, as Ultravox's Call object."""

    joined: str | None = None
    ended: str | None = None
    end_reason: str | None = None

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = datetime.now(UTC).isoformat()
            self.end_reason = reason


@dataclass
class StandInUltravox:
    """Ultravox's API as far as a web call needs it. A call is joined when its joinUrl socket
    opens and ends when the socket closes (either side) or a hang-up data message arrives; a
    data message for a call that is not live is refused with 422, as Ultravox does. A hang-up
    does not close the socket itself: every page path that ends a call leaves it too.
    `end_calls` makes the stand-in close each joinUrl socket once the page connected (the agent
    hanging up). `hang_ups`, `progress_reads` and `deleted` record what the bridge asked."""

    end_calls: bool = False
    created: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, Progress] = field(default_factory=dict)
    hang_ups: list[HangUp] = field(default_factory=list)
    hung_up: threading.Event = field(default_factory=threading.Event)
    progress_reads: list[str] = field(default_factory=list)
    progress_read: threading.Event = field(default_factory=threading.Event)
    deleted: list[str] = field(default_factory=list)
    joined: list[Joined] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)

    def app(self, ws_base: str) -> FastAPI:
        app = FastAPI()

        async def create(request: Request) -> JSONResponse:
            self.created.append(json.loads(await request.body()))
            self.calls[STANDIN_CALL_ID] = Progress()
            join_url = f"{ws_base}/calls/{STANDIN_CALL_ID}/join?token=standin"
            return JSONResponse({"callId": STANDIN_CALL_ID, "joinUrl": join_url}, 201)

        async def send_data_message(call_id: str, request: Request) -> Response:
            body = json.loads(await request.body())
            call = self.calls.get(call_id)
            live = call is not None and call.joined is not None and call.ended is None
            if call is not None and live and body.get("type") == "hang_up":
                call.end("agent_hangup")
            status = 204 if live else 422
            self.hang_ups.append(HangUp(call_id, body, status))
            self.hung_up.set()
            return Response(status_code=status)

        async def read(call_id: str) -> JSONResponse:
            self.progress_reads.append(call_id)
            self.progress_read.set()
            call = self.calls.get(call_id)
            if call is None:
                return JSONResponse({"detail": "Not found."}, 404)
            return JSONResponse(
                {
                    "callId": call_id,
                    "joined": call.joined,
                    "ended": call.ended,
                    "endReason": call.end_reason,
                }
            )

        async def delete(call_id: str) -> Response:
            self.deleted.append(call_id)
            self.calls.pop(call_id, None)
            return Response(status_code=204)

        app.add_api_route("/api/calls", create, methods=["POST"])
        app.add_api_route("/api/calls/{call_id}", read, methods=["GET"])
        app.add_api_route("/api/calls/{call_id}", delete, methods=["DELETE"])
        app.add_api_route(
            "/api/calls/{call_id}/send_data_message", send_data_message, methods=["POST"]
        )
        app.add_api_route("/api/agents/{agent_id}/calls", create, methods=["POST"])

        @app.websocket("/calls/{call_id}/join")
        async def join(websocket: WebSocket, call_id: str) -> None:
            await websocket.accept()
            joined = Joined(websocket.url.path, dict(websocket.query_params))
            call = self.calls.setdefault(call_id, Progress())
            call.joined = datetime.now(UTC).isoformat()
            self.joined.append(joined)
            self.connected.set()
            try:
                if self.end_calls:
                    await asyncio.sleep(0.5)
                    joined.closed_by = "ultravox"
                    call.end("agent_hangup")
                    await websocket.close()
                    return
                while True:
                    await websocket.receive_text()
            except WebSocketDisconnect:
                joined.closed_by = joined.closed_by or "page"
                call.end("hangup")
            finally:
                self.closed.set()

        return app
