"""Real loopback servers for the browser tests: the bridge itself, and a stand-in Ultravox
whose REST API creates calls and whose joinUrl WebSocket records who connected."""

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from tests.redis_server import free_port

STANDIN_CALL_ID = "5d1e0000-0000-4000-8000-00000000web1"


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            self._thread.join(0.05)
        raise RuntimeError(f"server on port {self.port} did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Joined:
    """One WebSocket connection to a call's joinUrl."""

    path: str
    query: dict[str, str]
    closed_by: str | None = None


@dataclass
class StandInUltravox:
    """Ultravox's API as far as a web call needs it. `end_calls` makes it close each joinUrl
    socket itself once the page connected (the agent hanging up). `deleted` records the calls
    the bridge deleted (ended)."""

    end_calls: bool = False
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deleted_event: threading.Event = field(default_factory=threading.Event)
    joined: list[Joined] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)

    def app(self, ws_base: str) -> FastAPI:
        app = FastAPI()

        async def create(request: Request) -> JSONResponse:
            self.created.append(json.loads(await request.body()))
            join_url = f"{ws_base}/calls/{STANDIN_CALL_ID}/join?token=standin"
            return JSONResponse({"callId": STANDIN_CALL_ID, "joinUrl": join_url}, 201)

        async def delete(call_id: str) -> Response:
            self.deleted.append(call_id)
            self.deleted_event.set()
            return Response(status_code=204)

        app.add_api_route("/api/calls", create, methods=["POST"])
        app.add_api_route("/api/calls/{call_id}", delete, methods=["DELETE"])
        app.add_api_route("/api/agents/{agent_id}/calls", create, methods=["POST"])

        @app.websocket("/calls/{call_id}/join")
        async def join(websocket: WebSocket, call_id: str) -> None:
            await websocket.accept()
            joined = Joined(websocket.url.path, dict(websocket.query_params))
            self.joined.append(joined)
            self.connected.set()
            try:
                if self.end_calls:
                    await asyncio.sleep(0.5)
                    joined.closed_by = "ultravox"
                    await websocket.close()
                    return
                while True:
                    await websocket.receive_text()
            except WebSocketDisconnect:
                joined.closed_by = joined.closed_by or "page"
            finally:
                self.closed.set()

        return app
