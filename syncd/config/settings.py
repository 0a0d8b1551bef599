"""TOML → validated settings. Collects every problem at once, each with its key path.

Connector sections are validated by the connector's own settings model, found through the
registry, so this module knows no network or CRM by name. Every problem becomes one line
``key.path: message`` (see :class:`~syncd.errors.ConfigError`); messages are rewritten from
pydantic's wording into the config author's (tables, lists, quotes), unknown keys get a
did-you-mean from the model's own field names, and nothing a secret field was given is echoed.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import connectors
from syncd.config.problems import (
    Problems,
    dates,
    join,
    placeholders,
    tidy,
    toml_syntax,
    unknown_key,
    validate,
)
from syncd.contracts import (
    ConnectorSettings,
    Duration,
    DurationOrZero,
    SourceSettings,
    toml_kind,
)
from syncd.contracts.secrets import DEFAULT_CREDENTIALS_DIRECTORY, credentials_fallback
from syncd.contracts.text import did_you_mean
from syncd.errors import ConfigError
from syncd.pipeline import PipelineSettings
from syncd.resolver.chain import MATCHERS, Matcher, Policy
from syncd.resolver.stage import ResolveSettings, Unmatched
from syncd.state.db import Timeouts
from syncd.state.tables import NAME_MAX

DEFAULT_PATH = "/etc/syncd/config.toml"
DEFAULT_STATE_URL = "sqlite:////var/lib/syncd/state.db"
_STATE_BACKENDS = ("sqlite", "postgresql")  # what syncd.state is built and tested for


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSection(_Section):
    url: str = DEFAULT_STATE_URL
    # How long the state database may keep a job waiting. Past a bound the statement fails,
    # and the daemon waits with back-off (said once, /healthz failing) until it is back.
    connect_timeout: Duration = 10.0  # PostgreSQL: opening a connection
    lock_timeout: Duration = 30.0  # a lock held by someone else (SQLite: the busy timeout)
    statement_timeout: DurationOrZero = 600.0  # PostgreSQL: one statement; 0: no bound

    def timeouts(self) -> Timeouts:
        return Timeouts(self.connect_timeout, self.lock_timeout, self.statement_timeout)

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # Checked here so a typo exits 2 with the key named, not later from the state layer.
        # SQLAlchemy's own parse error quotes the whole URL, password included: never shown.
        examples = f"e.g. {DEFAULT_STATE_URL!r} or 'postgresql+psycopg://syncd@db.example/syncd'"
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"must be a database URL, {examples}") from None
        if url.get_backend_name() not in _STATE_BACKENDS:
            raise ValueError(
                f"database {url.get_backend_name()!r} is not supported: use SQLite or "
                f"PostgreSQL, {examples}"
            )
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("an in-memory SQLite database would lose all state: name a file")
        return value


class DaemonSection(_Section):
    write_interval: Duration = 10.0  # how often the writer drains ready deliveries
    resolve_interval: Duration = 60.0  # how often held authors are offered to the resolver
    jitter: DurationOrZero = 5.0  # random spread added to each poll; 0 polls accounts in step
    listen: str | None = None  # "host:port" for /healthz and /metrics; None: no listener
    # /healthz fails while a job's run has lasted longer than this or three of its
    # intervals, whichever is longer: it is hung on something that never returns.
    stuck_after: Duration = 900.0
    # PostgreSQL state, several instances: how long a claim on deliveries lasts. It must
    # comfortably outlast writing one claim (5 CRM calls); a dead instance's share waits
    # this long before another takes it over.
    lease: Duration = 60.0
    # Pages one poll of a stream reads at most; the walk goes on from there next poll. X's
    # deepest walk is 32 pages (3,200 posts at 100 a page): this bounds what an API or a
    # proxy that never ends a walk can cost.
    max_pages_per_walk: int = Field(default=100, ge=1, le=100_000)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        from syncd.service.http import parse_listen  # imported late: config loads before the daemon

        if value is not None:
            parse_listen(value)
        return value


class ResolverRules(_Section):
    """How sure is sure enough, and what happens to authors nobody matches."""

    matchers: list[Matcher] = Field(default_factory=lambda: list(MATCHERS), min_length=1)
    auto_link_threshold: float = Field(default=0.92, ge=0.5, le=1.0)
    margin: float = Field(default=0.1, ge=0.0, le=1.0)  # the best must beat the next by this
    review_threshold: float = Field(default=0.6, ge=0.0, le=1.0)  # below: not a candidate
    unmatched: Unmatched = "hold"

    @field_validator("matchers")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not name a matcher twice")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.review_threshold > self.auto_link_threshold:
            raise ValueError("review_threshold must not be above auto_link_threshold")
        return self

    def policy(self) -> Policy:
        return Policy(
            matchers=tuple(self.matchers),
            auto_link=self.auto_link_threshold,
            margin=self.margin,
            review_floor=self.review_threshold,
        )


class ResolverSection(ResolverRules):
    retry_after: Duration = 300.0  # first re-try of an author the CRM did not know
    max_retry_after: Duration = 6 * 3600.0  # the back-off doubles up to this
    # Ask the CRM which people changed this often while authors are held; 0: never. Unset:
    # [daemon] write_interval, so a new Contact's held history is written within about one.
    crm_check_interval: DurationOrZero | None = None
    batch_size: int = Field(default=200, ge=1, le=2000)
    # Per network ("x" …): the same rules, overriding these for that network's authors.
    networks: dict[str, ResolverRules] = Field(default_factory=dict)


class WriterSection(_Section):
    batch_size: int = Field(default=200, ge=1, le=200)  # sObject Collections carry ≤ 200
    retries: int = Field(default=3, ge=0, le=10)  # extra attempts on a transient failure
    max_attempts: int = Field(default=8, ge=1)  # per-record retryable errors before dead letter
    # A target's backlog of this many ready records or more goes through a bulk job, where
    # the CRM has them (Salesforce Bulk API 2.0); 0: never.
    bulk_threshold: int = Field(default=10_000, ge=0)
    # A round that finds less than one CRM call's worth of records (five batches) waits for
    # more while its oldest record was queued less than this ago; "0s": never waits.
    batch_wait: DurationOrZero = 1.0


class BackfillSection(_Section):
    # `syncd backfill` asks before spending more than this many dollars (--yes skips it).
    confirm_above: float = Field(default=5.0, ge=0.0)
    # Of a rate limit live polling shares with backfills (the timelines), the fraction
    # backfills leave untouched.
    reserve: float = Field(default=0.2, ge=0.0, le=0.9)
    interval: Duration = 1.0  # how often the daemon works queued backfills


class PrivacySection(_Section):
    # Raw API payloads stored longer than this are emptied by a daily job; 0 keeps them.
    payload_retention: DurationOrZero = 90 * 86400.0


class ComplianceSection(_Section):
    horizon: Duration = 30 * 86400.0  # posts written to the CRM this recently are re-checked
    interval: Duration = 86400.0  # each at most this often (and the daemon runs this often)
    action: Literal["delete", "mark"] = "delete"  # what happens to a deleted post's record
    # A delivery whose post was read (or last checked) longer ago than this is looked up on
    # the network before its write, and not written if deleted there; 0: never.
    before_write: DurationOrZero = 600.0


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "human", "json"] = "auto"


class SecretsSection(_Section):
    # Where a `cred:NAME` secret is read when systemd set no $CREDENTIALS_DIRECTORY: an admin
    # command run outside the unit (`sudo syncd status`) reads the files LoadCredential= loads.
    credentials_directory: Path = DEFAULT_CREDENTIALS_DIRECTORY

    @field_validator("credentials_directory")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path, e.g. '/etc/syncd/credentials'")
        return value


_SECTIONS: dict[str, type[_Section]] = {
    "state": StateSection,
    "daemon": DaemonSection,
    "resolver": ResolverSection,
    "writer": WriterSection,
    "backfill": BackfillSection,
    "logging": LoggingSection,
    "privacy": PrivacySection,
    "compliance": ComplianceSection,
    "secrets": SecretsSection,
}
_TOP_LEVEL = (*_SECTIONS, "sources", "crm")


@dataclass(frozen=True)
class Settings:
    path: Path
    state: StateSection
    sources: tuple[SourceSettings, ...]
    crm: ConnectorSettings
    daemon: DaemonSection
    resolver: ResolverSection
    writer: WriterSection
    logging: LoggingSection
    backfill: BackfillSection = field(default_factory=BackfillSection)
    privacy: PrivacySection = field(default_factory=PrivacySection)
    compliance: ComplianceSection = field(default_factory=ComplianceSection)
    secrets: SecretsSection = field(default_factory=SecretsSection)

    @property
    def crm_check_interval(self) -> float:
        """Seconds between the daemon's CRM change checks (see [resolver] crm_check_interval)."""
        check = self.resolver.crm_check_interval
        return self.daemon.write_interval if check is None else check

    def networks(self) -> list[str]:
        """The networks the configured sources read, in config order, each once."""
        return list(dict.fromkeys(connectors.source_class(s.type).network for s in self.sources))

    def pipeline(self) -> PipelineSettings:
        return PipelineSettings(
            max_pages_per_walk=self.daemon.max_pages_per_walk,
            check_before_write=(
                timedelta(seconds=self.compliance.before_write)
                if self.compliance.before_write
                else None
            ),
            retries=self.writer.retries,
            write_batch=self.writer.batch_size,
            record_max_attempts=self.writer.max_attempts,
            bulk_threshold=self.writer.bulk_threshold,
            batch_wait=self.writer.batch_wait,
            resolve=ResolveSettings(
                policy=self.resolver.policy(),
                policies={n: r.policy() for n, r in self.resolver.networks.items()},
                unmatched={
                    n: self.resolver.networks.get(n, self.resolver).unmatched
                    for n in {*self.resolver.networks, *self.networks()}
                },
                batch=self.resolver.batch_size,
                backoff=timedelta(seconds=self.resolver.retry_after),
                max_backoff=timedelta(seconds=self.resolver.max_retry_after),
                crm_check=timedelta(seconds=self.crm_check_interval),
            ),
        )


