"""The Matrix operations the services need, over maubot's client.

Invites go through the client's HTTP session directly rather than mautrix's
`invite_user`, because the queue must read the server's Retry-After on 429 and the
exact errcode of a refusal; mautrix's exceptions keep neither.

Every call is bounded by the `request_timeout` this RoomOps was made with: maubot's
client waits for as long as a hung homeserver keeps the connection open (and retries),
which would hang the web page and the commands with it. A call that times out or cannot
reach the server raises `HomeserverUnavailable`; a server's refusal still raises
mautrix's `MatrixRequestError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
import contextlib
import time
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import attrs
from maubot.matrix import parse_formatted
from mautrix.client import Client
from mautrix.errors import MatrixConnectionError, MatrixRequestError, MNotFound
from mautrix.types import (
    EventID,
    EventType,
    Format,
    MessageType,
    RoomID,
    TextMessageEventContent,
)

from .ids import is_room_alias
from .power import RoomPower
from .spaces import SpaceInfo
from .state_cache import StateCache
from .tombstones import Tombstone

_ROOM_INFO_TTL = 60.0
# A cached room name still beats a bare room ID when the homeserver is down.
_ROOM_INFO_STALE_LIMIT = 24 * 3600.0
T = TypeVar("T")


class HomeserverUnavailable(Exception):
    """The bot's homeserver did not answer in time, or could not be reached at all."""


@attrs.frozen
class InviteAttempt:
    """What the homeserver answered to one invite."""

    status: int  # HTTP status; 0 when the server could not be reached
    errcode: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, on 429

    @property
    def ok(self) -> bool:
        return self.status == 200


@attrs.frozen
class Member:
    """A person's membership in a room, and who set it (an invite's sender is the inviter)."""

    membership: str
    sender: str | None
    sent_at: int | None = None  # origin_server_ts of the membership event, in ms


@attrs.frozen
class RoomInfo:
    room_id: str
    name: str | None
    canonical_alias: str | None
    power: RoomPower
    topic: str | None = None
    is_space: bool = False

    @property
    def display_name(self) -> str:
        return self.name or self.canonical_alias or self.room_id


