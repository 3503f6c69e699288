"""Koppel's webhooks: subscribe once, verify every delivery with the `standardwebhooks`
library (the Standard Webhooks signature: HMAC-SHA256 over id, timestamp and body, with
a 5-minute tolerance against replays), and act on them."""

from __future__ import annotations

import json
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from examples.partner_app.koppel import Koppel
from examples.partner_app.store import Store
from examples.partner_app.syncer import EMPLOYEE_EVENTS, Syncer

EVENTS = ["connection.revoked", *sorted(EMPLOYEE_EVENTS)]
SECRET = "webhook_secret"


def subscribe(koppel: Koppel, store: Store) -> None:
    """Register this app's endpoint once; the signing secret is shown only now."""
    if store.secret(SECRET) is not None:
        return
    oauth = koppel.app_session("webhooks.manage")
    response = oauth.post(f"{koppel.settings.api_url}/v1/webhooks", timeout=15,
                          json={"url": koppel.settings.webhook_url, "events": EVENTS})
    response.raise_for_status()
    store.save_secret(SECRET, response.json()["secret"])


def receive(store: Store, syncer: Syncer, body: bytes, headers: Mapping[str, str]) -> int:
    """Handle one delivery; returns the HTTP status to answer with."""
    secret = store.secret(SECRET)
    if secret is None:
        return 503
    try:
        Webhook(secret).verify(body, dict(headers))
    except WebhookVerificationError:
        return 400
    event = json.loads(body)
    if event["type"] == "connection.revoked":
        store.forget(event["data"]["connection_id"])  # stop at once; the feed would too
    elif event["type"] in EMPLOYEE_EVENTS:
        syncer.wake()
    return 204
