"""Routes open to browsers (`web:` in the routes file): what a web call of the route gets.

A browser has no phone numbers, so a web call's text may use `{{provider}}` (`web`) and the
context fields the route lets the page pass, never `{{callerNumber}}` or `{{calledNumber}}`: a
route whose inline text uses them must give `web.systemPrompt` instead, or start-up says so."""

from dataclasses import replace
from typing import Any

from app.routing.placeholders import Template, UnknownPlaceholder, compile_value
from app.routing.schema import TEMPLATED_FIELDS, WEB_ROUTE_NAME, WebOptions
from app.routing.table import AgentTarget, InlineTarget, Target, WebAccess

WEB_PROVIDER = "web"
# The placeholders a web call fills besides the page's context fields.
WEB_PLACEHOLDERS = ("provider",)


def web_access(name: str, options: WebOptions, target: Target) -> WebAccess:
    """The web side of route `name`; `ValueError` (its message names the field) when the route
    cannot be opened to browsers as written."""
    if not WEB_ROUTE_NAME.match(name):
        raise ValueError(
            "a route open to the web needs a `name:` of letters, digits, - and _ (at most 64): "
            f"browsers reach it as /talk/<name>, and {name!r} cannot be"
        )
    if not isinstance(target, AgentTarget | InlineTarget):
        raise ValueError("a reject route cannot be open to the web: remove `web:`")
    if isinstance(target, AgentTarget) and options.systemPrompt is not None:
        raise ValueError(
            "systemPrompt: an agent call cannot set systemPrompt: change it on the agent, or "
            "make this an inline route"
        )
    fields: dict[str, Any] = dict(target.call_fields)
    if options.systemPrompt is not None:
        fields["systemPrompt"] = options.systemPrompt
    if options.greeting is not None:
        # Ultravox speaks `text` as the agent's first words (firstSpeakerSettings.agent.text).
        fields["firstSpeakerSettings"] = {"agent": {"text": options.greeting}}
    names = (*WEB_PLACEHOLDERS, *options.context)
    templated: dict[str, Template] = {}
    for key in (*TEMPLATED_FIELDS, "firstSpeakerSettings"):
        if key not in fields:
            continue
        try:
            template = compile_value(fields[key], names)
        except UnknownPlaceholder as exc:
            hint = "; give web.systemPrompt" if key == "systemPrompt" else ""
            raise ValueError(f"{key}: a web call has no phone numbers: {exc}{hint}") from None
        if template is not None:
            templated[key] = template
    web_target: AgentTarget | InlineTarget = (
        replace(target, call_fields=fields)
        if isinstance(target, AgentTarget)
        else InlineTarget(call_fields=fields)
    )
    return WebAccess(web_target, templated, frozenset(options.context), options.maxDuration)
