"""Which sites may start web calls: the browser's `Origin`, checked against WEB_ALLOWED_ORIGINS
and this service's own address, and the CORS headers that let an allowed page read the answer."""

from urllib.parse import urlsplit

from app.settings import ServiceSettings


def origin_allowed(origin: str | None, host: str | None, settings: ServiceSettings) -> bool:
    """Whether a browser's `Origin` may start web calls: one of WEB_ALLOWED_ORIGINS, or this
    service's own pages (the Origin's host is the request's Host, or PUBLIC_BASE_URL's)."""
    if not origin or origin == "null":
        return False
    if origin.lower() in settings.web_allowed_origins:
        return True
    netloc = urlsplit(origin).netloc.lower()
    own = {host.lower()} if host else set()
    if settings.public_base_url:
        own.add(urlsplit(settings.public_base_url).netloc.lower())
    return bool(netloc) and netloc in own


def cors_headers(origin: str) -> dict[str, str]:
    """The headers that let the page of `origin` (an allowed one) read an answer."""
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
