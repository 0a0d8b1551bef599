"""The exception tree, classified by what the runner must do.

::

    SyncdError
    ├── UserError            a person must fix something; printed without a traceback, exit 1
    │   ├── ConfigError      bad configuration, every problem with its key path; exit 2
    │   ├── StateError       the state database cannot be opened or migrated
    │   └── AlreadyRunning   another daemon holds this state database
    ├── ExternalError        an outside system failed (``system``, HTTP ``status``); as such: a
    │   │                    setup problem, this job fails the round and says why
    │   ├── AuthError        credentials rejected: the account is parked after 3 in a row
    │   ├── RateLimited      that job comes back at ``resume_at``; nobody sleeps in a worker
    │   │   └── UsageCapped  the project's billing cap: the whole source waits for its reset
    │   ├── TransientError   bounded jittered retries (idempotent calls only), else next round
    │   │   └── MalformedAnswer  a whole answer unreadable: a stream parks after 5 in a row
    │   ├── PaginationExpired  the network refused a page token it sent: the walk starts
    │   │                    again from its since_id (once a poll), a backfill segment anew
    │   ├── PaginationLoop   the network repeated a page token: the walk stops, said once
    │   ├── StreamParked     one stream is parked (unreadable answers) until ``syncd resume``
    │   ├── BadItem          one item is malformed: quarantine it, carry on with the rest
    │   └── NotFound         the thing asked for does not exist (a handle, a record)
    └── StateUnavailable     the state database is out of reach for now (down, restarting,
                             locked past the lock timeout, disk full): the daemon's job waits
                             with back-off and /healthz fails until it is back; a command
                             exits 75 (EX_TEMPFAIL) saying so

A per-record CRM refusal inside a successful call is not an exception: it comes back as a
failed :class:`~syncd.model.WriteResult` and is retried, dead-lettered or re-resolved by its
:class:`~syncd.model.Refusal`, which the CRM's connector reads from the CRM's code. The
database driver's own errors reach the runner unconverted (a transaction's retry of a
conflict must still see them): the daemon and the commands classify them at the top with
:func:`syncd.state.db.unavailable`, and a transient one counts as :class:`StateUnavailable`.
Anything else that escapes is a bug: the daemon stops with exit code 70.

Connectors map what their libraries raise onto this tree in one table each
(``connectors.x.client.classify``, ``connectors.salesforce.session.classify``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model imports nothing from here; only the annotations need it
    from syncd.model import WriteResult


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class UserError(SyncdError):
    """A problem a person must fix; shown as a message, never as a traceback."""

    exit_code = 1


class ConfigError(UserError):
    """The configuration is invalid. Carries every problem found, each with its key path.

    Each problem renders as exactly one line ``key.path: message``: journald and grep see one
    record per problem, so messages are flattened and clipped here, whatever produced them.
    One problem is one line in all; several follow a header line, one per line.
    """

    exit_code = 2
    _MAX_PATH = 200
    _MAX_MESSAGE = 400

    def __init__(
        self, problems: list[tuple[str, str]] | str, *, source: object | None = None
    ) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = [
            (self._one_line(path, self._MAX_PATH), self._one_line(msg, self._MAX_MESSAGE))
            for path, msg in problems
        ]
        self.source = "" if source is None else self._one_line(str(source), self._MAX_PATH)
        super().__init__(self._render())

    @staticmethod
    def _one_line(text: str, limit: int) -> str:
        flat = " ".join(text.split())  # newlines, tabs and runs of spaces → one space
        flat = "".join(c if c.isprintable() else "?" for c in flat)
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    def _render(self) -> str:
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        where = f" in {self.source}" if self.source else ""
        if len(lines) == 1:
            return f"invalid configuration{where}: {lines[0]}"
        header = f"invalid configuration{where} ({len(lines)} problems):"
        return header + "".join(f"\n  {line}" for line in lines)


class ExternalError(SyncdError):
    """A failure talking to an outside system. ``system`` names it ("x", "salesforce")."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.system = system
        self.status = status


class AuthError(ExternalError):
    """Credentials were rejected. Retrying will not help until someone fixes them."""


class RateLimited(ExternalError):
    """The API asked us to wait. ``resume_at`` is when the next call may go (UTC)."""

    def __init__(
        self,
        message: str,
        *,
        resume_at: datetime,
        system: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, system=system, status=status)
        self.resume_at = resume_at


class UsageCapped(RateLimited):
    """The app's project reached the network's billing cap (X: ``usage-capped``, a 429 or a
    403): nothing of that source may be read before the cap resets. ``period`` is the cap's
    ("Daily", "Monthly") when the API says; ``resume_at`` is the connector's best guess, which
    the budget guard replaces by the cap's reset when the network has told it."""

    def __init__(
        self,
        message: str,
        *,
        resume_at: datetime,
        system: str = "",
        status: int | None = None,
        period: str | None = None,
    ) -> None:
        super().__init__(message, resume_at=resume_at, system=system, status=status)
        self.period = period


class TransientError(ExternalError):
    """A failure that may pass: 5xx, timeouts, dropped connections, unreadable bodies."""


class PartialWrite(ExternalError):
    """A history write answered for some of its targets and failed as a whole for others
    (one CRM call carrying several targets' records: an object missing from the org, a
    part of the call failing past its retries). ``results``: one per record sent, in order,
    None for a record of a failed target (not written: sent again later, as a failed call's
    are); ``failures``: each failed target's error."""

    def __init__(
        self,
        results: Sequence[WriteResult | None],
        failures: Mapping[str, ExternalError],
    ) -> None:
        first = next(iter(failures.values()))
        text = "; ".join(f"{target}: {exc}" for target, exc in failures.items())
        super().__init__(text, system=first.system, status=first.status)
        self.results = list(results)
        self.failures = dict(failures)

    @property
    def transient(self) -> bool:
        """Every failed target's error may pass: sending those records again may help."""
        return all(isinstance(e, TransientError) for e in self.failures.values())


class MalformedAnswer(TransientError):
    """A whole answer could not be read: its body does not parse, or breaks the API's schema
    (not one bad item: see :class:`BadItem`). Once may be a proxy's hiccup; the same answer
    every time never passes, so the pipeline parks the stream after a few in a row."""


class PaginationExpired(ExternalError):
    """The network refused a page token it had sent (X answers 400 to one that expired):
    the pages after it can only be read by walking again from the start. Only the connector
    can tell this refusal from any other bad request, so it raises this one."""


class PaginationLoop(ExternalError):
    """The network (or a proxy) sent a page token already followed in this walk: following
    it would read the same pages, billed, without end. Retrying does not help."""


class StreamParked(ExternalError):
    """One stream of an account is parked (its answers kept being unreadable) until
    ``syncd resume`` names it; its account's other streams go on."""

    def __init__(self, message: str, *, name: str, system: str = "") -> None:
        super().__init__(message, system=system)
        self.name = name  # what `syncd status` shows and `syncd resume` takes


class BadItem(ExternalError):
    """One item could not be understood. The rest of its page is fine."""


class NotFound(ExternalError):
    """The thing asked for does not exist (an unknown brand handle, a deleted record)."""


class StateUnavailable(SyncdError):
    """The state database cannot be reached or used for now; nothing is lost by waiting.
    The message names the database error's kind, never a statement or its parameters."""

    exit_code = 75  # EX_TEMPFAIL: try again later
