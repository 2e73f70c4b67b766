"""Reloading the routes file while the service runs (on SIGHUP), without dropping calls: the file
is read in a worker thread so webhooks keep being answered, the new table replaces the old one in
a single assignment, and an invalid file leaves the old one in force."""

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from app.routing.routes_file import load_routing_table
from app.routing.table import RoutingTable
from app.settings import ConfigError, ServiceSettings

logger = logging.getLogger("app.routing")


class HasRouting(Protocol):
    """What holds the table in force (the `Bridge`)."""

    routing: RoutingTable


def reload_routing(holder: HasRouting, settings: ServiceSettings) -> bool:
    """Read ROUTES_FILE again and put its table in force; True when it did. On any error the
    table in force stays and the error is logged."""
    path = settings.routes_file
    if path is None:
        logger.warning(
            "routes.reload_skipped", extra={"fields": {"reason": "ROUTES_FILE is not set"}}
        )
        return False
    try:
        table = load_routing_table(path, settings)
    except ConfigError as exc:
        logger.error(
            "routes.reload_failed",
            extra={"fields": {"file": str(path), "error": str(exc), "kept": "previous table"}},
        )
        return False
    except Exception:
        # A reload runs beside live calls: whatever went wrong, the table in force must stay.
        logger.exception(
            "routes.reload_failed", extra={"fields": {"file": str(path), "kept": "previous table"}}
        )
        return False
    holder.routing = table
    logger.info(
        "routes.reloaded",
        extra={
            "fields": {
                "file": str(path),
                "routes": len(table.rules),
                "default": table.default.name if table.default else "none",
            }
        },
    )
    return True


@asynccontextmanager
async def reload_on_sighup(holder: HasRouting, settings: ServiceSettings) -> AsyncIterator[None]:
    """While inside, SIGHUP reloads the routes file; a reload under way is awaited on exit."""
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be installed from the main thread (an app run in a thread).
        logger.warning(
            "routes.sighup_unavailable", extra={"fields": {"reason": "not the main thread"}}
        )
        yield
        return
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Future[bool]] = set()

    def on_sighup() -> None:
        reload = asyncio.ensure_future(asyncio.to_thread(reload_routing, holder, settings))
        reloads.add(reload)
        reload.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads)
