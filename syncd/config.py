"""TOML → validated settings. Collects every problem at once, each with its key path.

Connector sections are validated by the connector's own settings model, found through the
registry, so this module knows no network or CRM by name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import connectors
from syncd.connector import ConnectorSettings, Duration, SourceSettings
from syncd.errors import ConfigError
from syncd.pipeline import PipelineSettings

DEFAULT_PATH = "/etc/syncd/config.toml"
DEFAULT_STATE_URL = "sqlite:////var/lib/syncd/state.db"
PLACEHOLDER = "CHANGE_ME"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSection(_Section):
    url: str = DEFAULT_STATE_URL


class DaemonSection(_Section):
    write_interval: Duration = 10.0  # how often the writer drains ready deliveries
    resolve_interval: Duration = 60.0  # how often held authors are offered to the resolver
    jitter: Duration = 5.0  # random spread added to each poll, so accounts do not poll in step


class ResolverSection(_Section):
    retry_after: Duration = 300.0  # first re-try of an author the CRM did not know
    max_retry_after: Duration = 6 * 3600.0  # the back-off doubles up to this
    batch_size: int = Field(default=200, ge=1, le=2000)


class WriterSection(_Section):
    batch_size: int = Field(default=200, ge=1, le=200)  # sObject Collections carry ≤ 200
    retries: int = Field(default=3, ge=0, le=10)  # extra attempts on a transient failure
    max_attempts: int = Field(default=8, ge=1)  # per-record retryable errors before dead letter


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "human", "json"] = "auto"


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

    def pipeline(self) -> PipelineSettings:
        return PipelineSettings(
            retries=self.writer.retries,
            write_batch=self.writer.batch_size,
            resolve_batch=self.resolver.batch_size,
            resolve_backoff=timedelta(seconds=self.resolver.retry_after),
            resolve_max_backoff=timedelta(seconds=self.resolver.max_retry_after),
            record_max_attempts=self.writer.max_attempts,
        )


def default_path() -> Path:
    return Path(os.environ.get("SYNCD_CONFIG") or DEFAULT_PATH)


def load(path: Path | str) -> Settings:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (see config.example.toml)") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Settings:
    problems: list[tuple[str, str]] = []
    problems.extend(_placeholders(raw, ""))

    def section(key: str, model: type[_Section]) -> Any:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            problems.append((key, "must be a table"))
            return model()
        return _validate(model, value, key, problems) or model()

    known = {"state", "daemon", "resolver", "writer", "logging", "sources", "crm"}
    problems.extend((k, "unknown key") for k in sorted(set(raw) - known))
    state = section("state", StateSection)
    daemon = section("daemon", DaemonSection)
    resolver = section("resolver", ResolverSection)
    writer = section("writer", WriterSection)
    logging_ = section("logging", LoggingSection)

    sources: list[SourceSettings] = []
    raw_sources = raw.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        problems.append(("sources", "must be a non-empty list of [[sources]] tables"))
        raw_sources = []
    for i, item in enumerate(raw_sources):
        where = f"sources[{i}]"
        model = _connector_model(item, where, "source", problems)
        if model is not None and (s := _validate(model, item, where, problems)) is not None:
            sources.append(s)
    names = [s.name for s in sources]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("sources", f"source name {name!r} is used more than once"))

    crm: ConnectorSettings | None = None
    raw_crm = raw.get("crm")
    if not isinstance(raw_crm, dict):
        problems.append(("crm", "is required: a [crm] table"))
    else:
        raw_crm = {"name": raw_crm.get("type", "crm"), **raw_crm}
        model = _connector_model(raw_crm, "crm", "crm", problems)
        if model is not None:
            crm = _validate(model, raw_crm, "crm", problems)

    if problems or crm is None:
        raise ConfigError(problems or [("crm", "is invalid")])
    return Settings(
        path=path,
        state=state,
        sources=tuple(sources),
        crm=crm,
        daemon=daemon,
        resolver=resolver,
        writer=writer,
        logging=logging_,
    )


def _connector_model(
    item: Any, where: str, kind: str, problems: list[tuple[str, str]]
) -> type[BaseModel] | None:
    if not isinstance(item, dict):
        problems.append((where, "must be a table"))
        return None
    type_ = item.get("type")
    if not isinstance(type_, str):
        problems.append((f"{where}.type", "is required"))
        return None
    try:
        cls = connectors.source_class(type_) if kind == "source" else connectors.crm_class(type_)
    except LookupError as exc:
        problems.append((f"{where}.type", str(exc)))
        return None
    settings: type[BaseModel] = cls.Settings
    return settings


def _validate(
    model: type[BaseModel], data: dict[str, Any], where: str, problems: list[tuple[str, str]]
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append((_path(where, err["loc"]), _message(err)))
        return None


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in {"literal_error"}:
            continue
        else:
            out += f".{part}" if out else part
    return out


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "too_short" and isinstance(err.get("input"), list):
        return "must be a non-empty list"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _placeholders(value: Any, where: str) -> list[tuple[str, str]]:
    """Values copied from config.example.toml and never filled in refuse to start."""
    if isinstance(value, str):
        return [(where, "is still a placeholder: set a real value")] if PLACEHOLDER in value else []
    if isinstance(value, dict):
        return [
            p for k, v in value.items() for p in _placeholders(v, f"{where}.{k}" if where else k)
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _placeholders(v, f"{where}[{i}]")]
    return []
