"""Browser sessions opened after a Matrix ID was proven: random ids, stored hashed.

Opening a session is where a verified OpenID token is spent: the session row carries the
token's hash under a unique index, so one INSERT both spends the token and opens the
session, and a replayed token (even one whose session was closed since) opens nothing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from ..durations import now_ms
from ..errors import UserFacingError
from ..identity.verifier import VerifiedToken
from ..storage import Storage, WebSession

COOKIE_NAME = "tpi_session"
# The user of a session opened for someone with no Matrix account yet: they walk a
# binding's providers before registering (services/registration.py). Only `get_unregistered`
# returns such a session, so no route that acts for a Matrix ID ever sees one.
NO_MATRIX_ID = ""

log = logging.getLogger(__name__)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def token_replayed() -> UserFacingError:
    """The error for an OpenID token that was already spent."""
    return UserFacingError(
        "TPI_TOKEN_REPLAYED",
        "This sign-in was already used. Sign in again to get a fresh one.",
        401,
    )


class WebSessionService:
    def __init__(self, storage: Storage, lifetime_seconds: float) -> None:
        self.storage = storage
        self.lifetime_ms = int(lifetime_seconds * 1000)

    async def open(self, verified: VerifiedToken) -> tuple[str, WebSession]:
        """Spend the verified token and open a session: its id is for the cookie only (the
        database keeps its hash). Raises `UserFacingError` TPI_TOKEN_REPLAYED when the token
        was spent before."""
        session_id = secrets.token_urlsafe(32)
        now = now_ms()
        session = WebSession(verified.user_id, now, now + self.lifetime_ms)
        opened = await self.storage.sessions.create(
            _hash(session_id),
            verified.user_id,
            session.created_at,
            session.expires_at,
            verified.token_hash,
            verified.expires_at,
        )
        if not opened:
            log.info("Refused a replayed OpenID token for %s", verified.user_id)
            raise token_replayed()
        return session_id, session

    async def get(self, session_id: str | None) -> WebSession | None:
        """The session of a proven Matrix ID (never one that has none yet)."""
        session = await self._get(session_id)
        return None if session is None or session.user_id == NO_MATRIX_ID else session

    async def get_unregistered(self, session_id: str | None) -> WebSession | None:
        """The session of someone without a Matrix account yet (see open_unregistered)."""
        session = await self._get(session_id)
        return session if session is not None and session.user_id == NO_MATRIX_ID else None

    async def _get(self, session_id: str | None) -> WebSession | None:
        if not session_id or len(session_id) > 128:
            return None
        return await self.storage.sessions.get_valid(_hash(session_id), now_ms())

    async def close(self, session_id: str) -> None:
        await self.storage.sessions.end(_hash(session_id), now_ms())

    async def open_proven(self, user_id: str) -> tuple[str, WebSession]:
        """A session for a Matrix ID proven another way than by an OpenID token: the
        person redeemed a one-time sign-in link the bot sent to them in a direct chat."""
        session_id = secrets.token_urlsafe(32)
        now = now_ms()
        session = WebSession(user_id, now, now + self.lifetime_ms)
        await self.storage.sessions.create(
            _hash(session_id), user_id, session.created_at, session.expires_at, None, 0
        )
        return session_id, session

    async def open_unregistered(self) -> tuple[str, WebSession]:
        """A session for someone who has no Matrix account yet (NO_MATRIX_ID)."""
        return await self.open_proven(NO_MATRIX_ID)