def default_path() -> Path:
    return Path(os.environ.get("SYNCD_CONFIG") or DEFAULT_PATH)


def load(path: Path | str) -> Settings:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (see config.example.toml)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by uid {os.geteuid()}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"line {line}: not UTF-8 text (TOML files are UTF-8)", source=path
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([toml_syntax(text, exc)], source=path) from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Settings:
    problems: Problems = []
    # Checked first: a placeholder also fails its model (an unset env:CHANGE_ME), but "still
    # CHANGE_ME" is the one useful line, so tidy() drops other problems at those keys.
    left = placeholders(raw, "")
    problems.extend(dates(raw, ""))

    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append((join("", key), unknown_key(key, _TOP_LEVEL, sections=_SECTIONS)))

    def section(key: str, model: type[_Section]) -> Any:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            problems.append((key, f"must be a table ([{key}]), not {toml_kind(value)}"))
            return model()
        return validate(model, value, key, problems) or model()

    state = section("state", StateSection)
    daemon = section("daemon", DaemonSection)
    resolver = section("resolver", ResolverSection)
    writer = section("writer", WriterSection)
    backfill = section("backfill", BackfillSection)
    logging_ = section("logging", LoggingSection)
    privacy = section("privacy", PrivacySection)
    compliance = section("compliance", ComplianceSection)
    if resolver.retry_after > resolver.max_retry_after:
        problems.append(("resolver.max_retry_after", "must not be shorter than retry_after"))

    secrets = section("secrets", SecretsSection)
    with credentials_fallback(secrets.credentials_directory):  # cred: outside the unit
        sources = _sources(raw.get("sources"), problems)
        crm = _crm(raw.get("crm"), problems)

    problems = tidy(left + problems, left, raw)
    if problems or crm is None:
        raise ConfigError(problems or [("crm", "is invalid")], source=path)
    networks = dict.fromkeys(connectors.source_class(s.type).network for s in sources)
    crm = crm.for_networks(list(networks))
    return Settings(
        path=path,
        state=state,
        sources=tuple(sources),
        crm=crm,
        daemon=daemon,
        resolver=resolver,
        writer=writer,
        logging=logging_,
        backfill=backfill,
        privacy=privacy,
        compliance=compliance,
        secrets=secrets,
    )


