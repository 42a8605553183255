"""GitLab (gitlab.com or self-hosted): `group:PATH[:ROLE]`.

Sign-in is GitLab's OpenID Connect: PKCE and a nonce; the ID token is validated
(oidc_tokens) against the keys at `<base>/oauth/discovery/keys` (oidc_discovery).
GitLab's endpoints sit at documented fixed paths under the base URL, so no discovery round
trip is needed. The access token is revoked at `<base>/oauth/revoke` once the rules are
checked, in the background (revocations.py).

What a rule means: what GitLab means by a member of the group (gitlab_members.py):
direct members, members inherited from its ancestors, and members of the groups it is
shared with, at their effective role; not members of its subgroups only, not memberships
awaiting a seat, not blocked users. `group:gnome:developer` needs at least that role.
Levels: guest 10, planner 15 (newer GitLab only), reporter 20, developer 30,
maintainer 40, owner 50.

Why the members API and not GitLab's OpenID claims: GitLab builds `groups`, `groups_direct`
and the `https://gitlab.org/claims/groups/owner|maintainer|developer` claims from
`user.groups`, every membership row, so they list memberships awaiting a seat as if they
were active, and they never list a group the person reaches through a share (config/
initializers/doorkeeper_openid_connect.rb). The role claims also name only direct
Developer, Maintainer and Owner memberships. No rule is answered exactly by the claims,
in either direction, so `GET /api/v4/groups/PATH/members/all/USER_ID` answers every rule:

* with the operator's group access token (`recheck: {token: ...}`, the same token the
  re-check listing uses), when configured: people then grant only `openid`;
* else with the person's token, which needs `read_api` (asked for at sign-in); a person
  who can see the group sees their own membership there, shares included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import re
from typing import Any
from urllib.parse import quote, urlsplit

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
    Verdict,
)
from .gitlab_listing import GitLabMemberListing
from .gitlab_members import GUEST, Credential, GitLabAPI, group_url, standing
from .listing import MemberListing
from .oauth import OAuthClient, OAuthEndpoints, TokenResponse
from .oidc_discovery import JWKSCache
from .oidc_tokens import IDTokenValidator, exchange_and_validate
from .revocations import BackgroundRevocations
from .settings import refuse_unknown_settings, text_setting, url_setting

SETTINGS = ("client_id", "client_secret", "base_url", "name", "recheck")
DEFAULT_BASE_URL = "https://gitlab.com"
LEVELS = {
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}
LEVEL_NAMES = {number: name for name, number in LEVELS.items()}
# A group path: segments of letters, digits, '_', '-', '.', not starting with '-' or '.'.
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
MAX_PATH_LENGTH = 1024


def read_recheck(raw: Any) -> str | None:
    """The group access token of `recheck: {token: ...}`, or None when there is none."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("recheck: must be a mapping such as {token: glpat-...}")
    refuse_unknown_settings({f"recheck.{k}": v for k, v in raw.items()}, ("recheck.token",))
    return text_setting({"recheck.token": raw.get("token")}, "recheck.token")


