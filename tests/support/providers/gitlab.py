"""A stand-in for a GitLab instance on a loopback port: OAuth 2.0 with OpenID Connect, the
userinfo endpoint and `GET /api/v4/groups`, answering with the shapes documented in
tests/fixtures/gitlab (its README names each file's source).

    async with FakeGitLab() as gitlab:
        section = gitlab.config_section(client_id="cid", client_secret="s3cret",
                                        redirect_uris=[callback_url])
        alice = gitlab.add_account("alice", groups={"gnome": "developer"})
        gitlab.sign_in_as(alice)          # who is logged in at GitLab
        gitlab.auto_approve = True        # else a consent page: "Authorize" / "Cancel"

The OAuth side (client, redirect URI, state, PKCE S256, consent, single-use expiring codes,
client authentication, scripted failures, the request log) is FakeOAuthServer's; this adds
GitLab's paths and world. The world: groups by full path (ancestors made on the way) and
accounts with direct memberships (path -> role). As on GitLab, a member of a group is a
member of its subgroups with the same role unless a direct membership there gives more:
the userinfo `groups` claim lists direct and inherited paths, `groups_direct` (ID token
only) the direct ones, and `/api/v4/groups?min_access_level=N` every group where the role
is at least N, paginated with GitLab's headers (`link`, `x-next-page`, ...).

ID tokens (scope `openid`) are RS256-signed with a key published at
`/oauth/discovery/keys`, carry the nonce sent to the authorize endpoint, and can be
tampered with through `id_token_overrides` (None deletes a claim); `rotate_signing_key()`
starts signing with a new key id. Userinfo needs `openid` (else 403, empty body, as GitLab
answers); the API needs `read_api` or `api` (else 403 insufficient_scope). Failures:
`fail("api", ...)` covers userinfo, the API, the JWKS and the discovery document;
`fail("members", ...)` the members API alone, `fail("revoke", ...)` token revocation.

The members API (`/api/v4/groups/:id[/members/all[/:user_id]]`), group access tokens,
shares, memberships awaiting a seat, blocked users and `POST /oauth/revoke` are in
gitlab_members.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import copy
import functools
import hashlib
import json
import math
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
import attrs
from joserfc import jwt
from joserfc.jwk import RSAKey
from support.providers.fake_oauth import FakeOAuthServer, Handler, IssuedCode, SeenRequest, fixture
from support.providers.gitlab_members import GitLabMembersAPI

# Gitlab::Access roles a membership can have (planner exists on newer GitLab only).
ROLES = {
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}


def gitlab_fixture(name: str) -> Any:
    return fixture("gitlab", name)


@attrs.define
class GitLabGroup:
    id: int
    full_path: str
    name: str
    visibility: str = "private"


@attrs.define
class GitLabAccount:
    id: int
    username: str
    name: str
    email: str
    memberships: dict[str, int] = attrs.field(factory=dict)  # full path -> access level
    # Direct memberships awaiting a seat (over a group's user cap or the free user limit):
    # listed by the members API as "awaiting", in the OIDC claims like any other.
    awaiting: dict[str, int] = attrs.field(factory=dict)
    state: str = "active"  # the user's state: "blocked", "deactivated", ...


def _signing_key() -> RSAKey:
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
    key.ensure_kid()
    return key


@functools.cache
def _first_signing_key() -> RSAKey:
    """Every fake GitLab of a run starts with this key: RSA keys are slow to make."""
    return _signing_key()


class FakeGitLab(GitLabMembersAPI, FakeOAuthServer):
    provider_name = "GitLab"
    failure_areas = (*FakeOAuthServer.failure_areas, "members", "revoke")
    authorize_path = "/oauth/authorize"
    token_paths = ("/oauth/token",)
    known_scopes = frozenset({"openid", "profile", "email", "read_user", "read_api", "api"})
    token_fixture = ("gitlab", "oauth-token.200.json")

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.supports_planner = True  # False: an older GitLab refuses min_access_level=15
        self.id_token_overrides: dict[str, Any] = {}
        self.groups: dict[str, GitLabGroup] = {}
        self.accounts: list[GitLabAccount] = []
        self._keys = [_first_signing_key()]
        self._init_members_api()

    # --- scripting ------------------------------------------------------------------------

    def config_section(
        self,
        *,
        client_id: str = "gitlab-client",
        client_secret: str = "fake-gitlab-secret",
        redirect_uris: Iterable[str] = (),
        name: str = "Matrix invites",
    ) -> dict[str, str]:
        """Register the application (or update it); its `providers.gitlab` config."""
        self.register_client(client_id, client_secret, redirect_uris, name=name)
        return {"client_id": client_id, "client_secret": client_secret, "base_url": self.url}

    def add_group(self, full_path: str, *, name: str | None = None, visibility: str = "private"):
        """The group at `full_path`, made (with its ancestors) when missing."""
        parent = full_path.rpartition("/")[0]
        if parent:
            self.add_group(parent)
        if full_path not in self.groups:
            title = name or full_path.rpartition("/")[2].replace("-", " ").title()
            self.groups[full_path] = GitLabGroup(len(self.groups) + 1, full_path, title)
        self.groups[full_path].visibility = visibility
        return self.groups[full_path]

    def add_account(
        self,
        username: str,
        *,
        groups: Mapping[str, str | int] | None = None,
        name: str | None = None,
        email: str | None = None,
    ) -> GitLabAccount:
        account = GitLabAccount(
            len(self.accounts) + 1,
            username,
            name or username.capitalize(),
            email or f"{username}@example.test",
        )
        self.accounts.append(account)
        for path, role in (groups or {}).items():
            self.set_role(account, path, role)
        return account

    def set_role(self, account: GitLabAccount, path: str, role: str | int | None) -> None:
        """A direct membership of `account` in `path` with `role`; None removes it."""
        if role is None:
            account.memberships.pop(path, None)
            return
        self.add_group(path)
        account.memberships[path] = ROLES[role] if isinstance(role, str) else role

    def set_awaiting(self, account: GitLabAccount, path: str, role: str | int) -> None:
        """A direct membership of `account` in `path` that awaits a seat."""
        self.add_group(path)
        account.awaiting[path] = ROLES[role] if isinstance(role, str) else role

    def rotate_signing_key(self, *, keep_old: bool = True) -> None:
        """Sign with a new key (a new kid); the JWKS keeps the old one unless told not to."""
        self._keys = [_signing_key(), *self._keys] if keep_old else [_signing_key()]

    def role_in(self, account: GitLabAccount, path: str) -> int:
        """The role in `path`: the highest direct one in the group or an ancestor."""
        return max(
            (
                level
                for member_path, level in account.memberships.items()
                if path == member_path or path.startswith(member_path + "/")
            ),
            default=0,
        )

    def member_paths(self, account: GitLabAccount) -> list[str]:
        """The userinfo `groups` claim: like GitLab's, built from every membership row,
        so memberships awaiting a seat are in it and groups shared with the person's are
        not."""
        direct = {**account.memberships, **account.awaiting}
        return sorted(
            path
            for path in self.groups
            if any(path == p or path.startswith(p + "/") for p in direct)
        )

    # --- OAuth specifics --------------------------------------------------------------------

    def token_body(self, access_token: str, code: IssuedCode) -> dict[str, Any]:
        # Doorkeeper sends the granted scopes (the docs' example leaves them out).
        body = super().token_body(access_token, code)
        body.update(refresh_token=secrets.token_hex(32), created_at=int(time.time()))
        if "openid" in code.scopes:
            body["id_token"] = self._id_token(code.account, code.client_id, code.nonce)
        return body

    def _id_token(self, account: GitLabAccount, client_id: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = gitlab_fixture("oidc-id-token-payload.constructed.json")
        claims.update(self._profile(account))
        claims.update(
            iss=self.url,
            aud=client_id,
            exp=now + 120,
            iat=now,
            auth_time=now - 60,
            groups_direct=sorted(account.memberships),
        )
        if nonce is not None:
            claims["nonce"] = nonce
        for name, value in self.id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self._keys[0]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])

    def _profile(self, account: GitLabAccount) -> dict[str, Any]:
        return {
            "sub": str(account.id),
            "sub_legacy": hashlib.sha256(f"legacy-{account.id}".encode()).hexdigest(),
            "name": account.name,
            "nickname": account.username,
            "preferred_username": account.username,
            "email": account.email,
            "website": "",
            "profile": f"{self.url}/{account.username}",
            "picture": f"{self.url}/uploads/-/system/user/avatar/{account.id}/avatar.png",
        }

    def seen(self, request: web.Request, form: dict[str, str], area: str) -> SeenRequest:
        seen = super().seen(request, form, area)
        if "token" in seen.form:  # what /oauth/revoke is sent
            seen.form["token"] = "<redacted>"
        if "PRIVATE-TOKEN" in seen.headers:
            seen.headers["PRIVATE-TOKEN"] = "<redacted>"
        return seen

    def api_error(self, status: int) -> web.Response:
        if status == 429:  # GitLab's rate limiter (Rack::Attack): plain text and its wait
            reset = str(int(time.time()) + 30)
            headers = {"Retry-After": "30", "RateLimit-Reset": reset, "RateLimit-Remaining": "0"}
            return web.Response(status=429, text="Retry later\n", headers=headers)
        if status >= 500:  # what GitLab's front proxy shows while Rails is down
            return web.Response(status=status, text="<h1>GitLab is not responding</h1>")
        if status == 403:  # as userinfo answers a token without the openid scope
            return web.Response(status=403)
        return web.json_response({"message": f"{status} Error"}, status=status)

    # --- API ------------------------------------------------------------------------------

    def add_api_routes(self, add: Callable[[str, str, Handler], None]) -> None:
        add("GET", "/.well-known/openid-configuration", self._discovery)
        add("GET", "/oauth/discovery/keys", self._jwks)
        add("GET", "/oauth/userinfo", self._userinfo)
        add("GET", "/api/v4/groups", self._groups)
        add("GET", "/api/v4/user", self._user)
        self.add_members_routes(add)

    async def _discovery(self, request: web.Request) -> web.Response:
        text = json.dumps(gitlab_fixture("oidc-discovery.constructed.json"))
        return web.json_response(text=text.replace("https://gitlab.com", self.url))

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [key.as_dict(private=False) for key in self._keys]})

    async def _userinfo(self, request: web.Request) -> web.Response:
        token = self.bearer(request)
        if token is None:
            invalid = 'Bearer realm="Doorkeeper", error="invalid_token"'
            return web.Response(status=401, headers={"WWW-Authenticate": invalid})
        if "openid" not in token.scopes:
            return web.Response(status=403)  # GitLab: 403 with an empty body
        account: GitLabAccount = token.account
        body = gitlab_fixture("oidc-userinfo.constructed.json")
        body.update(self._profile(account), groups=self.member_paths(account))
        for role in ("owner", "maintainer", "developer"):
            claim = f"https://gitlab.org/claims/groups/{role}"
            rows = {**account.memberships, **account.awaiting}  # GitLab reads every row
            paths = sorted(p for p, level in rows.items() if level == ROLES[role])
            body.pop(claim)
            if paths:  # absent when empty, as GitLab drops empty claims
                body[claim] = paths
        return web.json_response(body)

    def _api_token(self, request: web.Request, scopes: set[str]) -> Any:
        """The bearer token when it carries one of `scopes`, else GitLab's error answer."""
        token = self.bearer(request)
        if token is None:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        if not token.scopes & scopes:
            body = {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided "
                "by the access token.",
                "scope": " ".join(sorted(scopes)),
            }
            return web.json_response(body, status=403)
        return token

    async def _user(self, request: web.Request) -> web.Response:
        token = self._api_token(request, {"api", "read_api", "read_user"})
        if isinstance(token, web.Response):
            return token
        account: GitLabAccount = token.account
        body = gitlab_fixture("user.200.json")
        body.update(id=account.id, username=account.username, name=account.name)
        body.update(email=account.email, public_email=account.email, identities=[])
        body["web_url"] = f"{self.url}/{account.username}"
        return web.json_response(body)

    async def _groups(self, request: web.Request) -> web.Response:
        token = self._api_token(request, {"api", "read_api"})
        if isinstance(token, web.Response):
            return token
        allowed = set(gitlab_fixture("access-levels.json")["values"])
        if not self.supports_planner:
            allowed.discard("15")
        level = request.query.get("min_access_level")
        if level is not None and level not in allowed:
            error = {"error": "min_access_level does not have a valid value"}
            return web.json_response(error, status=400)
        try:
            page = max(1, int(request.query.get("page", "1")))
            per_page = min(100, max(1, int(request.query.get("per_page", "20"))))
        except ValueError:
            return web.json_response({"error": "page is invalid"}, status=400)
        account: GitLabAccount = token.account
        if level is None:  # without a level: every group the person can see
            listed = [
                g
                for g in self.groups.values()
                if g.visibility == "public" or self.role_in(account, g.full_path)
            ]
        else:
            listed = [
                g for g in self.groups.values() if self.role_in(account, g.full_path) >= int(level)
            ]
        listed.sort(key=lambda g: (g.name.lower(), g.id))  # order_by=name, sort=asc
        pages = max(1, math.ceil(len(listed) / per_page))
        shown = listed[(page - 1) * per_page : page * per_page]
        headers = self._page_headers(request, page, per_page, len(listed), pages)
        return web.json_response([self._group_json(g) for g in shown], headers=headers)

    def _group_json(self, group: GitLabGroup) -> dict[str, Any]:
        body = copy.deepcopy(gitlab_fixture("groups.200.json")[0])
        parent_path, _, path = group.full_path.rpartition("/")
        ancestors = [p for p in self.groups if group.full_path.startswith(p + "/")]
        names = [self.groups[p].name for p in sorted(ancestors, key=len)] + [group.name]
        body.update(
            id=group.id,
            name=group.name,
            path=path,
            description="",
            visibility=group.visibility,
            avatar_url=None,
            web_url=f"{self.url}/groups/{group.full_path}",
            full_name=" / ".join(names),
            full_path=group.full_path,
            parent_id=self.groups[parent_path].id if parent_path else None,
        )
        return body

    def _page_headers(
        self, request: web.Request, page: int, per_page: int, total: int, pages: int
    ) -> dict[str, str]:
        def link(number: int, rel: str) -> str:
            query = urlencode({**request.query, "page": number, "per_page": per_page})
            return f'<{self.url}{request.path}?{query}>; rel="{rel}"'

        links = [link(page - 1, "prev")] if page > 1 else []
        links += [link(page + 1, "next")] if page < pages else []
        links += [link(1, "first"), link(pages, "last")]
        return {
            "link": ", ".join(links),
            "x-page": str(page),
            "x-per-page": str(per_page),
            "x-next-page": str(page + 1) if page < pages else "",
            "x-prev-page": str(page - 1) if page > 1 else "",
            "x-total": str(total),
            "x-total-pages": str(pages),
        }
