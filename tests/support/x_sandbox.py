"""Helpers for the X sandbox tests: a settable clock, raw GETs, and OpenAPI response checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import requests
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from sandbox.x.api import XSandbox
from support import FIXTURES

TOKEN = "sandbox-x-bearer"


@dataclass
class Clock:
    """A clock the test moves by hand, so rate-limit windows and timestamps are exact."""

    now: datetime = field(default_factory=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def get(
    sandbox: XSandbox, path: str, token: str | None = TOKEN, **params: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(sandbox.url + path, params=params, headers=headers, timeout=5)


def recorded(name: str) -> dict[str, Any]:
    """A recorded X response from fixtures/x-api-v2-json/: request_url, status, headers, body."""
    doc: dict[str, Any] = json.loads((FIXTURES / "x-api-v2-json" / f"{name}.json").read_text())
    return doc


class Spec:
    """One X OpenAPI document; validates a response body against an operation's schema.

    ``$ref``s resolve inside the document, registered under the URI ``spec``.
    """

    def __init__(self, version: str) -> None:
        path = FIXTURES / "x-openapi" / f"openapi-{version}.json"
        self.version = version
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self.registry: Registry[Any] = Registry().with_resource(
            "spec", DRAFT4.create_resource(self.doc)
        )

    def schema_ref(self, path: str, status: int) -> str:
        responses = self.doc["paths"][path]["get"]["responses"]
        if str(status) in responses:
            ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
        else:  # X sends problem bodies for errors
            ref = responses["default"]["content"]["application/problem+json"]["schema"]["$ref"]
        return str(ref)

    def errors(self, path: str, status: int, body: Any) -> list[str]:
        """Schema violations of ``body`` as a response of ``GET path`` (empty when valid)."""
        validator = OAS30Validator(
            {"$ref": "spec" + self.schema_ref(path, status)},
            registry=self.registry,
            format_checker=oas30_format_checker,
        )
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator.iter_errors(body)
        ]


@cache
def spec(version: str) -> Spec:
    return Spec(version)
