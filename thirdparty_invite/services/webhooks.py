"""Webhooks: GitHub and Patreon say something changed; the bindings it may concern are
re-checked at once, through the same path as a scheduled re-check.

A webhook is only a prompt. It names an organisation, a team, a repository, a sponsored
account or a campaign, never a verdict: the re-check asks the provider what is true now,
so a forged or stale delivery could at worst make a re-check run early. Still, nothing
happens before the signature over the raw body checks out against the operator's
`webhook_secret` (compared in constant time), and each delivery is applied once.

- GitHub signs with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>` and names each
  delivery in `X-GitHub-Delivery`, which a redelivery keeps (GitHub redelivers on request
  for 3 days): ids are remembered for 7.
- Patreon signs with `X-Patreon-Signature: <hex HMAC-MD5>` and sends no delivery id. A
  delivery is known by the SHA-256 of its event and body, remembered for an hour: a
  retry of one we answered is dropped, and an identical body an hour later (the same
  state again) is applied again. Within the hour, a member whose state went A, B, then
  back to exactly A is re-checked on B and caught again by the scheduled re-check.

Events that concern bindings (`added` ones too: a person back within a grace period is
seen as back at once):
- GitHub `organization` member_added / member_removed: org, team and repo rules of that
  organisation (leaving it ends its team memberships and the access they gave).
- GitHub `membership` added / removed (teams): team and repo rules of that organisation.
  Not only the team named: a member of a child team is a member of its parent teams, and
  a team's repositories give access; a re-check of a binding that did not change costs
  conditional requests answered 304.
- GitHub `member` added / removed / edited (repository collaborators): repo rules of
  that repository.
- GitHub `sponsorship` (all six actions): sponsor rules of the sponsored account.
- Patreon `members:*` and `members:pledge:*`: every Patreon rule (one campaign per bot);
  a delivery naming another campaign is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import hashlib
import hmac
import json
import logging
import re
from typing import Any, Protocol
import urllib.parse

import attrs

from ..durations import now_ms
from ..errors import UserFacingError
from ..providers.base import Provider, Rule, RuleError
from ..providers.registry import ProviderRegistry
from ..storage import Binding, Storage

GITHUB = "github"
PATREON = "patreon"
SOURCES = (GITHUB, PATREON)
# How long a delivery id is remembered, per source (see the module's docstring).
REMEMBERED_MS = {GITHUB: 7 * 86_400_000, PATREON: 3_600_000}
PURGE_EVERY_MS = 3_600_000
# GitHub's event -> the actions that may change who qualifies.
GITHUB_ACTIONS = {
    "organization": frozenset({"member_added", "member_removed"}),
    "membership": frozenset({"added", "removed"}),
    "member": frozenset({"added", "removed", "edited"}),
    "sponsorship": frozenset(
        {
            "created",
            "cancelled",
            "edited",
            "tier_changed",
            "pending_cancellation",
            "pending_tier_change",
        }
    ),
}
PATREON_EVENTS = frozenset(
    {
        "members:create",
        "members:update",
        "members:delete",
        "members:pledge:create",
        "members:pledge:update",
        "members:pledge:delete",
    }
)
# A GitHub delivery id is a GUID; anything printable up to this length is taken.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,100}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


class RecheckRequests(Protocol):
    async def request_now(
        self, binding_ids: Iterable[int], reason: str, actor: str
    ) -> list[int]: ...


# ---- signatures -----------------------------------------------------------------------


def _digest(secret: str, body: bytes, algorithm: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, algorithm).digest()


def github_signature_problem(secret: str, body: bytes, header: str | None) -> str | None:
    """Why `X-Hub-Signature-256: header` does not sign `body` with `secret`, or None."""
    if not header:
        return "The delivery has no X-Hub-Signature-256 header: give the webhook a secret."
    algorithm, _, given = header.strip().partition("=")
    if algorithm != "sha256" or not _SHA256_HEX.fullmatch(given):
        return "X-Hub-Signature-256 must be sha256= and 64 hexadecimal digits."
    if not hmac.compare_digest(_digest(secret, body, "sha256"), bytes.fromhex(given)):
        return "The signature does not match: the webhook's secret differs from the bot's."
    return None


def patreon_signature_problem(secret: str, body: bytes, header: str | None) -> str | None:
    """Why `X-Patreon-Signature: header` does not sign `body` with `secret`, or None."""
    if not header:
        return "The delivery has no X-Patreon-Signature header."
    given = header.strip()
    if not _MD5_HEX.fullmatch(given):
        return "X-Patreon-Signature must be 32 hexadecimal digits (HMAC-MD5)."
    if not hmac.compare_digest(_digest(secret, body, "md5"), bytes.fromhex(given)):
        return "The signature does not match: the webhook's secret differs from the bot's."
    return None


# ---- what an event concerns -----------------------------------------------------------


@attrs.frozen
class Concern:
    """What a delivery is about: which rules it may change, said in words for the audit."""

    description: str  # "GitHub membership removed: octocat, team matrix-org/core"
    matches: Callable[[Rule], bool]


def _text(payload: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload if isinstance(payload, str) and payload else None


def _unreadable(what: str) -> UserFacingError:
    return UserFacingError("M_BAD_JSON", f"The delivery does not say {what}.")


def github_concern(event: str, action: str, payload: dict[str, Any]) -> Concern:
    """The rules a GitHub event may change (see the module's docstring); 400 when the
    payload lacks what the event documents."""
    who = _text(payload, "sender", "login") or "someone"
    if event == "sponsorship":
        sponsorable = _text(payload, "sponsorship", "sponsorable", "login")
        if sponsorable is None:
            raise _unreadable("whom the sponsorship is for (sponsorship.sponsorable.login)")
        account = sponsorable.lower()
        sponsor = _text(payload, "sponsorship", "sponsor", "login") or who
        return Concern(
            f"GitHub sponsorship {action}: {sponsor} sponsoring @{sponsorable}",
            lambda rule: rule.kind == "sponsor" and rule.args[0] == account,
        )
    if event == "member":
        full_name = _text(payload, "repository", "full_name")
        owner, slash, name = (full_name or "").lower().partition("/")
        if not (owner and slash and name):
            raise _unreadable("which repository (repository.full_name)")
        member = _text(payload, "member", "login") or who
        return Concern(
            f"GitHub collaborator {action}: {member} on {full_name}",
            lambda rule: rule.kind == "repo" and rule.args[:2] == (owner, name),
        )
    org_login = _text(payload, "organization", "login")
    if org_login is None:
        raise _unreadable("which organisation (organization.login)")
    org = org_login.lower()
    if event == "membership":
        member = _text(payload, "member", "login") or who
        # A deleted team's stub has no slug: every team rule of the org is concerned anyway.
        team = _text(payload, "team", "slug") or _text(payload, "team", "name") or "a team"
        return Concern(
            f"GitHub team membership {action}: {member}, team {org_login}/{team}",
            lambda rule: rule.kind in ("team", "repo") and rule.args[0] == org,
        )
    member = _text(payload, "membership", "user", "login") or who
    return Concern(
        f"GitHub organization {action}: {member} in {org_login}",
        lambda rule: rule.kind in ("org", "team", "repo") and rule.args[0] == org,
    )


def patreon_campaign(payload: dict[str, Any]) -> str | None:
    """The campaign a Patreon member document belongs to, when it says (JSON:API ids are
    strings; a number is read as its digits)."""
    data = payload.get("data")
    relations = data.get("relationships") if isinstance(data, dict) else None
    campaign = relations.get("campaign") if isinstance(relations, dict) else None
    linked = campaign.get("data") if isinstance(campaign, dict) else None
    campaign_id = linked.get("id") if isinstance(linked, dict) else None
    if isinstance(campaign_id, int) and not isinstance(campaign_id, bool):
        return str(campaign_id)
    return campaign_id if isinstance(campaign_id, str) and campaign_id else None


def parse_payload(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    """The delivery's JSON object (its signature already checked), or a 400. GitHub sends
    it as the body, or, when the webhook's content type is form-encoded, in the form's
    `payload` field (the signature is over the form either way)."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            fields = urllib.parse.parse_qs(text, strict_parsing=True)
            text = fields["payload"][0]
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError):
        raise UserFacingError("M_NOT_JSON", "The delivery is not JSON.") from None
    if not isinstance(payload, dict):
        raise UserFacingError("M_BAD_JSON", "The delivery must be a JSON object.")
    return payload


