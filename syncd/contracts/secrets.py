"""Secret references: ``env:NAME``, ``file:/path``, ``cred:NAME`` (systemd credentials).

A config file names where a secret lives, never the secret itself. The value is read when a
connector needs it and is never part of a ``repr``, a log line or an error message.

``cred:NAME`` is the file ``$CREDENTIALS_DIRECTORY/NAME`` that systemd's ``LoadCredential=``
hands the unit. An admin command run outside the unit (``sudo syncd status``) has no such
variable: it reads ``NAME`` from the config's ``[secrets] credentials_directory`` instead
(default /etc/syncd/credentials, where the unit's ``LoadCredential=`` lines load them from).

:func:`masked` takes secret values out of a text (logs, stored errors): every form a value
may show in (a line of it, its escaped form), never one so short it would mask ordinary text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

SCHEMES = ("env", "file", "cred")


# What a reference names is shown in messages ("environment variable SF_PASSWORD is not set").
# A name that does not look like one may be the secret itself pasted after the scheme
# ("env:hunter2!"), so it is only shown when it has the shape of a name.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
FORMS = "'env:NAME', 'file:/absolute/path' or 'cred:NAME'"
DEFAULT_CREDENTIALS_DIRECTORY = Path("/etc/syncd/credentials")
# The [secrets] credentials_directory of the config being read: each Secret made meanwhile
# keeps it (see credentials_fallback), so a reveal much later reads from the same place.
_FALLBACK: ContextVar[Path | None] = ContextVar("syncd_credentials_fallback", default=None)
# Shorter values are not masked as substrings: "a" would blank every "a" of a line, and a
# short value is a guessable one anyway (config warns: syncd.contracts.redaction.protect_settings).
MIN_MASKED = 8


@contextmanager
def credentials_fallback(directory: Path | None) -> Iterator[None]:
    """While validating a config: where its ``cred:`` references are read from when
    ``$CREDENTIALS_DIRECTORY`` is not set (an admin command outside the unit)."""
    token = _FALLBACK.set(directory)
    try:
        yield
    finally:
        _FALLBACK.reset(token)


def mask_forms(value: str) -> set[str]:
    """What to look for to take ``value`` out of a text: the value, its escaped forms (an
    error message may quote it with repr or JSON: ``\\n`` for a line break) and each of its
    lines, for a text that breaks it where the value breaks. Forms under MIN_MASKED drop."""
    forms = {value, value.encode("unicode_escape").decode("ascii"), json.dumps(value)[1:-1]}
    forms.update(re.split(r"[\r\n]+", value))
    return {f for f in forms if len(f) >= MIN_MASKED}


def masked(text: str, values: Iterable[str], replacement: str = "[redacted]") -> str:
    """``text`` with every form of each secret value (:func:`mask_forms`) replaced."""
    forms: set[str] = set()
    for value in values:
        forms |= mask_forms(value)
    for form in sorted(forms, key=len, reverse=True):  # longest first: one may hold another
        if form in text:
            text = text.replace(form, replacement)
    return text


class Secret:
    """A resolved-on-demand secret. ``str()`` and ``repr()`` show only where it comes from."""

    __slots__ = ("_fallback", "_ref")

    def __init__(self, ref: str) -> None:
        # Messages never quote ``ref``: a value that is not a reference is likely the secret.
        scheme, sep, rest = ref.partition(":")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"must be a secret reference ({FORMS}), not the secret itself")
        if not rest.strip():
            raise ValueError(f"a secret reference needs a name after the scheme: use {FORMS}")
        if scheme == "env" and not _ENV_NAME.fullmatch(rest):
            raise ValueError("env: must name an environment variable (letters, digits, '_')")
        if scheme == "cred" and not _CRED_NAME.fullmatch(rest):
            raise ValueError("cred: must name a systemd credential (a file name, no '/')")
        if scheme == "file" and not rest.startswith("/"):
            # The daemon's working directory is '/' under systemd, so a relative path would
            # silently mean something other than what the author saw in their shell.
            raise ValueError("file: must be followed by an absolute path ('file:/etc/syncd/…')")
        self._ref = ref
        self._fallback = _FALLBACK.get()

    @property
    def ref(self) -> str:
        return self._ref

    def check(self) -> None:
        """Raise ValueError naming what is missing (never the value) if it cannot be read."""
        self.reveal()

    def reveal(self) -> str:
        scheme, _, rest = self._ref.partition(":")
        if scheme == "env":
            value = os.environ.get(rest)
            if value is None:
                raise ValueError(f"environment variable {rest} is not set")
            what = f"environment variable {rest}"
        elif scheme == "file":
            what = f"file {rest}"
            value = _read(Path(rest), what)
        else:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if creds:
                what = f"systemd credential {rest}"
                value = _read(Path(creds) / rest, what)
            elif self._fallback is not None:
                # Outside the unit: the same file LoadCredential= loads (readable by root).
                path = self._fallback / rest
                what = (
                    f"systemd credential {rest} ($CREDENTIALS_DIRECTORY is not set: outside "
                    f"the unit it is read from {path}, [secrets] credentials_directory)"
                )
                value = _read(path, what)
            else:
                raise ValueError(
                    f"systemd credential {rest} requested but $CREDENTIALS_DIRECTORY is not set "
                    "(cred: works under systemd with LoadCredential=; elsewhere use env: or file:)"
                )
        value = value.strip()
        if not value:
            raise ValueError(f"{what} is empty")
        return value

    def __repr__(self) -> str:
        return f"Secret({self._ref!r})"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Validates the reference *and* that it can be read, so a config check names the key.
        return core_schema.no_info_plain_validator_function(
            _to_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: s.ref),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} is a directory, not a file") from None
    except PermissionError:
        # Name the reader: under systemd the daemon runs as its own user, not as the admin.
        raise ValueError(f"{what} is not readable by uid {os.geteuid()}") from None
    except UnicodeDecodeError:
        # The codec's own message quotes a byte of the content.
        raise ValueError(f"{what} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{what} cannot be read ({exc.strerror})") from None


def _to_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a secret reference in quotes ({FORMS})")
    secret = Secret(value)
    secret.check()
    return secret


# The name settings models use for a secret field.
SecretRef = Secret
