"""The creator's side of FakePatreon: what a creator token reaches, in the documented
shapes of tests/fixtures/patreon (campaigns-campaign_id-members*.json,
campaigns-campaign_id.200.json, campaigns.200.json, members-id.200.json).

- `GET /api/oauth2/v2/campaigns`: the token owner's campaigns.
- `GET /api/oauth2/v2/campaigns/{id}` (`include=tiers`): the campaign and its tiers.
- `GET /api/oauth2/v2/campaigns/{id}/members`: members page by page, cursor paging
  (`page[count]`, `page[cursor]`, `meta.pagination.cursors.next`, null on the last page, or
  absent with `last_cursor = "absent"`: the docs do not say which), sparse fieldsets,
  `include=currently_entitled_tiers,user`. `page_cap` makes pages shorter than asked while
  more follow (a client must follow the cursor, never stop at a short page).
- `POST /api/oauth2/token` with `grant_type=refresh_token`: a new access token and a new
  refresh token; the old refresh token stops working (rotation), and so does the old
  access token.

A token of someone who is not the campaign's creator gets 403, as Patreon's error table
says ("hidden for administrators only").
"""

from __future__ import annotations

import base64
from collections.abc import Callable
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs
from support.providers.fake_oauth import Handler, IssuedToken, fixture

if TYPE_CHECKING:
    from support.providers.patreon import FakePatreon, PatreonCampaign, PatreonMember

CREATOR_SCOPES = frozenset({"identity", "campaigns", "campaigns.members"})
MEMBER_INCLUDES = frozenset({"currently_entitled_tiers", "user", "address", "campaign"})


@attrs.define
class CreatorGrant:
    account: Any
    access_token: str


class CampaignAPI:
    def __init__(self, server: FakePatreon) -> None:
        self.server = server
        self.grants: dict[str, CreatorGrant] = {}  # live refresh token -> its grant
        self.page_cap: int | None = None
        self.last_cursor = "null"  # or "absent"
        self.refreshes = 0
        # Changes a member page before it is sent (answers in an unexpected shape).
        self.mangle: Callable[[dict[str, Any]], Any] | None = None

    def issue(self, account: Any) -> tuple[str, str]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        client_id = next(iter(self.server.clients), "")
        self.server._tokens[access] = IssuedToken(account, CREATOR_SCOPES, client_id)
        self.grants[refresh] = CreatorGrant(account, access)
        return access, refresh

    def add_routes(self, add: Callable[[str, str, Handler], None]) -> None:
        add("GET", "/api/oauth2/v2/campaigns", self._campaigns)
        add("GET", "/api/oauth2/v2/campaigns/{campaign}", self._campaign)
        add("GET", "/api/oauth2/v2/campaigns/{campaign}/members", self._members)

    # --- the refresh grant ----------------------------------------------------------------

    async def refresh(self, request: web.Request, form: dict[str, str]) -> web.Response:
        server = self.server
        if server._authenticate(request, form) is None:
            return server.token_refusal(request, "client")
        grant = self.grants.pop(form.get("refresh_token", ""), None)
        if grant is None:
            return server.token_refusal(request, "code")  # invalid_grant
        self.refreshes += 1
        server._tokens[grant.access_token].revoked = True
        access, refresh = self.issue(grant.account)
        body = fixture("patreon", "token.200.constructed.json")
        body.update(access_token=access, refresh_token=refresh, scope=" ".join(CREATOR_SCOPES))
        return web.json_response(body)

    # --- the API ------------------------------------------------------------------------

    def _creator_of(self, request: web.Request) -> tuple[Any, PatreonCampaign | None] | Any:
        """(the token's account, the campaign named in the path) or an error answer."""
        token = self.server.bearer(request)
        if token is None or "campaigns" not in token.scopes:
            return self.server.api_error(401)
        wanted = request.match_info.get("campaign")
        if wanted is None:
            return token.account, None
        campaign = next((c for c in self._all_campaigns() if c.id == wanted), None)
        if campaign is None:
            return self.server.api_error(404)
        if campaign.creator is not token.account:
            return self.server.api_error(403)
        return token.account, campaign

    def _all_campaigns(self) -> list[PatreonCampaign]:
        return self.server.campaigns

    async def _campaigns(self, request: web.Request) -> web.Response:
        who = self._creator_of(request)
        if isinstance(who, web.Response):
            return who
        template = fixture("patreon", "campaigns.200.json")["data"][0]
        owned = [c for c in self._all_campaigns() if c.creator is who[0]]
        data = [{**template, "id": c.id} for c in owned]
        return web.json_response({"data": data, "meta": {"pagination": {"total": len(data)}}})

    async def _campaign(self, request: web.Request) -> web.Response:
        who = self._creator_of(request)
        if isinstance(who, web.Response):
            return who
        campaign = who[1]
        document = fixture("patreon", "campaigns-campaign_id.200.json")
        document["data"]["id"] = campaign.id
        if "tiers" in request.query.get("include", "").split(","):
            wanted = set(request.query.get("fields[tier]", "").split(","))
            document["data"]["relationships"] = {
                "tiers": {"data": [{"id": t.id, "type": "tier"} for t in campaign.tiers]}
            }
            document["included"] = [
                {
                    "attributes": {
                        k: v
                        for k, v in (("amount_cents", t.amount_cents), ("title", t.title))
                        if k in wanted
                    },
                    "id": t.id,
                    "type": "tier",
                }
                for t in campaign.tiers
            ]
        return web.json_response(document)

    async def _members(self, request: web.Request) -> web.Response:
        who = self._creator_of(request)
        if isinstance(who, web.Response):
            return who
        token = self.server.bearer(request)
        if token is None or "campaigns.members" not in token.scopes:
            return self.server.api_error(401)
        query = request.query
        includes = frozenset(filter(None, query.get("include", "").split(",")))
        count = query.get("page[count]", "1000")
        if not includes <= MEMBER_INCLUDES or not count.isdigit() or not 1 <= int(count) <= 1000:
            return self.server.api_error(400)
        members = self.server.members_of(who[1])
        start = _offset(query.get("page[cursor]"))
        if start is None or start > len(members):
            return self.server.api_error(400)
        size = min(int(count), self.page_cap or int(count))
        page = members[start : start + size]
        end = start + len(page)
        document = MembersPage(query, includes).build(page)
        cursors: dict[str, Any] = {}
        if end < len(members):
            cursors["next"] = _cursor(end)
        elif self.last_cursor == "null":
            cursors["next"] = None
        document["meta"] = {"pagination": {"cursors": cursors, "total": len(members)}}
        if self.mangle is not None:
            document = self.mangle(document)
        return web.json_response(document)


