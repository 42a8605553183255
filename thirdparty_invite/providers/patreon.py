"""Patreon: patrons of the operator's campaign (API v2).

Rules (the campaign is the one in config, `campaign_id`):
- `patron` (or nothing): an active patron (`patron_status == "active_patron"`).
- `tier:NAME_OR_ID`: an active patron entitled to that tier *or to any tier of the campaign
  that costs more* (by `amount_cents`): "patrons of tier Gold or above". The tier is matched
  by ID, else by title (case and spacing ignored), when the rule is checked: the rule keeps
  the admin's text, so a renamed tier only needs the rule typed again.
- `min_cents:N`: an active patron whose currently entitled amount is at least N cents (in
  the campaign's currency).

Scope: `identity` alone. Patreon's docs (GET /api/oauth2/v2/identity): without
`identity.memberships` the `memberships` include holds the person's membership of the
campaign that owns the OAuth client, and nothing of the other creators they support, which
is exactly what these rules need and all a patron should have to reveal. So the client must
be registered with the campaign's creator account (docs/PROVIDERS.md says so).

One identity call per sign-in answers every rule: the membership, its entitled tiers, its
campaign and the campaign's tiers (`memberships.campaign.tiers`: not in Patreon's docs, but
used by real clients) for what "Gold or above" costs. Without them, a patron of another
tier than the named one gets "unknown", never a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Any

import attrs

from .base import (
    AuthorizationRequest,
    ExternalAccount,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    Rule,
    RuleError,
    SignInFailed,
    Verdict,
)
from .oauth import ApiResponse, OAuthClient, OAuthEndpoints, failure_detail
from .settings import refuse_unknown_settings, secret_setting, text_setting, url_setting

log = logging.getLogger(__name__)

DEFAULT_WEB_URL = "https://www.patreon.com"
DEFAULT_API_URL = "https://www.patreon.com/api/oauth2"
SCOPES = ("identity",)
IDENTITY_QUERY = {
    "include": (
        "memberships,memberships.currently_entitled_tiers,memberships.campaign,"
        "memberships.campaign.tiers"
    ),
    # API v2 returns no attribute unless asked for it by name.
    "fields[user]": "full_name,vanity",
    "fields[member]": "patron_status,currently_entitled_amount_cents,last_charge_status",
    "fields[tier]": "title,amount_cents",
}
SETTINGS = (
    "client_id",
    "client_secret",
    "campaign_id",
    "campaign_name",
    "web_url",
    "api_url",
    "webhook_secret",
)
RULE_FORMS = "patron, tier:<tier name or ID>, or min_cents:<amount in cents>"
MAX_CENTS = 100_000_000
INACTIVE_REASONS = {
    "declined_patron": (
        "your pledge is not active (declined payment)",
        "Update your payment method on Patreon; once the payment goes through, start again.",
    ),
    "former_patron": (
        "your pledge is not active (you are a former patron)",
        "Pledge again on Patreon, then start again.",
    ),
    None: (
        "your pledge is not active (you follow the campaign but have not pledged)",
        "Become a patron on Patreon, then start again.",
    ),
}


@attrs.frozen
class Tier:
    id: str
    title: str
    amount_cents: int | None  # None: Patreon did not say


@attrs.frozen
class Membership:
    """The person's membership of the configured campaign, as Patreon answered it."""

    patron_status: str | None
    entitled_cents: int | None
    entitled_tiers: tuple[Tier, ...]
    campaign_tiers: tuple[Tier, ...] | None  # None: Patreon did not list them

    @property
    def active(self) -> bool:
        return self.patron_status == "active_patron"


class UnreadableIdentity(ValueError):
    """The identity document does not have the shape Patreon documents."""


