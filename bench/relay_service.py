"""The service as the relay benchmark runs it: uvicorn, plus the prometheus metrics on a side
port so the benchmark can read the relay's own frame lateness.

Usage: python bench/relay_service.py APP_PORT METRICS_PORT [WS] (settings from the environment;
WS is uvicorn's WebSocket implementation, default `auto`)."""

import sys

import uvicorn
from prometheus_client import start_http_server


def main() -> None:
    app_port, metrics_port = int(sys.argv[1]), int(sys.argv[2])
    ws = sys.argv[3] if len(sys.argv) > 3 else "auto"
    start_http_server(metrics_port, addr="127.0.0.1")
    uvicorn.run(
        "app.main:app",
        host="127.0.0.1",
        port=app_port,
        ws=ws,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
