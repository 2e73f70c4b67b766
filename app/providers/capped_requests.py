"""A `requests` adapter that reads at most `MAX_RESPONSE_BYTES` of an answer, for the provider
SDKs built on requests (Twilio, Plivo): without it, one oversized answer from a provider's API
(or anything impersonating it) is read into memory whole."""

from typing import Any

from requests import PreparedRequest, RequestException, Response
from requests.adapters import HTTPAdapter

from app.http_transport import MAX_RESPONSE_BYTES

CHUNK_BYTES = 64 * 1024


class ResponseTooLarge(RequestException):
    """The answer is longer than the cap; it was not read to the end. The request was sent, so
    the provider may have acted on it."""


class CappedAdapter(HTTPAdapter):
    """An `HTTPAdapter` that reads each answer itself, in chunks, and stops past `max_bytes`."""

    def __init__(self, max_bytes: int = MAX_RESPONSE_BYTES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_bytes = max_bytes

    def send(  # type: ignore[override]
        self, request: PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> Response:
        response = super().send(request, stream=True, **kwargs)
        if stream:
            return response
        try:
            response._content = self._read(request, response)  # what requests reads otherwise
        except ResponseTooLarge:
            response.close()
            raise
        return response

    def _read(self, request: PreparedRequest, response: Response) -> bytes:
        too_large = ResponseTooLarge(
            f"the answer of {response.url} is over {self._max_bytes} bytes",
            request=request,
            response=response,
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise too_large
        body = bytearray()
        for chunk in response.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > self._max_bytes:
                raise too_large
        return bytes(body)
