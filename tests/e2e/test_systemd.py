"""The unit files: systemd's own checker accepts them, and they stay hardened.

``systemd-analyze verify`` also checks that ExecStart's program exists, which
/usr/local/bin/syncd does not on a build machine; the units are verified from a copy whose
ExecStart names this checkout's console script (or interpreter), every other line unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

UNITS = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def directives(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


def runnable_copy(unit: Path, tmp_path: Path, name: str) -> Path:
    program = shutil.which("syncd", path=str(Path(sys.executable).parent)) or sys.executable
    text = unit.read_text().replace("/usr/local/bin/syncd", program)
    assert text != unit.read_text(), "ExecStart no longer names /usr/local/bin/syncd"
    copy = tmp_path / name
    copy.write_text(text)
    return copy


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "name"), [("syncd.service", "syncd.service"), ("syncd@.service", "syncd@acme.service")]
)
def test_systemd_analyze_verify_accepts_the_unit(unit: str, name: str, tmp_path: Path) -> None:
    copy = runnable_copy(UNITS / unit, tmp_path, name)
    proc = subprocess.run(
        [str(ANALYZE), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown or unparsable directives too, only saying so: any line about
    # the unit file is a mistake in it.
    complaints = [line for line in proc.stderr.splitlines() if name in line or str(copy) in line]
    assert proc.returncode == 0, proc.stderr
    assert complaints == []


@needs_analyze
@pytest.mark.parametrize("unit", ["syncd.service", "syncd@.service"])
def test_exposure_score_is_at_most_two(unit: str, tmp_path: Path) -> None:
    copy = tmp_path / unit.replace("@.", "@acme.")
    shutil.copy(UNITS / unit, copy)
    proc = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_the_unit_has_what_the_daemon_relies_on() -> None:
    d = dict(directives(UNITS / "syncd.service"))
    assert d["Type"] == "notify"  # READY=1 once the jobs are scheduled
    assert d["WatchdogSec"]  # the scheduler's heartbeat pings at half of it
    assert d["Restart"] == "on-failure"
    assert d["RestartPreventExitStatus"] == "2"  # a config error: a restart cannot help
    assert d["StateDirectory"] == "syncd" and d["StateDirectoryMode"] == "0700"
    assert d["ConfigurationDirectory"] == "syncd"
    assert d["CapabilityBoundingSet"] == ""
    # AF_UNIX: $NOTIFY_SOCKET and PostgreSQL's socket; the rest is outbound HTTPS.
    assert d["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert d["MemoryDenyWriteExecute"] == "yes"
    creds = [v for k, v in directives(UNITS / "syncd.service") if k == "LoadCredential"]
    assert creds and all(c.startswith(("x_", "sf_")) for c in creds)


def test_the_template_differs_from_the_unit_only_per_instance() -> None:
    plain = directives(UNITS / "syncd.service")
    template = directives(UNITS / "syncd@.service")
    per_instance = [(k, v) for k, v in template if "%i" in v]
    assert ("ExecStart", "/usr/local/bin/syncd --config /etc/syncd/%i.toml run") in per_instance
    assert ("StateDirectory", "syncd/%i") in per_instance
    shared = [(k, v) for k, v in template if "%i" not in v]
    assert shared == [(k, v) for k, v in plain if not _instance_specific(k, v)]


def _instance_specific(key: str, value: str) -> bool:
    return key in ("Description", "ExecStart", "StateDirectory", "LoadCredential")
