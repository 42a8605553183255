"""JSON API for people without a Matrix account: qualify first, then get a registration token.

POST /api/register/offer     whether a binding or link offers a new account, and where
POST /api/register/session   a browser session with no Matrix ID yet (the cookie)
POST /api/register/start     leave for one provider of the binding, in that session
POST /api/register/progress  that session's walk through the binding's providers
POST /api/register/token     the single-use registration token, once qualified
POST /api/register/claim     the new account (signed in as usual) is admitted by its token
Described in web/openapi.json and docs/API.md. The token is in one answer only (no-store)
and in no log line; the homeserver's admin credentials never leave the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs

from ..errors import UserFacingError
from .api import room_json
from .origins import OriginCheck
from .session_cookie import SessionCookie
from .support import read_json_object, require_string

if TYPE_CHECKING:
    from ..services.container import Services
    from ..services.registration import IssuedToken

NO_STORE = {"Cache-Control": "no-store"}


class RegistrationAPI:
    def __init__(self, services: Services, cookie: SessionCookie, origin: OriginCheck) -> None:
        self.services = services
        self.registration = services.registration
        self.cookie = cookie
        self.origin = origin
        self.max_body = services.settings.web.max_body_bytes

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/register/offer", self.offer)
        router.add_post("/api/register/session", self.open_session)
        router.add_post("/api/register/start", self.start)
        router.add_post("/api/register/progress", self.progress)
        router.add_post("/api/register/token", self.token)
        router.add_post("/api/register/claim", self.claim)

    async def offer(self, request: web.Request) -> web.Response:
        data = await read_json_object(request, self.max_body)
        kind, value = _binding_or_link(data)
        offered = False
        if self.registration.minter is not None:
            if kind == "binding":
                view = await self.services.bindings.get(value)
                offered = await self.registration.offered("binding", view.binding.id)
            else:
                link = await self.services.links.inspect(value)
                offered = await self.registration.offered("link", link.id)
        settings = self.services.settings.registration
        answer: dict[str, Any] = {"offered": offered}
        if offered:
            answer |= {
                "server_name": settings.server_name,
                "client_url": settings.client_url or None,
                "signup_url": settings.signup_url or None,
            }
        return web.json_response(answer)

    async def open_session(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        self.registration.require_enabled()
        session_id, session = await self.services.sessions.open_unregistered()
        response = web.json_response({"expires_at": session.expires_at})
        self.cookie.set(response, session_id, session)
        return response

    async def _session_id(self, request: web.Request) -> str:
        session_id = self.cookie.read(request)
        if await self.services.sessions.get_unregistered(session_id) is None:
            raise UserFacingError(
                "M_MISSING_TOKEN",
                "This step belongs to making a new account, and that session ended. Start "
                "again from the invite's page.",
                401,
            )
        assert session_id is not None
        return session_id

    async def start(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        session_id = await self._session_id(request)
        data = await read_json_object(request, self.max_body)
        url = await self.registration.start(
            session_id,
            require_string(data, "binding", 64),
            require_string(data, "provider", 64),
        )
        return web.json_response({"authorize_url": url})

    async def progress(self, request: web.Request) -> web.Response:
        session_id = await self._session_id(request)
        data = await read_json_object(request, self.max_body)
        progress = await self.registration.progress(
            session_id, require_string(data, "binding", 64)
        )
        providers = [attrs.asdict(p) for p in progress.providers]
        return web.json_response(
            {
                "providers": providers,
                "qualified": bool(providers) and all(p["state"] == "passed" for p in providers),
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        session_id = await self._session_id(request)
        data = await read_json_object(request, self.max_body)
        kind, value = _binding_or_link(data)
        if kind == "binding":
            issued = await self.registration.mint_for_binding(session_id, value)
        else:
            issued = await self.registration.mint_for_link(session_id, value)
        return web.json_response(_issued_json(issued), headers=NO_STORE)

    async def claim(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        _, session = await self.cookie.require(request, self.services.sessions)
        data = await read_json_object(request, self.max_body)
        link = require_string(data, "link", 128) if "link" in data else None
        grant = await self.registration.claim(
            session.user_id, require_string(data, "token", 64), link
        )
        rooms = await self.services.room_directory.describe(grant.rooms)
        return web.json_response(
            {"grant_id": grant.id, "rooms": [room_json(room) for room in rooms]}, status=202
        )


def _binding_or_link(data: dict[str, Any]) -> tuple[str, str]:
    if ("binding" in data) == ("link" in data):
        raise UserFacingError("M_MISSING_PARAM", "Send either 'binding' or 'link'.")
    if "binding" in data:
        return "binding", require_string(data, "binding", 64)
    return "link", require_string(data, "link", 128)


def _issued_json(issued: IssuedToken) -> dict[str, Any]:
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "server_name": issued.server_name,
        "client_url": issued.client_url or None,
        "signup_url": issued.signup_url or None,
    }
