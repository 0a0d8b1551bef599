"""The gap gauges of ``/metrics`` (see :mod:`syncd.service.metrics`): gaps by state, posts
recovered."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from syncd.model import GapState
from syncd.state import gaps as gap_state


def gap_metrics(counts: gap_state.Counts) -> Iterator[Metric]:
    gaps = GaugeMetricFamily(
        "syncd_gaps",
        "Gaps live walks left (the timeline no longer held posts since the last walk), by "
        "state: open, closing (a backfill reads them), closed, unclosable (out of reach).",
        labels=["source", "account", "stream", "state"],
    )
    streams = sorted({key[:3] for key in counts.by_state})
    for stream in streams:  # every state of a stream with gaps, zeros included
        for state in GapState:
            gaps.add_metric([*stream, state], counts.by_state.get((*stream, state), 0))
    yield gaps
    recovered = GaugeMetricFamily(
        "syncd_gap_posts_recovered",
        "Posts found and stored by the recovery of gaps that ended.",
        labels=["source", "account", "stream"],
    )
    for stream, n in sorted(counts.recovered.items()):
        recovered.add_metric(list(stream), n)
    yield recovered
