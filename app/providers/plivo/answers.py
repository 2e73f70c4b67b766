"""Plivo XML, built with the plivo SDK's builders: the one place that imports them, for the
adapter's answers and the transfer driver's alike."""

from types import ModuleType
from typing import Any

from app.calltypes import Answer

PLIVO_XML = "application/xml"


def plivo_xml() -> ModuleType:
    """The plivo SDK's XML builders (`plivoxml`). Importing the SDK loads its REST client too
    (about 11 MiB of memory), so it is imported only by a service that serves Plivo."""
    from plivo import plivoxml

    builders: ModuleType = plivoxml
    return builders


def xml_answer(response: Any) -> Answer:
    """A built `ResponseElement` as the answer Plivo receives."""
    return Answer(response.to_string(False).encode(), PLIVO_XML)
