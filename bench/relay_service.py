"""The service as the relay benchmark runs it: uvicorn, plus the prometheus metrics on a side
port so the benchmark can read the relay's own frame lateness.

Usage: python bench/relay_service.py APP_PORT METRICS_PORT [WS] (settings from the environment;
WS is the WebSocket protocol: `service`, the default, for the service's own, or uvicorn's)."""

import sys

import uvicorn
from prometheus_client import start_http_server

from app.ws_protocol import LeanWebSocketProtocol


def main() -> None:
    app_port, metrics_port = int(sys.argv[1]), int(sys.argv[2])
    ws = sys.argv[3] if len(sys.argv) > 3 else "service"
    start_http_server(metrics_port, addr="127.0.0.1")
    uvicorn.run(
        "app.main:app",
        host="127.0.0.1",
        port=app_port,
        ws=LeanWebSocketProtocol if ws == "service" else ws,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
