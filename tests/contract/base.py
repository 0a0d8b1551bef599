"""What every contract suite shares: known gaps of an implementation, run as strict xfails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest


class Contract:
    """``known_gaps`` maps a test's name to why this implementation is known to break it: the
    test then runs as a strict xfail, so fixing the implementation fails the suite until the
    entry goes."""

    known_gaps: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_gap(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_gaps.get(request.function.__name__)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