def _cursor(offset: int) -> str:
    # Opaque to clients, as Patreon's are.
    return base64.urlsafe_b64encode(f"members:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int | None:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        return None
    kind, _, offset = text.partition(":")
    return int(offset) if kind == "members" and offset.isdigit() else None


class MembersPage:
    """One page of the members listing, as the documented example is shaped."""

    def __init__(self, query: Any, includes: frozenset[str]) -> None:
        self.includes = includes
        self.fields = {
            key[len("fields[") : -1]: set(value.split(","))
            for key, value in query.items()
            if key.startswith("fields[") and key.endswith("]")
        }
        self.included: dict[tuple[str, str], dict[str, Any]] = {}

    def _attributes(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        wanted = self.fields.get(kind, set())
        return {k: v for k, v in values.items() if k in wanted}

    def member(self, member: PatreonMember) -> dict[str, Any]:
        account = member.account
        values = {
            "full_name": account.full_name if account is not None else "",
            "is_follower": False,  # pinned to false since Patreon's free memberships
            "last_charge_date": member.last_charge_date,
            "last_charge_status": member.last_charge_status,
            "lifetime_support_cents": member.amount_cents or 0,
            "currently_entitled_amount_cents": member.amount_cents,
            "patron_status": member.patron_status,
            "pledge_cadence": member.pledge_cadence,
            "is_gifted": member.is_gifted,
        }
        relationships: dict[str, Any] = {}
        if "currently_entitled_tiers" in self.includes:
            links = []
            for tier in member.tiers:
                links.append({"id": tier.id, "type": "tier"})
                attributes = {"amount_cents": tier.amount_cents, "title": tier.title}
                resource = {"attributes": self._attributes("tier", attributes), "id": tier.id}
                self.included.setdefault(("tier", tier.id), {**resource, "type": "tier"})
            relationships["currently_entitled_tiers"] = {"data": links}
        if "user" in self.includes and account is not None:
            relationships["user"] = {
                "data": {"id": account.id, "type": "user"},
                "links": {"related": f"https://www.patreon.com/api/oauth2/v2/user/{account.id}"},
            }
            user = {"full_name": account.full_name, "vanity": account.vanity}
            resource = {"attributes": self._attributes("user", user), "id": account.id}
            self.included.setdefault(("user", account.id), {**resource, "type": "user"})
        return {
            "attributes": self._attributes("member", values),
            "id": member.id,
            "relationships": relationships,
            "type": "member",
        }

    def build(self, page: list[PatreonMember]) -> dict[str, Any]:
        data = [self.member(m) for m in page]
        return {"data": data, "included": list(self.included.values())}
