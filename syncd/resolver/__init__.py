"""Identity resolution: which CRM person is this social author? Never invented, always explained.

:mod:`.evidence` reads a profile (names, contact points, domains), :mod:`.scoring` weighs one
CRM person against it, :mod:`.chain` runs the configured matchers batched and decides:
link, ask a person (the review queue), or nobody.
"""

from syncd.resolver.chain import MATCHERS, Policy, decide, resolve

__all__ = ["MATCHERS", "Policy", "decide", "resolve"]
