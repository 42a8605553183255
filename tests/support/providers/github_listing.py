"""The listing side of the fake GitHub: organisation, team and collaborator lists, a
maintainer's sponsors (GraphQL), and a GitHub App's installation tokens, in GitHub's
documented shapes (tests/fixtures/github/README.md), served by FakeGitHub.

    async with FakeGitHub() as github:
        github.add_org("matrix-org")
        crowd = github.listings.generate("matrix-org", 10_000)   # cheap: ids, no Accounts
        token = github.listings.personal_token(owner, {"read:org"})
        app_id, pem = github.listings.register_app()
        installation = github.listings.install_app(app_id, "matrix-org")
        github.listings.fail("rate_limit", page=3)   # or "secondary", "rate_limit_429",
                                                     # 500, "short", "malformed", "timeout"

What it does as GitHub does, unkindly: pages of `per_page` (30 unless asked, at most 100)
joined by `Link` headers (prev, next, last, first); strong ETags of each page's body, so
an unchanged page answers 304 to `If-None-Match` while its `Link` is fresh (a page can stay
304 while a new page appears after it); `X-RateLimit-*` on every answer, where 304s do not
count (`calls`, `not_modified` and `charged` say what a walk cost); concealed members shown
only to members of the organisation and to Apps installed on it; pending invitations and
billing managers never listed; App JWTs checked (RS256 with the App's public key, `iss`,
`exp` at most 10 minutes ahead) and installation tokens that expire.

For a benchmark, github_crowd.py runs a FakeGitHub alone with M generated members.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
import hashlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs
from support.providers.fake_oauth import IssuedToken
from support.providers.github_installations import (
    AppInstallations,
    FakeApp,
    Installation,
    InstallationToken,
)
from support.providers.github_sponsors import (
    RATE_LIMIT_DOCS,
    Sponsors,
    has_scope,
    secondary_limit,
)
import yarl

if TYPE_CHECKING:
    from support.providers.github import FakeGitHub

API = "/api/v3"
MAX_PER_PAGE = 100
GENERATED_IDS = 50_000_000  # far from the ids of scripted accounts
PAT_CLIENT = "personal-access-token"  # the client_id a personal token is filed under
LEVELS = ("pull", "triage", "push", "maintain", "admin")
FAULTS = ("rate_limit", "rate_limit_429", "secondary", "short", "malformed", "timeout")


@attrs.define(eq=False)
class GeneratedMembers:
    """Members without Account objects (ids only), for lists of thousands."""

    first_id: int
    count: int
    removed: set[int] = attrs.Factory(set)
    _ids: list[int] | None = None

    @property
    def ids(self) -> list[int]:
        if self._ids is None:
            ids = range(self.first_id, self.first_id + self.count)
            self._ids = [i for i in ids if i not in self.removed]
        return self._ids

    def remove(self, *ids: int) -> None:
        self.removed.update(ids)
        self._ids = None

    def add(self, count: int = 1) -> list[int]:
        new = list(range(self.first_id + self.count, self.first_id + self.count + count))
        self.count += count
        self._ids = None
        return new

    def login(self, account_id: int) -> str:
        return f"member{account_id - self.first_id}"


@attrs.define
class Fault:
    mode: int | str
    times: int | None
    page: int | None  # 1-based; None: every page


class GitHubListings(AppInstallations, Sponsors):
    """FakeGitHub's listing endpoints and the data only they need (the App's installations
    and the sponsors' GraphQL in their own modules)."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github
        self.generated: dict[str, GeneratedMembers] = {}  # "org", "org/team", "sponsor:x"
        self.public: dict[str, set[str]] = {}  # org -> logins shown to outsiders
        self.sso_authorized: set[str] = set()  # personal tokens authorised for SAML orgs
        self.hidden_sponsors: set[int] = set()
        self.apps: dict[str, FakeApp] = {}
        self.installations: dict[int, Installation] = {}
        self.installation_tokens: dict[str, InstallationToken] = {}
        self.token_lifetime = 3600.0
        # GitHub has been seen answering 304 without the ETag (NixOS/nix#4470).
        self.etag_on_304 = True
        self.faults: list[Fault] = []
        self.calls = 0  # listing requests answered, 304s included
        self.not_modified = 0  # of which 304s (free against the rate limit)
        self.minted = 0  # installation tokens issued
        self.app_calls = 0  # requests authenticated with an App's JWT
        self._next_generated = GENERATED_IDS
        self._ids = iter(range(9_000_000, 10_000_000))

    @property
    def charged(self) -> int:
        """Listing requests that counted against the rate limit."""
        return self.calls - self.not_modified

    # The world

    def generate(self, where: str, count: int) -> GeneratedMembers:
        """`count` active members of the organisation or team `where` ("org/team")."""
        crowd = GeneratedMembers(self._next_generated, count)
        self._next_generated += max(count, 1) * 10  # room for `add`
        self.generated[where.lower()] = crowd
        return crowd

    def publicize(self, org: str, *logins: str) -> None:
        self.public.setdefault(org.lower(), set()).update(login.lower() for login in logins)

    def personal_token(
        self, account: Any, scopes: Iterable[str] = ("read:org",), *, sso: bool = False
    ) -> str:
        """A personal access token (classic) of `account` with `scopes`; `sso`: authorised
        for organisations that enforce SAML single sign-on."""
        value = "ghp_" + secrets.token_urlsafe(27)
        # FakeGitHub's bearer tokens live in its OAuth table: every API route knows them.
        self.github._tokens[value] = IssuedToken(account, frozenset(scopes), PAT_CLIENT)
        if sso:
            self.sso_authorized.add(value)
        return value

    def fail(self, mode: int | str, *, times: int | None = None, page: int | None = None) -> None:
        """Answer listing requests (of page `page` only, when given) with `mode`: an HTTP
        status, "rate_limit" (403, X-RateLimit-Remaining 0), "rate_limit_429",
        "secondary" (403 with Retry-After), "short" (the page without its last entries,
        Link unchanged), "malformed" (an object, not a list) or "timeout"."""
        assert isinstance(mode, int) or mode in FAULTS, mode
        self.faults.append(Fault(mode, times, page))

    def recover(self) -> None:
        self.faults.clear()

    def reset_counts(self) -> None:
        self.calls = self.not_modified = self.minted = self.app_calls = 0

    # Routes (FakeGitHub.add_api_routes calls this)

    def add_routes(self, add: Callable[..., None]) -> None:
        add("GET", f"{API}/orgs/{{org}}/members", self._org_members)
        add("GET", f"{API}/orgs/{{org}}/teams/{{team}}/members", self._team_members)
        add("GET", f"{API}/repos/{{owner}}/{{repo}}/collaborators", self._collaborators)
        add("GET", f"{API}/app/installations/{{id}}", self._installation)
        add("POST", f"{API}/app/installations/{{id}}/access_tokens", self._access_token)

    # Who is listed

    def _members(self, where: str, active: Callable[[Any], Any]) -> tuple[list[Any], Any]:
        """The listed accounts of `where`: scripted ones (sorted by id), then generated."""
        accounts = sorted(
            (a for a in self.github.accounts.values() if active(a)), key=lambda a: a.id
        )
        return accounts, self.generated.get(where)

    async def _org_members(self, request: web.Request) -> web.StreamResponse:
        org = request.match_info["org"].lower()
        token, refused = self._gate(request, "read:org", org, "members")
        if refused is not None:
            return refused
        if org not in self.github.orgs:
            return self._not_found(token)

        def active(account: Any) -> bool:
            membership = account.orgs.get(org)
            return bool(
                membership
                and membership.state == "active"
                and membership.role != "billing_manager"
            )

        accounts, crowd = self._members(org, active)
        if not self._sees_concealed(token, org):
            # Outsiders see the public members only; the generated crowd is concealed.
            shown = self.public.get(org, set())
            accounts, crowd = [a for a in accounts if a.login.lower() in shown], None
        return await self._page(request, token, accounts, crowd, self._user)

    async def _team_members(self, request: web.Request) -> web.StreamResponse:
        org, team = request.match_info["org"].lower(), request.match_info["team"].lower()
        token, refused = self._gate(request, "read:org", org, "members")
        if refused is not None:
            return refused
        where = f"{org}/{team}"
        organization = self.github.orgs.get(org)
        known = (organization is not None and team in organization.teams) or any(
            where in a.teams for a in self.github.accounts.values()
        )
        if org not in self.github.orgs or not (known or where in self.generated):
            return self._not_found(token)

        def active(account: Any) -> bool:
            membership = account.teams.get(where)
            return bool(membership and membership.state == "active")

        accounts, crowd = self._members(where, active)

        def entry(account_id: int, login: str, account: Any) -> dict[str, Any]:
            body = self._user(account_id, login, account)
            membership = account.teams[where] if account is not None else None
            body.update(role=membership.role if membership else "member", inherited=False)
            return body

        return await self._page(request, token, accounts, crowd, entry)

    async def _collaborators(self, request: web.Request) -> web.StreamResponse:
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        token, refused = self._gate(request, "repo", full_name.split("/")[0], "metadata")
        if refused is not None:
            return refused
        if full_name not in self.github.repos:
            return self._not_found(token)
        accounts, crowd = self._members(full_name, lambda a: full_name in a.repos)

        def entry(account_id: int, login: str, account: Any) -> dict[str, Any]:
            body = self._user(account_id, login, account)
            level = account.repos[full_name] if account is not None else "push"
            rank = LEVELS.index(level)
            body["permissions"] = {name: rank >= i for i, name in enumerate(LEVELS)}
            body["role_name"] = {"pull": "read", "push": "write"}.get(level, level)
            return body

        return await self._page(request, token, accounts, crowd, entry)

    def _sees_concealed(self, token: Any, org: str) -> bool:
        if isinstance(token, InstallationToken):
            return token.installation.account == org
        membership = token.account.orgs.get(org) if token.account is not None else None
        return bool(membership and membership.state == "active")

    def _user(self, account_id: int, login: str, account: Any = None) -> dict[str, Any]:
        body = dict(self._template)
        api = f"{self.github.url}{API}/users/{login}"
        body.update(
            login=login,
            id=account_id,
            node_id=base64.b64encode(f"04:User{account_id}".encode()).decode(),
            avatar_url=f"{self.github.url}/images/{account_id}.gif",
            url=api,
            html_url=f"{self.github.url}/{login}",
            followers_url=f"{api}/followers",
            following_url=f"{api}/following{{/other_user}}",
            gists_url=f"{api}/gists{{/gist_id}}",
            starred_url=f"{api}/starred{{/owner}}{{/repo}}",
            subscriptions_url=f"{api}/subscriptions",
            organizations_url=f"{api}/orgs",
            repos_url=f"{api}/repos",
            events_url=f"{api}/events{{/privacy}}",
            received_events_url=f"{api}/received_events",
        )
        return body

    @property
    def _template(self) -> dict[str, Any]:
        from support.providers.github import fixture

        if not hasattr(self, "_simple_user"):
            self._simple_user = fixture("orgs-org-members.200.json")[0]
        return self._simple_user

    # Pages

    async def _page(
        self,
        request: web.Request,
        token: Any,
        accounts: list[Any],
        crowd: GeneratedMembers | None,
        entry: Callable[[int, str, Any], dict[str, Any]],
    ) -> web.StreamResponse:
        try:
            per_page = min(max(int(request.query.get("per_page", "30")), 1), MAX_PER_PAGE)
            number = max(int(request.query.get("page", "1")), 1)
        except ValueError:
            return self._json(token, {"message": "Invalid request."}, status=422)
        generated = crowd.ids if crowd is not None else []
        total = len(accounts) + len(generated)
        last = max(1, -(-total // per_page))
        start, end = (number - 1) * per_page, number * per_page
        items = [entry(a.id, a.login, a) for a in accounts[start:end]]
        skip = max(start - len(accounts), 0)
        for account_id in generated[skip : max(end - len(accounts), 0)]:
            items.append(entry(account_id, crowd.login(account_id), None))
        fault = self._fault(number)
        if fault is not None and fault.mode not in ("short", "malformed"):
            return await self._failed(token, fault.mode)
        if fault is not None and fault.mode == "short":
            items = items[: max(len(items) - 7, 0)]
        body: Any = items
        if fault is not None and fault.mode == "malformed":
            body = {"total_count": len(items), "items": items}  # a search's shape
        raw = json.dumps(body).encode()
        etag = f'"{hashlib.sha256(raw).hexdigest()[:40]}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=60, s-maxage=60"}
        link = _link(self.github.url, request, number, last)
        if link:
            headers["Link"] = link
        self.calls += 1
        if _matches(request.headers.get("If-None-Match"), etag):
            self.not_modified += 1
            if not self.etag_on_304:
                del headers["ETag"]
            return web.Response(status=304, headers={**headers, **self._limits()})
        self.github.rate_limit_remaining -= 1
        return self._json(token, None, raw=raw, extra=headers)

    def _fault(self, page: int) -> Fault | None:
        for fault in self.faults:
            if fault.page not in (None, page):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    async def _failed(self, token: Any, mode: int | str) -> web.StreamResponse:
        self.calls += 1
        if mode == "timeout":
            await self.github._stopping.wait()
            return web.Response(status=503)
        if isinstance(mode, int):
            return self._json(token, {"message": "Server Error"}, status=mode)
        if mode == "secondary":
            return self._json(token, secondary_limit(), status=403, extra={"Retry-After": "60"})
        status = 429 if mode == "rate_limit_429" else 403
        body = {"message": "API rate limit exceeded.", "documentation_url": RATE_LIMIT_DOCS}
        return self._json(token, body, status=status, extra={"X-RateLimit-Remaining": "0"})

    # Authentication and the organisation's policies

    def _gate(
        self, request: web.Request, scope: str, owner: str, permission: str
    ) -> tuple[Any, web.Response | None]:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        installed = self.installation_tokens.get(value) if scheme.lower() == "bearer" else None
        token: Any = installed or self.github.bearer(request)
        from support.providers.github import fixture

        if token is None or (installed is not None and installed.expires_at < time.time()):
            self.calls += 1
            return None, web.json_response(fixture("error-401-bad-credentials.json"), status=401)
        if self.github.secondary_rate_limit:
            return token, self._counted(token, secondary_limit(), 403, {"Retry-After": "60"})
        if self.github.rate_limit_remaining <= 0:
            body = {"message": "API rate limit exceeded.", "documentation_url": RATE_LIMIT_DOCS}
            return token, self._counted(token, body, 403)
        if isinstance(token, InstallationToken):
            if permission not in token.installation.permissions:
                body = {"message": "Resource not accessible by integration"}
                return token, self._counted(token, body, 403)
            return token, None
        if not has_scope(token.scopes, scope) or (
            scope == "repo" and not has_scope(token.scopes, "read:org")
        ):
            needed = "read:org, repo" if scope == "repo" else scope
            body = {"message": f"This call needs the {needed} scope."}
            return token, self._counted(token, body, 403, {"X-Accepted-OAuth-Scopes": needed})
        org = self.github.orgs.get(owner)
        if org is not None and token.client_id == PAT_CLIENT:
            if org.requires_sso and request.headers["Authorization"].split()[-1] not in (
                self.sso_authorized
            ):
                return token, self._counted_sso(token, org.login)
            return token, None
        refused = self.github._org_gate(token, owner) if org is not None else None
        if refused is not None:
            self.calls += 1
        return token, refused

    def _counted(
        self, token: Any, body: Any, status: int, extra: dict[str, str] | None = None
    ) -> web.Response:
        self.calls += 1
        return self._json(token, body, status=status, extra=extra)

    def _counted_sso(self, token: Any, org: str) -> web.Response:
        url = f"{self.github.url}/orgs/{org}/sso?authorization_request=A7ZQ"
        body = {
            "message": "Resource protected by organization SAML enforcement. You must grant "
            "your Personal Access token access to this organization.",
        }
        return self._counted(token, body, 403, {"X-GitHub-SSO": f"required; url={url}"})

    def _not_found(self, token: Any) -> web.Response:
        from support.providers.github import fixture

        return self._counted(token, fixture("error-404-not-found.constructed.json"), 404)

    def _limits(self) -> dict[str, str]:
        remaining = max(self.github.rate_limit_remaining, 0)
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Used": str(5000 - remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }

    def _json(
        self,
        token: Any,
        body: Any,
        *,
        status: int = 200,
        raw: bytes | None = None,
        extra: dict[str, str] | None = None,
    ) -> web.Response:
        headers = self._limits()
        if isinstance(token, IssuedToken):
            headers["X-OAuth-Scopes"] = ", ".join(sorted(token.scopes))
        headers.update(extra or {})
        text = raw if raw is not None else json.dumps(body).encode()
        return web.Response(
            body=text, status=status, headers=headers, content_type="application/json"
        )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: a weak comparison against each entity tag listed."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag.removeprefix("W/") in tags


def _link(base: str, request: web.Request, page: int, last: int) -> str:
    """GitHub's Link header: prev and next around `page`, first and last."""
    url = yarl.URL(base).with_path(request.path).with_query(request.query)

    def at(number: int) -> str:
        return str(url.update_query(page=str(number)))

    links = []
    if page > 1:
        links.append(f'<{at(page - 1)}>; rel="prev"')
    if page < last:
        links.append(f'<{at(page + 1)}>; rel="next"')
        links.append(f'<{at(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{at(1)}>; rel="first"')
    return ", ".join(links)