class GitLabProvider(Provider):
    kind = "gitlab"

    def __init__(
        self,
        provider_id: str,
        name: str,
        base_url: str,
        client: OAuthClient,
        jwks: JWKSCache,
        recheck_token: str | None = None,
    ) -> None:
        super().__init__(provider_id, name)
        self.base_url = base_url
        self.client = client
        self.api = GitLabAPI(name, client.http)
        self.validator = IDTokenValidator(name, base_url, client.client_id, jwks, ["RS256"])
        self._recheck_token = recheck_token
        self._visible_to_token: set[str] = set()  # group paths the token was shown
        self.revocations = BackgroundRevocations()

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> GitLabProvider:
        refuse_unknown_settings(section, SETTINGS)
        client_id = text_setting(section, "client_id")
        client_secret = text_setting(section, "client_secret")
        # GitLab's issuer is its external URL as configured, without a trailing slash.
        base_url = url_setting(section, "base_url", DEFAULT_BASE_URL)
        host = urlsplit(base_url).netloc
        default_name = "GitLab" if base_url == DEFAULT_BASE_URL else f"GitLab ({host})"
        name = text_setting(section, "name", default_name)
        recheck_token = read_recheck(section.get("recheck"))
        endpoints = OAuthEndpoints(
            authorize_url=f"{base_url}/oauth/authorize", token_url=f"{base_url}/oauth/token"
        )
        client = OAuthClient(name, client_id, client_secret, endpoints, http)
        jwks = JWKSCache(name, f"{base_url}/oauth/discovery/keys", http)
        return cls(provider_id, name, base_url, client, jwks, recheck_token)

    def revoke_later(self, access_token: str) -> None:
        """Revoke a person's token at `<base_url>/oauth/revoke` (Doorkeeper, RFC 7009) in
        the background: their outcome never waits for GitLab's answer."""
        self.revocations.revoke_later(self.client, f"{self.base_url}/oauth/revoke", access_token)

    async def close(self) -> None:
        await self.revocations.done()

    # -- rules -----------------------------------------------------------------------------

    def parse_rule(self, text: str) -> Rule:
        kind, _, rest = text.strip().partition(":")
        if kind.lower() != "group" or not rest:
            raise RuleError(
                "a GitLab rule is group:PATH or group:PATH:ROLE, e.g. group:gnome or "
                "group:gnome/infra:developer"
            )
        path, _, level = rest.partition(":")
        path = path.strip("/")
        segments = path.split("/")
        if len(path) > MAX_PATH_LENGTH or not all(SEGMENT.fullmatch(s) for s in segments):
            raise RuleError(
                f"{path!r} is not a GitLab group path: use the path from the group's URL, "
                "such as gnome or gnome/infra"
            )
        if not level:
            return Rule(self.id, "group", (path,), f"group:{path}")
        level_name = _level_name(level)
        return Rule(self.id, "group", (path, level_name), f"group:{path}:{level_name}")

    def rule_shapes(self) -> list[RuleShape]:
        return [
            RuleShape(
                "group",
                "group:",
                "group:PATH[:ROLE]",
                "PATH as in the group's URL; ROLE: the least role, any member when left out",
                (
                    RuleField("path", "Group path"),
                    RuleField("role", "Least role", ":", True, tuple(LEVELS)),
                ),
            )
        ]

    def describe(self, rule: Rule) -> str:
        path = rule.args[0]
        where = f"the group {path} on {self.display_name}"
        if len(rule.args) == 1:
            return f"members of {where} (also through a parent group or a shared group)"
        return f"members of {where} with at least the {rule.args[1].capitalize()} role"

    async def validate_rule(self, rule: Rule) -> str | None:
        """With the operator's token, the group must be in its sight: otherwise every
        sign-in would be "cannot tell" and the listing would stop. (Without it nothing
        can be asked: a private group is invisible to the bot.)"""
        if self._recheck_token is None:
            return None
        path = rule.args[0]
        try:
            if await self._token_sees(path, Credential.group_token(self._recheck_token)):
                return None
        except ProviderUnavailable as e:
            return f"{self.display_name} could not be asked whether the group exists ({e.detail})."
        raise RuleError(
            f"the bot's GitLab token (providers.gitlab.recheck) cannot see a group {path}: "
            "check the path, or use a group access token of that group or a parent group"
        )

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        # openid: the ID token. read_api: the person's own look at the group's members,
        # unless the operator's token looks for them (see the module's docstring).
        return ["openid"] if self._recheck_token else ["openid", "read_api"]

    def listing(self, rule: Rule) -> MemberListing | None:
        if self._recheck_token is None:
            return None
        level = LEVELS[rule.args[1]] if len(rule.args) > 1 else GUEST
        credential = Credential.group_token(self._recheck_token)
        return GitLabMemberListing(self.api, self.base_url, rule.args[0], level, credential)

    # -- sign-in ---------------------------------------------------------------------------

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        return self.client.authorization_request(
            redirect_uri, self.scopes(rules), state, nonce=True
        )

    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> GitLabSession:
        tokens, claims = await exchange_and_validate(
            self.client, self.validator, code, redirect_uri, request
        )
        sub = claims["sub"]
        display = claims.get("nickname") or claims.get("name") or sub
        account = ExternalAccount(self.id, sub, str(display)[:200])
        return GitLabSession(self, account, tokens)

    # -- the members API -------------------------------------------------------------------

    async def member_entry(
        self, path: str, user_id: str, tokens: TokenResponse
    ) -> Mapping[str, Any] | None:
        """The person's entry in `members/all` of the group, None when they are not in it.
        Raises ProviderUnavailable, _NeedsScope, or _TokenCannotSee."""
        url = f"{group_url(self.base_url, path)}/members/all/{quote(user_id, safe='')}"
        if self._recheck_token is not None:
            credential = Credential.group_token(self._recheck_token)
            response = await self.api.get(url, credential)
            if response.status == 404 and not await self._token_sees(path, credential):
                raise _TokenCannotSee(f"it cannot see the group {path}")
            what = "the operator's GitLab token"
        else:
            granted = tokens.granted_scopes
            if granted is not None and not granted & {"read_api", "api"}:
                raise _NeedsScope()
            response = await self.api.get(url, Credential.person(tokens.access_token))
            body = response.body
            if response.status == 403 and isinstance(body, dict):
                if body.get("error") == "insufficient_scope":
                    raise _NeedsScope()
            # 404: the group has no such member, or the person cannot see the group, which
            # a member (direct, inherited or shared) always can.
            what = "your sign-in"
        if response.status == 404:
            return None
        if response.status in (401, 403) and self._recheck_token is not None:
            raise _TokenCannotSee(f"it was refused (HTTP {response.status})")
        if response.status != 200 or not isinstance(response.body, dict):
            raise self.api.unavailable(response, what)
        return response.body

    async def _token_sees(self, path: str, credential: Credential) -> bool:
        """Whether the operator's token can see the group (a 404 for a member means "not
        a member" only then). Remembered once seen: groups do not hide again often."""
        if path in self._visible_to_token:
            return True
        response = await self.api.get(group_url(self.base_url, path), credential)
        if response.status == 200:
            self._visible_to_token.add(path)
            return True
        if response.status in (401, 403, 404):
            return False
        raise self.api.unavailable(response, "the operator's GitLab token")


