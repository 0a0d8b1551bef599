from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.meta import GraphClock

from sandbox.meta.api import MetaSandbox


@pytest.fixture
def graph() -> Iterator[tuple[MetaSandbox, GraphClock]]:
    """The Graph stand-in and its clock (the source under test reads the same clock)."""
    clock = GraphClock()
    with MetaSandbox(clock=clock) as server:
        yield server, clock
