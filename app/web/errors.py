"""Why a web call was not created, or not ended: the HTTP status, the outcome counted in
`/metrics`, and how long to wait before trying again when waiting helps. `app/api/errors.py`
turns them into responses."""

import math


class WebCallRefused(Exception):
    """A web call request refused: `status_code` for the answer, `outcome` for the metric and
    the log line, `headers` (Retry-After) for the answer."""

    def __init__(
        self,
        status_code: int,
        outcome: str,
        message: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.outcome = outcome
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else {}


class WebCallEndRefused(WebCallRefused):
    """A request to end a web call refused: counted apart from the requests to start one."""
