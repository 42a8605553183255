"""A stand-in for GitHub: the OAuth app web flow, and the REST and GraphQL calls the
provider makes, answering with the documented shapes (tests/fixtures/github) filled in
from a small scripted world. Loopback only, random port.

    async with FakeGitHub() as github:
        section = github.config_section(client_id="app", client_secret="s3cret",
                                        callback_url="http://127.0.0.1:29316/callback")
        alice = github.add_account("alice").join_org("matrix-org")
        alice.join_team("matrix-org", "maintainers", role="maintainer")
        github.sign_in_as(alice)          # who is logged in at "github.com"
        github.auto_approve = True        # or False: a consent page; "deny": access_denied
        github.fail("api", status=503)    # or "timeout", "malformed", "huge", "html"

It lays out its URLs like GitHub Enterprise Server: the web side at `url`, the REST API
under `/api/v3`, GraphQL at `/api/graphql`. The OAuth side is FakeOAuthServer's (client,
state, PKCE S256, consent, single-use codes bound to their app and redirect_uri that expire
after 10 minutes, scripted failures, the request log), with GitHub's ways where they
differ: the callback URL rule (the redirect_uri's host and port equal to the registered
one, its path the same or below it; else back to the registered one with
`error=redirect_uri_mismatch`), scopes separated by commas or spaces, whatever the person
grants on the page (`sign_in_as(..., grants=)`), parameters read from the query string
too, the client's ID and secret in the body only, and refusals with HTTP 200 and GitHub's
error codes, form-encoded unless `Accept: application/json`. The API checks the scopes
each token carries.

GitHub's ways of not saying, as documented: an organisation's OAuth app access
restrictions and SAML single sign-on (403, with `X-GitHub-SSO: required; url=...`), a
scope not granted (403 from the organisation membership, 404 from the team membership,
both with `X-OAuth-Scopes`), a private repository or a secret team the token may not see
(404), a renamed repository (301). Public repositories answer the app's own Basic
credentials and anonymous requests too. The app revokes a token with
`DELETE /applications/{client_id}/token` (Basic client credentials, 204; 401 for wrong
credentials, 404 for a token it does not know, 422 without one); it stops working at once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
import copy
import html
import itertools
import json
from pathlib import Path
import time
from typing import Any

import aiohttp
from aiohttp import web
import attrs
from support.providers.fake_oauth import (
    FakeClient,
    FakeOAuthServer,
    IssuedCode,
    IssuedToken,
    SeenRequest,
)
from support.providers.github_app import GitHubAppSide
from support.providers.github_listing import GitHubListings
import yarl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "github"
API = "/api/v3"
GRAPHQL = "/api/graphql"
LEVELS = ("pull", "triage", "push", "maintain", "admin")
SCOPE_WORDS = {
    "read:org": "Read org and team membership, read org projects",
    "read:user": "Read all user profile data",
}
# GitHub treats these as including the narrower scope on the left.
IMPLIED = {"read:org": {"write:org", "admin:org"}, "read:user": {"user"}}
FAILURES = ("timeout", "malformed", "huge", "html")
SPONSORSHIP = "sponsorshipForViewerAsSponsor"
DOCS = "https://docs.github.com"
RATE_LIMIT_DOCS = f"{DOCS}/rest/overview/rate-limits-for-the-rest-api"
SSO_DOCS = f"{DOCS}/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/"
ACCESS_DENIED_DOCS = (
    f"{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied"
)
# Why the token endpoint refuses (FakeOAuthServer's reasons) -> GitHub's answer.
TOKEN_REFUSALS = {
    "client": "oauth-error.incorrect_client_credentials.json",
    "code": "oauth-error.bad_verification_code.json",
    "code_verifier": "oauth-error.bad_verification_code.json",  # no PKCE error documented
    "redirect_uri": "oauth-error.redirect_uri_mismatch.json",
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@attrs.define
class Membership:
    state: str = "active"  # active | pending
    role: str = "member"  # org: admin | member | billing_manager; team: member | maintainer


@attrs.define
class Sponsorship:
    cents: int
    tier_name: str
    one_time: bool = False
    active: bool = True


@attrs.define(eq=False)
class Account:
    """A person at GitHub. Org, team and repository names are stored lowercased."""

    login: str
    id: int
    name: str | None = None
    orgs: dict[str, Membership] = attrs.Factory(dict)
    teams: dict[str, Membership] = attrs.Factory(dict)  # "org/slug"
    repos: dict[str, str] = attrs.Factory(dict)  # "owner/name" -> a level of LEVELS
    sponsoring: dict[str, Sponsorship] = attrs.Factory(dict)  # sponsored login
    # The scopes this person lets an app have when they approve (None: all it asks for).
    # GitHub lets people edit the request, so they can grant fewer.
    grants: frozenset[str] | None = None

    def join_org(self, org: str, state: str = "active", role: str = "member") -> Account:
        self.orgs[org.lower()] = Membership(state, role)
        return self

    def join_team(
        self, org: str, team: str, state: str = "active", role: str = "member"
    ) -> Account:
        self.teams[f"{org}/{team}".lower()] = Membership(state, role)
        return self

    def give_access(self, repo: str, level: str) -> Account:
        assert level in LEVELS, level
        self.repos[repo.lower()] = level
        return self

    def sponsor(self, login: str, cents: int, *, one_time: bool = False) -> Account:
        name = f"${cents // 100} {'one time' if one_time else 'a month'}"
        self.sponsoring[login.lower()] = Sponsorship(cents, name, one_time)
        return self


@attrs.define
class Organization:
    login: str
    id: int
    # OAuth App access restrictions: only approved apps see its members.
    restricts_apps: bool = False
    approved_apps: set[str] = attrs.Factory(set)
    # SAML single sign-on enforced: tokens need an SSO authorization for this org.
    requires_sso: bool = False
    # Teams declared with add_team (slug -> secret); a team someone is in exists too.
    teams: dict[str, bool] = attrs.Factory(dict)


@attrs.define
class Repository:
    full_name: str
    id: int
    private: bool = False
    moved_to: str | None = None  # renamed or transferred: old name answers 301


class FakeGitHub(FakeOAuthServer):
    provider_name = "GitHub"
    authorize_path = "/login/oauth/authorize"
    token_paths = ("/login/oauth/access_token",)
    known_scopes = frozenset(SCOPE_WORDS)
    client_auth = frozenset({"post"})  # client_id and client_secret in the body only
    token_redirect_uri_optional = True
    token_prefix = "gho_"
    replay_revokes_tokens = False  # GitHub does not document it
    bearer_schemes = ("bearer", "token")
    failure_areas = ("token", "user", "api", "graphql", "revoke", "team")
    failure_modes = FAILURES
    denied_params = {
        "error_description": "The user has denied your application access.",
        "error_uri": ACCESS_DENIED_DOCS,
    }

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.accounts: dict[str, Account] = {}
        self.orgs: dict[str, Organization] = {}
        self.repos: dict[str, Repository] = {}
        self.rate_limit_remaining = 5000
        self.secondary_rate_limit = False
        # What the app asks with its own credentials: public repositories, revocations.
        self.app_side = GitHubAppSide(self)
        self._ids = itertools.count(583231)
        # Member lists, sponsors and GitHub Apps, for re-checks (github_listing.py).
        self.listings = GitHubListings(self)

    # The world

    @property
    def require_pkce(self) -> bool:
        return self.pkce == "required"

    @require_pkce.setter
    def require_pkce(self, required: bool) -> None:
        self.pkce = "required" if required else "optional"

    def config_section(
        self,
        *,
        client_id: str = "fake-github-app",
        client_secret: str = "fake-github-secret",
        callback_url: str | None = None,
        name: str = "Matrix room invites",
    ) -> dict[str, str]:
        """Register (or update) an OAuth app; the plugin's `providers.github` section."""
        app = self.register_client(client_id, client_secret, name=name)
        app.name = name
        if callback_url:
            app.redirect_uris[:] = [callback_url]  # an OAuth app has one callback URL
        return {
            "client_id": client_id,
            "client_secret": client_secret,
            "web_url": self.url,
            "api_url": f"{self.url}{API}",
            "graphql_url": f"{self.url}{GRAPHQL}",
        }

    def set_callback_url(self, client_id: str, callback_url: str) -> None:
        self.clients[client_id].redirect_uris[:] = [callback_url]

    def add_account(self, login: str, *, name: str | None = None) -> Account:
        account = Account(login, next(self._ids), name)
        self.accounts[login.lower()] = account
        return account

    def add_org(
        self, login: str, *, restricts_apps: bool = False, requires_sso: bool = False
    ) -> Organization:
        org = Organization(login, next(self._ids), restricts_apps, set(), requires_sso)
        self.orgs[login.lower()] = org
        return org

    def add_team(self, org: str, slug: str, *, secret: bool = False) -> None:
        """A team with nobody in it yet; secret teams are visible to their members only."""
        organization = self.orgs.get(org.lower()) or self.add_org(org)
        organization.teams[slug.lower()] = secret

    def add_repo(self, full_name: str, *, private: bool = False) -> Repository:
        repo = Repository(full_name, next(self._ids), private)
        self.repos[full_name.lower()] = repo
        return repo

    def sign_in_as(self, account: Account | None, *, grants: set[str] | None = None) -> None:
        """Who is logged in at GitHub when the browser arrives; `grants` narrows what they
        approve (see `Account.grants`)."""
        self.signed_in = account
        if account is not None and grants is not None:
            account.grants = frozenset(grants)

    # Faults

    def fail(self, where: str, status: int | str = 503, *, times: int | None = None) -> None:
        """Make `where` ("token", "user", "graphql", "team": GET /orgs/{org}/teams/{team},
        "revoke": the app's revocations, or "api": every API call) fail with an HTTP
        status or one of FAILURES, `times` times (None: until `recover()`)."""
        super().fail(where, status, times=times)

    def recover(self) -> None:
        self.clear_failures()

    def revoke_tokens(self) -> None:
        self.expire_tokens()

    def exhaust_rate_limit(self, *, secondary: bool = False) -> None:
        if secondary:
            self.secondary_rate_limit = True
        else:
            self.rate_limit_remaining = 0

    @property
    def revoked_tokens(self) -> int:
        """Tokens the app revoked (DELETE /applications/{client_id}/token)."""
        return self.app_side.revoked

    def requests_to(self, path: str) -> list[SeenRequest]:  # type: ignore[override]
        """The requests to `path` (GitHub's fake filters by path, not by area)."""
        return [r for r in self.requests if r.path == path]

    # For tests without a browser: the person's visit to the authorize URL.

    async def visit_authorize(self, url: str, *, decision: str = "authorize") -> yarl.URL:
        """Open the authorize URL (pressing `decision` on the consent page when it is shown)
        and return where GitHub sends the browser back."""
        async with aiohttp.ClientSession() as session:
            async with session.get(url, allow_redirects=False) as response:
                if response.status == 302:
                    return yarl.URL(response.headers["Location"])
                page = await response.text()
                if response.status != 200 or 'name="ticket"' not in page:
                    raise AssertionError(f"authorize answered {response.status}: {page[:300]}")
            ticket = page.split('name="ticket" value="', 1)[1].split('"', 1)[0]
            async with session.post(
                f"{self.url}{self.authorize_path}",
                data={"ticket": ticket, "decision": decision},
                allow_redirects=False,
            ) as response:
                assert response.status == 302, await response.text()
                return yarl.URL(response.headers["Location"])

    # The web side: GitHub's ways

    def redirect_uri(self, client: FakeClient, params: dict[str, str]) -> str | web.Response:
        if not client.redirect_uris:
            return _page("The application has no callback URL registered.", status=400)
        callback_url = client.redirect_uris[0]
        redirect_uri = params.get("redirect_uri") or callback_url
        if _under_callback(redirect_uri, callback_url):
            return redirect_uri
        # GitHub sends the browser to the registered callback with the error.
        return _redirect(
            callback_url,
            error="redirect_uri_mismatch",
            error_description="The redirect_uri MUST match the registered callback URL "
            "for this application.",
            state=params.get("state", ""),
        )

    def requested_scopes(self, params: dict[str, str]) -> frozenset[str]:
        return frozenset(params.get("scope", "").replace(",", " ").split())

    def granted_scopes(self, scopes: frozenset[str]) -> frozenset[str]:
        # GitHub lets people edit the request on its page: what they grant is theirs.
        grants = self.signed_in.grants
        return scopes if grants is None else frozenset(grants)

    def consent_page(self, client: FakeClient, scopes: frozenset[str], ticket: str) -> str:
        return _consent_page(client, self.signed_in, scopes, ticket)

    def token_params(self, request: web.Request, form: dict[str, str]) -> dict[str, str]:
        # GitHub reads the parameters from the query string too; the provider must not.
        return {**request.query, **form}

    def token_answer(
        self, request: web.Request, body: dict[str, Any], status: int = 200
    ) -> web.Response:
        # Without Accept: JSON, GitHub answers a form.
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response(body, status=status)
        form = str(yarl.URL.build(query={k: str(v) for k, v in body.items()}).query_string)
        return web.Response(
            text=form, status=status, content_type="application/x-www-form-urlencoded"
        )

    def token_refusal(self, request: web.Request, reason: str) -> web.Response:
        # GitHub refuses with HTTP 200 and its own error codes.
        name = TOKEN_REFUSALS.get(reason)
        body = fixture(name) if name else {"error": "unsupported_grant_type"}
        return self.token_answer(request, body)

    def token_body(self, access_token: str, code: IssuedCode) -> dict[str, Any]:
        body = fixture("oauth-access-token.200.json")
        body.update(access_token=access_token, scope=",".join(sorted(code.scopes)))
        return body

    def api_error(self, status: int) -> web.Response:
        return web.json_response({"message": "Server Error"}, status=status)

    def seen(self, request: web.Request, form: dict[str, str], area: str) -> SeenRequest:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("authorization", "cookie")
        }
        form = {k: "[redacted]" if k == "client_secret" else v for k, v in form.items()}
        query = dict(request.query)
        return SeenRequest(
            request.method, request.path, request.raw_path, query, headers, form, area
        )

    def add_api_routes(self, add: Callable[..., None]) -> None:
        add("GET", f"{API}/user", self._user, "api", "user")
        add("GET", f"{API}/user/memberships/orgs/{{org}}", self._org_membership)
        add(
            "GET",
            f"{API}/orgs/{{org}}/teams/{{team}}/memberships/{{username}}",
            self._team_membership,
        )
        add("GET", f"{API}/orgs/{{org}}/teams/{{team}}", self._team, "api", "team")
        add("GET", f"{API}/repos/{{owner}}/{{repo}}", self._repository)
        self.app_side.add_routes(add)
        add("POST", GRAPHQL, self._graphql, "api", "graphql")
        self.listings.add_routes(add)

    # The REST API

    def _api_gate(
        self,
        request: web.Request,
        needs: str | None,
        org: str | None = None,
        *,
        hides_with_404: bool = False,
    ) -> tuple[IssuedToken | None, web.Response | None]:
        """The checks every API call passes (after scripted failures): token, rate limit,
        scope (a missing one: 403, or 404 where GitHub hides what the token may not see),
        and the policies of the organisation `org` when it asks about one."""
        token = self.bearer(request)
        if token is None:
            return None, web.json_response(fixture("error-401-bad-credentials.json"), status=401)
        if self.secondary_rate_limit:
            return token, self._json(
                token,
                {
                    "message": "You have exceeded a secondary rate limit. Please wait a few "
                    "minutes before you try again.",
                    "documentation_url": RATE_LIMIT_DOCS,
                },
                status=403,
                extra={"Retry-After": "60"},
            )
        if self.rate_limit_remaining <= 0:
            return token, self._json(
                token,
                {
                    "message": f"API rate limit exceeded for user ID {token.account.id}.",
                    "documentation_url": RATE_LIMIT_DOCS,
                },
                status=403,
            )
        self.rate_limit_remaining -= 1
        if needs is not None and not _has_scope(token, needs) and hides_with_404:
            not_found = fixture("error-404-not-found.constructed.json")
            return token, self._json(token, not_found, status=404)
        if needs is not None and not _has_scope(token, needs):
            return token, self._json(
                token,
                {"message": f"This call needs the {needs} scope.", "documentation_url": ""},
                status=403,
                extra={"X-Accepted-OAuth-Scopes": needs},
            )
        return token, None if org is None else self._org_gate(token, org)

    def _json(
        self,
        token: IssuedToken,
        body: Any,
        *,
        status: int = 200,
        extra: dict[str, str] | None = None,
    ) -> web.Response:
        headers = {
            "X-OAuth-Scopes": ", ".join(sorted(token.scopes)),
            "X-Accepted-OAuth-Scopes": "",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(max(self.rate_limit_remaining, 0)),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-GitHub-Media-Type": "github.v3; format=json",
        }
        headers.update(extra or {})
        return web.json_response(body, status=status, headers=headers)

    def _org_gate(self, token: IssuedToken, org_login: str) -> web.Response | None:
        """What an organisation's policies answer before its data is shown."""
        org = self.orgs.get(org_login.lower())
        if org is None:
            return None
        if org.restricts_apps and token.client_id not in org.approved_apps:
            body = fixture("error-403-oauth-app-access-restrictions.constructed.json")
            body["message"] = body["message"].replace("octo-org", org.login)
            return self._json(token, body, status=403)
        if org.requires_sso:
            url = f"{self.url}/orgs/{org.login}/sso?authorization_request=A7ZQ"
            return self._json(
                token,
                {
                    "message": "Resource protected by organization SAML enforcement. You must "
                    "grant your OAuth token access to this organization.",
                    "documentation_url": SSO_DOCS,
                },
                status=403,
                extra={"X-GitHub-SSO": f"required; url={url}"},
            )
        return None

    async def _user(self, request: web.Request) -> web.Response:
        token, refused = self._api_gate(request, None)
        if refused is not None:
            return refused
        assert token is not None
        account = token.account
        body = fixture("user.200.public-profile.json")
        body.update(
            login=account.login,
            id=account.id,
            node_id=base64.b64encode(f"04:User{account.id}".encode()).decode(),
            name=account.name,
            url=f"{self.url}{API}/users/{account.login}",
            html_url=f"{self.url}/{account.login}",
        )
        return self._json(token, body)

    async def _org_membership(self, request: web.Request) -> web.Response:
        org = request.match_info["org"]
        token, refused = self._api_gate(request, "read:org", org)
        if refused is not None:
            return refused
        assert token is not None
        membership = token.account.orgs.get(org.lower())
        if membership is None:
            return self._json(token, fixture("error-404-not-found.constructed.json"), status=404)
        name = "user-memberships-orgs-org.200" + (
            ".active" if membership.state == "active" else ""
        )
        body = fixture(f"{name}.json")
        org_login = self.orgs[org.lower()].login if org.lower() in self.orgs else org
        body.update(
            state=membership.state,
            role=membership.role,
            url=f"{self.url}{API}/orgs/{org_login}/memberships/{token.account.login}",
            organization_url=f"{self.url}{API}/orgs/{org_login}",
        )
        body["organization"].update(login=org_login, url=f"{self.url}{API}/orgs/{org_login}")
        body["user"].update(login=token.account.login, id=token.account.id)
        return self._json(token, body)

    async def _team_membership(self, request: web.Request) -> web.Response:
        org, team, username = (request.match_info[k] for k in ("org", "team", "username"))
        token, refused = self._api_gate(request, "read:org", org, hides_with_404=True)
        if refused is not None:
            return refused
        assert token is not None
        account = self.accounts.get(username.lower())
        membership = account.teams.get(f"{org}/{team}".lower()) if account else None
        if membership is None:
            return self._json(token, fixture("error-404-not-found.constructed.json"), status=404)
        body = fixture("orgs-org-teams-team_slug-memberships-username.200.json")
        body.update(
            url=f"{self.url}{API}/teams/1/memberships/{username}",
            role=membership.role,
            state=membership.state,
        )
        return self._json(token, body)

    async def _team(self, request: web.Request) -> web.Response:
        """A team, to a token that may see it: organisation members see visible teams, a
        secret team only its members and the organisation's owners; 404 to anyone else."""
        org, slug = request.match_info["org"].lower(), request.match_info["team"].lower()
        token, refused = self._api_gate(request, "read:org", org, hides_with_404=True)
        if refused is not None:
            return refused
        assert token is not None
        organization = self.orgs.get(org)
        secret = organization.teams.get(slug) if organization else None
        if secret is None and any(f"{org}/{slug}" in a.teams for a in self.accounts.values()):
            secret = False
        in_org = token.account.orgs.get(org)
        active = in_org is not None and in_org.state == "active"
        visible = active and (not secret or in_org.role == "admin")
        if secret is None or not (visible or f"{org}/{slug}" in token.account.teams):
            return self._json(token, fixture("error-404-not-found.constructed.json"), status=404)
        body = {
            "slug": slug,
            "name": slug,
            "privacy": "secret" if secret else "closed",
            "url": f"{self.url}{API}/orgs/{org}/teams/{slug}",
        }
        return self._json(token, body)

    async def _repository(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").lower().startswith(("bearer ", "token ")):
            return await self.app_side.repository(request)
        token, refused = self._api_gate(request, None)
        if refused is not None:
            return refused
        assert token is not None
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        repo = self.repos.get(full_name.lower())
        not_found = fixture("error-404-not-found.constructed.json")
        if repo is None or (repo.private and "repo" not in token.scopes):
            return self._json(token, not_found, status=404)
        if repo.moved_to is not None:
            location = f"{self.url}{API}/repositories/{repo.id}"
            return self._json(
                token,
                {"message": "Moved Permanently", "url": location, "documentation_url": ""},
                status=301,
                extra={"Location": location},
            )
        level = token.account.repos.get(repo.full_name.lower())
        rank = LEVELS.index(level) if level else (-1 if repo.private else 0)
        owner = repo.full_name.split("/")[0]
        body = {
            "id": repo.id,
            "name": repo.full_name.split("/")[1],
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": {"login": owner, "url": f"{self.url}{API}/users/{owner}"},
            "html_url": f"{self.url}/{repo.full_name}",
            "permissions": {name: rank >= i for i, name in enumerate(LEVELS)},
        }
        return self._json(token, body)

    # GraphQL: only the sponsorship question the provider asks

    async def _graphql(self, request: web.Request) -> web.Response:
        if b"sponsorshipsAsMaintainer" in await request.read():
            return await self.listings.sponsors(request)
        token, refused = self._api_gate(request, None)
        if refused is not None:
            if refused.status == 403 and token is not None and not self.secondary_rate_limit:
                # GraphQL reports the hourly limit in its errors, with HTTP 200.
                errors = [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]
                return self._json(token, {"errors": errors})
            return refused
        assert token is not None
        try:
            payload = json.loads(await request.read())
            query, login = payload["query"], payload["variables"]["login"]
        except (ValueError, KeyError, TypeError):
            return self._json(token, {"message": "Problems parsing JSON"}, status=400)
        if "repositoryOwner" not in query or "sponsorshipForViewerAsSponsor" not in query:
            errors = [{"message": "The fake answers only the sponsorship query"}]
            return self._json(token, {"errors": errors})
        if not _has_scope(token, "read:user"):
            granted = ", ".join(f"'{s}'" for s in sorted(token.scopes))
            message = (
                "Your token has not been granted the required scopes to execute this query. "
                "The 'sponsorshipForViewerAsSponsor' field requires one of the following "
                f"scopes: ['read:user'], but your token has only been granted the: [{granted}] "
                "scopes."
            )
            errors = [{"type": "INSUFFICIENT_SCOPES", "message": message}]
            return self._json(token, {"errors": errors})
        target = self.accounts.get(login.lower()) or self.orgs.get(login.lower())
        if target is None:
            return self._json(token, {"data": {"repositoryOwner": None}})
        if isinstance(target, Organization) and target.requires_sso:
            # GraphQL's way: HTTP 200, the protected field null, and why in `errors`.
            data = {"repositoryOwner": {"login": target.login, SPONSORSHIP: None}}
            error = {
                "type": "FORBIDDEN",
                "path": ["repositoryOwner", SPONSORSHIP],
                "extensions": {"saml_failure": True},
                "locations": [{"line": 5, "column": 7}],
                "message": "Resource protected by organization SAML enforcement. You must "
                "grant your OAuth token access to this organization.",
            }
            return self._json(token, {"data": data, "errors": [error]})
        sponsorship = token.account.sponsoring.get(login.lower())
        name = "sponsoring" if sponsorship and sponsorship.active else "not-sponsoring"
        owner = fixture(f"graphql-sponsors.response.{name}.constructed.json")["data"]["user"]
        owner.pop("isSponsoredBy")  # not asked for
        owner["login"] = target.login
        found = owner["sponsorshipForViewerAsSponsor"]
        if found is not None and sponsorship is not None:
            found["isOneTimePayment"] = sponsorship.one_time
            found["tier"].update(
                name=sponsorship.tier_name,
                monthlyPriceInCents=sponsorship.cents,
                monthlyPriceInDollars=sponsorship.cents // 100,
                isOneTime=sponsorship.one_time,
            )
        return self._json(token, {"data": {"repositoryOwner": copy.deepcopy(owner)}})


def _has_scope(token: IssuedToken, scope: str) -> bool:
    return scope in token.scopes or bool(token.scopes & IMPLIED.get(scope, set()))


def _under_callback(redirect_uri: str, callback_url: str) -> bool:
    """GitHub's rule: same scheme, host and port; the path equal to or below the callback's."""
    given, registered = yarl.URL(redirect_uri), yarl.URL(callback_url)
    if (given.scheme, given.host, given.port) != (
        registered.scheme,
        registered.host,
        registered.port,
    ):
        return False
    base = registered.path.rstrip("/")
    return given.path == registered.path or given.path.startswith(base + "/")


def _redirect(location: str, **params: str) -> web.Response:
    url = yarl.URL(location).update_query(params)
    return web.Response(status=302, headers={"Location": str(url)})


def _page(message: str, status: int = 200) -> web.Response:
    body = f"<!doctype html><title>GitHub</title><p>{html.escape(message)}</p>"
    return web.Response(text=body, status=status, content_type="text/html")


def _consent_page(app: FakeClient, account: Account, scopes: frozenset[str], ticket: str) -> str:
    items = (
        "".join(
            f"<li><code>{html.escape(s)}</code> {html.escape(SCOPE_WORDS.get(s, ''))}</li>"
            for s in sorted(scopes)
        )
        or "<li>Public information only</li>"
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize application</title></head>
<body><main>
<h1>Authorize {html.escape(app.name)}</h1>
<p>Signed in as <strong>{html.escape(account.login)}</strong>.
{html.escape(app.name)} would like permission to:</p>
<ul>{items}</ul>
<form method="post" action="/login/oauth/authorize">
<input type="hidden" name="ticket" value="{ticket}">
<button type="submit" name="decision" value="cancel">Cancel</button>
<button type="submit" name="decision" value="authorize">Authorize</button>
</form></main></body></html>"""
    return body
