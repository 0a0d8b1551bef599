"""``syncd check``: is every outside system usable? The config first, then each source and the
CRM, each checking itself (``check()`` of the Source and Crm contracts)."""

from __future__ import annotations

from pathlib import Path

import connectors
from syncd.config.settings import Settings
from syncd.contracts import CheckRow
from syncd.service.http import exposure_warning, is_loopback, parse_listen


def run_checks(loaded: Settings, config_path: Path) -> list[tuple[str, CheckRow]]:
    """Each row with what it checked: ``config``, a source's name or the CRM's."""
    rows = [("config", CheckRow(str(config_path), True, "valid"))]
    listen = loaded.daemon.listen
    if listen is not None and not is_loopback(parse_listen(listen)[0]):
        # Said, not failed: a proxy in front may well control who reads it.
        rows.append(("config", CheckRow("daemon.listen", True, exposure_warning(listen))))
    for s in loaded.sources:
        source = connectors.source_class(s.type).from_settings(s)
        try:
            rows += [(s.name, r) for r in source.check(s.accounts)]
        finally:
            source.close()
    crm = connectors.crm_class(loaded.crm.type).from_settings(loaded.crm)
    try:
        rows += [(loaded.crm.name, r) for r in crm.check()]
    finally:
        crm.close()
    return rows
