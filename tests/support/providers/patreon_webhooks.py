"""Webhook deliveries as Patreon sends them, for FakePatreon's world.

Patreon POSTs the member document (the shape of tests/fixtures/patreon/webhook-member.json,
Patreon's documented example) with `X-Patreon-Event` naming the trigger and
`X-Patreon-Signature`, the hex HMAC-MD5 of the raw body keyed with the webhook's secret.
It sends no delivery id.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp

from .patreon import PatreonMember

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "patreon" / "webhook-member.json"


def signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.md5).hexdigest()


def member_document(member: PatreonMember) -> bytes:
    """The member as a webhook delivers it: its state now, its campaign, its user."""
    document: dict[str, Any] = copy.deepcopy(json.loads(FIXTURE.read_text()))
    data = document["data"]
    data["id"] = member.id
    data["attributes"].update(
        patron_status=member.patron_status,
        currently_entitled_amount_cents=member.amount_cents,
        last_charge_status=member.last_charge_status,
        last_charge_date=member.last_charge_date,
        full_name=member.account.full_name if member.account else "",
    )
    relations = data["relationships"]
    relations["campaign"]["data"]["id"] = member.campaign.id
    relations["currently_entitled_rewards"]["data"] = [
        {"id": tier.id, "type": "reward"} for tier in member.tiers
    ]
    if member.account is not None:
        relations["user"]["data"]["id"] = member.account.id
    document["links"]["self"] = f"https://www.patreon.com/api/members/{member.id}"
    return json.dumps(document).encode()


class PatreonWebhookSender:
    """Sends deliveries to one webhook URL, signed with its secret, as Patreon does."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    async def send(
        self, event: str, body: bytes, *, secret: str | None = None, signed: bool = True
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "X-Patreon-Event": event}
        if signed:
            headers["X-Patreon-Signature"] = signature(body, secret or self.secret)
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, data=body, headers=headers) as resp:
                return resp.status, await resp.json()
