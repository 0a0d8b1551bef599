"""HTTP plumbing shared by connectors: base-URL rewriting and a default timeout.

tweepy and simple-salesforce hard-code ``https://`` hosts. Mounting :class:`RewritingAdapter` on
the ``requests.Session`` they use points them at another base URL (a sandbox, a proxy) without
modifying either library. tweepy sets no timeout at all, so the adapter supplies one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

DEFAULT_TIMEOUT = 30.0


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, without a trailing slash or path."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute URL: {url!r}")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RewritingAdapter(HTTPAdapter):
    """Sends requests for one origin to another, and applies a default timeout.

    ``rewrites`` maps the origin a library uses (``https://api.twitter.com``) to the base URL
    to use instead (``http://127.0.0.1:8080`` or ``https://proxy.example/x``). The path of the
    target base is prefixed to the request path.
    """

    def __init__(self, rewrites: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.rewrites = {origin(k): v.rstrip("/") for k, v in rewrites.items()}
        self.timeout = timeout

    def add(self, source_origin: str, target: str) -> None:
        self.rewrites[origin(source_origin)] = target.rstrip("/")

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        try:
            target = self.rewrites.get(origin(url))
        except ValueError:
            target = None
        if target is not None:
            parts = urlsplit(url)
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            request.url = target + rest
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def mount(session: requests.Session, adapter: RewritingAdapter) -> None:
    """Route every request of ``session`` through ``adapter``."""
    session.mount("https://", adapter)
    session.mount("http://", adapter)
