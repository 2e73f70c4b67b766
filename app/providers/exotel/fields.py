"""The fields of a request from Exotel, whichever way they come. The method and encoding of the
Voicebot applet's request are undocumented, and StatusCallback has been documented as both
multipart form and JSON, so a query, a urlencoded or multipart form and a JSON object are all
read, each field once."""

import json
from collections.abc import Sequence
from email.parser import BytesParser
from email.policy import HTTP

from app.calltypes import MalformedWebhook, WebhookRequest, check_field_count
from app.providers.base import single_values


def request_fields(request: WebhookRequest) -> dict[str, str]:
    """The query's fields and the body's together; a field given twice (in both, or repeated
    in one) is refused, as it is for every provider."""
    pairs = list(request.query)
    if request.method == "POST" and request.body:
        pairs += _body_fields(request)
    return single_values(pairs)


def _body_fields(request: WebhookRequest) -> Sequence[tuple[str, str]]:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "application/json" or (not media_type and request.body[:1] == b"{"):
        return _json_fields(request.body)
    if media_type == "multipart/form-data":
        return _multipart_fields(content_type, request.body)
    return request.form()


def _json_fields(body: bytes) -> list[tuple[str, str]]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedWebhook("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedWebhook("the body is not a JSON object")
    check_field_count(len(data), "JSON object")
    # Scalars as the text a form would carry; nested values (a status callback's Legs) as JSON.
    return [
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in data.items()
        if value is not None
    ]


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    check_field_count(body.lower().count(b"content-disposition"), "form")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise MalformedWebhook("the multipart body cannot be read")
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        try:
            fields.append((name, payload.decode("utf-8")))
        except UnicodeDecodeError:
            raise MalformedWebhook(f"field {name} is not UTF-8") from None
    return fields