class RoomOps:
    def __init__(self, client: Client, request_timeout: float = 30.0) -> None:
        self.client = client
        self.request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._info_cache: dict[str, tuple[float, RoomInfo]] = {}
        self._info_locks: dict[str, asyncio.Lock] = {}
        self.state_cache = StateCache(client)

    @property
    def bot_user_id(self) -> str:
        return str(self.client.mxid)

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.request_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise HomeserverUnavailable(
                f"the homeserver did not answer within {self.request_timeout:g}s"
            ) from None
        except (MatrixConnectionError, aiohttp.ClientError, OSError) as e:
            raise HomeserverUnavailable(
                f"the homeserver could not be reached ({type(e).__name__})"
            ) from None

    async def member(self, room_id: str, user_id: str) -> Member | None:
        """The user's membership in the room as the bot sees it, or None if none."""
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.member/"
            f"{quote(user_id, safe='')}"
        )
        try:
            # format=event (Synapse, and the spec from v1.16) brings the sender along;
            # a server that ignores it answers with the content alone.
            data = await self._bounded(
                self.client.api.request("GET", path, query_params={"format": "event"})
            )
        except MNotFound:
            return None
        if not isinstance(data, dict):
            return None
        content = data.get("content") if isinstance(data.get("content"), dict) else data
        membership = content.get("membership")
        if not isinstance(membership, str):
            return None
        sender = data.get("sender")
        sent_at = data.get("origin_server_ts")
        return Member(
            membership,
            sender if isinstance(sender, str) else None,
            sent_at if isinstance(sent_at, int) and not isinstance(sent_at, bool) else None,
        )

    async def invite(self, room_id: str, user_id: str, reason: str) -> InviteAttempt:
        return await self._change_membership("invite", room_id, user_id, reason)

    async def kick(self, room_id: str, user_id: str, reason: str) -> InviteAttempt:
        return await self._change_membership("kick", room_id, user_id, reason)

    async def _change_membership(
        self, action: str, room_id: str, user_id: str, reason: str
    ) -> InviteAttempt:
        """POST .../invite or .../kick with the client's own session (mautrix's methods
        hide Retry-After); any status comes back, transport failures as status 0."""
        api = self.client.api
        url = api.base_url.with_path(
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/{action}", encoded=True
        )
        headers = {"Authorization": f"Bearer {api.token}"}
        body = {"user_id": user_id, "reason": reason}
        try:
            async with api.session.post(
                url, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                data = await _json_or_empty(resp)
                retry_after = None
                if resp.status == 429:
                    retry_after = _retry_after(resp.headers.get("Retry-After"), data)
                return InviteAttempt(
                    status=resp.status,
                    errcode=data.get("errcode"),
                    error=data.get("error"),
                    retry_after=retry_after,
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return InviteAttempt(
                status=0, errcode="TPI_HOMESERVER_UNREACHABLE", error=type(e).__name__
            )

    async def room_info(self, room_id: str, *, fresh: bool = False) -> RoomInfo:
        """Name, alias and power of a room the bot is in, cached for a minute.

        `fresh` (for permission checks) always asks the server. Otherwise, when the
        server is unavailable, a cached answer up to a day old is better than none.
        """
        cached = self._info_cache.get(room_id)
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        lock = self._info_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            cached = self._info_cache.get(room_id)
            if cached and not fresh and cached[0] > time.monotonic():
                return cached[1]
            try:
                info = await self._fetch_room_info(room_id)
            except HomeserverUnavailable:
                stale_until = (cached[0] if cached else 0) + _ROOM_INFO_STALE_LIMIT
                if cached and not fresh and stale_until > time.monotonic():
                    return cached[1]
                raise
            self._info_cache[room_id] = (time.monotonic() + _ROOM_INFO_TTL, info)
            return info

    async def _fetch_room_info(self, room_id: str) -> RoomInfo:
        # The full state is read rather than single events because the m.room.create
        # *sender* is needed (room v12 creators), which the single-event endpoint hides.
        state = await self._bounded(
            self.client.api.request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state"
            )
        )
        by_type: dict[str, dict[str, Any]] = {}
        for event in state:
            if event.get("state_key") == "":
                by_type[event.get("type", "")] = event
        name = (by_type.get("m.room.name") or {}).get("content", {}).get("name")
        alias = (by_type.get("m.room.canonical_alias") or {}).get("content", {}).get("alias")
        topic = (by_type.get("m.room.topic") or {}).get("content", {}).get("topic")
        power = RoomPower.from_state(
            by_type.get("m.room.create"),
            (by_type.get("m.room.power_levels") or {}).get("content"),
        )
        # What was just read is newer than the state store's copy (maubot skips the first
        # sync after a start): the room lists read from the store see it too.
        with contextlib.suppress(Exception):  # a cache: never fails the read itself
            await self.state_cache.remember(room_id, by_type)
        create_content = (by_type.get("m.room.create") or {}).get("content") or {}
        return RoomInfo(
            room_id=room_id,
            name=name if isinstance(name, str) and name else None,
            canonical_alias=alias if isinstance(alias, str) and alias else None,
            power=power,
            topic=topic if isinstance(topic, str) and topic else None,
            is_space=isinstance(create_content, dict) and create_content.get("type") == "m.space",
        )

    async def resolve_room(self, room_ref: str) -> str:
        """A room ID from a room ID or alias; raises MatrixRequestError when unknown."""
        if is_room_alias(room_ref):
            result = await self._bounded(self.client.resolve_room_alias(room_ref))
            return str(result.room_id)
        return room_ref

    async def send_notice(self, room_id: str, markdown: str) -> None:
        # Rendered like maubot renders replies: clients show no stray ** or backticks.
        text, html = await parse_formatted(markdown)
        try:
            await self._bounded(self.client.send_notice(RoomID(room_id), text, html=html))
        except (MatrixRequestError, HomeserverUnavailable):
            pass  # Reporting is best effort; the audit log keeps the record.

    async def joined_rooms(self) -> list[str]:
        """The rooms the bot is joined to, as its homeserver says (one request)."""
        return [str(room_id) for room_id in await self._bounded(self.client.get_joined_rooms())]

    async def joined_members(self, room_id: str) -> frozenset[str]:
        return frozenset(
            str(user)
            for user in await self._bounded(self.client.get_joined_members(RoomID(room_id)))
        )

    async def members(self, room_id: str) -> dict[str, str]:
        """Membership (join, invite, leave, ...) by user ID, for everyone the room knows."""
        events = await self._bounded(self.client.get_members(RoomID(room_id)))
        return {str(evt.state_key): str(evt.content.membership.value) for evt in events}

    async def is_encrypted(self, room_id: str) -> bool:
        try:
            await self._bounded(
                self.client.get_state_event(RoomID(room_id), EventType.ROOM_ENCRYPTION)
            )
        except MNotFound:
            return False
        return True

    @property
    def can_decrypt(self) -> bool:
        return bool(self.client.crypto_enabled)

    async def redact(self, room_id: str, event_id: str, reason: str) -> None:
        await self._bounded(self.client.redact(RoomID(room_id), EventID(event_id), reason=reason))

    async def direct_chats(self) -> dict[str, list[str]]:
        """The bot's m.direct account data: person -> rooms, as Matrix clients keep it."""
        try:
            content = await self._bounded(self.client.get_account_data(EventType.DIRECT))
        except MNotFound:
            return {}
        if not isinstance(content, dict):
            return {}
        return {
            str(user): [str(room) for room in rooms if isinstance(room, str)]
            for user, rooms in content.items()
            if isinstance(rooms, list)
        }

    async def set_direct_chats(self, chats: dict[str, list[str]]) -> None:
        await self._bounded(self.client.set_account_data(EventType.DIRECT, chats))

    async def reply_with_secret(self, room_id: str, event_id: str, markdown: str) -> None:
        """A notice replying to an event, kept out of the logs: mautrix logs the body of
        every request at DEBUG (maubot's default level) unless it is marked sensitive."""
        text, html = await parse_formatted(markdown)
        content = TextMessageEventContent(
            msgtype=MessageType.NOTICE, body=text, format=Format.HTML, formatted_body=html
        )
        content.set_reply(EventID(event_id))
        await self._bounded(
            self.client.send_message_event(
                RoomID(room_id), EventType.ROOM_MESSAGE, content, sensitive=True
            )
        )

    async def join(self, room_id: str) -> None:
        await self._bounded(self.client.join_room_by_id(RoomID(room_id)))

    async def leave(self, room_id: str, reason: str) -> None:
        await self._bounded(self.client.leave_room(RoomID(room_id), reason=reason))

    async def join_via(self, room_id: str, servers: list[str]) -> None:
        """Join by ID through `servers` (a room v12 ID names no server), without mautrix's
        retries: a refusal (not invited, invite-only) is an answer, not a hiccup."""
        await self._bounded(self.client.join_room(RoomID(room_id), servers=servers, max_retries=0))

    async def space(self, room_id: str) -> SpaceInfo:
        """Whether the room is a space, and the rooms it lists (read in matrix/spaces.py)."""
        path = f"/_matrix/client/v1/rooms/{quote(room_id, safe='')}/hierarchy"
        query = {"max_depth": "0", "limit": "1"}
        data = await self._bounded(self.client.api.request("GET", path, query_params=query))
        return SpaceInfo.from_hierarchy(room_id, data)

    async def tombstone(self, room_id: str) -> Tombstone | None:
        """The room's m.room.tombstone when it was upgraded (replaced), else None."""
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.tombstone"
        try:
            data = await self._bounded(
                self.client.api.request("GET", path, query_params={"format": "event"})
            )
        except MNotFound:
            return None
        if isinstance(data, dict) and "origin_server_ts" not in data:
            # The server ignored format=event: find the event (sender, time) in the state.
            state = await self._bounded(
                self.client.api.request(
                    "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state"
                )
            )
            found = [e for e in state if e.get("type") == "m.room.tombstone"]
            data = found[0] if found and found[0].get("state_key") == "" else {}
        return Tombstone.from_event(room_id, data)


async def _json_or_empty(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(header: str | None, body: dict[str, Any]) -> float:
    """Seconds to wait after a 429: retry_after_ms is more precise than the header."""
    ms = body.get("retry_after_ms")
    if isinstance(ms, (int, float)) and ms >= 0:
        return float(ms) / 1000
    if header:
        try:
            return max(float(header), 0.0)
        except ValueError:
            pass
    return 5.0
