"""The Meta webhook endpoint the core's HTTP listener serves at ``/webhooks/<source name>``
(:class:`syncd.contracts.WebhookEndpoint`), built on the pure checks of :mod:`.webhook`.

A Meta source returns a :class:`MetaWebhook` from ``webhook()`` when its settings carry a
``[sources.webhook]`` table (:class:`WebhookSettings`): the verify token typed into the App
Dashboard's webhook subscription and the app secret Meta signs each delivery with, both
secret references, read when a request needs them. The endpoint makes no API call: Meta wants
an answer within seconds, and the poller reads each hinted object through the API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from connectors.meta import webhook
from syncd.contracts.secrets import Secret, SecretRef
from syncd.model import HINT_KIND_MAX, WebhookHint


class WebhookSettings(BaseModel):
    """``[sources.webhook]`` of a Meta source: what Meta's webhook product is set up with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify_token: SecretRef  # the App Dashboard's "Verify token" of the subscription
    app_secret: SecretRef  # App settings > Basic > App secret: the signing key


def hint_kind(hint: webhook.Hint) -> str:
    """The stored kind of a hint: network, webhook field and item (``instagram:mentions:
    comment``), what the source needs to know which Graph call reads the object. The verb is
    left out: a hint says an object is worth reading, and a read finds what became of it."""
    return f"{hint.network}:{hint.field}:{hint.item}"[:HINT_KIND_MAX]


class MetaWebhook:
    """Answers Meta's subscription check and turns a signed delivery into hints."""

    def __init__(self, verify_token: Secret, app_secret: Secret) -> None:
        self._verify_token = verify_token
        self._app_secret = app_secret

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> MetaWebhook:
        return cls(settings.verify_token, settings.app_secret)

    def __repr__(self) -> str:  # the references only, never what they hold
        return f"MetaWebhook(verify_token={self._verify_token!r}, app_secret={self._app_secret!r})"

    def subscribe(self, params: Mapping[str, str]) -> str | None:
        return webhook.verify_subscription(params, self._verify_token.reveal())

    def receive(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookHint] | None:
        signature = headers.get(webhook.SIGNATURE_HEADER.lower())
        if not webhook.verify_signature(body, signature, self._app_secret.reveal()):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            # Signed by Meta but not JSON: nothing to read, and sending it again changes nothing.
            return []
        return [
            WebhookHint(account_id=h.account_id, object_id=h.object_id, kind=hint_kind(h))
            for h in webhook.hints(payload)
        ]