def _normalized(title: str) -> str:
    return " ".join(title.split()).casefold()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class PatreonProvider(Provider):
    kind = "patreon"
    required_settings = ("client_id", "client_secret", "campaign_id")

    def __init__(
        self,
        provider_id: str,
        *,
        client_id: str,
        client_secret: str,
        campaign_id: str,
        campaign_name: str | None = None,
        web_url: str,
        api_url: str,
        http: Any,
    ) -> None:
        super().__init__(provider_id, "Patreon")
        self.campaign_id = campaign_id
        # People know a creator's name, not a campaign's number.
        self.campaign_name = campaign_name
        self.web_url = web_url
        self.api_url = api_url
        self._oauth = OAuthClient(
            self.display_name,
            client_id,
            client_secret,
            OAuthEndpoints(
                authorize_url=f"{web_url}/oauth2/authorize",
                token_url=f"{api_url}/token",
                # Patreon documents the secret in the form body. It does not document PKCE;
                # a server that does not know the parameters ignores them, so they are sent
                # anyway and protect the code the day Patreon checks them.
                token_auth="client_secret_post",
            ),
            http,
        )

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> Provider:
        refuse_unknown_settings(section, SETTINGS)
        campaign = section.get("campaign_id")
        if isinstance(campaign, int) and not isinstance(campaign, bool):
            campaign = str(campaign)  # YAML reads an unquoted ID as a number
        if not isinstance(campaign, str) or not campaign.strip().isdigit():
            raise ValueError(
                f"campaign_id: must be your campaign's numeric ID (digits), not {campaign!r}"
            )
        provider = cls(
            provider_id,
            client_id=text_setting(section, "client_id"),
            client_secret=text_setting(section, "client_secret"),
            campaign_id=campaign.strip(),
            campaign_name=(
                text_setting(section, "campaign_name") if "campaign_name" in section else None
            ),
            web_url=url_setting(section, "web_url", DEFAULT_WEB_URL),
            api_url=url_setting(section, "api_url", DEFAULT_API_URL),
            http=http,
        )
        provider.webhook_secret = secret_setting(section, "webhook_secret")
        return provider

    def parse_rule(self, text: str) -> Rule:
        words = " ".join(text.split())
        if words.lower() in ("", "patron"):
            return Rule(self.id, "patron", (), "patron")
        kind, colon, arg = words.partition(":")
        kind, arg = kind.strip().lower(), arg.strip()
        if not colon or kind not in ("tier", "min_cents"):
            raise RuleError(f"Unknown Patreon rule {words!r}: use {RULE_FORMS}.")
        if kind == "tier":
            if not arg or len(arg) > 100 or not arg.isprintable():
                raise RuleError("Name the tier: tier:<tier name or ID>, e.g. tier:Gold.")
            return Rule(self.id, "tier", (arg,), f"tier:{arg}")
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_CENTS:
            raise RuleError(
                f"min_cents takes a whole number of cents from 1 to {MAX_CENTS}, "
                f"e.g. min_cents:500 for 5.00; not {arg!r}."
            )
        return Rule(self.id, "min_cents", (str(int(arg)),), f"min_cents:{int(arg)}")

    def describe(self, rule: Rule) -> str:
        campaign = (
            f"{self.campaign_name} on Patreon" if self.campaign_name else "this Patreon campaign"
        )
        if rule.kind == "tier":
            return f"patrons of {campaign} at tier {rule.args[0]} or above"
        if rule.kind == "min_cents":
            amount = _money(int(rule.args[0]))
            return f"patrons of {campaign} pledging at least {amount} (campaign currency)"
        return f"active patrons of {campaign}"

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return list(SCOPES)  # every rule reads the same membership

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        return self._oauth.authorization_request(redirect_uri, self.scopes(rules), state)

    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> ProviderSession:
        token = await self._oauth.exchange_code(code, redirect_uri, request)
        if token.granted_scopes is not None and not set(SCOPES) <= token.granted_scopes:
            raise SignInFailed(
                "Patreon did not share who you are and your membership, which this room "
                "needs to check. Start again and allow the app's access.",
                "TPI_PROVIDER_SCOPES_DENIED",
            )
        response = await self._oauth.get_json(
            f"{self.api_url}/v2/identity", token.access_token, params=IDENTITY_QUERY
        )
        if response.status != 200:
            raise ProviderUnavailable(self.display_name, _failure_detail(response))
        try:
            account, membership = read_identity(response.body, self.id, self.campaign_id)
        except UnreadableIdentity as e:
            log.warning("Patreon identity answer not understood: %s", e)
            raise ProviderUnavailable(self.display_name, "its answer could not be read") from None
        # The document answers every rule: the token is not needed any more.
        return PatreonSession(account, membership)


