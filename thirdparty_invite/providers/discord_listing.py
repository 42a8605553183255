"""Discord: where a guild member stands (shared with the sign-in's check), and the guild's
members listed with a bot token for re-checks.

A member object says more than "in the server" (Discord's Guild Member Object, flags from
its Guild Member Flags table):
- `pending: true`: membership screening not passed yet: not a member for a rule.
- flag IS_GUEST (1 << 4): a guest who can only reach the voice channel they were invited
  to: not a member.
- flags AUTOMOD_QUARANTINED_USERNAME (1 << 7), AUTOMOD_QUARANTINED_GUILD_TAG (1 << 10) and
  the deprecated AUTOMOD_QUARANTINED_BIO (1 << 8): AutoMod holds the member back until a
  name is changed: unknown (neither in nor out; a re-check keeps them).
- `communication_disabled_until` (a timeout): still a member.

The listing: `GET <api_url>/guilds/{guild}/members?limit=1000&after=<highest id so far>`
with `Authorization: Bot <token>` (the bot must be in the server, and its application
needs the privileged Server Members intent, else Discord answers 403 Missing Access).
Paging follows `after` until an empty page: a short page is not trusted to be the last,
at the cost of one call. Rate limits: a 429 raises ProviderUnavailable with its
`retry_after`; a bucket emptied (`X-RateLimit-Remaining: 0`) waits `Reset-After` before
the next page when that is short, else stops with that wait. Discord has no ETags here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
import re
from typing import TYPE_CHECKING, Any

from .base import ProviderUnavailable, Rule
from .listing import ListingPage, MemberListing
from .oauth import ApiResponse, failure_detail
from .settings import refuse_unknown_settings, text_setting

if TYPE_CHECKING:
    from .discord import DiscordProvider

IS_GUEST = 1 << 4
QUARANTINED = (1 << 7) | (1 << 8) | (1 << 10)  # username/nickname, bio (deprecated), tag
PAGE_SIZE = 1000  # the most List Guild Members returns
LONGEST_WAIT = 10.0  # seconds a listing waits for a rate-limit bucket; longer: resume later
SNOWFLAKE = re.compile(r"[0-9]{17,20}")
MISSING_ACCESS = 50001


def read_recheck(section: Mapping[str, Any]) -> str | None:
    """The bot token of `recheck:`; None when not configured."""
    raw = section.get("recheck")
    if raw is None or (isinstance(raw, dict) and not any(raw.values())):
        return None
    if not isinstance(raw, dict):
        raise ValueError("recheck: must be a mapping with bot_token")
    try:
        refuse_unknown_settings(raw, ("bot_token",))
        return text_setting(raw, "bot_token")
    except ValueError as e:
        raise ValueError(f"recheck.{e}") from None


def standing(member: dict[str, Any], role: str | None) -> str:
    """Where a member object stands for a rule on its guild (and `role`): "member",
    "no role", "pending", "guest", "quarantined", or "unreadable"."""
    flags = member.get("flags", 0)
    pending = member.get("pending", False)
    roles = member.get("roles")
    if not isinstance(flags, int) or isinstance(flags, bool) or not isinstance(pending, bool):
        return "unreadable"
    if pending:
        return "pending"
    if flags & IS_GUEST:
        return "guest"
    if role is not None and not isinstance(roles, list):
        return "unreadable"
    if role is not None and role not in roles:
        return "no role"  # AutoMod leaves roles as they are: without it is a plain no
    if flags & QUARANTINED:
        return "quarantined"
    return "member"


def retry_after_of(response: ApiResponse) -> float | None:
    body = response.body if isinstance(response.body, dict) else {}
    return response.retry_after(body.get("retry_after"))


def failure_detail_of(response: ApiResponse) -> str:
    body = response.body if isinstance(response.body, dict) else {}
    return failure_detail(response, body.get("retry_after"))


class GuildMembers(MemberListing):
    """Everyone holding one `guild:ID[:ROLE]` rule, listed by the bot."""

    def __init__(self, provider: DiscordProvider, rule: Rule, bot_token: str) -> None:
        self._provider = provider
        self._guild = rule.args[0]
        self._role = rule.args[1] if len(rule.args) == 2 else None
        self._token = bot_token

    def _unavailable(self, detail: str, wait: float | None = None) -> ProviderUnavailable:
        return ProviderUnavailable(self._provider.display_name, detail, retry_after=wait)

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        provider = self._provider
        url = f"{provider.api_url}/guilds/{self._guild}/members"
        after, wait = cursor or "0", 0.0
        while True:
            if wait > LONGEST_WAIT:
                raise self._unavailable(f"rate limited, retry in {round(wait)} s", wait)
            if wait > 0:
                await asyncio.sleep(wait)
            response = await provider._oauth.get_json(
                url,
                "",
                headers={"Authorization": f"Bot {self._token}"},
                params={"limit": str(PAGE_SIZE), "after": after},
            )
            if response.status != 200:
                raise self._unavailable(self._refusal(response), retry_after_of(response))
            members, last = self._read_page(response.body)
            if last is None:  # an empty page: the end
                yield ListingPage(f"after:{after}", members)
                return
            if int(last) <= int(after):
                raise self._unavailable("its member pages do not advance")
            yield ListingPage(f"after:{after}", members, next_cursor=last)
            after, wait = last, _bucket_wait(response)

    def _refusal(self, response: ApiResponse) -> str:
        body = response.body if isinstance(response.body, dict) else {}
        code = body.get("code")
        if response.status == 401:
            return "it refused the bot token (recheck.bot_token)"
        if response.status == 403 and code == MISSING_ACCESS:
            return (
                f"the bot may not list the members of server {self._guild} (Missing Access): "
                "add the bot to the server and enable the Server Members intent for it "
                "(Developer Portal > Bot > Privileged Gateway Intents)"
            )
        if response.status in (403, 404):
            return f"the bot cannot see server {self._guild} (HTTP {response.status}, {code})"
        return failure_detail_of(response)

    def _read_page(self, body: Any) -> tuple[tuple[str, ...], str | None]:
        if not isinstance(body, list):
            raise self._unavailable("a member page was not a list")
        holders, ids = [], []
        for member in body:
            user = member.get("user") if isinstance(member, dict) else None
            user_id = user.get("id") if isinstance(user, dict) else None
            if not isinstance(user_id, str) or not SNOWFLAKE.fullmatch(user_id):
                raise self._unavailable("a member page held a member without a user ID")
            where = standing(member, self._role)
            if where == "unreadable":
                raise self._unavailable("a member page held a member it could not read")
            ids.append(int(user_id))
            # Quarantined members are unknown, and unknown is never a loss: listed.
            if where in ("member", "quarantined"):
                holders.append(user_id)
        return tuple(holders), (str(max(ids)) if ids else None)


def _bucket_wait(response: ApiResponse) -> float:
    """Seconds to wait before the next request: the bucket's reset when it is empty."""
    if (response.header("X-RateLimit-Remaining") or "").strip() != "0":
        return 0.0
    try:
        reset_after = float(response.header("X-RateLimit-Reset-After") or "")
    except ValueError:
        reset_after = None
    if reset_after is None or reset_after != reset_after:  # absent or NaN
        reset = response.retry_after()  # X-RateLimit-Reset, as an epoch second
        return max(0.0, reset) if reset is not None else 1.0
    return max(0.0, reset_after)
