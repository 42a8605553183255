"""GitLab's members API: who holds `group:PATH[:ROLE]`, as GitLab itself answers it.

`GET /api/v4/groups/:id/members/all` (and `/members/all/:user_id` for one person) is
GitLab's own reading of "member of the group": direct members, members inherited from the
group's ancestors, and members of the groups it (or an ancestor) is shared with, each once
at their effective (highest) access level. Members of the group's subgroups only are not
in it, as they are not members of the group. An entry counts when:

* the user is active (`state`, the user's state: "blocked", "deactivated", "banned" and
  the rest do not count);
* the membership is active (`membership_state`, which GitLab's Enterprise Edition sends,
  gitlab.com included: a membership "awaiting" a seat, over a group's user cap or the free
  user limit, gives no access and does not count; without the field there are no seats
  to await);
* the access level is at least the rule's role, and at least Guest (10): Minimal Access
  (5) opens nothing of the group.

OpenID Connect claims cannot say this (gitlab.py explains why), so both the sign-in check
and the re-check listing (gitlab_listing.py) ask these endpoints. Requests go as the
person (`Authorization: Bearer`, needing `read_api`) or with the operator's group access
token (`PRIVATE-TOKEN`).
"""

from __future__ import annotations

from collections.abc import Mapping
import re
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import attrs

from .base import ProviderUnavailable
from .oauth import ApiResponse, ProviderHTTP, failure_detail

GUEST = 10  # the lowest level that is a membership of the group's content


@attrs.frozen
class Credential:
    """How a request authenticates: as the person or with the operator's token."""

    header: str
    value: str

    @classmethod
    def person(cls, access_token: str) -> Credential:
        return cls("Authorization", f"Bearer {access_token}")

    @classmethod
    def group_token(cls, token: str) -> Credential:
        return cls("PRIVATE-TOKEN", token)


def group_url(base_url: str, path: str) -> str:
    """The API URL of the group at `path` (GitLab takes the URL-encoded full path)."""
    return f"{base_url}/api/v4/groups/{quote(path, safe='')}"


def standing(entry: Any, min_level: int) -> str:
    """What a members API entry says about the rule: "holds", "awaiting" (a seat not yet
    approved), "inactive" (the user is blocked or gone), "below" (a lower role), or
    "malformed" (not GitLab's documented shape)."""
    if not isinstance(entry, dict):
        return "malformed"
    level, user_state = entry.get("access_level"), entry.get("state")
    if isinstance(level, bool) or not isinstance(level, int) or not isinstance(user_state, str):
        return "malformed"
    if not isinstance(entry.get("id"), int) or isinstance(entry.get("id"), bool):
        return "malformed"
    membership = entry.get("membership_state", "active")
    if membership != "active":
        return "awaiting" if membership == "awaiting" else "malformed"
    if user_state != "active":
        return "inactive"
    return "holds" if level >= max(min_level, GUEST) else "below"


class GitLabAPI(ProviderHTTP):
    """GET requests to GitLab's REST API with either credential, within ProviderHTTP's
    bounds (the direct session, a timeout, a body limit, no redirects)."""

    async def get(
        self,
        url: str,
        credential: Credential,
        *,
        params: Mapping[str, str] | None = None,
        etag: str | None = None,
    ) -> ApiResponse:
        headers = {credential.header: credential.value, "Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        return await self._send("GET", url, headers=headers, params=params)

    def unavailable(self, response: ApiResponse, what: str) -> ProviderUnavailable:
        """The error for an answer that cannot be used, with GitLab's wait on a 429."""
        wait = rate_limit_wait(response) if response.status == 429 else None
        detail = failure_detail(response) if response.status != 200 else "an unexpected shape"
        if response.status in (401, 403):
            detail = f"{what} was refused (HTTP {response.status})"
        return ProviderUnavailable(self.provider_name, detail, retry_after=wait)


def rate_limit_wait(response: ApiResponse) -> float | None:
    """Seconds GitLab asks us to wait: `Retry-After`, else `RateLimit-Reset` (the epoch
    second its window resets, which GitLab sends without the X- prefix)."""
    wait = response.retry_after()
    if wait is None:
        reset = response.header("RateLimit-Reset")
        try:
            wait = float(reset) - time.time() if reset else None
        except ValueError:
            wait = None
    return None if wait is None else max(1.0, wait)


def next_page(response: ApiResponse, page: int) -> int | None:
    """The next page's number from `x-next-page` (empty on the last page), else from the
    `Link` header's rel="next" URL. Only the number is used, never the URL: every request
    goes to the configured base URL. Never a page already read."""
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