def _sources(raw_sources: Any, problems: Problems) -> list[SourceSettings]:
    known = ", ".join(sorted(connectors.SOURCES))
    if raw_sources is None:
        problems.append(("sources", f"is required: add a [[sources]] table (type = {known})"))
        return []
    if isinstance(raw_sources, dict):
        problems.append(("sources", "must be [[sources]] tables (double brackets), not [sources]"))
        return []
    if not isinstance(raw_sources, list) or not raw_sources:
        problems.append(("sources", "must be a non-empty list of [[sources]] tables"))
        return []
    sources: list[SourceSettings] = []
    first: dict[str, int] = {}  # name → index of the source that has it
    for i, item in enumerate(raw_sources):
        where = f"sources[{i}]"
        # Names are compared as written, so a clash is reported even if a source is invalid.
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in first:
            problems.append(
                (f"{where}.name", f"{name!r} is already the name of sources[{first[name]}]")
            )
        elif isinstance(name, str):
            first[name] = i
        model = _connector_model(item, where, "source", problems)
        if model is not None and (s := validate(model, item, where, problems)) is not None:
            sources.append(s)
        problems.extend(_too_long(f"{where}.name", name))
        handles = item.get("accounts") if isinstance(item, dict) else None
        for n, handle in enumerate(handles if isinstance(handles, list) else []):
            problems.extend(_too_long(f"{where}.accounts[{n}]", handle))
    return sources


