"""Secret references: ``env:NAME``, ``file:/path``, ``cred:NAME`` (systemd credentials).

A config file names where a secret lives, never the secret itself. The value is read when a
connector needs it and is never part of a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

SCHEMES = ("env", "file", "cred")


class Secret:
    """A resolved-on-demand secret. ``str()`` and ``repr()`` show only where it comes from."""

    __slots__ = ("_ref",)

    def __init__(self, ref: str) -> None:
        scheme, sep, rest = ref.partition(":")
        if not sep or scheme not in SCHEMES or not rest:
            raise ValueError("must be a secret reference: 'env:NAME', 'file:/path' or 'cred:NAME'")
        self._ref = ref

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
        elif scheme == "file":
            value = _read(Path(rest), f"file {rest}")
        else:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ValueError(
                    f"systemd credential {rest} requested but $CREDENTIALS_DIRECTORY is not set"
                )
            value = _read(Path(creds) / rest, f"systemd credential {rest}")
        value = value.strip()
        if not value:
            raise ValueError(f"{self._ref} is empty")
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
    except OSError as exc:
        raise ValueError(f"{what} cannot be read ({exc.strerror})") from None


def _to_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError(
            "must be a string secret reference ('env:NAME', 'file:/path', 'cred:NAME')"
        )
    secret = Secret(value)
    secret.check()
    return secret


# The name settings models use for a secret field.
SecretRef = Secret
