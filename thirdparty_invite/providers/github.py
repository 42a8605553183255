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

Scopes: `read:org` for org, team and repo rules, `read:user` for sponsor rules; nothing
else. A person may grant fewer scopes than asked (GitHub lets them edit the request), so
the granted ones (the token answer's `scope`, then every API answer's `X-OAuth-Scopes`)
are checked before each rule, and a missing one is said in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import re
from typing import Any, ClassVar

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
from .oauth import ApiResponse, OAuthClient, OAuthEndpoints
from .settings import refuse_unknown_settings, text_setting, url_setting

PERMISSIONS = ("pull", "triage", "push", "maintain", "admin")  # weakest first
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
# A scope is also satisfied by the broader scopes that include it.
IMPLIED_BY = {
    "read:org": {"read:org", "write:org", "admin:org"},
    "read:user": {"read:user", "user"},
}
SCOPE_PURPOSE = {
    "read:org": "reading your organisation and team memberships",
    "read:user": "reading your profile, where your sponsorships are",
}
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
# Valid for users and organisations alike; a name that is neither comes back as null.
SPONSOR_QUERY = """query($login: String!) {
  repositoryOwner(login: $login) {
    login
    ... on Sponsorable {
      sponsorshipForViewerAsSponsor(activeOnly: true) {
        isActive isOneTimePayment tier { name monthlyPriceInCents }
      }
    }
  }
}"""
SETTINGS = ("client_id", "client_secret", "web_url", "api_url", "graphql_url")


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


class GitHubProvider(Provider):
    kind: ClassVar[str] = "github"

    def __init__(self, provider_id: str, name: str, client: OAuthClient, urls: list[str]) -> None:
        super().__init__(provider_id, name)
        self.client = client
        self.web_url, self.api_url, self.graphql_url = urls

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
        return cls(provider_id, "GitHub", client, [web_url, api_url, graphql_url])

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

    def describe(self, rule: Rule) -> str:
        on = f"on {self.display_name}"
        if rule.kind == "org":
            return f"members of the {self.display_name} organisation {rule.args[0]}"
        if rule.kind == "team":
            return f"members of team {rule.args[1]} of {rule.args[0]} {on}"
        if rule.kind == "repo":
            return f"people with {rule.args[2]} access to {rule.args[0]}/{rule.args[1]} {on}"
        minimum = f" (at least {_money(int(rule.args[1]))} a month)" if len(rule.args) > 1 else ""
        return f"{self.display_name} sponsors of @{rule.args[0]}{minimum}"

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return sorted({_scope_for(rule) for rule in rules})

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
        granted = _header_scopes(response)
        if granted is None:
            granted = token.granted_scopes
        return GitHubSession(self, token.access_token, account, granted)


def _scope_for(rule: Rule) -> str:
    return "read:user" if rule.kind == "sponsor" else "read:org"


def _header_scopes(response: ApiResponse) -> frozenset[str] | None:
    header = response.header("X-OAuth-Scopes")
    if header is None:
        return None
    return frozenset(s.strip() for s in header.split(",") if s.strip())


