"""Patreon: patrons of the operator's campaign (API v2).

Rules (the campaign is the one in config, `campaign_id`):
- `patron` (or nothing): an active, paying (or gifted) patron.
- `tier:NAME_OR_ID`: an active patron entitled to that tier *or to any tier of the campaign
  that costs more* (by `amount_cents`): "patrons of tier Gold or above". The tier is matched
  by ID, else by title (case and spacing ignored), when the rule is checked: the rule keeps
  the admin's text, so a renamed tier only needs the rule typed again.
- `min_cents:N`: an active patron whose entitled amount is at least N cents a month (in
  the campaign's currency). patreon_membership.py judges a membership against these.

Scope: `identity` alone. Patreon's docs (GET /api/oauth2/v2/identity): without
`identity.memberships` the `memberships` include holds the person's membership of the
campaign that owns the OAuth client, and nothing of the other creators they support, which
is exactly what these rules need and all a patron should have to reveal. So the client must
be registered with the campaign's creator account (docs/PROVIDERS.md says so); a sign-in
that shows another campaign's membership reveals a client registered elsewhere, and is
"unknown" (the operator is told in the log), never "not a patron".

One identity call per sign-in answers every rule: the membership, its entitled tiers, its
campaign and the campaign's tiers (`memberships.campaign.tiers`: not in Patreon's docs, but
used by real clients) for what "Gold or above" costs. Without them, a patron of another
tier than the named one gets "unknown", never a refusal. Patreon documents no token
revocation: the person's token is dropped after the identity call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import logging
import time
from typing import Any

from .base import (
    AuthorizationRequest,
    ExternalAccount,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    Rule,
    RuleError,
    RuleField,
    RuleShape,
    SignInFailed,
    Verdict,
)
from .listing import MemberListing
from .oauth import OAuthClient, OAuthEndpoints
from .patreon_listing import (
    CampaignMembers,
    CreatorToken,
    failure_detail_of,
    read_recheck,
    setup_problem,
)
from .patreon_membership import (
    Membership,
    UnreadableDocument,
    as_object,
    campaign_tiers_of,
    index_included,
    linkage,
    membership_verdict,
    money,
    read_member,
)
from .settings import refuse_unknown_settings, secret_setting, text_setting, url_setting

log = logging.getLogger(__name__)

DEFAULT_WEB_URL = "https://www.patreon.com"
DEFAULT_API_URL = "https://www.patreon.com/api/oauth2"
SCOPES = ("identity",)
MEMBER_FIELDS = "patron_status,currently_entitled_amount_cents,pledge_cadence,is_gifted"
IDENTITY_QUERY = {
    "include": (
        "memberships,memberships.currently_entitled_tiers,memberships.campaign,"
        "memberships.campaign.tiers"
    ),
    # API v2 returns no attribute unless asked for it by name.
    "fields[user]": "full_name,vanity",
    "fields[member]": MEMBER_FIELDS,
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
    "recheck",
)
RULE_FORMS = "patron, tier:<tier name or ID>, or min_cents:<amount in cents>"
MAX_CENTS = 100_000_000
SETUP_RETRY = 600.0  # seconds before the campaign check is tried again after a failure
TELL_THE_ADMINS = "Tell the room's admins: the bot's Patreon setup needs their operator."


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
        recheck: tuple[str, str] | None = None,
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
        # The creator's tokens for re-checks (access, refresh), from config `recheck`.
        self.creator = None if recheck is None else CreatorToken(self, *recheck)
        self._setup_checked = False
        self._next_setup_check = 0.0
        self._setup_task: asyncio.Task[None] | None = None
        if http is not None and self.creator is None:
            log.info(
                "Patreon: without recheck credentials the bot cannot confirm that its client "
                "is registered by campaign %s's creator; if it is not, patrons of that "
                "campaign are told they are not patrons (docs/PROVIDERS.md).",
                campaign_id,
            )

    @property
    def client_secret(self) -> str:
        return self._oauth._client_secret  # the refresh grant authenticates like the code

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
            recheck=read_recheck(section),
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

    def rule_shapes(self) -> list[RuleShape]:
        return [
            RuleShape("patron", "patron", "patron", "any patron of the campaign"),
            RuleShape(
                "tier",
                "tier:",
                "tier:<tier name or ID>",
                "patrons of that tier",
                (RuleField("tier", "Tier name or ID"),),
            ),
            RuleShape(
                "min_cents",
                "min_cents:",
                "min_cents:<amount in cents>",
                "patrons paying at least that much (500 is 5.00)",
                (RuleField("cents", "Amount in cents"),),
            ),
        ]

    def describe(self, rule: Rule) -> str:
        campaign = (
            f"{self.campaign_name} on Patreon" if self.campaign_name else "this Patreon campaign"
        )
        if rule.kind == "tier":
            return f"patrons of {campaign} at tier {rule.args[0]} or above"
        if rule.kind == "min_cents":
            amount = money(int(rule.args[0]))
            return f"patrons of {campaign} pledging at least {amount} a month (campaign currency)"
        return f"active patrons of {campaign}"

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return list(SCOPES)  # every rule reads the same membership

    async def validate_rule(self, rule: Rule) -> str | None:
        """At `bind`, with the creator's token: refuse when the client is not the
        campaign creator's (no sign-in could ever tell a patron), or the tier is not the
        campaign's. Without that token nothing can be asked (the log said so at start)."""
        if self.creator is None:
            return None
        try:
            problem = await setup_problem(self)
            if problem:
                log.warning("Patreon: %s", problem)
                raise RuleError(f"the bot's Patreon setup is wrong: {problem}")
            self._setup_checked = True
            missing = await CampaignMembers(self, rule).check_tier() if rule.kind == "tier" else ""
        except ProviderUnavailable as e:
            return f"could not check this rule with Patreon now ({e.detail})."
        if missing:
            raise RuleError(f"{missing}. Use a tier's name or ID as Patreon shows it.")
        return None

    async def prepare(self) -> None:
        """Before sign-ins, once and in the background (a sign-in never waits for it):
        with the creator's token, log when the client is not the campaign creator's."""
        now = time.monotonic()
        if self.creator is None or self._setup_checked or now < self._next_setup_check:
            return
        self._next_setup_check = now + SETUP_RETRY
        self._setup_task = asyncio.create_task(self._log_setup_problem())

    async def _log_setup_problem(self) -> None:
        try:
            problem = await setup_problem(self)
        except ProviderUnavailable as e:
            log.info("Patreon: could not check the client's campaign yet: %s", e.detail)
            return
        self._setup_checked = True
        if problem:
            log.warning("Patreon: %s", problem)

    async def close(self) -> None:
        if self._setup_task is not None:
            self._setup_task.cancel()

    def listing(self, rule: Rule) -> MemberListing | None:
        if self.creator is None or rule.kind not in ("patron", "tier", "min_cents"):
            return None
        return CampaignMembers(self, rule)

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
            raise ProviderUnavailable(self.display_name, failure_detail_of(response))
        try:
            account, membership, unclear = read_identity(response.body, self.id, self.campaign_id)
        except UnreadableDocument as e:
            log.warning("Patreon identity answer not understood: %s", e)
            raise ProviderUnavailable(self.display_name, "its answer could not be read") from None
        # The document answers every rule: the token is not needed any more, and Patreon
        # documents no revocation for it.
        return PatreonSession(account, membership, unclear)


