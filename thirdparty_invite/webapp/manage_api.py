"""The admin panel's API: `POST api/manage/<name>`, for the page at `<base>/manage`.

Each route checks the Origin, requires the web session (the pages' Matrix sign-in),
reads and validates the body, and calls `ManageService` or `ManagedRooms`, which check
the person's power in the room fresh, as the chat commands do. Described in
web/openapi.json and docs/API.md (Panel).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs

from ..chat.arguments import MAX_LINK_USES, MAX_ROOMS_PER_LINK
from ..errors import UserFacingError
from .origins import OriginCheck
from .session_cookie import SessionCookie
from .support import read_json_object, require_string

if TYPE_CHECKING:
    from ..services.container import Services

# Routes and their handlers' names; all POST, all rate limited under `manage`.
ROUTES = (
    "rooms",
    "room",
    "links/create",
    "links/revoke",
    "rules/check",
    "providers",
    "bindings/create",
    "bindings/remove",
    "bindings/policy",
    "bindings/recheck",
    "invites/retry",
)
ROOM_ID_MAX = 255  # the spec's limit on the length of a room ID
USER_ID_MAX = 255
RULES_MAX = 1024
NAME_MAX = 100

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class ManageAPI:
    def __init__(self, services: Services, cookie: SessionCookie, origin: OriginCheck) -> None:
        self.services = services
        self.cookie = cookie
        self.origin = origin
        self.max_body = services.settings.web.max_body_bytes

    def register(self, router: web.UrlDispatcher) -> None:
        handlers: dict[str, Handler] = {
            "rooms": self.rooms,
            "room": self.room,
            "links/create": self.create_link,
            "links/revoke": self.revoke_link,
            "rules/check": self.check_rules,
            "providers": self.providers,
            "bindings/create": self.create_binding,
            "bindings/remove": self.remove_binding,
            "bindings/policy": self.set_policy,
            "bindings/recheck": self.recheck,
            "invites/retry": self.retry_invite,
        }
        for name in ROUTES:
            router.add_post(f"/api/manage/{name}", self._route(handlers[name]))

    def _route(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def route(request: web.Request) -> web.Response:
            # The order of the other routes: Origin, session, then the body.
            self.origin.check(request)
            _, session = await self.cookie.require(request, self.services.sessions)
            data = await read_json_object(request, self.max_body)
            return web.json_response(await handler(session.user_id, data))

        return route

    # -- handlers: (the signed-in person, the body) -> the answer ---------------------------

    async def rooms(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        rooms = await self.services.managed_rooms.list_for(user_id)
        return {"user_id": user_id, "rooms": [attrs.asdict(room) for room in rooms]}

    async def room(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        view = await self.services.manage.room_view(user_id, _room_id(data))
        return attrs.asdict(view)

    async def create_link(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        uses = _optional_int(data, "uses", 1, MAX_LINK_USES)
        card, token, notes = await self.services.manage.create_link(
            user_id,
            room_id,
            _room_list(data, "rooms"),
            _optional_string(data, "name", NAME_MAX),
            uses,
            _optional_string(data, "expires", 32),
            _optional_bool(data, "register"),
        )
        url = self.services.invite_url(token)
        return {"link": attrs.asdict(card), "url": url, "notes": notes}

    async def revoke_link(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        link_id = _optional_int(data, "link_id", 1, 2**53 - 1)
        if link_id is None:
            raise UserFacingError("M_MISSING_PARAM", "The request is missing 'link_id'.")
        card = await self.services.manage.revoke_link(user_id, room_id, link_id)
        return {"link": attrs.asdict(card)}

    async def check_rules(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        rules, description = self.services.manage.check_rules(
            require_string(data, "rules", RULES_MAX)
        )
        return {"rules": [attrs.asdict(rule) for rule in rules], "description": description}

    async def providers(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        providers, unavailable = self.services.manage.provider_list()
        server = self.services.manage.registration_server()
        return {
            "providers": providers,
            "unavailable": unavailable,
            # Where the panel's "new accounts" switch creates them; null: no switch.
            "registration": None if server is None else {"server_name": server},
        }

    async def create_binding(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        rules = require_string(data, "rules", RULES_MAX)
        card, notes = await self.services.manage.create_binding(
            user_id, room_id, rules, _room_list(data, "rooms"), _optional_bool(data, "register")
        )
        return {"binding": attrs.asdict(card), "url": card.url, "notes": notes}

    async def remove_binding(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        binding = require_string(data, "binding", 64)
        card = await self.services.manage.remove_binding(user_id, room_id, binding)
        return {"binding": attrs.asdict(card)}

    async def set_policy(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        binding = require_string(data, "binding", 64)
        policy = require_string(data, "policy", 16)
        grace = _optional_string(data, "grace", 32)
        card, notes = await self.services.manage.set_policy(
            user_id, room_id, binding, policy, grace
        )
        return {"binding": attrs.asdict(card), "notes": notes}

    async def recheck(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        binding = require_string(data, "binding", 64)
        outcome = await self.services.manage.recheck(user_id, room_id, binding)
        return {"outcome": outcome.outcome, "detail": outcome.detail, "calls": outcome.calls}

    async def retry_invite(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        room_id = _room_id(data)
        person = require_string(data, "user_id", USER_ID_MAX)
        queued = await self.services.manage.retry_invite(user_id, room_id, person)
        return {"queued": list(queued)}


# -- bodies ----------------------------------------------------------------------------


def _room_id(data: dict[str, Any]) -> str:
    # Its shape is judged with the rest of the refusal (ManagedRooms.require): a malformed
    # room ID is answered as any room the person may not manage.
    return require_string(data, "room_id", ROOM_ID_MAX)


def _optional_string(data: dict[str, Any], key: str, max_length: int) -> str | None:
    if data.get(key) is None:
        return None
    return require_string(data, key, max_length)


def _optional_bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UserFacingError("M_INVALID_PARAM", f"'{key}' must be true or false.")
    return value


def _optional_int(data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserFacingError(
            "M_INVALID_PARAM", f"'{key}' must be a whole number from {low} to {high}."
        )
    return value


def _room_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ROOMS_PER_LINK:
        raise UserFacingError(
            "M_INVALID_PARAM", f"'{key}' must be a list of at most {MAX_ROOMS_PER_LINK} room IDs."
        )
    return [require_string({key: item}, key, ROOM_ID_MAX) for item in value]
