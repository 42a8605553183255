"""A stand-in for Patreon's OAuth and API v2 identity call on a loopback port.

    async with FakePatreon() as patreon:
        alice = patreon.add_account("Alice Example")
        patreon.pledge(alice, "Gold")                      # active patron of tier Gold
        patreon.sign_in_as(alice)
        patreon.auto_approve = True
        section = patreon.config_section(client_id="cid", client_secret="s3cret",
                                         redirect_uris=[callback_url])

The world: `patreon.campaign` is the operator's campaign (it owns every registered client,
so the `identity` scope shows memberships of it only, as Patreon documents); other
campaigns can be added for people's other pledges. The creator's side (campaigns, tiers,
members page by page, the refresh grant) is in patreon_campaign.py:

        access, refresh = patreon.creator_tokens()        # the portal's creator token pair
        section = patreon.config_section(recheck=True)    # ... as `recheck:` in the config

Answers are JSON:API documents shaped
as tests/fixtures/patreon documents them, with sparse fieldsets (v2 returns no attribute
that was not asked for) and `include` checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import secrets
from typing import Any
import uuid

from aiohttp import web
import attrs
from support.providers.fake_oauth import (
    FakeOAuthServer,
    Handler,
    IssuedToken,
    fixture,
)
from support.providers.patreon_campaign import CampaignAPI

INCLUDES = frozenset(
    {
        "memberships",
        "campaign",
        "memberships.currently_entitled_tiers",
        "memberships.campaign",
        # Not in Patreon's docs; accepted by Patreon and used by real clients.
        "memberships.campaign.tiers",
    }
)
DEFAULT_TIERS = {"Bronze": 100, "Silver": 300, "Gold": 500, "Platinum": 1000}


def _digits(length: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (length - 1)) + 10 ** (length - 1))


@attrs.define
class PatreonTier:
    title: str
    amount_cents: int
    id: str = attrs.field(factory=lambda: _digits(7))


@attrs.define
class PatreonCampaign:
    id: str = attrs.field(factory=lambda: _digits(7))
    vanity: str = "creator"
    tiers: list[PatreonTier] = attrs.field(factory=list)
    creator: PatreonAccount | None = None  # whose creator token lists its members

    def tier(self, title_or_id: str) -> PatreonTier:
        return next(t for t in self.tiers if title_or_id in (t.id, t.title))


@attrs.define
class PatreonMember:
    campaign: PatreonCampaign
    patron_status: str | None  # "active_patron", "declined_patron", "former_patron", None
    tiers: list[PatreonTier]
    amount_cents: int | None
    last_charge_status: str | None = "Paid"
    last_charge_date: str | None = "2018-04-01T21:28:06+00:00"
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    pledge_cadence: int | None = 1  # months between charges (12: annual)
    is_gifted: bool = False
    account: PatreonAccount | None = None


@attrs.define
class PatreonAccount:
    full_name: str
    vanity: str | None = None
    email: str = "some_email@email.com"
    id: str = attrs.field(factory=lambda: _digits(9))
    memberships: list[PatreonMember] = attrs.field(factory=list)

    @property
    def name(self) -> str:
        return self.full_name


class FakePatreon(FakeOAuthServer):
    """Patreon's `/oauth2/authorize`, `/api/oauth2/token` (client secret in the form, as
    documented) and `/api/oauth2/v2/identity`. Patreon does not document PKCE: a challenge
    sent is checked, none is required."""

    provider_name = "Patreon"
    authorize_path = "/oauth2/authorize"
    token_paths = ("/api/oauth2/token",)
    known_scopes = frozenset(fixture("patreon", "enums.json")["oauth.scopes_v2"])
    token_fixture = ("patreon", "token.200.constructed.json")
    pkce = "optional"
    client_auth = frozenset({"post"})

    def __init__(
        self, *, host: str = "127.0.0.1", tiers: Mapping[str, int] = DEFAULT_TIERS
    ) -> None:
        super().__init__(host=host)
        self.accounts: list[PatreonAccount] = []
        self.campaigns: list[PatreonCampaign] = []
        self.campaign = self.add_campaign(tiers)
        # The campaign whose creator registered the clients: `identity` shows memberships of
        # it only. Another than `campaign` models a client registered by someone else.
        self.client_campaign = self.campaign
        self.creator_api = CampaignAPI(self)
        # False: Patreon leaves out `memberships.campaign.tiers` (it is undocumented).
        self.campaign_tiers_visible = True
        # True: every membership comes back, as with the identity.memberships scope.
        self.show_all_memberships = False

    def add_campaign(self, tiers: Mapping[str, int] = DEFAULT_TIERS) -> PatreonCampaign:
        campaign = PatreonCampaign(tiers=[PatreonTier(t, cents) for t, cents in tiers.items()])
        campaign.creator = self.add_account(f"Creator of {campaign.id}", vanity="creator")
        self.campaigns.append(campaign)
        return campaign

    def creator_tokens(self, campaign: PatreonCampaign | None = None) -> tuple[str, str]:
        """A creator access and refresh token of `campaign`'s creator (default: the one
        who registered the clients), as the portal shows them for a registered client."""
        return self.creator_api.issue((campaign or self.client_campaign).creator)

    def add_account(self, full_name: str, *, vanity: str | None = None) -> PatreonAccount:
        account = PatreonAccount(full_name, vanity)
        self.accounts.append(account)
        return account

    def pledge(
        self,
        account: PatreonAccount,
        tier: str | None = None,
        *,
        status: str | None = "active_patron",
        campaign: PatreonCampaign | None = None,
        amount_cents: int | None = None,
        last_charge_status: str | None = "Paid",
        cadence: int | None = 1,
        gifted: bool = False,
    ) -> PatreonMember:
        """Make `account` a member of `campaign` (default: the operator's) entitled to
        `tier` (a title or ID; None: no tier), paying the tier's amount for `cadence`
        months unless told (a gift pays nothing and charges nothing)."""
        campaign = campaign or self.campaign
        tiers = [campaign.tier(tier)] if tier is not None else []
        if amount_cents is None:
            monthly = tiers[0].amount_cents if tiers and not gifted else 0
            amount_cents = monthly * (cadence or 1)
        if gifted:
            last_charge_status = None
        member = PatreonMember(campaign, status, tiers, amount_cents, last_charge_status)
        member.pledge_cadence, member.is_gifted, member.account = cadence, gifted, account
        if gifted:
            member.last_charge_date = None
        account.memberships.append(member)
        return member

    def members_of(self, campaign: PatreonCampaign) -> list[PatreonMember]:
        """The campaign's members in the order its member pages list them."""
        found = [m for a in self.accounts for m in a.memberships if m.campaign is campaign]
        return sorted(found, key=lambda m: m.id)

    def config_section(
        self,
        client_id: str = "fake-patreon-client",
        client_secret: str = "fake-patreon-secret",
        redirect_uris: Iterable[str] = (),
        *,
        recheck: bool = False,
    ) -> dict[str, Any]:
        self.register_client(client_id, client_secret, redirect_uris)
        section: dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "campaign_id": self.campaign.id,
            "web_url": self.url,
            "api_url": f"{self.url}/api/oauth2",
        }
        if recheck:
            access, refresh = self.creator_tokens()
            section["recheck"] = {
                "creator_access_token": access,
                "creator_refresh_token": refresh,
            }
        return section

    # --- answers ----------------------------------------------------------------------

    def api_error(self, status: int) -> web.Response:
        if status == 429:
            body = fixture("patreon", "error-429.json")
        elif status == 401:
            body = fixture("patreon", "error-401.constructed.json")
        elif status == 400:
            body = fixture("patreon", "error-400-invalid-parameter.constructed.json")
        else:  # the documented status table's words, in the JSON:API error shape
            detail = fixture("patreon", "enums.json")["errors.http_status"].get(str(status), "")
            body = {"errors": [{"status": str(status), "detail": detail}]}
        return web.json_response(body, status=status)

    def add_api_routes(self, add: Callable[[str, str, Handler], None]) -> None:
        add("GET", "/api/oauth2/v2/identity", self._identity)
        self.creator_api.add_routes(add)

    async def _token(self, request: web.Request) -> web.Response:
        # The refresh grant (the creator's token) is the creator side's; codes are the base's.
        form = await request.post() if request.content_type.endswith("urlencoded") else {}
        if form.get("grant_type") == "refresh_token":
            return await self.creator_api.refresh(request, {k: str(v) for k, v in form.items()})
        return await super()._token(request)

    async def _identity(self, request: web.Request) -> web.Response:
        token = self.bearer(request)
        if token is None or not token.scopes & {"identity", "identity.memberships"}:
            return self.api_error(401)  # Patreon's table: 401 also for incorrect scopes
        includes = frozenset(filter(None, request.query.get("include", "").split(",")))
        if not includes <= INCLUDES:
            return self.api_error(400)
        document = IdentityDocument(self, token, request.query, includes)
        return web.json_response(document.build())


