"""GitHub (and GitHub Enterprise Server): organisation, team, repository and sponsor rules.

Rules, checked with the person's own token (an OAuth app's web flow, PKCE S256):

* `org:ORG`: an active member (or owner) of the organisation.
* `team:ORG/TEAM`: an active member or maintainer of the team (TEAM is the slug in the
  team's URL).
* `repo:OWNER/REPO[:LEVEL]`: at least LEVEL (pull < triage < push < maintain < admin;
  `read` and `write` are GitHub's other words for pull and push) on the repository.
  Without LEVEL: push, since every signed-in person can pull a public repository.
  Only public repositories can be checked: a token sees private ones only with the
  `repo` scope (full access to the person's code), which this bot never asks for.
* `sponsor:LOGIN[:MIN_CENTS]`: an active sponsor of the user or organisation LOGIN, with
  a monthly tier of at least MIN_CENTS when given (one-time payments then do not count).

`bind` refuses a repo rule on a repository GitHub does not show the app (private, or
missing): it looks the repository up with the app's own credentials (HTTP Basic with the
client ID and secret, which see public data only). When GitHub cannot be asked then, the
rule is bound and the admin is told it could not be checked.

Scopes: `read:org` for org, team and repo rules, `read:user` for sponsor rules; nothing
else. A person may grant fewer scopes than asked (GitHub lets them edit the request), so
the granted ones (the token answer's `scope`, then every API answer's `X-OAuth-Scopes`)
are checked before each rule, and a missing one is said in words.

After the rules are checked the person's token is revoked (`revoke`: GitHub's
`DELETE /applications/{client_id}/token`, as the app), also when the sign-in fails after
the code was exchanged. It runs in the background (`revoke_later`), so nobody's outcome
waits for it; `close()` waits for the revocations still running.

This module reads the config and the rules, signs the person in and speaks as the app;
github_session asks GitHub's APIs about each rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import logging
import re
from typing import Any, ClassVar
from urllib.parse import quote

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
)
from .github_listing import ListingCredentials, MemberListing, listing_for, read_recheck
from .github_session import (
    API_HEADERS,
    PERMISSIONS,
    GitHubSession,
    header_scopes,
    money,
    scope_for,
)
from .oauth import ApiResponse, OAuthClient, OAuthEndpoints, TokenResponse, basic_authorization
from .settings import refuse_unknown_settings, secret_setting, text_setting, url_setting

log = logging.getLogger(__name__)

PERMISSION_ALIASES = {"read": "pull", "write": "push"}
DEFAULT_REPO_PERMISSION = "push"
MAX_CENTS = 100_000_000
# Logins of users and organisations: letters, digits and single inner hyphens, 1 to 39.
LOGIN = r"(?=[A-Za-z0-9-]{1,39}(?![A-Za-z0-9-]))([A-Za-z0-9](?:-?[A-Za-z0-9])*)"
RULE_SHAPES = {  # what follows "kind:"; the groups become the rule's args
    "org": re.compile(LOGIN),
    "team": re.compile(rf"{LOGIN}/([A-Za-z0-9_-]{{1,255}})"),  # a team's slug, as in its URL
    "repo": re.compile(rf"{LOGIN}/([A-Za-z0-9._-]{{1,100}})(?::([A-Za-z]+))?"),
    "sponsor": re.compile(rf"@?{LOGIN}(?::([0-9]{{1,9}}))?"),
}
USAGE = {  # (the shape, what its words mean)
    "org": ("org:ORG", "ORG as in https://github.com/ORG"),
    "team": ("team:ORG/TEAM", "TEAM as in the team's URL, https://github.com/orgs/ORG/teams/TEAM"),
    "repo": ("repo:OWNER/REPO[:LEVEL]", f"LEVEL: {', '.join(PERMISSIONS)}; push when left out"),
    "sponsor": ("sponsor:LOGIN[:MIN_CENTS]", "sponsor:octocat:500 is at least $5.00 a month"),
}
SETTINGS = (
    "client_id",
    "client_secret",
    "web_url",
    "api_url",
    "graphql_url",
    "webhook_secret",
    "recheck",
)
# Seconds a revocation may take at most (they run in the background; close() waits).
REVOKE_TIMEOUT = 5.0
MOVED = (301, 302, 307, 308)


class GitHubProvider(Provider):
    kind: ClassVar[str] = "github"

    def __init__(
        self,
        provider_id: str,
        name: str,
        client: OAuthClient,
        urls: list[str],
        app_authorization: str,
    ) -> None:
        super().__init__(provider_id, name)
        self.client = client
        self._revocations: set[asyncio.Task[bool]] = set()
        self.web_url, self.api_url, self.graphql_url = urls
        # HTTP Basic with the client ID and secret: how the app speaks as itself.
        self._app_authorization = app_authorization

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> GitHubProvider:
        refuse_unknown_settings(section, SETTINGS)
        client_id = text_setting(section, "client_id")
        secret = text_setting(section, "client_secret")
        web_url = url_setting(section, "web_url", "https://github.com")
        api_url = url_setting(section, "api_url", "https://api.github.com")
        # GitHub Enterprise Server: REST under <host>/api/v3, GraphQL at <host>/api/graphql.
        graphql_default = f"{api_url.removesuffix('/v3')}/graphql"
        graphql_url = url_setting(section, "graphql_url", graphql_default)
        endpoints = OAuthEndpoints(
            authorize_url=f"{web_url}/login/oauth/authorize",
            token_url=f"{web_url}/login/oauth/access_token",
        )
        client = OAuthClient("GitHub", client_id, secret, endpoints, http)
        urls = [web_url, api_url, graphql_url]
        app_authorization = basic_authorization(client_id, secret)
        provider = cls(provider_id, "GitHub", client, urls, app_authorization)
        provider.webhook_secret = secret_setting(section, "webhook_secret")
        provider.recheck = read_recheck(section.get("recheck"), client, api_url)
        return provider

    # Rules

    def parse_rule(self, text: str) -> Rule:
        kind, _, rest = text.strip().partition(":")
        kind = kind.lower()
        if kind not in RULE_SHAPES:
            shapes = ", ".join(shape for shape, _ in USAGE.values())
            raise RuleError(f"{self.display_name} rules are one of {shapes}")
        match = RULE_SHAPES[kind].fullmatch(rest)
        if match is None or (kind == "repo" and match[2] in (".", "..")):
            raise RuleError(f"{kind} rules look like {USAGE[kind][0]} ({USAGE[kind][1]})")
        # GitHub's names are case-insensitive: one spelling, so equal rules compare equal.
        args = [group.lower() for group in match.groups() if group is not None]
        if kind == "repo":
            level = args[2] if len(args) == 3 else DEFAULT_REPO_PERMISSION
            args[2:] = [PERMISSION_ALIASES.get(level, level)]
            if args[2] not in PERMISSIONS:
                raise RuleError(f"the access level is one of {', '.join(PERMISSIONS)}")
        if kind == "sponsor" and len(args) == 2:
            if not 0 < int(args[1]) <= MAX_CENTS:
                raise RuleError("the minimum is in cents: sponsor:octocat:500 is $5.00 a month")
            args[1] = str(int(args[1]))
        paired = kind in ("team", "repo")  # ORG/TEAM, OWNER/REPO
        names, options = ("/".join(args[:2]), args[2:]) if paired else (args[0], args[1:])
        return Rule(self.id, kind, tuple(args), ":".join([kind, names, *options]))

    def rule_shapes(self) -> list[RuleShape]:
        login = RuleField("login", "User login")
        owner = RuleField("org", "Organisation")
        fields = {
            "org": (owner,),
            "team": (owner, RuleField("team", "Team (as in its URL)", "/")),
            "repo": (
                RuleField("owner", "Owner"),
                RuleField("repo", "Repository", "/"),
                RuleField("level", "Permission (push when left out)", ":", True, PERMISSIONS),
            ),
            "sponsor": (login, RuleField("min_cents", "Minimum, in cents a month", ":", True)),
        }
        return [
            RuleShape(kind, f"{kind}:", usage, meaning, fields[kind])
            for kind, (usage, meaning) in USAGE.items()
        ]

    def describe(self, rule: Rule) -> str:
        on = f"on {self.display_name}"
        if rule.kind == "org":
            return f"members of the {self.display_name} organisation {rule.args[0]}"
        if rule.kind == "team":
            return f"members of team {rule.args[1]} of {rule.args[0]} {on}"
        if rule.kind == "repo":
            return f"people with {rule.args[2]} access to {rule.args[0]}/{rule.args[1]} {on}"
        minimum = f" (at least {money(int(rule.args[1]))} a month)" if len(rule.args) > 1 else ""
        return f"{self.display_name} sponsors of @{rule.args[0]}{minimum}"

    # Re-checks: who holds a rule now, listed with the operator's credentials

    recheck: ListingCredentials | None = None  # the section's `recheck:` (github_listing)

    def listing(self, rule: Rule) -> MemberListing | None:
        return listing_for(self, rule)

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return sorted({scope_for(rule) for rule in rules})

    async def validate_rule(self, rule: Rule) -> str | None:
        if rule.kind != "repo" or self.client.http is None:
            return None
        repo = f"{rule.args[0]}/{rule.args[1]}"
        cannot = f"could not check that the repository {repo} is public"
        try:
            response = await self._as_app("GET", f"/repos/{repo}")
        except ProviderUnavailable as e:
            return f"{cannot} ({e.detail}). If it is private, nobody will get in through it."
        body = response.body if isinstance(response.body, dict) else {}
        if response.status == 404 or (response.status == 200 and body.get("private") is True):
            raise RuleError(
                f"{self.display_name} does not show this bot the repository {repo}: it is "
                "private, or it does not exist. A repo rule works on public repositories "
                "only: seeing a private one would take the `repo` scope, full access to "
                "every person's code, which this bot never asks for. For a private project, "
                "use a team rule (team:ORG/TEAM)."
            )
        if response.status in MOVED:
            raise RuleError(
                f"the repository {repo} has moved or been renamed: use its current name "
                f"(open {self.web_url}/{repo} to see it)"
            )
        if response.status != 200:
            return f"{cannot} ({self.display_name} answered HTTP {response.status})."
        return None

    # Signing in

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        return self.client.authorization_request(redirect_uri, self.scopes(rules), state)

    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> ProviderSession:
        if self.client.http is None:
            raise RuntimeError("GitHubProvider built for validation only (no http)")
        token = await self.client.exchange_code(code, redirect_uri, request)
        try:
            return await self._session(token)
        except BaseException:
            self.revoke_later(token.access_token)  # dropped is not revoked
            raise

    async def _session(self, token: TokenResponse) -> GitHubSession:
        """Who the token's person is, and the scopes they granted."""
        response = await self.client.get_json(
            f"{self.api_url}/user", token.access_token, headers=API_HEADERS
        )
        if response.status == 401:
            raise SignInFailed(
                f"{self.display_name} did not accept its own sign-in. Start again from the "
                "invite link."
            )
        user = response.body if response.status == 200 else None
        if response.status in (403, 429):
            raise ProviderUnavailable(self.display_name, "it is limiting how often it is asked")
        if not isinstance(user, dict):
            raise ProviderUnavailable(self.display_name, f"/user answered {response.status}")
        user_id, login = user.get("id"), user.get("login")
        if isinstance(user_id, bool) or not isinstance(user_id, int) or not isinstance(login, str):
            raise ProviderUnavailable(self.display_name, "/user did not say who you are")
        account = ExternalAccount(self.id, str(user_id), login)
        granted = header_scopes(response)
        if granted is None:
            granted = token.granted_scopes
        return GitHubSession(self, token.access_token, account, granted)

    # As the app itself

    def revoke_later(self, access_token: str) -> None:
        """Revoke in the background: the person's outcome, and a check cancelled at a
        stop, never wait for GitHub's answer. `close()` waits for those still running."""
        task = asyncio.get_running_loop().create_task(self.revoke(access_token))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def revocations_done(self) -> None:
        """Wait for the background revocations (each bounded by REVOKE_TIMEOUT)."""
        while self._revocations:
            await asyncio.gather(*self._revocations, return_exceptions=True)

    async def close(self) -> None:
        await self.revocations_done()

    async def revoke(self, access_token: str) -> bool:
        """Revoke a person's token (`DELETE /applications/{client_id}/token`, 204). Best
        effort and bounded: a failure is logged, never the token, and never raised. True
        when GitHub said it is revoked."""
        path = f"/applications/{quote(self.client.client_id, safe='')}/token"
        try:
            response = await asyncio.wait_for(
                self._as_app("DELETE", path, {"access_token": access_token}), REVOKE_TIMEOUT
            )
        except ProviderUnavailable as e:
            log.info("%s: revoking a token failed: %s", self.display_name, e.detail)
            return False
        except Exception as e:  # best effort: never fail the person's check
            log.warning("%s: revoking a token failed: %s", self.display_name, type(e).__name__)
            return False
        if response.status != 204:
            log.info("%s: revoking a token answered %s", self.display_name, response.status)
        return response.status == 204

    async def _as_app(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> ApiResponse:
        # The app's Basic credentials replace the bearer header get_json would send.
        headers = {**API_HEADERS, "Authorization": self._app_authorization}
        url = f"{self.api_url}{path}"
        return await self.client.get_json(url, "", headers=headers, method=method, json_body=body)
