"""GitLab (gitlab.com or self-hosted): `group:PATH[:LEVEL]`.

Sign-in is GitLab's OpenID Connect: scope `openid`, PKCE and a nonce; the ID token is
validated (oidc_tokens) against the keys at `<base>/oauth/discovery/keys` (oidc_discovery).
GitLab's endpoints sit at documented fixed paths under the base URL, so no discovery round
trip is needed.

What a rule means:

* `group:gnome` holds for members of gnome *or of any of its subgroups*: the userinfo
  `groups` claim lists every group path the person belongs to, directly or inherited from
  an ancestor group, and the rule holds when one of them is `gnome` or starts with
  `gnome/`. So a member of gnome qualifies (and, by inheritance, for `group:gnome/infra`
  too), and so does someone who is only in `gnome/infra`. Paths compare case-insensitively,
  as GitLab routes do.
* `group:gnome:developer` needs at least that role, in gnome or one of its subgroups:
  `GET /api/v4/groups?min_access_level=30` lists the groups where the person has that role
  (inherited roles included), read page by page until a match; this needs the `read_api`
  scope, asked for only when some rule names a role. Levels: guest 10, planner 15 (newer
  GitLab only), reporter 20, developer 30, maintainer 40, owner 50.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
from .oauth import ApiResponse, OAuthClient, OAuthEndpoints, TokenResponse
from .oidc_discovery import JWKSCache
from .oidc_tokens import IDTokenValidator, exchange_and_validate, fetch_userinfo
from .settings import refuse_unknown_settings, text_setting, url_setting

SETTINGS = ("client_id", "client_secret", "base_url", "name")
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
PER_PAGE = 100  # GitLab's maximum
MAX_GROUP_PAGES = 10  # 1,000 groups at a given role: more is not looked through


class GitLabProvider(Provider):
    kind = "gitlab"

    def __init__(
        self, provider_id: str, name: str, base_url: str, client: OAuthClient, jwks: JWKSCache
    ) -> None:
        super().__init__(provider_id, name)
        self.base_url = base_url
        self.client = client
        self.validator = IDTokenValidator(name, base_url, client.client_id, jwks, ["RS256"])

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
        endpoints = OAuthEndpoints(
            authorize_url=f"{base_url}/oauth/authorize", token_url=f"{base_url}/oauth/token"
        )
        client = OAuthClient(name, client_id, client_secret, endpoints, http)
        jwks = JWKSCache(name, f"{base_url}/oauth/discovery/keys", http)
        return cls(provider_id, name, base_url, client, jwks)

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

    def describe(self, rule: Rule) -> str:
        path = rule.args[0]
        if len(rule.args) == 1:
            return f"members of the group {path} on {self.display_name} (subgroups included)"
        role = rule.args[1].capitalize()
        return (
            f"members of the group {path} on {self.display_name} (or one of its subgroups) "
            f"with at least the {role} role"
        )

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        # openid: the ID token and the groups claim; read_api only for roles.
        if any(len(rule.args) > 1 for rule in rules):
            return ["openid", "read_api"]
        return ["openid"]

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


def _level_name(text: str) -> str:
    word = text.strip().lower()
    if word in LEVELS:
        return word
    if word.isdigit() and int(word) in LEVEL_NAMES:
        return LEVEL_NAMES[int(word)]
    raise RuleError(f"{text!r} is not a GitLab role: use one of {', '.join(LEVELS)}")


def in_group_tree(member_path: str, group_path: str) -> bool:
    """True when `member_path` is `group_path` or one of its subgroups."""
    member, group = member_path.casefold(), group_path.casefold()
    return member == group or member.startswith(group + "/")


class _NeedsScope(Exception):
    """The access token lacks a scope the check needs (GitLab answered insufficient_scope)."""


class _TooManyGroups(Exception):
    """More groups than MAX_GROUP_PAGES pages: the answer is not known."""


class GitLabSession(ProviderSession):
    def __init__(
        self, provider: GitLabProvider, account: ExternalAccount, tokens: TokenResponse
    ) -> None:
        self.provider = provider
        self.account = account
        self._tokens: TokenResponse | None = tokens
        self._member_paths: list[str] | None = None
        # Per role level: the group paths read so far, and the next page to read (None
        # once the last page was read).
        self._listings: dict[int, tuple[list[str], int | None]] = {}

    async def close(self) -> None:
        self._tokens = None  # nothing of the sign-in outlives the checks

    @property
    def _access_token(self) -> str:
        if self._tokens is None:
            raise RuntimeError("the GitLab session is closed")
        return self._tokens.access_token

    async def check(self, rule: Rule) -> Verdict:
        path = rule.args[0]
        name = self.provider.display_name
        try:
            if len(rule.args) == 1:
                paths = await self._groups_of_member()
                if any(in_group_tree(p, path) for p in paths):
                    return Verdict.yes()
                return Verdict.no(
                    f"you are not a member of the group {path} on {name}, nor of any of "
                    "its subgroups",
                    f"Ask an owner of {path} to add you, then try again.",
                )
            role = rule.args[1]
            if await self._has_role(path, LEVELS[role]):
                return Verdict.yes()
            return Verdict.no(
                f"you do not have at least the {role.capitalize()} role in the group {path} "
                f"on {name} (or one of its subgroups)",
                f"Ask an owner of {path} for that role, then try again.",
            )
        except ProviderUnavailable as e:
            return Verdict.unknown(f"{name} could not tell ({e.detail})")
        except SignInFailed as e:  # userinfo described another account
            return Verdict.unknown(e.message, "Start again from the invite link.")
        except _NeedsScope:
            return Verdict.unknown(
                f"{name} did not let us read your roles in groups (no read_api permission)",
                "Sign in again and allow access; if the same happens, tell the bot's "
                "operator that the GitLab application needs the read_api scope.",
            )
        except _TooManyGroups:
            return Verdict.unknown(f"you are in more groups on {name} than we can look through")

    async def _groups_of_member(self) -> list[str]:
        if self._member_paths is None:
            userinfo = await fetch_userinfo(
                self.provider.client,
                f"{self.provider.base_url}/oauth/userinfo",
                self._access_token,
                self.account.id,
            )
            groups = userinfo.get("groups", [])
            if not isinstance(groups, list):
                raise ProviderUnavailable(self.provider.display_name, "groups is not a list")
            self._member_paths = [g for g in groups if isinstance(g, str)]
        return self._member_paths

    async def _has_role(self, path: str, level: int) -> bool:
        granted = self._tokens.granted_scopes if self._tokens else None
        if granted is not None and not granted & {"read_api", "api"}:
            raise _NeedsScope()
        paths, next_page = self._listings.get(level, ([], 1))
        while True:
            if any(in_group_tree(p, path) for p in paths):
                return True
            if next_page is None:
                return False
            if next_page > MAX_GROUP_PAGES:
                raise _TooManyGroups()
            page_paths, next_page = await self._groups_page(level, next_page)
            paths = paths + page_paths
            self._listings[level] = (paths, next_page)

    async def _groups_page(self, level: int, page: int) -> tuple[list[str], int | None]:
        """One page of the groups where the person has at least `level`, and the number of
        the next page (None after the last)."""
        name = self.provider.display_name
        response = await self.provider.client.get_json(
            f"{self.provider.base_url}/api/v4/groups",
            self._access_token,
            params={
                "min_access_level": str(level),
                "per_page": str(PER_PAGE),
                "page": str(page),
            },
        )
        body = response.body
        if response.status == 403 and isinstance(body, dict):
            if body.get("error") == "insufficient_scope":
                raise _NeedsScope()
        if response.status != 200:
            detail = (body.get("message") or body.get("error")) if isinstance(body, dict) else ""
            # A 400 here is mostly an old GitLab that does not know the planner role (15).
            raise ProviderUnavailable(
                name, f"the groups query answered HTTP {response.status} {str(detail or '')[:80]}"
            )
        if not isinstance(body, list):
            raise ProviderUnavailable(name, "the groups answer was not a list")
        paths = [
            group["full_path"]
            for group in body
            if isinstance(group, dict) and isinstance(group.get("full_path"), str)
        ]
        return paths, _next_page(response, page)


def _next_page(response: ApiResponse, page: int) -> int | None:
    """The next page's number from `x-next-page` (empty on the last page), else from the
    `Link` header's rel="next" URL. Only the number is used, never the URL: the next
    request goes to the configured base URL like every other."""
    header = response.header("x-next-page")
    if header is not None:
        header = header.strip()
        return int(header) if header.isdigit() and int(header) > page else None
    for part in (response.header("link") or "").split(","):
        url, _, params = part.partition(";")
        if re.search(r'rel="?next"?', params):
            numbers = parse_qs(urlsplit(url.strip().strip("<>")).query).get("page", [])
            if numbers and numbers[0].isdigit() and int(numbers[0]) > page:
                return int(numbers[0])
    return None
