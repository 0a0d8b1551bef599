"""Logging setup: readable on a terminal, leveled lines for journald, JSON for shippers.

``auto`` picks the journal format when stderr *is* the journal: systemd sets
``$JOURNAL_STREAM`` to the device and inode of the stream it connected (systemd.exec(5)). That,
not ``$INVOCATION_ID``, is the test: a unit may send stderr to a file, and a child process may
inherit the variable with stderr redirected; both want timestamps. Under the journal each line
starts with a ``<N>`` syslog priority, which journald strips and stores as the entry's level
(so ``journalctl -p warning`` works), and carries no timestamp (journald adds its own).

Every format passes its output through :func:`syncd.contracts.redaction.redact`: the
configured secrets' values and credential-shaped text (bearer tokens, session ids,
``password=``) never reach a log line, an exception message or a traceback included.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy.exc import StatementError

import connectors
from syncd.contracts.redaction import redact

_PRIORITY = {  # syslog priorities, as sd-daemon(3) prefixes them
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


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
