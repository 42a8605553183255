"""A person signed in at GitHub, and what each GitHub rule asks of its REST and GraphQL
APIs with their token: organisation and team memberships, a repository's permissions, a
sponsorship. And GitHub's ways of saying no, or of not saying.

"No" only when GitHub says the person does not qualify: not a member (404 from their own
membership), an invitation not accepted yet, a billing manager, too little access to a
repository, not sponsoring (or too little). Everything GitHub hides from this app is
"unknown", with its own remedy: an organisation's OAuth app access restrictions, SAML
single sign-on not authorised for the token, a scope the person did not grant, a
repository it cannot see (private, deleted) or that moved, a sponsor rule naming no
account, rate limits, and any answer in a shape GitHub does not document.

A team's 404 is read as "not in the team": the membership endpoint answers 404 both to a
non-member and when the team is invisible to the token, but a secret team is visible to
its own members, so either way the person is not in a team of that name. One more call
(the team itself) tells whether the rule may name a team that no longer exists, for the
remedy.

`close()` has the token revoked (GitHubProvider.revoke_later, in the background): dropped
is not revoked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .base import ExternalAccount, ProviderSession, ProviderUnavailable, Rule, Verdict
from .oauth import ApiResponse

if TYPE_CHECKING:
    from .github import GitHubProvider

PERMISSIONS = ("pull", "triage", "push", "maintain", "admin")  # weakest first
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


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def scope_for(rule: Rule) -> str:
    return "read:user" if rule.kind == "sponsor" else "read:org"


def header_scopes(response: ApiResponse) -> frozenset[str] | None:
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
        token, self._token = self._token, ""
        if token:
            self.provider.revoke_later(token)

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
        membership = await self._membership(f"/user/memberships/orgs/{org}", org)
        if membership is None:
            return Verdict.no(f"you ({self._you}) are not a member of the organisation {org}")
        if isinstance(membership, Verdict):
            return membership
        if membership.get("role") == "billing_manager":
            return Verdict.no(f"you are a billing manager of {org}, not a member")
        return Verdict.yes()

    async def _check_team(self, org: str, team: str) -> Verdict:
        path = f"/orgs/{org}/teams/{team}/memberships/{self.login}"
        membership = await self._membership(path, org, team)
        if isinstance(membership, Verdict):
            return membership
        if membership is not None:
            return Verdict.yes()
        not_in = f"you ({self._you}) are not in team {team} of {org}"
        # Can the person see the team at all? Organisation members see every visible
        # team, and a secret team's members see it; nobody sees a team that is gone. The
        # answer changes only the remedy: the verdict is no either way.
        try:
            team_answer = await self._get(f"/orgs/{org}/teams/{team}")
        except ProviderUnavailable:
            return Verdict.no(not_in)
        if team_answer.status != 404:
            return Verdict.no(not_in)
        return Verdict.no(
            not_in,
            f"If you are in a team of {org} with this name, tell the room's admins: "
            f"{self.provider.display_name} shows your account no team {team} there, so it "
            "may have been renamed (the rule needs the name in the team's address).",
        )

    async def _membership(
        self, path: str, org: str, team: str | None = None
    ) -> dict[str, Any] | Verdict | None:
        """The active membership of the organisation, or of the team, at `path`; None when
        GitHub says there is none (a 404 to a token that may see it); else the verdict: an
        invitation not accepted yet, or why GitHub could not say."""
        response = await self._get(path)
        if response.status == 404:
            # GitHub answers 404 for what the token may not see, too: a scope not granted,
            # single sign-on not authorised. Only a 404 to a token that may see is a "no".
            return self._hidden(response, "read:org", org)
        membership = response.body if response.status == 200 else None
        if not isinstance(membership, dict):
            return self._trouble(response, "read:org", org)
        if membership.get("state") == "pending":
            return self._pending(
                org, f"team {team} of {org}" if team else f"the organisation {org}"
            )
        if membership.get("state") != "active":
            return self._nonsense(f"the {'team' if team else 'organisation'} membership")
        return membership

    async def _check_repo(self, owner: str, name: str, needed: str) -> Verdict:
        response = await self._get(f"/repos/{owner}/{name}")
        repo = f"{owner}/{name}"
        if response.status in (301, 302, 307, 308):
            return Verdict.unknown(
                f"the repository {repo} has moved or been renamed",
                "Tell the room's admins: the rule needs the repository's new name.",
            )
        if response.status == 404:
            # `bind` refused private and missing repositories, so it went private or was
            # deleted since: nobody can be checked, which says nothing of this person.
            return Verdict.unknown(
                f"{self.provider.display_name} does not show this app the repository {repo}: "
                "it is private now, or it no longer exists",
                "This bot can check public repositories only: it never asks to see private "
                "ones. Tell the room's admins; a team rule works for private projects.",
            )
        body = response.body if response.status == 200 else None
        if not isinstance(body, dict):
            return self._trouble(response, "read:org", owner)
        full_name = body.get("full_name")
        if not isinstance(full_name, str) or full_name.lower() != repo.lower():
            return self._nonsense(f"the repository {repo} (it named {str(full_name)[:100]})")
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
        if not types <= {"NOT_FOUND"}:
            # Partial data with errors (FORBIDDEN behind single sign-on, ...): a null
            # sponsorship then means "not shown", not "not sponsoring".
            return self._nonsense(f"the sponsorship query ({', '.join(map(str, types))})")
        if not isinstance(owner, dict):
            # Renamed or deleted: the rule names nobody, which says nothing of this person.
            return Verdict.unknown(
                f"there is no {self.provider.display_name} account @{login} to sponsor",
                "Tell the room's admins: the rule names an account that does not exist "
                "(renamed, or deleted).",
            )
        if "sponsorshipForViewerAsSponsor" not in owner:  # null is an answer; absent is not
            return self._nonsense("the sponsorship query (no sponsorship field)")
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
                f"of at least {money(needed)}",
                f"Choose a monthly tier at {sponsor_page}, then start again from the link.",
            )
        if isinstance(cents, bool) or not isinstance(cents, int):
            return self._nonsense("your sponsorship's tier")
        if cents < needed:
            return Verdict.no(
                f"you sponsor @{login} with {money(cents)} a month; it takes at least "
                f"{money(needed)}",
                f"Change your tier at {sponsor_page}, then start again from the invite link.",
            )
        return Verdict.yes()

    # How GitHub says no, or cannot say

    def _missing_scope(self, rule: Rule) -> Verdict | None:
        scope = scope_for(rule)
        if self.granted is None or self.granted & IMPLIED_BY[scope]:
            return None
        return self._scope_verdict(scope)

    def _scope_verdict(self, scope: str) -> Verdict:
        # Not a "no": GitHub was not allowed to say.
        return Verdict.unknown(
            f"you did not allow {SCOPE_PURPOSE[scope]} ({scope}), so {self.provider.display_name} "
            "could not tell",
            f"Sign in again and allow {scope} this time. You can see what you allowed this "
            f"app at {self._app_page}.",
        )

    def _hidden(self, response: ApiResponse, scope: str, org: str | None) -> Verdict | None:
        """Why GitHub hid the answer from this token, when its answer says: an
        organisation's OAuth app restrictions, single sign-on, a scope not granted."""
        message = response.body.get("message") if isinstance(response.body, dict) else None
        message = message if isinstance(message, str) else ""
        name = self.provider.display_name
        if "OAuth App access restrictions" in message and org:
            return Verdict.unknown(
                f"the organisation {org} has not approved this app, so {name} does not show "
                "it your membership",
                f"Open {self._app_page}, press Request next to {org} (Grant, if you own it), "
                "and once an owner of the organisation approves, start again from the link.",
            )
        sso = response.header("X-GitHub-SSO") or ""
        if sso.startswith(("required", "partial-results")) and org:
            _, _, url = sso.partition("url=")
            url = url.split(";", 1)[0].strip()
            web = self.provider.web_url
            where = url if url.startswith(web + "/") else f"{web}/orgs/{org}/sso"
            return Verdict.unknown(
                f"{org} asks you to sign in with its single sign-on before apps may see your "
                "membership",
                f"Sign in through {where} (that authorises this app for {org}), then start "
                "again from the invite link.",
            )
        granted = header_scopes(response)
        if granted is not None and not granted & IMPLIED_BY[scope]:
            return self._scope_verdict(scope)
        return None

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
        hidden = self._hidden(response, scope, org) if response.status == 403 else None
        return hidden or self._nonsense(f"HTTP {response.status}")

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
        granted = header_scopes(response)
        if granted is not None:
            self.granted = granted
        return response
