"""Web API clients, one per kind of caller.

- `make_interactive_client`: used inside request handling, before the response reaches Slack.
  It must never sleep through a `Retry-After`: Slack wants its answer within 3 seconds. It
  retries a refused connection once and gives up quickly.
- `make_web_client`: for work off the request path (CLI, jobs). Retries connection errors,
  5xx and 429, honouring `Retry-After`.
- `make_sender_client`: for the outbox. No automatic retries at all: the outbox keeps failed
  calls queued itself, so one rate-limited channel does not hold up the others, and it knows
  when an attempt's outcome is uncertain.
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from feedbot.core.outbox import CALL_TIMEOUT
from feedbot.settings import Settings


def _client(settings: Settings, *, timeout: int) -> WebClient:
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value() or None,
        base_url=settings.slack_api_url,
        timeout=timeout,
    )
    client.retry_handlers = []
    return client


def make_interactive_client(settings: Settings) -> WebClient:
    client = _client(settings, timeout=3)
    client.retry_handlers = [ConnectionErrorRetryHandler(max_retry_count=1)]
    return client


def make_web_client(settings: Settings) -> WebClient:
    client = _client(settings, timeout=15)
    client.retry_handlers = [
        ConnectionErrorRetryHandler(max_retry_count=2),
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=3),
    ]
    return client


def make_sender_client(settings: Settings) -> WebClient:
    return _client(settings, timeout=int(CALL_TIMEOUT.total_seconds()))
