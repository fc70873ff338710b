"""Who acted anonymously, kept from everyone but feedbot itself.

The Slack id of an anonymous reporter, and of anyone who said *me too*, is stored only
sealed (encrypted, with a fresh nonce each time, so two seals of one id look unrelated) with
a key from the environment (`FEEDBOT_SECRET_KEY`). A database dump, a backup, an export or a
curious DBA sees ciphertext. feedbot opens a seal only to address a notice to that person.

Finding a person's own anonymous reports (their `/feedback mine`, their rate limit) needs a
lookup key: a keyed hash of their id (`reporter_key`). Without the secret it names nobody;
it does tell a database reader that two anonymous reports came from the same person, which
no output of feedbot ever shows (see docs/privacy.md). Keys that are not for finding a
person across reports include what they belong to (the report, say), and link nothing.

A lost secret only means anonymous reporters no longer hear back: their seals cannot be
opened any more, and no report is lost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

SEALED = "sealed:"
"""Prefix of outbox conversations whose recipient is known only through a seal."""
SEALED_TO = "_to"
"""Outbox payload key: the sealed user a direct message goes to."""
SEALED_USER = "_user"
"""Outbox payload key: the sealed user an ephemeral message or a Home tab is for."""

MIN_SECRET = 32
"""Characters a secret key needs at least (`new_secret` makes 43)."""


def new_secret() -> str:
    """A fresh random key for `FEEDBOT_SECRET_KEY`."""
    return secrets.token_urlsafe(32)


class Identities:
    """Seals, opens and blinds Slack ids with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"the secret key needs at least {MIN_SECRET} characters")
        raw = secret.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(raw, b"seal")))
        self._blind = _derive(raw, b"blind")

    def seal(self, user_id: str) -> str:
        return self._fernet.encrypt(user_id.encode()).decode("ascii")

    def open(self, sealed: str | None) -> str | None:
        """The id in `sealed`; None if there is none or it was sealed with another key."""
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            return None

    def key(self, purpose: str, *parts: object) -> str:
        """A lookup key for `parts`, useless without the secret."""
        message = "\x1f".join([purpose, *map(str, parts)]).encode()
        return hmac.new(self._blind, message, hashlib.sha256).hexdigest()[:40]

    def reporter_key(self, user_id: str) -> str:
        """Finds a person's own anonymous reports (and only that)."""
        return self.key("reporter", user_id)

    def me_too_key(self, report_id: int, user_id: str) -> str:
        """Tells whether a person already said *me too* on one report."""
        return self.key("me-too", report_id, user_id)

    def conversation(self, scope: object, user_id: str) -> str:
        """The outbox conversation of direct messages to a person who acts anonymously, about
        one `scope` (a report's id, say): they keep their order, and link to nothing else."""
        return SEALED + self.key("conversation", scope, user_id)[:32]


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, b"feedbot:" + label, hashlib.sha256).digest()
