"""Helpers for routing tests: a routes file written from YAML text, and settings that use it."""

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from app.config import Settings
from tests.conftest import make_settings


class RoutesFile:
    """A routes file in the test's temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> Path:
        self.path.write_text(dedent(text), encoding="utf-8")
        return self.path

    def settings(self, text: str | None = None, **overrides: Any) -> Settings:
        if text is not None:
            self.write(text)
        return make_settings(routes_file=self.path, **overrides)


@pytest.fixture
def routes_file(tmp_path: Path) -> RoutesFile:
    return RoutesFile(tmp_path / "routes.yaml")
