"""Placeholders in inline calls' text: `{{callerNumber}}`, `{{calledNumber}}` and `{{provider}}`,
the syntax Ultravox uses for agents' templateContext, filled in by the bridge for each call.

A text is split into literals and placeholder names once, when the routes file is loaded, so an
unknown name is a start-up error and filling a call in is a join."""

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
CALL_PLACEHOLDERS = ("callerNumber", "calledNumber", "provider")


class UnknownPlaceholder(ValueError):
    """A text uses a placeholder the bridge does not fill."""

    def __init__(self, names: Iterable[str], known: Iterable[str] = CALL_PLACEHOLDERS) -> None:
        unknown = ", ".join("{{" + name + "}}" for name in names)
        filled = ", ".join("{{" + name + "}}" for name in known)
        super().__init__(f"unknown placeholder {unknown}; the bridge fills {filled}")


@dataclass(frozen=True)
class _Text:
    """A string split by `PLACEHOLDER`: literals at even positions, names at odd ones."""

    parts: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> str:
        return "".join(values[part] if index % 2 else part for index, part in enumerate(self.parts))


@dataclass(frozen=True)
class Template:
    """A JSON value (text, or lists and objects holding text) with placeholders in it."""

    compiled: Any

    def fill(self, values: Mapping[str, str]) -> Any:
        """The value with every placeholder replaced by its value from `values`."""
        return _fill(self.compiled, values)


def compile_value(value: Any, names: Collection[str] = CALL_PLACEHOLDERS) -> Template | None:
    """`value` as a template, None if it has no placeholder; `UnknownPlaceholder` if it uses a
    name not in `names` (those the bridge fills: a phone call's by default)."""
    compiled = _compile(value, names)
    return Template(compiled) if compiled != value else None


def _compile(value: Any, names: Collection[str]) -> Any:
    if isinstance(value, str):
        parts = PLACEHOLDER.split(value)
        if len(parts) == 1:
            return value
        unknown = sorted({name for name in parts[1::2] if name not in names})
        if unknown:
            raise UnknownPlaceholder(unknown, names)
        return _Text(tuple(parts))
    if isinstance(value, list):
        return [_compile(item, names) for item in value]
    if isinstance(value, dict):
        return {key: _compile(item, names) for key, item in value.items()}
    return value


def _fill(compiled: Any, values: Mapping[str, str]) -> Any:
    if isinstance(compiled, _Text):
        return compiled.fill(values)
    if isinstance(compiled, list):
        return [_fill(item, values) for item in compiled]
    if isinstance(compiled, dict):
        return {key: _fill(item, values) for key, item in compiled.items()}
    return compiled