class GitHubSession(ProviderSession):
    def __init__(
        self,
        provider: GitHubProvider,
        access_token: str,
        account: ExternalAccount,
        granted: frozenset[str] | None,
    ) -> None:
        self.provider = provider
        self.account = account
        self.login = account.display_name
        # None: GitHub did not say, so each call is tried and its answer tells.
        self.granted = granted
        self._token = access_token

    async def close(self) -> None:
        self._token = ""

    async def check(self, rule: Rule) -> Verdict:
        missing = self._missing_scope(rule)
        if missing:
            return missing
        check = getattr(self, f"_check_{rule.kind}")  # org, team, repo, sponsor
        try:
            return await check(*rule.args)
        except ProviderUnavailable as e:
            return Verdict.unknown(
                f"{self.provider.display_name} is not answering properly right now ({e.detail})"
            )

    # What each rule asks

    async def _check_org(self, org: str) -> Verdict:
        response = await self._get(f"/user/memberships/orgs/{org}")
        membership = response.body if response.status == 200 else None
        if response.status == 404:
            return Verdict.no(f"you ({self._you}) are not a member of the organisation {org}")
        if not isinstance(membership, dict):
            return self._trouble(response, "read:org", org)
        state, role = membership.get("state"), membership.get("role")
        if state == "pending":
            return self._pending(org, f"the organisation {org}")
        if state != "active":
            return self._nonsense("the organisation membership")
        if role == "billing_manager":
            return Verdict.no(f"you are a billing manager of {org}, not a member")
        return Verdict.yes()

    async def _check_team(self, org: str, team: str) -> Verdict:
        response = await self._get(f"/orgs/{org}/teams/{team}/memberships/{self.login}")
        membership = response.body if response.status == 200 else None
        if response.status == 404:
            return Verdict.no(f"you ({self._you}) are not in team {team} of {org}")
        if not isinstance(membership, dict):
            return self._trouble(response, "read:org", org)
        if membership.get("state") == "pending":
            return self._pending(org, f"team {team} of {org}")
        if membership.get("state") != "active":
            return self._nonsense("the team membership")
        return Verdict.yes()

    async def _check_repo(self, owner: str, name: str, needed: str) -> Verdict:
        response = await self._get(f"/repos/{owner}/{name}")
        repo = f"{owner}/{name}"
        if response.status in (301, 302, 307, 308):
            return Verdict.unknown(
                f"the repository {repo} has moved or been renamed",
                "Tell the room's admins: the rule needs the repository's new name.",
            )
        if response.status == 404:
            return Verdict.no(
                f"{self.provider.display_name} does not show this app the repository {repo}: "
                "it is private, or it does not exist",
                "This bot can check public repositories only: it never asks to see private "
                "ones. Tell the room's admins; a team rule works for private projects.",
            )
        body = response.body if response.status == 200 else None
        if not isinstance(body, dict):
            return self._trouble(response, "read:org", owner)
        flags = body.get("permissions")
        if not isinstance(flags, dict):
            return self._nonsense("your permissions on the repository")
        held = [level for level in PERMISSIONS if flags.get(level) is True]
        # Older servers lack triage and maintain; the strongest flag set decides.
        best = PERMISSIONS.index(held[-1]) if held else -1
        if best >= PERMISSIONS.index(needed):
            return Verdict.yes()
        have = f"only {held[-1]} access" if held else "no access"
        return Verdict.no(f"you ({self._you}) have {have} to {repo}; it takes {needed} access")

    async def _check_sponsor(self, login: str, minimum: str = "") -> Verdict:
        response = await self._call(
            self.provider.graphql_url,
            "POST",
            {"query": SPONSOR_QUERY, "variables": {"login": login}},
        )
        body = response.body if response.status == 200 else None
        if not isinstance(body, dict):
            return self._trouble(response, "read:user", None)
        errors = body.get("errors") if isinstance(body.get("errors"), list) else []
        types = {e.get("type") for e in errors if isinstance(e, dict)}
        if "INSUFFICIENT_SCOPES" in types:
            return self._scope_verdict("read:user")
        if "RATE_LIMITED" in types:
            return self._rate_limited(response)
        data = body.get("data")
        owner = data.get("repositoryOwner") if isinstance(data, dict) else None
        if not isinstance(owner, dict) and not types <= {"NOT_FOUND"}:
            return self._nonsense(f"the sponsorship query ({', '.join(map(str, types))})")
        if not isinstance(owner, dict):
            return Verdict.no(
                f"there is no {self.provider.display_name} account @{login} to sponsor",
                "Tell the room's admins: the rule names an account that does not exist.",
            )
        sponsorship = owner.get("sponsorshipForViewerAsSponsor")
        sponsor_page = f"{self.provider.web_url}/sponsors/{login}"
        if not isinstance(sponsorship, dict) or sponsorship.get("isActive") is not True:
            return Verdict.no(
                f"you ({self._you}) are not sponsoring @{login}",
                f"Sponsor them at {sponsor_page}, then start again from the invite link.",
            )
        if not minimum:
            return Verdict.yes()
        needed = int(minimum)
        tier = sponsorship.get("tier")
        cents = tier.get("monthlyPriceInCents") if isinstance(tier, dict) else None
        if sponsorship.get("isOneTimePayment") is True:
            return Verdict.no(
                f"your sponsorship of @{login} is a one-time payment; it takes a monthly one "
                f"of at least {_money(needed)}",
                f"Choose a monthly tier at {sponsor_page}, then start again from the link.",
            )
        if isinstance(cents, bool) or not isinstance(cents, int):
            return self._nonsense("your sponsorship's tier")
        if cents < needed:
            return Verdict.no(
                f"you sponsor @{login} with {_money(cents)} a month; it takes at least "
                f"{_money(needed)}",
                f"Change your tier at {sponsor_page}, then start again from the invite link.",
            )
        return Verdict.yes()

    # How GitHub says no, or cannot say

    def _missing_scope(self, rule: Rule) -> Verdict | None:
        scope = _scope_for(rule)
        if self.granted is None or self.granted & IMPLIED_BY[scope]:
            return None
        return self._scope_verdict(scope)

    def _scope_verdict(self, scope: str) -> Verdict:
        return Verdict.no(
            f"you did not allow {SCOPE_PURPOSE[scope]} ({scope})",
            "Sign in again and allow it. You can see what you allowed this app at "
            f"{self._app_page}.",
        )

    def _trouble(self, response: ApiResponse, scope: str, org: str | None) -> Verdict:
        """An answer that is not the endpoint's yes or no: why, in the person's words."""
        message = response.body.get("message") if isinstance(response.body, dict) else None
        message = message if isinstance(message, str) else ""
        name = self.provider.display_name
        if response.status == 401:
            return Verdict.unknown(
                f"{name} no longer accepts this sign-in", "Start again from the link."
            )
        limited = response.header("X-RateLimit-Remaining") == "0" or "rate limit" in message
        if response.status == 429 or (response.status == 403 and limited):
            return self._rate_limited(response)
        if response.status == 403 and "OAuth App access restrictions" in message and org:
            return Verdict.no(
                f"the organisation {org} has not approved this app, so {name} does not show "
                "it your membership",
                f"Open {self._app_page}, press Request next to {org} (Grant, if you own it), "
                "and once an owner of the organisation approves, start again from the link.",
            )
        sso = response.header("X-GitHub-SSO") or ""
        if response.status == 403 and sso.startswith("required") and org:
            _, _, url = sso.partition("url=")
            where = url if url.startswith(self.provider.web_url + "/") else "the organisation"
            return Verdict.no(
                f"{org} asks you to sign in with its single sign-on before apps may see your "
                "membership",
                f"Sign in through {where}, then start again from the invite link.",
            )
        granted = _header_scopes(response)
        if response.status == 403 and granted is not None and not granted & IMPLIED_BY[scope]:
            return self._scope_verdict(scope)
        return self._nonsense(f"HTTP {response.status}")

    def _rate_limited(self, response: ApiResponse) -> Verdict:
        # Secondary limits send Retry-After (seconds); the hourly one, when it resets.
        seconds = response.retry_after()
        minutes = max(1, round((120 if seconds is None else seconds) / 60))
        return Verdict.unknown(
            f"{self.provider.display_name} is limiting how often your account may be asked",
            f"Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )

    def _pending(self, org: str, what: str) -> Verdict:
        return Verdict.no(
            f"you have not accepted the invitation to {what} yet",
            f"Accept it at {self.provider.web_url}/orgs/{org}/invitation, then start again "
            "from the invite link.",
        )

    def _nonsense(self, what: str) -> Verdict:
        return Verdict.unknown(f"{self.provider.display_name} answered strangely about {what}")

    @property
    def _you(self) -> str:
        return f"@{self.login} on {self.provider.display_name}"

    @property
    def _app_page(self) -> str:
        """Where the person sees (and for restricted organisations, requests) this app."""
        client_id = self.provider.client.client_id
        return f"{self.provider.web_url}/settings/connections/applications/{client_id}"

    # Calls

    async def _get(self, path: str) -> ApiResponse:
        return await self._call(f"{self.provider.api_url}{path}", "GET", None)

    async def _call(self, url: str, method: str, body: Mapping[str, Any] | None) -> ApiResponse:
        if not self._token:
            raise ProviderUnavailable(self.provider.display_name, "the sign-in was closed")
        response = await self.provider.client.get_json(
            url, self._token, headers=API_HEADERS, method=method, json_body=body
        )
        granted = _header_scopes(response)
        if granted is not None:
            self.granted = granted
        return response
