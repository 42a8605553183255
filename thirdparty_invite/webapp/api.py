"""JSON API under the plugin's web path; the pages in web/ are its only intended client.

POST /api/session            OpenID token -> web session cookie
GET|DELETE /api/session      who am I / sign out
POST /api/links/inspect      what a link leads to, and whether it still works
POST /api/links/claim        spend a use of the link and queue the invites
GET /api/invites             the signed-in person's invites and how they went
Described in web/openapi.json (served at /api/openapi.json) and docs/API.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs

from ..durations import now_ms
from .origins import OriginCheck
from .session_cookie import SessionCookie
from .support import read_json_object, require_string

if TYPE_CHECKING:
    from ..services.container import Services
    from ..services.room_directory import RoomSummary
    from ..storage import QueuedInvite, WebSession


class WebAPI:
    def __init__(self, services: Services, cookie: SessionCookie, origin: OriginCheck) -> None:
        self.services = services
        self.cookie = cookie
        self.origin = origin
        self.max_body = services.settings.web.max_body_bytes

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/session", self.open_session)
        router.add_get("/api/session", self.get_session)
        router.add_delete("/api/session", self.close_session)
        router.add_post("/api/links/inspect", self.inspect_link)
        router.add_post("/api/links/claim", self.claim_link)
        router.add_get("/api/invites", self.list_invites)

    async def open_session(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        data = await read_json_object(request, self.max_body)
        token = require_string(data, "access_token")
        server_name = require_string(data, "matrix_server_name", 255)
        verified = await self.services.verifier.verify(token, server_name)
        # Spends the token and opens the session in one write (TPI_TOKEN_REPLAYED if spent).
        session_id, session = await self.services.sessions.open(verified)
        response = web.json_response(
            {"user_id": verified.user_id, "expires_at": session.expires_at}
        )
        self.cookie.set(response, session_id, session)
        return response

    async def _session(self, request: web.Request) -> WebSession:
        _, session = await self.cookie.require(request, self.services.sessions)
        return session

    async def get_session(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        return web.json_response({"user_id": session.user_id, "expires_at": session.expires_at})

    async def close_session(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        session_id = self.cookie.read(request)
        if session_id:
            await self.services.sessions.close(session_id)
        response = web.json_response({})
        self.cookie.clear(response)
        return response

    async def inspect_link(self, request: web.Request) -> web.Response:
        data = await read_json_object(request, self.max_body)
        link = await self.services.links.inspect(require_string(data, "token", 128))
        return web.json_response(
            {
                "status": link.unusable_reason(now_ms()) or "active",
                "uses_left": link.uses_left(),
                "expires_at": link.expires_at,
                "rooms": await self._rooms(link.rooms),
                # For "message the bot instead": a DM with `!invitebot claim <token>`.
                "bot": attrs.asdict(self.services.room_directory.bot_contact()),
            }
        )

    async def claim_link(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        session = await self._session(request)
        data = await read_json_object(request, self.max_body)
        result = await self.services.links.claim(
            require_string(data, "token", 128), session.user_id
        )
        return web.json_response(
            {
                "grant_id": result.grant_id,
                "first_claim": result.first_claim,
                "rooms": await self._rooms(result.link.rooms),
            },
            status=202,
        )

    async def list_invites(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        items = await self.services.queue.invites_of(session.user_id)
        rooms = await self._rooms([item.room_id for item in items])
        invites = [_invite_json(item, room) for item, room in zip(items, rooms, strict=True)]
        return web.json_response({"invites": invites})

    async def _rooms(self, room_ids: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
        summaries = await self.services.room_directory.describe(room_ids)
        return [room_json(summary) for summary in summaries]


def room_json(summary: RoomSummary) -> dict[str, Any]:
    """A room as the pages get it: `client` only when the operator offers a web client."""
    data = attrs.asdict(summary)
    if data["client"] is None:
        del data["client"]
    return data


def _invite_json(item: QueuedInvite, room: dict[str, Any]) -> dict[str, Any]:
    return {
        **room,
        "state": item.state,
        "outcome": item.outcome,
        "errcode": item.errcode,
        "error": item.error,
        "updated_at": item.updated_at,
    }
