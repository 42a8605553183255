"""A maintainer's sponsors in the fake GitHub: GraphQL's `sponsorshipsAsMaintainer`
(`pageInfo`, `nodes` with the tier and the sponsor's `databaseId`), 100 a page by cursor,
with `viewer` and `viewerCanAdminister` as GitHub answers them, a sponsor it may hide
(`sponsorEntity: null`), and its rate limits. FakeGitHub._graphql hands these queries to
`GitHubListings`, which mixes this in.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

PAGE = 100  # what the provider's query asks: `first: 100`
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


def has_scope(scopes: frozenset[str], scope: str) -> bool:
    implied = {"read:org": {"write:org", "admin:org"}, "read:user": {"user"}}
    return scope in scopes or bool(scopes & implied.get(scope, set()))


def secondary_limit() -> dict[str, str]:
    return {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
        "before you try again.",
        "documentation_url": RATE_LIMIT_DOCS,
    }


class Sponsors:
    """Mixed into GitHubListings (`github`, `generated`, `hidden_sponsors`, its counters
    and faults)."""

    github: Any
    generated: dict[str, Any]
    hidden_sponsors: set[int]
    calls: int

    def hide_sponsor(self, account: Any) -> None:
        """GitHub does not show the token who `account` is (`sponsorEntity: null`)."""
        self.hidden_sponsors.add(account.id)

    async def sponsors(self, request: web.Request) -> web.Response:
        token = self.github.bearer(request)
        if token is None:
            self.calls += 1
            return web.json_response({"message": "Bad credentials"}, status=401)
        if self.github.secondary_rate_limit:
            return self._counted(token, secondary_limit(), 403, {"Retry-After": "60"})
        if self.github.rate_limit_remaining <= 0:
            # GraphQL reports the hourly limit in its errors, with HTTP 200.
            errors = [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]
            return self._counted(token, {"errors": errors}, 200)
        try:
            variables = json.loads(await request.read())["variables"]
            login, after = variables["login"].lower(), variables.get("after")
            offset = int(base64.b64decode(after).decode().removeprefix("cursor:")) if after else 0
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._counted(token, {"message": "Problems parsing JSON"}, 400)
        if not has_scope(token.scopes, "read:user"):
            errors = [{"type": "INSUFFICIENT_SCOPES", "message": "needs read:user"}]
            return self._counted(token, {"errors": errors}, 200)
        fault = self._fault(offset // PAGE + 1)
        if fault is not None:
            return await self._failed(token, fault.mode)
        viewer = {"login": token.account.login}
        target = self.github.accounts.get(login) or self.github.orgs.get(login)
        if target is None:
            return self._counted(token, {"data": {"viewer": viewer, "repositoryOwner": None}}, 200)
        sponsors = sorted(
            (a for a in self.github.accounts.values() if login in a.sponsoring),
            key=lambda a: a.id,
        )
        rows = [(a.id, a.sponsoring[login]) for a in sponsors if a.sponsoring[login].active]
        crowd = self.generated.get(f"sponsor:{login}")
        window = rows[offset : offset + PAGE]
        if crowd is not None:
            skip = max(offset - len(rows), 0)
            for account_id in crowd.ids[skip : max(offset + PAGE - len(rows), 0)]:
                window.append((account_id, None))
        nodes = [self._sponsorship(account_id, found) for account_id, found in window]
        total = len(rows) + (len(crowd.ids) if crowd is not None else 0)
        end = offset + len(window)
        is_org = login in self.github.orgs
        owner: dict[str, Any] = {
            "__typename": "Organization" if is_org else "User",
            "login": target.login,
            "sponsorshipsAsMaintainer": {
                "pageInfo": {
                    "hasNextPage": end < total,
                    "endCursor": base64.b64encode(f"cursor:{end}".encode()).decode(),
                },
                "nodes": nodes,
            },
        }
        if is_org:
            membership = token.account.orgs.get(login)
            owner["viewerCanAdminister"] = bool(membership and membership.role == "admin")
        return self._counted(token, {"data": {"viewer": viewer, "repositoryOwner": owner}}, 200)

    def _sponsorship(self, account_id: int, found: Any) -> dict[str, Any]:
        cents, one_time = (found.cents, found.one_time) if found else (500, False)
        entity = None if account_id in self.hidden_sponsors else {"databaseId": account_id}
        return {
            "isOneTimePayment": one_time,
            "tier": {"monthlyPriceInCents": cents},
            "sponsorEntity": entity,
        }
