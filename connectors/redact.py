"""Keep secrets out of everything segsync prints, logs or stores.

Secrets enter only through :func:`read_secret`, which remembers each value; the CLI's log
handler and error printer pass all text through :func:`scrub`. URLs get their query
strings masked too, since some OAuth flows put tokens there.
"""

from __future__ import annotations

import os
import re
import threading

from connectors.errors import AuthError

__all__ = ["read_secret", "register_secret", "sanitize_url", "scrub"]

MASK = "[redacted]"
_MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
_secrets: set[str] = set()
_guard = threading.Lock()
_SENSITIVE_QUERY = re.compile(
    r"(?i)([?&](?:access_token|refresh_token|token|client_secret|password|hapikey|code)=)[^&#\s]*"
)


def register_secret(value: str) -> None:
    if len(value) >= _MIN_SECRET_LENGTH:
        with _guard:
            _secrets.add(value)


def read_secret(env_name: str, purpose: str) -> str:
    """The value of a secret's environment variable, remembered for scrubbing."""
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise AuthError(f"environment variable {env_name} (named by {purpose}) is not set")
    register_secret(value)
    return value


def sanitize_url(url: str) -> str:
    return _SENSITIVE_QUERY.sub(lambda m: m.group(1) + MASK, url)


def scrub(text: str) -> str:
    """Replace every known secret in ``text``, longest first, and mask URL credentials."""
    with _guard:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    return sanitize_url(text)
