"""JSON API of the binding pages (rooms open to people who prove something at a provider).

POST /api/bindings/inspect   what a binding asks for, in words, and where it leads
POST /api/bindings/progress  this browser's walk through the binding's providers
POST /api/oauth/start        leave for one provider's sign-in (returns its URL)
GET  /api/oauth/callback     the one URL providers send people back to
POST /api/session/ticket     a one-time sign-in link from the bot's direct chat -> session
Described in web/openapi.json and docs/API.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
import attrs

from .api import room_json
from .origins import OriginCheck
from .session_cookie import SessionCookie
from .support import read_json_object, require_string

if TYPE_CHECKING:
    from ..services.bindings import BindingView
    from ..services.container import Services


class BindingsAPI:
    def __init__(self, services: Services, cookie: SessionCookie, origin: OriginCheck) -> None:
        self.services = services
        self.cookie = cookie
        self.origin = origin
        self.max_body = services.settings.web.max_body_bytes

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/bindings/inspect", self.inspect)
        router.add_post("/api/bindings/progress", self.progress)
        router.add_post("/api/oauth/start", self.start_sign_in)
        router.add_get("/api/oauth/callback", self.callback)
        router.add_post("/api/session/ticket", self.redeem_ticket)

    async def inspect(self, request: web.Request) -> web.Response:
        data = await read_json_object(request, self.max_body)
        view = await self.services.bindings.get(require_string(data, "binding", 64))
        return web.json_response(await self._describe(view))

    async def _describe(self, view: BindingView) -> dict[str, Any]:
        rooms = await self.services.room_directory.describe(view.binding.rooms)
        return {
            "binding": view.binding.public_id,
            "description": view.description,
            "rules": [
                {
                    "provider": r.provider.id,
                    "provider_name": r.provider.display_name,
                    "description": r.description,
                }
                for r in view.rules
            ],
            "providers": [{"id": p.id, "name": p.display_name} for p in view.providers],
            "rooms": [room_json(room) for room in rooms],
            "bot": attrs.asdict(self.services.room_directory.bot_contact()),
        }

    async def progress(self, request: web.Request) -> web.Response:
        session_id, session = await self.cookie.require(request, self.services.sessions)
        data = await read_json_object(request, self.max_body)
        progress = await self.services.provider_signin.progress(
            session_id, session.user_id, require_string(data, "binding", 64)
        )
        return web.json_response(
            {
                "user_id": session.user_id,
                "providers": [attrs.asdict(p) for p in progress.providers],
                "granted": progress.granted is not None,
            }
        )

    async def start_sign_in(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        session_id, session = await self.cookie.require(request, self.services.sessions)
        data = await read_json_object(request, self.max_body)
        url = await self.services.provider_signin.start(
            session_id,
            session.user_id,
            require_string(data, "binding", 64),
            require_string(data, "provider", 64),
        )
        return web.json_response({"authorize_url": url})

    async def callback(self, request: web.Request) -> web.Response:
        """Back from a provider: take the state, start the check, and send the browser to
        the binding's page at once (it shows the check running). Whatever the query holds,
        the answer is a redirect to our page, which explains."""
        query = request.query
        result = await self.services.provider_signin.callback(
            self.cookie.read(request),
            _short(query.get("state")),
            _short(query.get("code"), 2048),
            _short(query.get("error")),
        )
        if result.public_id is not None:
            target = self.services.binding_url(result.public_id)
        else:
            target = str(self.services.public_base_url / "join") + f"#problem={result.problem}"
        raise web.HTTPSeeOther(target, headers={"Cache-Control": "no-store"})

    async def redeem_ticket(self, request: web.Request) -> web.Response:
        self.origin.check(request)
        data = await read_json_object(request, self.max_body)
        user_id, view = await self.services.provider_signin.redeem_ticket(
            require_string(data, "ticket", 128)
        )
        session_id, session = await self.services.sessions.open_proven(user_id)
        response = web.json_response(
            {
                "user_id": user_id,
                "expires_at": session.expires_at,
                "binding": view.binding.public_id,
            }
        )
        self.cookie.set(response, session_id, session)
        return response


def _short(value: str | None, limit: int = 512) -> str | None:
    """A query value, or None when absent or absurdly long (never echoed anywhere)."""
    return value if value is not None and len(value) <= limit else None