class PatreonSession(ProviderSession):
    def __init__(self, account: ExternalAccount, membership: Membership | None) -> None:
        self.account = account
        self.membership = membership

    async def check(self, rule: Rule) -> Verdict:
        membership = self.membership
        if membership is None:
            return Verdict.no(
                f"the Patreon account {self.account.display_name} is not a patron of this "
                "campaign",
                "Become a patron on Patreon (or sign in with the Patreon account that "
                "pledges), then start again.",
            )
        if not membership.active:
            reason, remedy = INACTIVE_REASONS.get(
                membership.patron_status,
                (f"your pledge is not active (Patreon says {membership.patron_status!r})", ""),
            )
            return Verdict.no(reason, remedy)
        if rule.kind == "patron":
            return Verdict.yes()
        if rule.kind == "min_cents":
            return _check_amount(membership, int(rule.args[0]))
        if rule.kind == "tier":
            return _check_tier(membership, rule.args[0])
        return Verdict.unknown(f"this sign-in cannot check the rule {rule.text!r}")


def _check_amount(membership: Membership, minimum: int) -> Verdict:
    cents = membership.entitled_cents
    if cents is None:
        return Verdict.unknown("Patreon did not say how much you pledge")
    if cents >= minimum:
        return Verdict.yes()
    return Verdict.no(
        f"your pledge ({_money(cents)}) is below the {_money(minimum)} this room asks for",
        "Raise your pledge on Patreon, then start again.",
    )


def _check_tier(membership: Membership, wanted: str) -> Verdict:
    key = _normalized(wanted)

    def matches(tier: Tier) -> bool:
        return tier.id == wanted or (bool(tier.title) and _normalized(tier.title) == key)

    if any(matches(tier) for tier in membership.entitled_tiers):
        return Verdict.yes()
    known = [*(membership.campaign_tiers or ()), *membership.entitled_tiers]
    # An ID names one tier; a title could name several: the cheapest sets the bar.
    named = [t for t in known if matches(t)]
    bars = [t.amount_cents for t in named if t.amount_cents is not None]
    if not named and membership.campaign_tiers is not None:
        return Verdict.unknown(
            f"this room's rule names the Patreon tier {wanted!r}, which the campaign "
            "does not have",
            "Tell the room's admins: the tier may have been renamed.",
        )
    amounts = [t.amount_cents for t in membership.entitled_tiers]
    if bars and any(a is not None and a >= min(bars) for a in amounts):
        return Verdict.yes()
    if not bars or None in amounts:
        return Verdict.unknown(f"Patreon did not say how your tier compares with {wanted}")
    titles = ", ".join(t.title or t.id for t in membership.entitled_tiers)
    return Verdict.no(
        f"your tier ({titles}) is below {wanted}"
        if titles
        else f"your pledge does not include a tier ({wanted} or above is needed)",
        f"Move your pledge to {wanted} or above on Patreon, then start again.",
    )


# --- reading the JSON:API document ---------------------------------------------------

Index = dict[tuple[str, str], dict[str, Any]]


