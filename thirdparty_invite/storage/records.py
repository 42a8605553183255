"""Rows of the plugin's tables as attrs records."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class InviteLink:
    id: int
    created_by: str
    created_at: int
    expires_at: int | None
    max_uses: int | None
    uses: int
    revoked_at: int | None
    rooms: tuple[str, ...]

    def uses_left(self) -> int | None:
        return None if self.max_uses is None else max(self.max_uses - self.uses, 0)

    def unusable_reason(self, now: int) -> str | None:
        """Why the link can admit nobody now ("revoked", "expired", "used_up"), or None."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used_up"
        return None

    @classmethod
    def from_row(cls, row: Any, rooms: tuple[str, ...]) -> InviteLink:
        return cls(
            id=int(row["id"]),
            created_by=row["created_by"],
            created_at=int(row["created_at"]),
            expires_at=_int_or_none(row["expires_at"]),
            max_uses=_int_or_none(row["max_uses"]),
            uses=int(row["uses"]),
            revoked_at=_int_or_none(row["revoked_at"]),
            rooms=rooms,
        )


@attrs.frozen
class QueuedInvite:
    id: int
    room_id: str
    user_id: str
    grant_id: int | None
    state: str  # "pending" | "done" | "failed"
    outcome: str | None  # "invited" | "already_invited" | "already_joined"
    errcode: str | None
    error: str | None
    attempts: int
    next_attempt_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: Any) -> QueuedInvite:
        return cls(
            id=int(row["id"]),
            room_id=row["room_id"],
            user_id=row["user_id"],
            grant_id=_int_or_none(row["grant_id"]),
            state=row["state"],
            outcome=row["outcome"],
            errcode=row["errcode"],
            error=row["error"],
            attempts=int(row["attempts"]),
            next_attempt_at=int(row["next_attempt_at"]),
            updated_at=int(row["updated_at"]),
        )


@attrs.frozen
class WebSession:
    user_id: str
    created_at: int
    expires_at: int


@attrs.frozen
class AuditEntry:
    id: int
    at: int
    actor: str
    action: str
    room_id: str | None
    target: str | None
    detail: str

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        return cls(
            id=int(row["id"]),
            at=int(row["at"]),
            actor=row["actor"],
            action=row["action"],
            room_id=row["room_id"],
            target=row["target"],
            detail=row["detail"],
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
