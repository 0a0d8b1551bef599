"""What never reaches a log line or stored state: the configured secrets' values and
credential-shaped text.

:func:`protect` registers values (every configured secret, read by :func:`protect_settings`
when a configuration is loaded); :func:`redact` takes them and credential shapes (bearer
tokens, Salesforce session ids, ``password=``) out of a text. Log formatters pass each line
through it, and error text is passed through :func:`redact_stored` on its way into state.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from syncd.contracts.secrets import MIN_MASKED, Secret, mask_forms

_CREDENTIAL_SHAPES = [
    (re.compile(r"(Bearer|OAuth)\s+[^\s'\",}]+"), r"\1 [redacted]"),
    # A Salesforce session id: org id, '!', the token.
    (re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]+"), "[redacted]"),
    (
        re.compile(
            r"(?<![\w-])(password|passwd|secret|client_secret|token|access_token|refresh_token"
            r"|security_token|session_id|sid|api_key"
            # An OAuth 1.0a Authorization header's credentials and signature.
            r"|oauth_token|oauth_consumer_key|oauth_signature"
            r")(['\"]?\s*[:=]\s*['\"]?)[^\s'\"&,}]+",
            re.IGNORECASE,
        ),
        r"\1\2[redacted]",
    ),
]
# Every form of the configured secrets' values to take out of a line (see mask_forms: a
# value, its escaped forms and its lines, none shorter than MIN_MASKED).
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def protect(values: Iterable[str]) -> None:
    """Never write these values (the configured secrets) to a log line or to stored state."""
    with _secrets_lock:
        for value in values:
            _secrets.update(mask_forms(value))


def protect_settings(settings: Any) -> None:
    """Read every secret a settings object refers to and :func:`protect` its value. One
    shorter than MIN_MASKED cannot be masked without masking ordinary text: said each time
    a configuration is loaded (a command, a start, a reload)."""
    found = list(_secret_values(settings, ""))
    protect(value for _, value in found)
    for where, value in found:
        if len(value) < MIN_MASKED:
            logging.getLogger("syncd.secrets").warning(
                "%s is shorter than %d characters: too short to be masked in logs and stored "
                "errors (it would mask ordinary text) and easy to guess; use a longer one",
                where,
                MIN_MASKED,
            )


def _secret_values(obj: Any, where: str) -> Iterable[tuple[str, str]]:
    """(key path, value) of every secret in a settings object."""
    if isinstance(obj, Secret):
        try:
            yield where, obj.reveal()
        except ValueError:  # unreadable now: nothing of it can be logged either
            return
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secret_values(getattr(obj, name), _key(where, name))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _secret_values(value, _key(where, str(key)))
    elif isinstance(obj, list | tuple | set | frozenset):
        for n, value in enumerate(obj):
            yield from _secret_values(value, f"{where}[{n}]")
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _secret_values(getattr(obj, name), _key(where, name))


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def redact(text: str) -> str:
    """``text`` without the configured secrets' values and credential-shaped text: for log
    lines, and for error text before it is stored (``syncd.state.tables.RedactedText``)."""
    with _secrets_lock:
        forms = sorted(_secrets, key=len, reverse=True)
    for form in forms:  # longest first: one secret may contain another
        if form in text:
            text = text.replace(form, "[redacted]")
    for pattern, replacement in _CREDENTIAL_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_stored(text: str) -> str:
    """:func:`redact` for error text on its way into state. Writers clip such text to a
    column's length, which may cut a secret: a secret's beginning at the very end (its first
    MIN_MASKED characters at least) is taken out too."""
    text = redact(text)
    with _secrets_lock:
        forms = list(_secrets)
    for form in forms:
        for n in range(len(form) - 1, MIN_MASKED - 1, -1):
            if text.endswith(form[:n]):
                text = text[:-n] + "[redacted]"
                break
    return text
