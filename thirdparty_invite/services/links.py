"""Invite links: create, inspect, claim (atomically counted), list and revoke."""

from __future__ import annotations

import hashlib
import secrets

import attrs
from mautrix.util.async_db import Connection

from ..config import LinkSettings
from ..durations import DurationError, format_duration, now_ms, parse_duration
from ..errors import UserFacingError
from ..storage import InviteLink, Storage
from .grants import GrantService, GrantSource

# 24 random bytes = 192 bits, well above the 128-bit floor; URL-safe base64 of 32 chars.
TOKEN_BYTES = 24
MAX_TOKEN_LENGTH = 128

_UNUSABLE_MESSAGES = {
    "revoked": ("TPI_LINK_REVOKED", "This invite link was revoked by a room admin."),
    "expired": (
        "TPI_LINK_EXPIRED",
        "This invite link has expired. Ask a room admin for a new one.",
    ),
    "used_up": (
        "TPI_LINK_USED_UP",
        "This invite link has been used as many times as allowed. Ask a room admin for a new one.",
    ),
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def unusable_error(reason: str) -> UserFacingError:
    errcode, message = _UNUSABLE_MESSAGES[reason]
    return UserFacingError(errcode, message, 410)


@attrs.frozen
class ClaimResult:
    link: InviteLink
    grant_id: int
    first_claim: bool  # False when this person had claimed the link before


class LinkService:
    def __init__(self, storage: Storage, grants: GrantService) -> None:
        self.storage = storage
        self.grants = grants

    async def create(
        self,
        created_by: str,
        rooms: tuple[str, ...],
        max_uses: int | None,
        expires_in: float | None,
    ) -> tuple[InviteLink, str]:
        """A new link and its token; the token is returned this once and never stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = now_ms()
        expires_at = None if expires_in is None else now + int(expires_in * 1000)
        link = await self.storage.links.create(
            hash_token(token), created_by, rooms, expires_at, max_uses, now
        )
        for room_id in rooms:  # each room's audit log shows it
            await self.storage.audit.add(
                now, created_by, "link_created", room_id, str(link.id), describe_limits(link, now)
            )
        return link, token

    async def inspect(self, token: str) -> InviteLink:
        """The link behind a token, usable or not; unknown tokens raise."""
        _check_token_shape(token)
        link = await self.storage.links.get_by_token_hash(hash_token(token))
        if link is None:
            raise UserFacingError(
                "TPI_LINK_UNKNOWN",
                "This invite link is not valid. Check that you copied all of it.",
                404,
            )
        return link

    async def claim(self, token: str, user_id: str) -> ClaimResult:
        """Spend one use of the link for this person and queue their invites.

        A person who already claimed the link gets their invites queued again without
        spending another use, as long as the link is not revoked or expired.
        """
        link = await self.inspect(token)
        now = now_ms()
        reason = link.unusable_reason(now)
        if reason in ("revoked", "expired"):
            raise unusable_error(reason)

        async def take_use(conn: Connection, now: int) -> None:
            if not await self.storage.links.take_use(conn, link.id, now):
                fresh = await self.storage.links.get(link.id)
                raise unusable_error((fresh.unusable_reason(now) if fresh else None) or "used_up")

        source = GrantSource(link_id=link.id)
        grant = await self.grants.grant(user_id, link.rooms, source, take_use)
        return ClaimResult(link=link, grant_id=grant.id, first_claim=grant.first)

    async def get(self, link_id: int) -> InviteLink | None:
        return await self.storage.links.get(link_id)

    async def for_room(self, room_id: str) -> list[InviteLink]:
        return await self.storage.links.list_for_room(room_id)

    async def revoke(self, link_id: int, revoked_by: str) -> bool:
        now = now_ms()
        revoked = await self.storage.links.revoke(link_id, revoked_by, now)
        link = await self.storage.links.get(link_id) if revoked else None
        for room_id in link.rooms if link else ():
            await self.storage.audit.add(now, revoked_by, "link_revoked", room_id, str(link_id))
        return revoked


def _check_token_shape(token: object) -> None:
    if (
        not isinstance(token, str)
        or not 16 <= len(token) <= MAX_TOKEN_LENGTH
        or not all(c.isalnum() or c in "-_" for c in token)
    ):
        raise UserFacingError(
            "TPI_LINK_UNKNOWN",
            "This invite link is not valid. Check that you copied all of it.",
            404,
        )


def describe_limits(link: InviteLink, now: int) -> str:
    """ "3 of 10 uses left, expires in 6d 23h" and the like."""
    parts = []
    if link.max_uses is None:
        parts.append(f"{link.uses} used, no use limit")
    else:
        parts.append(f"{link.uses_left()} of {link.max_uses} uses left")
    if link.expires_at is None:
        parts.append("never expires")
    elif link.expires_at > now:
        parts.append(f"expires in {format_duration((link.expires_at - now) / 1000)}")
    else:
        parts.append("expired")
    return ", ".join(parts)


def expiry_seconds(settings: LinkSettings, expires: str | None) -> float | None:
    """Seconds until a new link expires, from what an admin typed (`7d`, `never`, or
    nothing for the operator's default); M_INVALID_PARAM saying what is allowed."""
    if expires is None:
        return settings.default_expiry
    if expires.lower() == "never":
        return None
    try:
        seconds = parse_duration(expires)
    except DurationError:
        raise UserFacingError(
            "M_INVALID_PARAM", "--expires takes a duration such as 30m, 12h, 7d or never."
        ) from None
    if not 60 <= seconds <= settings.max_expiry:
        raise UserFacingError(
            "M_INVALID_PARAM",
            f"--expires must be between 1m and {format_duration(settings.max_expiry)}.",
        )
    return seconds
