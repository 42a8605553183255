"""GitHub's member listings for re-checks: who holds an org, team, repo or sponsor rule now,
page by page, with the operator's credentials (github_app.py), never a person's token.

* `org:ORG`: `GET /orgs/{org}/members?role=all`: active members and owners (pending
  invitations and billing managers are not members and are not listed). GitHub shows the
  concealed members only to members of the organisation, so a personal token is checked
  first to be an active member (`GET /user/memberships/orgs/{org}`), and an App to be
  installed on ORG: otherwise the concealed members would look like people who left.
* `team:ORG/TEAM`: `GET /orgs/{org}/teams/{team}/members?role=all` (members and
  maintainers, those of child teams included, as the sign-in check counts them; pending
  invitations are not listed).
* `repo:OWNER/REPO:LEVEL`: `GET /repos/{owner}/{repo}/collaborators?affiliation=all`,
  those whose `permissions` reach LEVEL. A classic token needs `repo` besides `read:org`
  here (the operator's token, not a person's). `pull` on a public repository is held by
  everyone, so such a rule has no listing (None).
* `sponsor:LOGIN[:MIN]`: GraphQL `sponsorshipsAsMaintainer(activeOnly: true,
  includePrivate: true)`, 100 a page by cursor, with a token of LOGIN (or an owner of it):
  github_sponsors.py.

REST pages are followed by their `Link: <...>; rel="next"` only, never built (the key of a
page is its URL), and asked with `If-None-Match` when their ETag is known: GitHub answers
304 for an unchanged page without counting it against the rate limit, and its 304 still
carries the `Link` of the moment (a new last page can appear behind an unchanged one).
Everything that keeps a page from being read exactly raises ProviderUnavailable: a rate
limit (`retry_after`), refused credentials, a page that is not a list of accounts, a page
cut short before the last, a next page outside the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
import math
import re
import time
from typing import TYPE_CHECKING, Any

from .base import ProviderUnavailable, Rule
from .github_app import (
    API_HEADERS,
    AppInstallation,
    ListingCredentials,
    StaticToken,
    read_private_key,
)
from .github_session import PERMISSIONS
from .listing import ListingPage, MemberListing
from .oauth import ApiResponse, ProviderHTTP
from .settings import refuse_unknown_settings, text_setting

if TYPE_CHECKING:
    from .github import GitHubProvider

PER_PAGE = 100
# How long the re-check token's own membership of an organisation is taken as read: were it
# lost meanwhile, the listing would shrink to the public members, which the re-check's
# shrink limit stops.
MEMBERSHIP_TTL = 3600.0
RECHECK_SETTINGS = ("token", "app_id", "installation_id", "private_key")
APP_SETTINGS = ("app_id", "installation_id", "private_key")
_LINK = re.compile(r"<([^>]*)>\s*((?:;[^,<]*)*)")
_REL_NEXT = re.compile(r"""rel\s*=\s*"?[^",;]*\bnext\b""", re.IGNORECASE)


def read_recheck(value: Any, http: ProviderHTTP, api_url: str) -> ListingCredentials | None:
    """The `recheck:` mapping of the github section: `token`, or a GitHub App's `app_id`,
    `installation_id` and `private_key` (PEM). Raises ValueError("recheck.<key>: ...")."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(
            "recheck: must be a mapping with token, or app_id, installation_id and private_key"
        )
    try:
        refuse_unknown_settings(value, RECHECK_SETTINGS)
        if not value:
            return None
        app = [key for key in APP_SETTINGS if key in value]
        if "token" in value:
            if app:
                raise ValueError(f"{app[0]}: give either token or a GitHub App, not both")
            return StaticToken(text_setting(value, "token"))
        if len(app) != len(APP_SETTINGS):
            missing = next(key for key in APP_SETTINGS if key not in value)
            raise ValueError(
                f"{missing}: a GitHub App needs app_id, installation_id and private_key"
            )
        ids = {key: _number(value, key) for key in ("app_id", "installation_id")}
        key = read_private_key(value.get("private_key"))
        return AppInstallation(http, api_url, ids["app_id"], ids["installation_id"], key)
    except ValueError as e:
        raise ValueError(f"recheck.{e}") from None