def _level_name(text: str) -> str:
    word = text.strip().lower()
    if word in LEVELS:
        return word
    if word.isdigit() and int(word) in LEVEL_NAMES:
        return LEVEL_NAMES[int(word)]
    raise RuleError(f"{text!r} is not a GitLab role: use one of {', '.join(LEVELS)}")


class _NeedsScope(Exception):
    """The access token lacks read_api (GitLab answered insufficient_scope, or said so)."""


class _TokenCannotSee(Exception):
    """The operator's token cannot read the group's members: their problem, not a no."""


class GitLabSession(ProviderSession):
    def __init__(
        self, provider: GitLabProvider, account: ExternalAccount, tokens: TokenResponse
    ) -> None:
        self.provider = provider
        self.account = account
        self._tokens: TokenResponse | None = tokens

    async def close(self) -> None:
        """Drop the access token and have it revoked (dropped is not revoked)."""
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            self.provider.revoke_later(tokens.access_token)

    async def check(self, rule: Rule) -> Verdict:
        if self._tokens is None:
            raise RuntimeError("the GitLab session is closed")
        path = rule.args[0]
        role = rule.args[1] if len(rule.args) > 1 else None
        name = self.provider.display_name
        if not self.account.id.isdigit():  # GitLab's sub is the numeric user id
            return Verdict.unknown(f"{name} named your account in an unexpected way")
        try:
            entry = await self.provider.member_entry(path, self.account.id, self._tokens)
        except ProviderUnavailable as e:
            return Verdict.unknown(f"{name} could not tell ({e.detail})")
        except _NeedsScope:
            return Verdict.unknown(
                f"{name} did not let us read your membership (no read_api permission)",
                "Sign in again and allow access; if the same happens, tell the bot's "
                "operator that the GitLab application needs the read_api scope.",
            )
        except _TokenCannotSee as e:
            return Verdict.unknown(
                f"the bot could not read the members of {path} on {name}",
                f"Tell the bot's operator: the re-check token (providers.gitlab.recheck) "
                f"does not work for this group ({e}); it must be a group access token of "
                f"{path} or a parent group with the read_api scope.",
            )
        return self._verdict(entry, path, role)

    def _verdict(self, entry: Mapping[str, Any] | None, path: str, role: str | None) -> Verdict:
        name = self.provider.display_name
        ask = f"Ask an owner of {path} to add you, then try again."
        if entry is None:
            return Verdict.no(f"you are not a member of the group {path} on {name}", ask)
        if str(entry.get("id")) != self.account.id:
            return Verdict.unknown(f"{name} answered about another account")
        found = standing(entry, LEVELS[role] if role else GUEST)
        if found == "holds":
            return Verdict.yes()
        if found == "awaiting":
            return Verdict.no(
                f"your membership of {path} on {name} is waiting for a seat",
                "Ask an owner of the top-level group to approve it (Settings → Usage "
                "quotas → Pending members), then try again.",
            )
        if found == "inactive":
            return Verdict.no(f"your account on {name} is not active", "")
        if found == "below":
            if role is None:  # Minimal Access
                return Verdict.no(f"you have only minimal access to {path} on {name}", ask)
            return Verdict.no(
                f"you do not have at least the {role.capitalize()} role in the group "
                f"{path} on {name}",
                f"Ask an owner of {path} for that role, then try again.",
            )
        return Verdict.unknown(f"{name} could not tell (its answer was not as documented)")