# ---- receiving ------------------------------------------------------------------------


@attrs.frozen
class WebhookOutcome:
    """How a delivery was taken: `applied` (`scheduled` re-checks), `repeat` (seen
    before, nothing done again), `ping`, or `ignored` (an event that changes nobody)."""

    outcome: str
    scheduled: int = 0

    @property
    def http_status(self) -> int:
        return 202 if self.outcome == "ignored" else 200


class WebhookService:
    def __init__(
        self,
        storage: Storage,
        providers: ProviderRegistry,
        rechecks: RecheckRequests,
        log: logging.Logger,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.storage = storage
        self.providers = providers
        self.rechecks = rechecks
        self.log = log
        self.clock = clock
        self._last_purge = 0

    def provider(self, source: str) -> Provider:
        """The provider whose webhook `source` is, if its secret is configured; else 404
        (before the body is read: an unconfigured source costs nothing)."""
        provider = self.providers.get(source) if source in SOURCES else None
        if provider is None or not provider.webhook_secret:
            raise UserFacingError(
                "M_NOT_FOUND", f"No {source} webhook is set up on this bot.", 404
            )
        return provider

    async def receive_github(self, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        provider = self.provider(GITHUB)
        assert provider.webhook_secret is not None
        problem = github_signature_problem(
            provider.webhook_secret, body, headers.get("X-Hub-Signature-256")
        )
        if problem is not None:
            raise UserFacingError("TPI_WEBHOOK_SIGNATURE", problem, 401)
        event = headers.get("X-GitHub-Event", "")
        if event == "ping":
            return WebhookOutcome("ping")
        if event not in GITHUB_ACTIONS:
            return WebhookOutcome("ignored")
        payload = parse_payload(body, headers.get("Content-Type", "application/json"))
        action = payload.get("action")
        if not isinstance(action, str) or action not in GITHUB_ACTIONS[event]:
            return WebhookOutcome("ignored")
        delivery_id = headers.get("X-GitHub-Delivery", "").strip()
        if not _DELIVERY_ID.fullmatch(delivery_id):
            raise UserFacingError(
                "M_MISSING_PARAM", "The delivery has no usable X-GitHub-Delivery header."
            )
        concern = github_concern(event, action, payload)
        return await self._apply(provider, GITHUB, delivery_id, concern)

    async def receive_patreon(self, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        provider = self.provider(PATREON)
        assert provider.webhook_secret is not None
        problem = patreon_signature_problem(
            provider.webhook_secret, body, headers.get("X-Patreon-Signature")
        )
        if problem is not None:
            raise UserFacingError("TPI_WEBHOOK_SIGNATURE", problem, 401)
        event = headers.get("X-Patreon-Event", "")
        if event not in PATREON_EVENTS:
            return WebhookOutcome("ignored")
        payload = parse_payload(body)
        campaign = patreon_campaign(payload)
        ours = getattr(provider, "campaign_id", None)
        if campaign is not None and ours is not None and campaign != ours:
            return WebhookOutcome("ignored")
        # Patreon sends no delivery id: the same event with the same body is one delivery.
        delivery_id = hashlib.sha256(event.encode() + b"\n" + body).hexdigest()
        member = _text(payload, "data", "id") or "a member"
        concern = Concern(f"Patreon {event}: member {member}", lambda rule: True)
        return await self._apply(provider, PATREON, delivery_id, concern)

    async def _apply(
        self, provider: Provider, source: str, delivery_id: str, concern: Concern
    ) -> WebhookOutcome:
        now = self.clock()
        await self._purge(now)
        if not await self.storage.webhooks.record_once(source, delivery_id, now):
            return WebhookOutcome("repeat")
        try:
            bindings = await self.concerned(provider, concern)
            actor = f"webhook:{source}"
            scheduled = await self.rechecks.request_now(
                [b.id for b in bindings], concern.description, actor
            )
            await self._audit(now, actor, concern, bindings)
        except BaseException:
            # Not applied: the sender's retry (or a redelivery) must be applied, not dropped.
            await self.storage.webhooks.forget(source, delivery_id)
            raise
        self.log.info(
            "%s: re-check of %d binding(s) requested", concern.description, len(scheduled)
        )
        return WebhookOutcome("applied", len(scheduled))

    async def concerned(self, provider: Provider, concern: Concern) -> list[Binding]:
        """The live bindings with a rule of `provider` that the event may change."""
        found = []
        for binding in await self.storage.bindings.active_with_provider(provider.id):
            for stored in binding.rules:
                if stored.provider != provider.id:
                    continue
                try:
                    rule = provider.parse_rule(stored.rule)
                except RuleError:
                    continue  # a rule this version no longer reads: re-checks say so
                if concern.matches(rule):
                    found.append(binding)
                    break
        return found

    async def _audit(
        self, now: int, actor: str, concern: Concern, bindings: list[Binding]
    ) -> None:
        """One entry per room concerned (each room's `!invitebot audit` shows why its
        re-check ran), naming that room's bindings; one without a room when none is."""
        if not bindings:
            detail = f"{concern.description}; no binding concerned"
            await self.storage.audit.add(now, actor, "webhook", None, None, detail)
            return
        by_room: dict[str, list[str]] = {}
        for binding in bindings:
            for room_id in binding.rooms:
                by_room.setdefault(room_id, []).append(binding.public_id)
        for room_id, public_ids in by_room.items():
            detail = f"{concern.description}; re-check of binding {', '.join(public_ids)}"
            await self.storage.audit.add(now, actor, "webhook", room_id, None, detail)

    async def _purge(self, now: int) -> None:
        if now - self._last_purge < PURGE_EVERY_MS:
            return
        self._last_purge = now
        for source, kept in REMEMBERED_MS.items():
            await self.storage.webhooks.purge(source, now - kept)
