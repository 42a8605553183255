"""The browser session cookie: one name, path and flag set for every route that uses it.

HttpOnly (no script reads it), SameSite=Lax (sent on the top-level return from a provider
or homeserver, never on another site's background requests), Secure over https, and
limited to the instance's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from yarl import URL

from ..errors import UserFacingError
from ..services.web_sessions import COOKIE_NAME
from .support import read_cookie

if TYPE_CHECKING:
    from ..services.web_sessions import WebSessionService
    from ..storage import WebSession


class SessionCookie:
    def __init__(self, public_base_url: URL) -> None:
        self.secure = public_base_url.scheme == "https"
        self.path = public_base_url.path or "/"

    def read(self, request: web.Request) -> str | None:
        return read_cookie(request, COOKIE_NAME)

    async def require(
        self, request: web.Request, sessions: WebSessionService
    ) -> tuple[str, WebSession]:
        """(session id, session) of a signed-in browser, or 401."""
        session_id = self.read(request)
        session = await sessions.get(session_id)
        if session is None or session_id is None:
            raise UserFacingError(
                "M_MISSING_TOKEN",
                "You are not signed in (or your session ended). Sign in with your Matrix "
                "account again.",
                401,
            )
        return session_id, session

    def set(self, response: web.StreamResponse, session_id: str, session: WebSession) -> None:
        response.set_cookie(
            COOKIE_NAME,
            session_id,
            max_age=int((session.expires_at - session.created_at) / 1000),
            path=self.path,
            httponly=True,
            samesite="Lax",
            secure=self.secure,
        )

    def clear(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE_NAME, path=self.path)
