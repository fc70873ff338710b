"""Process settings: everything read from the environment and `.env`, validated once.

Runtime configuration that admins change while the bot runs (channels, leaders, …) lives in
the database instead (see `feedbot.core.config`); this module holds only what a process needs
before it can reach the database or Slack.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from feedbot.core.identity import MIN_SECRET, Identities
from feedbot.errors import ConfigurationError

SLACK_API_URL = "https://slack.com/api/"
SIGNING_SECRET_LENGTH = 32
"""Slack's signing secrets are 32 hex digits; anything shorter is a typo or a stand-in that
a stranger could guess and sign requests with."""
USER_ID_PATTERN = re.compile(r"^[UW][A-Z0-9]{2,}$")

# Where an operator finds each secret; used in the start-up message when one is missing.
SECRET_SOURCES = {
    "SLACK_BOT_TOKEN": "api.slack.com/apps → your app → OAuth & Permissions → Bot User OAuth Token (xoxb-…)",
    "SLACK_SIGNING_SECRET": "api.slack.com/apps → your app → Basic Information → App Credentials → Signing Secret",
    "SLACK_APP_TOKEN": "api.slack.com/apps → your app → Basic Information → App-Level Tokens, scope connections:write (xapp-…)",
    "FEEDBOT_SECRET_KEY": "any random text of 32 characters or more, kept safe; `feedbot secret-key --ensure .env` writes one (make run does it for you)",
}

# The token kinds Slack issues for each variable; pasting one token into the other's place is
# the most common set-up mistake, and Slack would only answer `not_allowed_token_type` later.
SECRET_PREFIXES = {
    "SLACK_BOT_TOKEN": ("xoxb-", "xoxe.xoxb-"),
    "SLACK_APP_TOKEN": ("xapp-",),
}

# Stand-in words count only as whole words (between non-alphanumerics): real tokens end in
# 24 random letters and digits, and a plain substring search for "xxx" or "your" rejected
# about one real token in 1,300.
_PLACEHOLDER_WORD = re.compile(
    r"(?<![A-Za-z0-9])(your|change[-_ ]?me|replace[-_ ]?me|placeholder|example|todo|x{3,})"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_PLACEHOLDER_MARK = re.compile(r"\.\.\.|…|[<>]")


def is_placeholder(value: str) -> bool:
    """True for empty values and the obvious stand-ins shipped in `.env.example`."""
    return (
        not value.strip()
        or bool(_PLACEHOLDER_WORD.search(value))
        or bool(_PLACEHOLDER_MARK.search(value))
    )


class Settings(BaseSettings):
    """One validated view of the environment. Build it with `get_settings()` or directly in tests."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr = SecretStr("")
    slack_signing_secret: SecretStr = SecretStr("")
    slack_app_token: SecretStr = SecretStr("")
    feedbot_secret_key: SecretStr = SecretStr("")
    slack_api_url: str = SLACK_API_URL
    database_url: str = "sqlite:///feedbot.db"
    # Every interface by default: Slack, a load balancer or Prometheus must reach the listener.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = Field(default=3000, ge=1, le=65535)
    feedbot_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    feedbot_timezone: str = "Europe/Berlin"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # "process": `feedbot run` works its inbox in a child process, so acks and the work
    # behind them do not share one interpreter; "thread": both in one process.
    inbox_workers: Literal["process", "thread"] = "process"

    @field_validator("feedbot_admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("feedbot_admins")
    @classmethod
    def _check_admins(cls, value: list[str]) -> list[str]:
        bad = [user for user in value if not USER_ID_PATTERN.match(user)]
        if bad:
            raise ValueError(f"not Slack user IDs (like U012AB3CD): {', '.join(bad)}")
        return value

    @field_validator("feedbot_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r} (try Europe/Berlin)") from exc
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(
                "empty; use 0.0.0.0 for every interface or 127.0.0.1 for this host only"
            )
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slash_terminated(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def socket_mode_available(self) -> bool:
        return not is_placeholder(self.slack_app_token.get_secret_value())

    def secret_problems(self, *, socket_mode: bool) -> dict[str, str]:
        """What is wrong with each secret the chosen connection mode needs, by variable name."""
        needed = [
            "SLACK_BOT_TOKEN",
            "SLACK_APP_TOKEN" if socket_mode else "SLACK_SIGNING_SECRET",
            "FEEDBOT_SECRET_KEY",
        ]
        problems: dict[str, str] = {}
        for name in needed:
            value = getattr(self, name.lower()).get_secret_value().strip()
            prefixes = SECRET_PREFIXES.get(name, ())
            if not value:
                problems[name] = "not set"
            elif is_placeholder(value):
                problems[name] = "still a placeholder"
            elif prefixes and not value.startswith(prefixes):
                problems[name] = f"not a {prefixes[0]}… token"
            elif name == "SLACK_SIGNING_SECRET" and len(value) < SIGNING_SECRET_LENGTH:
                problems[name] = f"shorter than Slack's {SIGNING_SECRET_LENGTH} characters"
            elif name == "FEEDBOT_SECRET_KEY" and len(value) < MIN_SECRET:
                problems[name] = f"shorter than {MIN_SECRET} characters"
        return problems

    def missing_secrets(self, *, socket_mode: bool) -> list[str]:
        """Names of the secrets the chosen connection mode needs but does not have."""
        return list(self.secret_problems(socket_mode=socket_mode))

    def require_secrets(self, *, socket_mode: bool) -> None:
        """Raise one `ConfigurationError` that names every missing secret and where to get it."""
        problems = self.secret_problems(socket_mode=socket_mode)
        if problems:
            mode = "Socket Mode" if socket_mode else "HTTP mode"
            lines = [
                f"  {name} ({problem}): {SECRET_SOURCES[name]}"
                for name, problem in problems.items()
            ]
            raise ConfigurationError(
                f"feedbot cannot connect to Slack yet ({mode}). Set these in the environment or "
                "in .env (`make run` makes it from .env.example):\n" + "\n".join(lines) + "\n"
                "Create the Slack app first with the manifest from `feedbot manifest`."
            )

    @property
    def secret_key(self) -> str:
        """FEEDBOT_SECRET_KEY, or "" when unset."""
        return self.feedbot_secret_key.get_secret_value().strip()

    def identities(self) -> Identities:
        """What seals the ids of people who act anonymously; a `ConfigurationError` saying
        how to make a key when there is none."""
        if len(self.secret_key) < MIN_SECRET:
            raise ConfigurationError(
                "FEEDBOT_SECRET_KEY is not set (or shorter than 32 characters): feedbot seals "
                "the Slack ids of anonymous reporters with it.\n"
                f"  FEEDBOT_SECRET_KEY: {SECRET_SOURCES['FEEDBOT_SECRET_KEY']}"
            )
        return Identities(self.secret_key)

    def secret_values(self) -> list[str]:
        """The secrets as set, so log output can be scrubbed of them whatever their format."""
        values = (
            self.slack_bot_token.get_secret_value(),
            self.slack_signing_secret.get_secret_value(),
            self.slack_app_token.get_secret_value(),
            self.feedbot_secret_key.get_secret_value(),
        )
        return [value for value in values if len(value.strip()) >= 8]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