def _number(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    text = str(value).strip() if isinstance(value, int | str) else ""
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ValueError(f"{key}: must be a number (the App's settings page shows it)")
    return str(int(text))


def listing_for(provider: GitHubProvider, rule: Rule) -> MemberListing | None:
    credentials = provider.recheck
    if credentials is None:
        return None
    api = provider.api_url
    if rule.kind == "org":
        (org,) = rule.args
        return RestListing(
            provider,
            credentials,
            f"{api}/orgs/{org}/members?per_page={PER_PAGE}&role=all",
            owner=org,
            member_of=org,
        )
    if rule.kind == "team":
        org, team = rule.args
        url = f"{api}/orgs/{org}/teams/{team}/members?per_page={PER_PAGE}&role=all"
        return RestListing(provider, credentials, url, owner=org)
    if rule.kind == "repo":
        owner, name, level = rule.args
        if level == PERMISSIONS[0]:
            return None  # everyone may pull a public repository: nobody to list
        url = f"{api}/repos/{owner}/{name}/collaborators?per_page={PER_PAGE}&affiliation=all"
        return RestListing(provider, credentials, url, owner=owner, keep=_reaches(level))
    if rule.kind == "sponsor":
        from .github_sponsors import SponsorListing  # built on this module's base class

        minimum = int(rule.args[1]) if len(rule.args) > 1 else None
        return SponsorListing(provider, credentials, rule.args[0], minimum)
    return None


def _reaches(level: str) -> Callable[[dict[str, Any]], bool]:
    needed = PERMISSIONS.index(level)

    def keep(collaborator: dict[str, Any]) -> bool:
        flags = collaborator.get("permissions")
        if not isinstance(flags, dict) or not all(
            isinstance(flags.get(name), bool) for name in ("pull", "push", "admin")
        ):
            raise ValueError("a collaborator without permissions")
        held = [i for i, name in enumerate(PERMISSIONS) if flags.get(name) is True]
        # Older servers lack triage and maintain; the strongest flag set decides.
        return bool(held) and held[-1] >= needed

    return keep


class GitHubListing(MemberListing):
    """A listing with the re-check credentials, and GitHub's refusals in words."""

    def __init__(self, provider: GitHubProvider, credentials: ListingCredentials) -> None:
        self.provider = provider
        self.credentials = credentials
        self.name = provider.display_name

    async def _send(
        self, url: str, *, method: str = "GET", body: Any = None, etag: str | None = None
    ) -> ApiResponse:
        headers = dict(API_HEADERS)
        if etag:
            headers["If-None-Match"] = etag
        token = await self.credentials.token()
        response = await self.provider.client.get_json(
            url, token, headers=headers, method=method, json_body=body
        )
        if response.status == 401:
            self.credentials.refused()
        return response

    def _refusal(self, response: ApiResponse, what: str) -> ProviderUnavailable:
        """Why an answer that is not a page cannot be used, for the operator's log."""
        status = response.status
        body = response.body if isinstance(response.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else ""
        retry = response.header("Retry-After")
        exhausted = response.header("X-RateLimit-Remaining") == "0"
        if status == 429 or (status == 403 and (retry is not None or exhausted)):
            wait = response.retry_after()
            wait = 60.0 if wait is None else max(wait, 1.0)
            return ProviderUnavailable(
                self.name, f"rate limited listing {what}, retry in {round(wait)} s", wait
            )
        detail = f"{what}: HTTP {status}"
        if status == 401:
            detail = f"{what}: the re-check credentials were refused (providers.github.recheck)"
        elif status == 403 and (response.header("X-GitHub-SSO") or "").startswith("required"):
            detail = f"{what}: the re-check token is not authorised for the organisation's SAML "
            detail += "single sign-on (authorise it on GitHub's token settings page)"
        elif status == 403 and "OAuth App access restrictions" in message:
            detail = f"{what}: the organisation restricts OAuth apps; approve the token's app"
        elif status == 403:
            needed = response.header("X-Accepted-OAuth-Scopes")
            detail = f"{what}: forbidden to the re-check credentials"
            if needed:
                detail += f" (needs the scopes {needed})"
        elif status == 404:
            detail = f"{what}: not found, or not visible to the re-check credentials"
        return ProviderUnavailable(self.name, detail)


class RestListing(GitHubListing):
    """A REST list endpoint of accounts, followed by its `Link` headers."""

    def __init__(
        self,
        provider: GitHubProvider,
        credentials: ListingCredentials,
        first_url: str,
        *,
        owner: str,
        member_of: str | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__(provider, credentials)
        self.first_url = first_url
        self.owner = owner
        self.member_of = member_of  # org rules: the credentials must see concealed members
        self.keep = keep
        self.what = first_url.removeprefix(provider.api_url).split("?", 1)[0]

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        etags = etags or {}
        url: str | None = cursor or self.first_url
        calls = await self._may_see_everyone()
        while url is not None:
            if not url.startswith(f"{self.provider.api_url}/"):
                raise ProviderUnavailable(self.name, f"{self.what}: a next page outside the API")
            sent = etags.get(url)
            response = await self._send(url, etag=sent)
            calls += 1 + self.credentials.take_calls()
            next_url = _next_link(response.header("Link"))
            if response.status == 304 and sent:
                # GitHub has been seen to leave the ETag out of a 304: it is the one sent.
                page = ListingPage(url, None, response.header("ETag") or sent, next_url, calls)
            elif response.status == 200:
                members = self._members(response.body, next_url is not None)
                page = ListingPage(url, members, response.header("ETag"), next_url, calls)
            else:
                raise self._refusal(response, self.what)
            # The parsed page goes before the caller reads the next: one page in memory.
            del response
            yield page
            url, calls = next_url, 0

    def _members(self, body: Any, more: bool) -> tuple[str, ...]:
        if not isinstance(body, list) or len(body) > PER_PAGE or (more and len(body) < PER_PAGE):
            # Pages before the last are full: a short one was cut, and who is missing
            # from it cannot be told from who left.
            size = len(body) if isinstance(body, list) else type(body).__name__
            raise ProviderUnavailable(self.name, f"{self.what}: a page of {size} entries")
        members = []
        try:
            for entry in body:
                account = entry.get("id") if isinstance(entry, dict) else None
                if isinstance(account, bool) or not isinstance(account, int):
                    raise ValueError("an entry without a numeric id")
                if self.keep is None or self.keep(entry):
                    members.append(str(account))
        except ValueError as e:
            raise ProviderUnavailable(self.name, f"{self.what}: {e}") from None
        return tuple(members)

    async def _may_see_everyone(self) -> int:
        """Refuse credentials that would see part of the list only: an App installed on
        another account, or (org rules) a token of someone outside the organisation. The
        requests it cost."""
        calls = 0
        if isinstance(self.credentials, AppInstallation):
            await self.credentials.token()
            calls += self.credentials.take_calls()
            installed_on = self.credentials.installed_on
            if installed_on != self.owner:
                raise ProviderUnavailable(
                    self.name,
                    f"{self.what}: the GitHub App is installed on {installed_on}, not "
                    f"{self.owner}; install it there (with the Members permission)",
                )
            return calls
        if self.member_of is None:
            return calls
        url = f"{self.provider.api_url}/user/memberships/orgs/{self.member_of}"
        if time.monotonic() < self.credentials.verified.get(url, -math.inf) + MEMBERSHIP_TTL:
            return calls
        response = await self._send(url)
        calls += 1
        body = response.body if isinstance(response.body, dict) else {}
        if response.status == 200 and body.get("state") == "active":
            self.credentials.verified[url] = time.monotonic()
            return calls
        if response.status in (200, 404):
            raise ProviderUnavailable(
                self.name,
                f"{self.what}: the re-check token's account is not an active member of "
                f"{self.member_of}, so GitHub would hide its concealed members",
            )
        raise self._refusal(response, self.what)


def _next_link(header: str | None) -> str | None:
    """The URL of `rel="next"` in a Link header (RFC 8288), if there is one."""
    for match in _LINK.finditer(header or ""):
        if _REL_NEXT.search(match[2]):
            return match[1]
    return None
