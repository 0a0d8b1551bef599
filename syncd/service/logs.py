"""Logging setup: readable on a terminal, leveled lines for journald, JSON for shippers.

``auto`` picks the journal format when stderr *is* the journal: systemd sets
``$JOURNAL_STREAM`` to the device and inode of the stream it connected (systemd.exec(5)). That,
not ``$INVOCATION_ID``, is the test: a unit may send stderr to a file, and a child process may
inherit the variable with stderr redirected; both want timestamps. Under the journal each line
starts with a ``<N>`` syslog priority, which journald strips and stores as the entry's level
(so ``journalctl -p warning`` works), and carries no timestamp (journald adds its own).

Every format passes its output through :func:`redact`: the configured secrets' values (see
:func:`protect`) and credential-shaped text (bearer tokens, session ids, ``password=``) never
reach a log line, an exception message or a traceback included.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import BaseModel
from sqlalchemy.exc import StatementError

import connectors
from syncd.contracts.secrets import MIN_MASKED, Secret, mask_forms

_PRIORITY = {  # syslog priorities, as sd-daemon(3) prefixes them
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
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


class HumanFormatter(logging.Formatter):
    def __init__(self, *, date: bool = False) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S",
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``; every line of a traceback gets the prefix, as journald splits
    the stream into one entry per line and an unprefixed line would be logged at info."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        text = redact(super().format(record))
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and, if any, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def stream_is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal connection systemd named in $JOURNAL_STREAM."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def formatter(fmt: str, stream: TextIO) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "auto" and stream_is_journal(stream):
        return JournalFormatter()
    # A terminal has the date in view; a file or a pipe is read days later.
    return HumanFormatter(date=not stream.isatty())


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    handler.addFilter(hide_statement_parameters)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (every HTTP connection) is noise at INFO.
    for noisy in ("urllib3", "apscheduler", *connectors.LIBRARY_LOGGERS, "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    scheduler = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _BusyJobFilter) for f in scheduler.filters):
        scheduler.addFilter(_BusyJobFilter())


def hide_statement_parameters(record: logging.LogRecord) -> bool:
    """Keep the parameters of a failed SQL statement (people's posts and names) out of the
    line: the state engines hide them already; this covers an error from any other engine,
    in the traceback and in the message's arguments alike."""
    found = [record.exc_info[1]] if record.exc_info else []
    found += [a for a in _record_args(record) if isinstance(a, BaseException)]
    for exc in found:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, StatementError):
                current.hide_parameters = True
            current = current.__cause__ or current.__context__
    return True


def _record_args(record: logging.LogRecord) -> list[object]:
    args = record.args
    if isinstance(args, tuple):
        return list(args)
    return list(args.values()) if isinstance(args, dict) else []


class _BusyJobFilter(logging.Filter):
    """Drops APScheduler's warning that a job was still running when due again. The daemon
    asks the resolver and writer to run soon after every poll that queued something; under
    load they are busy, and the next run picks the work up: not a problem, and it came
    several times a second."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()