class IdentityDocument:
    """The JSON:API answer to GET /api/oauth2/v2/identity for one token and query."""

    def __init__(
        self,
        server: FakePatreon,
        token: IssuedToken,
        query: Mapping[str, str],
        includes: frozenset[str],
    ) -> None:
        self.server = server
        self.token = token
        self.includes = includes
        self.fields = {
            key[len("fields[") : -1]: set(value.split(","))
            for key, value in query.items()
            if key.startswith("fields[") and key.endswith("]")
        }
        # Members come first in `included`, then what they refer to, as in the fixture.
        self.members: list[dict[str, Any]] = []
        self.included: dict[tuple[str, str], dict[str, Any]] = {}

    def resource(
        self, kind: str, id: str, attributes: dict[str, Any], relationships: dict[str, Any]
    ) -> dict[str, Any]:
        wanted = self.fields.get(kind, set())
        resource: dict[str, Any] = {
            "attributes": {k: v for k, v in sorted(attributes.items()) if k in wanted},
            "id": id,
        }
        if relationships:
            resource["relationships"] = relationships
        resource["type"] = kind
        return resource

    def include(self, resource: dict[str, Any]) -> None:
        self.included.setdefault((resource["type"], resource["id"]), resource)

    def tier(self, tier: PatreonTier) -> dict[str, str]:
        attributes = {"title": tier.title, "amount_cents": tier.amount_cents}
        self.include(self.resource("tier", tier.id, attributes, {}))
        return {"id": tier.id, "type": "tier"}

    def campaign(self, campaign: PatreonCampaign) -> dict[str, str]:
        relationships = {}
        if "memberships.campaign.tiers" in self.includes and self.server.campaign_tiers_visible:
            relationships["tiers"] = {"data": [self.tier(t) for t in campaign.tiers]}
        attributes = {"vanity": campaign.vanity, "is_monthly": True}
        self.include(self.resource("campaign", campaign.id, attributes, relationships))
        return {"id": campaign.id, "type": "campaign"}

    def member(self, member: PatreonMember) -> dict[str, str]:
        relationships: dict[str, Any] = {}
        if "memberships.currently_entitled_tiers" in self.includes:
            relationships["currently_entitled_tiers"] = {
                "data": [self.tier(t) for t in member.tiers]
            }
        if self.includes & {"memberships.campaign", "memberships.campaign.tiers"}:
            relationships["campaign"] = {"data": self.campaign(member.campaign)}
        attributes = {
            "patron_status": member.patron_status,
            "currently_entitled_amount_cents": member.amount_cents,
            "last_charge_status": member.last_charge_status,
            "last_charge_date": member.last_charge_date,
            "is_follower": False,  # pinned to false since Patreon's free memberships
            "pledge_cadence": member.pledge_cadence,
            "is_gifted": member.is_gifted,
        }
        self.members.append(self.resource("member", member.id, attributes, relationships))
        return {"id": member.id, "type": "member"}

    def build(self) -> dict[str, Any]:
        account: PatreonAccount = self.token.account
        scopes = self.token.scopes
        attributes: dict[str, Any] = {"full_name": account.full_name, "vanity": account.vanity}
        if "identity[email]" in scopes:
            attributes["email"] = account.email
        relationships = {}
        if any(i == "memberships" or i.startswith("memberships.") for i in self.includes):
            everything = "identity.memberships" in scopes or self.server.show_all_memberships
            visible = [
                m
                for m in account.memberships
                if everything or m.campaign is self.server.client_campaign
            ]
            relationships["memberships"] = {"data": [self.member(m) for m in visible]}
        data = self.resource("user", account.id, attributes, relationships)
        document: dict[str, Any] = {"data": data}
        if self.members or self.included:
            document["included"] = [*self.members, *self.included.values()]
        document["links"] = {"self": f"https://www.patreon.com/api/oauth2/v2/user/{account.id}"}
        return document
