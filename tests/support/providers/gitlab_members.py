"""The fake GitLab's members API and token revocation (a part of FakeGitLab, kept apart to
keep each file to one concern): `GET /api/v4/groups/:id`, `.../members/all`,
`.../members/all/:user_id` and `POST /oauth/revoke`, in GitLab's documented shapes
(tests/fixtures/gitlab/README.md names the sources).

What `members/all` of a group lists, as on GitLab: direct members, members inherited from
its ancestors, and members of the groups it or an ancestor is shared with (at the lower
of the share's access and their own role there), each once at the highest level; never
members of its subgroups only. Unkind on purpose: memberships awaiting a seat are listed
with `membership_state: "awaiting"` (as GitLab's Enterprise Edition sends them), blocked
users with their `state`, Minimal Access (5) members with that level; `page_size_cap` makes
pages shorter than asked; every answer has a weak ETag, and a matching `If-None-Match`
gets 304 with the paging headers; `x-total` can be left out (`send_totals`), as GitLab
does past 10,000 records.

Who may read: a group access token (`add_group_token`, header `PRIVATE-TOKEN`) sees its
group and the group's descendants; a person's OAuth token with `read_api` or `api` sees
public groups and the groups they are an active member of (shares included).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import secrets
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from support.providers.fake_oauth import fixture

ROLE_GUEST = 10


class GitLabMembersAPI:
    """Mixed into FakeGitLab, which provides `groups`, `accounts`, `role_in`, `bearer`,
    `_authenticate`, `_tokens`, `_page_headers` and `url`."""

    def _init_members_api(self) -> None:
        self.shares: dict[str, dict[str, int]] = {}  # shared group -> invited group -> access
        self.group_tokens: dict[str, str] = {}  # token -> the group it belongs to
        self.page_size_cap: int | None = None  # pages shorter than per_page
        self.send_totals = True  # False: no x-total / x-total-pages, as past 10,000
        self.sends_membership_state = True  # GitLab EE (gitlab.com too); CE sends none
        self.revoked_tokens = 0

    # --- scripting ------------------------------------------------------------------------

    def share_group(self, shared: str, invited: str, access: str | int = "developer") -> None:
        """Share `shared` with `invited` (GitLab: the group's Members → Invite a group)."""
        from support.providers.gitlab import ROLES

        self.add_group(shared)  # type: ignore[attr-defined]
        self.add_group(invited)  # type: ignore[attr-defined]
        level = ROLES[access] if isinstance(access, str) else access
        self.shares.setdefault(shared, {})[invited] = level

    def add_group_token(self, path: str) -> str:
        """A group access token of `path` (read_api), for the operator's re-check config."""
        self.add_group(path)  # type: ignore[attr-defined]
        token = "glpat-" + secrets.token_urlsafe(15)
        self.group_tokens[token] = path
        return token

    def membership(self, account: Any, path: str) -> tuple[int, str] | None:
        """The account's effective (level, membership state) in `path`, or None."""
        ancestry = [p for p in self.groups if path == p or path.startswith(p + "/")]  # type: ignore[attr-defined]
        level = self.role_in(account, path)  # type: ignore[attr-defined]
        for shared in ancestry:
            for invited, access in self.shares.get(shared, {}).items():
                own = self.role_in(account, invited)  # type: ignore[attr-defined]
                if own:
                    level = max(level, min(access, own))
        if level:
            return level, "active"
        waiting = [lvl for p, lvl in account.awaiting.items() if p in ancestry]
        return (max(waiting), "awaiting") if waiting else None

    # --- routes ---------------------------------------------------------------------------

    def add_members_routes(self, add: Any) -> None:
        add("POST", "/oauth/revoke", self._revoke, "api", "revoke")
        add("GET", "/api/v4/groups/{rest:.+}", self._group_api, "api", "members")

    async def _revoke(self, request: web.Request) -> web.Response:
        # Doorkeeper: the client authenticates as at the token endpoint; it may revoke
        # only its own tokens; an unknown token is "revoked" all the same (RFC 7009 2.2).
        form = {k: str(v) for k, v in (await request.post()).items()}
        client = self._authenticate(request, form)  # type: ignore[attr-defined]
        if client is None:
            error = {
                "error": "invalid_client",
                "error_description": "Client authentication failed.",
            }
            return web.json_response(error, status=401)
        token = self._tokens.get(form.get("token", ""))  # type: ignore[attr-defined]
        if token is not None and token.client_id != client.client_id:
            error = {"error": "unauthorized_client", "error_description": "Not your token."}
            return web.json_response(error, status=403)
        if token is not None and not token.revoked:
            token.revoked = True
            self.revoked_tokens += 1
        return web.json_response({})

    async def _group_api(self, request: web.Request) -> web.Response:
        raw = request.raw_path.split("?", 1)[0].removeprefix("/api/v4/groups/")
        group_ref, _, rest = raw.partition("/")
        group = self._find_group(unquote(group_ref))
        viewer = self._viewer(request)
        if isinstance(viewer, web.Response):
            return viewer
        if group is None or not self._can_see(viewer, group.full_path):
            return web.json_response({"message": "404 Group Not Found"}, status=404)
        if rest == "":
            return web.json_response(self._group_json(group))  # type: ignore[attr-defined]
        if rest == "members/all":
            return self._members_page(request, group.full_path)
        if rest.startswith("members/all/") and rest.rpartition("/")[2].isdigit():
            account = self._account(int(rest.rpartition("/")[2]))
            found = self.membership(account, group.full_path) if account else None
            if account is None or found is None:
                return web.json_response({"message": "404 Not found"}, status=404)
            return web.json_response(self._member_json(account, *found))
        return web.json_response({"error": "404 Not Found"}, status=404)

    def _find_group(self, ref: str) -> Any:
        for group in self.groups.values():  # type: ignore[attr-defined]
            if ref == str(group.id) or ref.lower() == group.full_path.lower():
                return group
        return None

    def _account(self, user_id: int) -> Any:
        return next((a for a in self.accounts if a.id == user_id), None)  # type: ignore[attr-defined]

    def _viewer(self, request: web.Request) -> Any:
        """("group", path) for a group token, ("person", account) for a person's token
        with read_api or api, else GitLab's refusal."""
        private = request.headers.get("PRIVATE-TOKEN")
        if private is not None:
            if private in self.group_tokens:
                return ("group", self.group_tokens[private])
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        token = self.bearer(request)  # type: ignore[attr-defined]
        if token is None:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        if not token.scopes & {"read_api", "api"}:
            body = {
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided "
                "by the access token.",
                "scope": "api read_api",
            }
            return web.json_response(body, status=403)
        return ("person", token.account)

    def _can_see(self, viewer: tuple[str, Any], path: str) -> bool:
        kind, who = viewer
        if kind == "group":
            return path == who or path.startswith(who + "/")
        found = self.membership(who, path)
        return self.groups[path].visibility == "public" or (  # type: ignore[attr-defined]
            found is not None and found[1] == "active"
        )

    def _member_json(self, account: Any, level: int, state: str) -> dict[str, Any]:
        body = copy.deepcopy(fixture("gitlab", "group-member-all.200.json"))
        body.update(
            id=account.id,
            username=account.username,
            name=account.name,
            state=account.state,
            web_url=f"{self.url}/{account.username}",  # type: ignore[attr-defined]
            access_level=level,
        )
        body.pop("email", None)  # only for enterprise users, to the group's owners
        if self.sends_membership_state:
            body["membership_state"] = state
        return body

    def _members_page(self, request: web.Request, path: str) -> web.Response:
        try:
            page = max(1, int(request.query.get("page", "1")))
            per_page = min(100, max(1, int(request.query.get("per_page", "20"))))
        except ValueError:
            return web.json_response({"error": "page is invalid"}, status=400)
        per_page = min(per_page, self.page_size_cap or per_page)
        members = []
        for account in sorted(self.accounts, key=lambda a: a.id):  # type: ignore[attr-defined]
            found = self.membership(account, path)
            if found is not None:
                members.append(self._member_json(account, *found))
        pages = max(1, math.ceil(len(members) / per_page))
        shown = members[(page - 1) * per_page : page * per_page]
        headers = self._page_headers(request, page, per_page, len(members), pages)  # type: ignore[attr-defined]
        if not self.send_totals:
            for name in ("x-total", "x-total-pages"):
                headers.pop(name)
        text = json.dumps(shown)
        headers["etag"] = f'W/"{hashlib.sha256(text.encode()).hexdigest()[:32]}"'
        if request.headers.get("If-None-Match") == headers["etag"]:
            return web.Response(status=304, headers=headers)
        return web.json_response(text=text, headers=headers)
