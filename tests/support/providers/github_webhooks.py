"""Webhook deliveries as GitHub sends them, for the local GitHub's world.

GitHub POSTs the event's JSON with `X-GitHub-Event`, a unique `X-GitHub-Delivery` (a
GUID, kept by a redelivery) and `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body keyed with the hook's secret>`. Bodies are the shapes in
tests/fixtures/github/webhook-*.constructed.json (see that folder's README) with this
world's accounts, organisations and teams filled in.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
import uuid

import aiohttp
import attrs

from .github import Account

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github"


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@attrs.frozen
class Delivery:
    event: str
    body: bytes
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))


def team_membership(action: str, account: Account, org: str, team: str) -> Delivery:
    """`membership` (scope team): `account` was added to or removed from ORG/TEAM."""
    payload = copy.deepcopy(_fixture("webhook-membership-removed.constructed.json"))
    payload["action"] = action
    payload["member"].update(login=account.login, id=account.id)
    payload["team"].update(slug=team, name=team)
    payload["organization"]["login"] = org
    return Delivery("membership", json.dumps(payload).encode())


def organization_member(action: str, account: Account, org: str) -> Delivery:
    """`organization`: member_added / member_removed of `account` in ORG."""
    payload = copy.deepcopy(_fixture("webhook-organization-member_removed.constructed.json"))
    payload["action"] = action
    payload["membership"]["user"].update(login=account.login, id=account.id)
    payload["organization"]["login"] = org
    return Delivery("organization", json.dumps(payload).encode())


class GitHubWebhookSender:
    """Sends deliveries to one webhook URL, signed with its secret, as GitHub does."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    async def send(
        self, delivery: Delivery, *, secret: str | None = None, signed: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """POST the delivery (signed with `secret` when given, else the hook's): the
        status and the JSON answer."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.id,
            "X-GitHub-Hook-ID": "292430182",
        }
        if signed:
            headers["X-Hub-Signature-256"] = signature(delivery.body, secret or self.secret)
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, data=delivery.body, headers=headers) as resp:
                return resp.status, await resp.json()