class PatreonSession(ProviderSession):
    def __init__(
        self, account: ExternalAccount, membership: Membership | None, unclear: str = ""
    ) -> None:
        self.account = account
        self.membership = membership
        # Why the membership cannot be told from the identity answer ("": it can).
        self.unclear = unclear

    async def check(self, rule: Rule) -> Verdict:
        if self.membership is None and self.unclear:
            return Verdict.unknown(self.unclear, TELL_THE_ADMINS)
        if self.membership is None:
            return Verdict.no(
                f"the Patreon account {self.account.display_name} is not a patron of this "
                "campaign",
                "Become a patron on Patreon (or sign in with the Patreon account that "
                "pledges), then start again.",
            )
        return membership_verdict(self.membership, rule.kind, rule.args)


# --- reading the identity document ---------------------------------------------------


def read_identity(
    document: Any, provider_id: str, campaign_id: str
) -> tuple[ExternalAccount, Membership | None, str]:
    """The account, its membership of `campaign_id` (None: none found) and, when none was
    found, why that may not mean "not a patron" ("" when it does) from the answer to
    IDENTITY_QUERY. Raises UnreadableDocument when the document is not shaped as
    documented: a wrong shape must never read as "not a patron"."""
    if not isinstance(document, dict):
        raise UnreadableDocument("the answer is not a JSON object")
    data = as_object(document.get("data"), "data")
    user_id = data.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise UnreadableDocument("data.id is missing or malformed")
    index = index_included(document)
    attributes = as_object(data.get("attributes", {}), "data.attributes")
    names = [attributes.get("full_name"), attributes.get("vanity"), f"Patreon user {user_id}"]
    name = next(n.strip() for n in names if isinstance(n, str) and n.strip())
    account = ExternalAccount(provider_id, user_id, name)
    if "memberships" not in as_object(data.get("relationships", {}), "data.relationships"):
        raise UnreadableDocument("the memberships relationship is missing")
    found, unclear, elsewhere = [], "", set()
    for ref in linkage(data, "memberships"):
        member = index.get(("member", ref))
        campaigns = linkage(member, "campaign") if member is not None else []
        if member is None or not campaigns:
            unclear = "Patreon did not say which campaign your membership is for"
        elif campaigns == [campaign_id]:
            campaign = index.get(("campaign", campaign_id), {})
            found.append(read_member(member, index, campaign_tiers_of(campaign, index)))
        else:
            elsewhere.update(campaigns)
    if found:
        # Patreon keeps one membership per campaign; should two come back, an active one
        # decides.
        found.sort(key=lambda m: not m.active)
        return account, found[0], ""
    if not unclear and elsewhere:
        # With the `identity` scope alone Patreon shows only the membership of the campaign
        # owning the OAuth client: another campaign here means the client is not ours.
        log.warning(
            "Patreon showed a sign-in the membership of campaign(s) %s, not of campaign_id "
            "%s: the Patreon client seems registered by another creator. Register it "
            "signed in as campaign %s's creator; until then patrons are checked as unknown.",
            ", ".join(sorted(elsewhere)),
            campaign_id,
            campaign_id,
        )
        unclear = "the bot's Patreon app is registered under another creator's account"
    return account, None, unclear