def _too_long(where: str, value: object) -> Problems:
    """Names and handles from here label rows of the state database: one longer than its
    columns would fail every write that carries it."""
    if not isinstance(value, str) or len(value) <= NAME_MAX:
        return []
    return [(where, f"must be at most {NAME_MAX} characters, not {len(value)}")]


def _crm(raw_crm: Any, problems: Problems) -> ConnectorSettings | None:
    if raw_crm is None:
        known = ", ".join(sorted(connectors.CRMS))
        problems.append(("crm", f"is required: add a [crm] table (type = {known})"))
        return None
    if isinstance(raw_crm, list):
        problems.append(("crm", "must be one [crm] table, not a list ([[crm]])"))
        return None
    if isinstance(raw_crm, dict) and isinstance(raw_crm.get("type"), str):
        raw_crm = {"name": raw_crm["type"], **raw_crm}  # one CRM: its type names it
    model = _connector_model(raw_crm, "crm", "crm", problems)
    if model is None:
        return None
    problems.extend(_too_long("crm.name", raw_crm.get("name")))
    crm: ConnectorSettings | None = validate(model, raw_crm, "crm", problems)
    return crm


def _connector_model(
    item: Any, where: str, kind: str, problems: Problems
) -> type[BaseModel] | None:
    if not isinstance(item, dict):
        problems.append((where, f"must be a table, not {toml_kind(item)}"))
        return None
    registry = connectors.SOURCES if kind == "source" else connectors.CRMS
    known = ", ".join(repr(k) for k in sorted(registry))
    type_ = item.get("type")
    if type_ is None:
        problems.append((f"{where}.type", f"is required: one of {known}"))
        return None
    if not isinstance(type_, str):
        problems.append((f"{where}.type", f"must be a string, one of {known}"))
        return None
    try:
        cls = connectors.source_class(type_) if kind == "source" else connectors.crm_class(type_)
    except LookupError as exc:
        problems.append((f"{where}.type", str(exc) + did_you_mean(type_, registry)))
        return None
    settings: type[BaseModel] = cls.Settings
    return settings
