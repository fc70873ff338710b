"""One HTTP call to a receiver, and what its answer means for a retry."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from feedbot.models import (
    utcnow,
)


@dataclass(frozen=True)
class Attempt:
    """What one POST to a receiver came to."""

    ok: bool
    status: int | None
    error: str
    retry: bool
    """Worth trying again (network, 408, 429, 5xx); otherwise the receiver refused for good."""
    retry_after: float | None = None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Attempt:
    """One POST; redirects are not followed (a receiver that moved must be updated)."""
    if urlsplit(url).scheme not in ("https", "http"):
        return Attempt(False, None, "not an http(s) URL", retry=False)
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (checked)
    for name, value in {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "feedbot-webhooks/1",
        **headers,
    }.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(1024)
            return Attempt(True, response.status, "", retry=False)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry = status in (408, 429) or status >= 500
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed: update the webhook's URL)"
        return Attempt(False, status, error, retry, retry_after(exc.headers.get("Retry-After")))
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Attempt(False, None, f"{type(exc).__name__}: {reason}"[:300], retry=True)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def retry_after(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - utcnow()).total_seconds(), 0.0)
