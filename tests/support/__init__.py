"""What the tests share: the sandbox worlds, the fakes that stand in for a Source and a Crm, and
the recordings' location. Test modules import these as ``support.<module>``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
