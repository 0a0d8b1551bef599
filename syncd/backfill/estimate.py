"""What a backfill will cost, before it reads anything: posts, dollars, API calls, time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from syncd.contracts import Backfiller
from syncd.model import Account, PostCount, Segment

LATENCY = 0.25  # seconds per request when the rate limit does not bind
LOOKUP_ROUND = 200  # authors per resolver round (one query per object per look-up kind)
LOOKUP_KINDS = 2  # the id/handle fields look-up and the candidate search


@dataclass(frozen=True)
class SegmentEstimate:
    segment: Segment
    count: PostCount
    requests: int
    seconds: float


@dataclass(frozen=True)
class Estimate:
    segments: list[SegmentEstimate]
    price_per_post: float
    write_batch: int
    person_objects: int
    counting_requests: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return sum(s.count.posts for s in self.segments)

    @property
    def exact(self) -> bool:
        return all(s.count.exact for s in self.segments)

    @property
    def cost(self) -> float:
        return self.posts * self.price_per_post

    @property
    def source_requests(self) -> int:
        return sum(s.requests for s in self.segments)

    @property
    def crm_writes(self) -> int:
        return math.ceil(self.posts / self.write_batch)

    @property
    def crm_lookups(self) -> int:
        """At most: every post by an author never seen before."""
        return math.ceil(self.posts / LOOKUP_ROUND) * LOOKUP_KINDS * self.person_objects

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.segments)

    def as_json(self) -> dict[str, object]:
        return {
            "segments": [
                {
                    **s.segment.as_json(),
                    "posts": s.count.posts,
                    "exact": s.count.exact,
                    "requests": s.requests,
                    "seconds": round(s.seconds, 1),
                }
                for s in self.segments
            ],
            "posts": self.posts,
            "exact": self.exact,
            "price_per_post": self.price_per_post,
            "cost": round(self.cost, 2),
            "source_requests": self.source_requests,
            "counting_requests": self.counting_requests,
            "crm_writes": self.crm_writes,
            "crm_lookups_at_most": self.crm_lookups,
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
        }


def duration(segment: Segment, requests: int) -> float:
    """Seconds ``requests`` take at the endpoint's rate limit (a full ``rate_window`` per
    batch of ``requests_per_window`` beyond the first), and its minimum spacing."""
    spacing = max(LATENCY, segment.min_interval)
    waits = 0
    if segment.requests_per_window:
        waits = max(0, math.ceil(requests / segment.requests_per_window) - 1)
    return requests * spacing + waits * segment.rate_window


def estimate(
    source: Backfiller,
    account: Account,
    segments: Sequence[Segment],
    *,
    price_per_post: float,
    write_batch: int = 200,
    person_objects: int = 2,
) -> Estimate:
    out: list[SegmentEstimate] = []
    counting = 0
    for segment in segments:
        count = source.count_posts(account, segment)
        counting += count.requests
        pages = math.ceil(count.posts / segment.page_size)
        requests = max(1, pages if count.reads is None else count.reads)
        out.append(SegmentEstimate(segment, count, requests, duration(segment, requests)))
    said = [s.note for s in segments] + [s.count.basis for s in out]
    notes = list(dict.fromkeys(n for n in said if n))
    return Estimate(out, price_per_post, write_batch, person_objects, counting, notes)
