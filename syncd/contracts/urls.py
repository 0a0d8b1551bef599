"""Which addresses syncd may talk to without TLS: loopback only.

Passwords, security tokens, session ids and bearer tokens travel in every request to X and
Salesforce. Over ``http://`` anyone on the path reads them, so plain HTTP is accepted only for
this host (the sandbox stand-ins, a local TLS-terminating proxy): ``localhost``, 127.0.0.0/8
and ``::1``. Config validators refuse anything else (:func:`require_tls`), and the connectors'
HTTP adapter refuses to send there (a redirect, an address an API answered with).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_ONLY = "plain http:// is allowed only to this host (localhost, 127.0.0.0/8, ::1)"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP addresses (an IPv4-mapped one too)."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def plain_http_to_elsewhere(url: str) -> bool:
    """True when ``url`` would go unencrypted to another host."""
    parts = urlsplit(url)
    try:
        host = parts.hostname
    except ValueError:
        return True
    return parts.scheme.lower() == "http" and not is_loopback_host(host)


def require_tls(url: str) -> str:
    """``url``, or ValueError when it is ``http://`` to a host other than this one."""
    if plain_http_to_elsewhere(url):
        host = urlsplit(url).hostname or "?"
        raise ValueError(
            f"credentials would cross the network unencrypted to {host}: use https:// "
            f"({LOOPBACK_ONLY})"
        )
    return url


def base_url(value: str, example: str) -> str:
    """A connector's base URL as configured: absolute http(s), a host and a valid port, no
    query or fragment (paths are appended to it), TLS unless to this host; no trailing slash.
    ValueError (the config reports it under the key) otherwise."""
    parts = urlsplit(value.strip())
    try:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port
        ok = False
    if not ok or parts.query or parts.fragment:
        raise ValueError(f"must be an absolute http(s) URL without a query, e.g. {example}")
    return require_tls(value.strip()).rstrip("/")
