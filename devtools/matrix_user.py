"""A tiny Matrix client-server API client over aiohttp, for tests and the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
import itertools
import json
import time
from typing import Any
from urllib.parse import quote
import uuid

import aiohttp

from devtools import json_api
from devtools.json_api import APIError

CLIENT_V3 = "/_matrix/client/v3"


class MatrixRequestError(APIError):
    """A non-2xx answer from the homeserver."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(method, path, status, body)
        self.retry_after_ms: int | None = self.data.get("retry_after_ms")
        retry_after = (headers or {}).get("Retry-After")
        # Seconds from the Retry-After header, else from the deprecated body field.
        self.retry_after: float | None = (
            float(retry_after)
            if retry_after and retry_after.isdigit()
            else (self.retry_after_ms / 1000 if self.retry_after_ms is not None else None)
        )


def _q(part: str) -> str:
    return quote(part, safe="")


class MatrixUser:
    """A logged-in Matrix user. Owns an aiohttp session unless one is passed in."""

    _txn_counter = itertools.count()

    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str,
        device_id: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        password: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.password = password
        self._session = session
        self._owns_session = session is None
        self._since: str | None = None
        self._timeline: dict[str, list[dict]] = {}
        self._invites: dict[str, list[dict]] = {}
        self._consumed: set[str] = set()

    def __repr__(self) -> str:
        return f"MatrixUser({self.user_id!r}, device={self.device_id!r})"

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]

    # -- plumbing -------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> MatrixUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        params: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """Call the homeserver; ``path`` starts with '/'. Raises MatrixRequestError on non-2xx."""
        headers = {"Authorization": f"Bearer {self.access_token}"} if auth else {}
        status, data, answer_headers = await json_api.call(
            self.session, method, self.base_url + path, json=body, params=params, headers=headers
        )
        if status >= 300:
            raise MatrixRequestError(method, path, status, data, answer_headers)
        return data

    @classmethod
    async def login(
        cls,
        base_url: str,
        user_id_or_localpart: str,
        password: str,
        *,
        device_id: str | None = None,
    ) -> MatrixUser:
        """Password login; returns a new user with its own device."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id_or_localpart},
            "password": password,
            "initial_device_display_name": "thirdparty_invite devtools",
        }
        if device_id:
            body["device_id"] = device_id
        user = cls(base_url, "", "", password=password)
        try:
            data = await user.request("POST", f"{CLIENT_V3}/login", body, auth=False)
        except BaseException:
            await user.close()
            raise
        user.user_id = data["user_id"]
        user.access_token = data["access_token"]
        user.device_id = data.get("device_id")
        return user

    async def whoami(self) -> dict:
        return await self.request("GET", f"{CLIENT_V3}/account/whoami")

    async def logout(self) -> None:
        await self.request("POST", f"{CLIENT_V3}/logout", {})

    async def devices(self) -> list[dict]:
        data = await self.request("GET", f"{CLIENT_V3}/devices")
        return list(data.get("devices", []))

    async def request_openid_token(self) -> dict:
        return await self.request(
            "POST", f"{CLIENT_V3}/user/{_q(self.user_id)}/openid/request_token", {}
        )

    # -- rooms ----------------------------------------------------------------------------

    async def create_room(
        self,
        name: str | None = None,
        *,
        room_version: str | None = None,
        invite: Iterable[str] = (),
        preset: str = "private_chat",
        power_level_content_override: dict | None = None,
        is_direct: bool = False,
        topic: str | None = None,
        initial_state: list[dict] | None = None,
        creation_content: dict | None = None,
    ) -> str:
        body: dict[str, Any] = {"preset": preset, "invite": list(invite)}
        if name is not None:
            body["name"] = name
        if topic is not None:
            body["topic"] = topic
        if room_version is not None:
            body["room_version"] = room_version
        if power_level_content_override is not None:
            body["power_level_content_override"] = power_level_content_override
        if is_direct:
            body["is_direct"] = True
        if initial_state:
            body["initial_state"] = initial_state
        if creation_content:
            body["creation_content"] = creation_content
        data = await self.request("POST", f"{CLIENT_V3}/createRoom", body)
        return str(data["room_id"])

    async def create_dm(self, user_id: str) -> str:
        """Create a direct chat with ``user_id`` (invites them) and record it in m.direct."""
        room_id = await self.create_room(
            invite=[user_id], preset="trusted_private_chat", is_direct=True
        )
        path = f"{CLIENT_V3}/user/{_q(self.user_id)}/account_data/m.direct"
        try:
            direct = await self.request("GET", path)
        except MatrixRequestError as e:
            if e.status != 404:
                raise
            direct = {}
        direct.setdefault(user_id, []).append(room_id)
        await self.request("PUT", path, direct)
        return room_id

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/invite", body)

    async def join(self, room_id_or_alias: str, reason: str | None = None) -> str:
        body = {"reason": reason} if reason else {}
        data = await self.request("POST", f"{CLIENT_V3}/join/{_q(room_id_or_alias)}", body)
        return str(data["room_id"])

    async def knock(self, room_id_or_alias: str, reason: str | None = None) -> str:
        body = {"reason": reason} if reason else {}
        data = await self.request("POST", f"{CLIENT_V3}/knock/{_q(room_id_or_alias)}", body)
        return str(data["room_id"])

    async def leave(self, room_id: str, reason: str | None = None) -> None:
        body = {"reason": reason} if reason else {}
        await self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/leave", body)

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/kick", body)

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"{CLIENT_V3}/rooms/{_q(room_id)}/ban", body)

    async def get_state_event(self, room_id: str, event_type: str, state_key: str = "") -> dict:
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return await self.request("GET", path)

    async def send_state(
        self, room_id: str, event_type: str, content: dict, state_key: str = ""
    ) -> str:
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        data = await self.request("PUT", path, content)
        return str(data["event_id"])

    async def set_power_level(self, room_id: str, user_id: str, level: int) -> str:
        levels = await self.get_state_event(room_id, "m.room.power_levels")
        levels.setdefault("users", {})[user_id] = level
        return await self.send_state(room_id, "m.room.power_levels", levels)

    async def send_message(
        self, room_id: str, content: dict, event_type: str = "m.room.message"
    ) -> str:
        txn = f"devtools-{time.time_ns()}-{next(self._txn_counter)}-{uuid.uuid4().hex[:6]}"
        path = f"{CLIENT_V3}/rooms/{_q(room_id)}/send/{_q(event_type)}/{txn}"
        data = await self.request("PUT", path, content)
        return str(data["event_id"])

    async def send_text(self, room_id: str, body: str) -> str:
        return await self.send_message(room_id, {"msgtype": "m.text", "body": body})

    async def room_state(self, room_id: str) -> list[dict]:
        return list(await self.request("GET", f"{CLIENT_V3}/rooms/{_q(room_id)}/state"))

    async def messages(self, room_id: str, limit: int = 100) -> list[dict]:
        """The contents of the room's last `limit` messages (m.room.message), newest first."""
        data = await self.request(
            "GET",
            f"{CLIENT_V3}/rooms/{_q(room_id)}/messages",
            params={"dir": "b", "limit": str(limit)},
        )
        return [
            evt.get("content", {})
            for evt in data.get("chunk", [])
            if evt.get("type") == "m.room.message"
        ]

    async def members(self, room_id: str) -> dict[str, str]:
        """Membership by user ID (join, invite, leave, ban, knock) as this user sees it."""
        data = await self.request("GET", f"{CLIENT_V3}/rooms/{_q(room_id)}/members")
        return {
            evt["state_key"]: evt.get("content", {}).get("membership", "")
            for evt in data.get("chunk", [])
        }

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """``user_id``'s membership in the room, or None when they never had one."""
        try:
            content = await self.get_state_event(room_id, "m.room.member", user_id)
        except MatrixRequestError as e:
            if e.status == 404 and e.errcode == "M_NOT_FOUND":
                return None
            raise
        return content.get("membership")

    async def joined_rooms(self) -> list[str]:
        data = await self.request("GET", f"{CLIENT_V3}/joined_rooms")
        return list(data.get("joined_rooms", []))

    # -- sync -----------------------------------------------------------------------------

    async def sync_once(
        self, since: str | None = None, timeout_ms: int = 0, *, timeline_limit: int = 100
    ) -> dict:
        """One raw /sync call (does not touch the buffers used by the wait_* helpers)."""
        params = {
            "timeout": str(timeout_ms),
            "filter": json.dumps({"room": {"timeline": {"limit": timeline_limit}}}),
        }
        if since:
            params["since"] = since
        return await self.request("GET", f"{CLIENT_V3}/sync", params=params)

    async def _pump(self, timeout_ms: int) -> None:
        """Sync from the last position and buffer timeline events and invites."""
        data = await self.sync_once(self._since, timeout_ms)
        self._since = data.get("next_batch", self._since)
        rooms = data.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            events = room.get("timeline", {}).get("events", [])
            self._timeline.setdefault(room_id, []).extend(events)
            self._invites.pop(room_id, None)
        for room_id, room in rooms.get("invite", {}).items():
            self._invites[room_id] = list(room.get("invite_state", {}).get("events", []))
        for room_id in rooms.get("leave", {}):
            self._invites.pop(room_id, None)

    async def wait_for_event(
        self,
        room_id: str,
        predicate: Callable[[dict], bool],
        timeout: float = 30,
    ) -> dict:
        """Wait for a not yet returned timeline event in ``room_id`` matching ``predicate``.

        Events are buffered from this user's first sync on, so an event that arrived before
        the call is found too; every event is returned at most once.
        """
        deadline = time.monotonic() + timeout
        while True:
            for evt in self._timeline.get(room_id, []):
                event_id = evt.get("event_id", "")
                if event_id in self._consumed:
                    continue
                if predicate(evt):
                    self._consumed.add(event_id)
                    return evt
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no matching event in {room_id} in {timeout}s")
            await self._pump(int(min(remaining, 5) * 1000))

    async def wait_for_message(
        self,
        room_id: str,
        predicate: Callable[[dict], bool] = lambda _content: True,
        timeout: float = 30,
        *,
        sender: str | None = None,
        include_own: bool = False,
    ) -> dict:
        """Wait for an m.room.message whose *content* matches ``predicate``; return the content.

        Own messages are skipped unless ``include_own``; ``sender`` restricts the sender.
        """

        def match(evt: dict) -> bool:
            if evt.get("type") != "m.room.message":
                return False
            if sender is not None and evt.get("sender") != sender:
                return False
            if not include_own and evt.get("sender") == self.user_id:
                return False
            return bool(predicate(evt.get("content", {})))

        evt = await self.wait_for_event(room_id, match, timeout)
        return dict(evt.get("content", {}))

    async def wait_for_invite(self, room_id: str, timeout: float = 30) -> list[dict]:
        """Wait until this user is invited to ``room_id``; returns the stripped invite state."""
        deadline = time.monotonic() + timeout
        while room_id not in self._invites:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no invite to {room_id} within {timeout}s")
            await self._pump(int(min(remaining, 5) * 1000))
        return self._invites[room_id]

    async def wait_for_membership(
        self, room_id: str, user_id: str, membership: str | None, timeout: float = 30
    ) -> None:
        """Poll the room state until ``user_id`` has ``membership`` (None = no member event)."""
        deadline = time.monotonic() + timeout
        while True:
            current = await self.membership(room_id, user_id)
            if current == membership:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{user_id} in {room_id}: membership {current!r}, wanted {membership!r}"
                )
            await asyncio.sleep(0.2)
