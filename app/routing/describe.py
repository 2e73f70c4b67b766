"""The routing table as text, in the order calls are matched (for `check-config`)."""

from app.routing.table import RejectTarget, Route, RoutingTable, describe_target

HEADER = ("NUMBER", "PROVIDER", "CALLER PREFIX", "TARGET", "ROUTE", "FALLBACK")


def routing_table_lines(table: RoutingTable) -> list[str]:
    """One aligned line per (number, provider, caller prefix), under a header."""
    rows = [HEADER]
    for number, provider, prefix, route in table.entries():
        rows.append(
            (
                number or "any",
                provider or "any",
                prefix or "any",
                describe_target(route.target),
                route.name,
                _fallback(route),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _fallback(route: Route) -> str:
    if isinstance(route.target, RejectTarget):
        return "-"
    number = route.fallback.dial_number
    return f"dial {number}" if number else "hang up"
