"""The Meta Graph API stand-in (Facebook Pages, Messenger, Instagram): :mod:`.api`."""

from sandbox.meta.api import MetaSandbox

__all__ = ["MetaSandbox"]
