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
    # When the row was (last) queued; retries leave it alone. An invite the bot sent
    # after this time was sent for this row.
    queued_at: int = 0
    # "invite", or "kick": a loss the binding's policy acts on travels the same queue,
    # with the reason the person reads.
    action: str = "invite"
    reason: str | None = None

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
            queued_at=int(row["queued_at"]),
            action=row["action"],
            reason=row["reason"],
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


@attrs.frozen
class BindingRule:
    provider: str
    rule: str  # the provider's canonical text of the rule, parsed again when used


@attrs.frozen
class Binding:
    id: int  # internal; never shown
    public_id: str  # random: in links and commands, so nobody can walk the list
    created_by: str
    created_at: int
    policy: str  # on loss: "kick", "notify" or "dry-run"
    removed_at: int | None
    rules: tuple[BindingRule, ...]
    rooms: tuple[str, ...]
    grace_ms: int = 0  # how long a loss waits before the policy acts

    @classmethod
    def from_row(cls, row: Any, rules: tuple[BindingRule, ...], rooms: tuple[str, ...]) -> Binding:
        return cls(
            id=int(row["id"]),
            public_id=row["public_id"],
            created_by=row["created_by"],
            created_at=int(row["created_at"]),
            policy=row["policy"],
            removed_at=_int_or_none(row["removed_at"]),
            rules=rules,
            rooms=rooms,
            grace_ms=int(row["grace_ms"]),
        )


@attrs.frozen
class OAuthState:
    state_hash: str
    session_hash: str
    user_id: str
    binding_id: int
    provider: str
    code_verifier: str | None
    nonce: str | None
    created_at: int
    expires_at: int

    @classmethod
    def from_row(cls, row: Any) -> OAuthState:
        return cls(
            state_hash=row["state_hash"],
            session_hash=row["session_hash"],
            user_id=row["user_id"],
            binding_id=int(row["binding_id"]),
            provider=row["provider"],
            code_verifier=row["code_verifier"],
            nonce=row["nonce"],
            created_at=int(row["created_at"]),
            expires_at=int(row["expires_at"]),
        )


@attrs.frozen
class BindingAttempt:
    """What one provider said about one rule set of a binding, in one browser session."""

    session_hash: str
    binding_id: int
    provider: str
    # "checking" (the callback's check is running), "passed", "failed" (the provider said
    # no, or the account's quota is spent) or "error" (nothing counts: could not tell, or
    # the person cancelled).
    outcome: str
    external_id: str | None
    display_name: str | None
    reason: str
    remedy: str
    at: int
    expires_at: int
    # Why it did not pass: "not_qualified", "account_in_use", "unknown", "cancelled";
    # None for a pass, a check still running, and rows written before schema v4.
    problem: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> BindingAttempt:
        return cls(
            session_hash=row["session_hash"],
            binding_id=int(row["binding_id"]),
            provider=row["provider"],
            outcome=row["outcome"],
            external_id=row["external_id"],
            display_name=row["display_name"],
            reason=row["reason"],
            remedy=row["remedy"],
            at=int(row["at"]),
            expires_at=int(row["expires_at"]),
            problem=row["problem"],
        )