def read_identity(
    document: Any, provider_id: str, campaign_id: str
) -> tuple[ExternalAccount, Membership | None]:
    """The account and its membership of `campaign_id` (None: not a member) from the answer
    to IDENTITY_QUERY. Raises UnreadableIdentity when the document is not shaped as
    documented: a wrong shape must never read as "not a patron"."""
    if not isinstance(document, dict):
        raise UnreadableIdentity("the answer is not a JSON object")
    data = _object(document.get("data"), "data")
    user_id = data.get("id")
    included = document.get("included", [])
    if not isinstance(user_id, str) or not user_id or not isinstance(included, list):
        raise UnreadableIdentity("data.id or included is missing or malformed")
    index: Index = {
        (str(item.get("type")), item["id"]): item
        for item in included
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    }
    attributes = _object(data.get("attributes", {}), "data.attributes")
    names = [attributes.get("full_name"), attributes.get("vanity"), f"Patreon user {user_id}"]
    name = next(n.strip() for n in names if isinstance(n, str) and n.strip())
    if "memberships" not in _object(data.get("relationships", {}), "data.relationships"):
        raise UnreadableIdentity("the memberships relationship is missing")
    found = []
    for ref in _linkage(data, "memberships"):
        member = index.get(("member", ref))
        # Not included, another creator's campaign, or none named: nothing to say here.
        if member is not None and _linkage(member, "campaign") == [campaign_id]:
            found.append(_membership(member, index, campaign_id))
    # Patreon keeps one membership per campaign; should two come back, an active one decides.
    found.sort(key=lambda m: not m.active)
    return ExternalAccount(provider_id, user_id, name), (found[0] if found else None)


def _membership(member: dict[str, Any], index: Index, campaign_id: str) -> Membership:
    attributes = _object(member.get("attributes", {}), "member.attributes")
    status = attributes.get("patron_status")
    if status is not None and not isinstance(status, str):
        raise UnreadableIdentity("patron_status is not a string")
    entitled_cents = None  # not said
    if "currently_entitled_amount_cents" in attributes:
        cents = attributes["currently_entitled_amount_cents"]
        entitled_cents = 0 if cents is None else cents  # null: nothing pledged
        if not isinstance(entitled_cents, int) or isinstance(cents, bool) or entitled_cents < 0:
            raise UnreadableIdentity("currently_entitled_amount_cents is not a whole number")
    entitled = tuple(_tier(ref, index) for ref in _linkage(member, "currently_entitled_tiers"))
    campaign = index.get(("campaign", campaign_id), {})
    campaign_tiers = None
    if "tiers" in _object(campaign.get("relationships", {}), "campaign.relationships"):
        campaign_tiers = tuple(_tier(ref, index) for ref in _linkage(campaign, "tiers"))
    return Membership(status, entitled_cents, entitled, campaign_tiers)


def _tier(tier_id: str, index: Index) -> Tier:
    attributes = _object(index.get(("tier", tier_id), {}).get("attributes", {}), "tier")
    title, amount = attributes.get("title"), attributes.get("amount_cents")
    valid_amount = isinstance(amount, int) and not isinstance(amount, bool)
    return Tier(
        tier_id, title.strip() if isinstance(title, str) else "", amount if valid_amount else None
    )


def _linkage(resource: dict[str, Any], name: str) -> list[str]:
    """The IDs in `resource.relationships[name].data` (one link or a list of them)."""
    relationships = _object(resource.get("relationships", {}), "relationships")
    linkage = _object(relationships.get(name, {}), f"relationships.{name}").get("data")
    items = [] if linkage is None else linkage if isinstance(linkage, list) else [linkage]
    if not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise UnreadableIdentity(f"relationships.{name} holds something that is not a link")
    return [i["id"] for i in items]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnreadableIdentity(f"{where} is not an object")
    return value


def _failure_detail(response: ApiResponse) -> str:
    errors = response.body.get("errors") if isinstance(response.body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    wait = first.get("retry_after_seconds") if isinstance(first, dict) else None
    return failure_detail(response, wait)
