"""Sign-ins at providers in progress: OAuth states, what each provider said in a browser
session's walk through a binding, the per-account quota, and DM sign-in tickets."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from .records import BindingAttempt, OAuthState


class SignInStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_state(self, state: OAuthState) -> None:
        await self.db.execute(
            "INSERT INTO oauth_states (state_hash, session_hash, user_id, binding_id, provider,"
            " code_verifier, nonce, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            state.state_hash,
            state.session_hash,
            state.user_id,
            state.binding_id,
            state.provider,
            state.code_verifier,
            state.nonce,
            state.created_at,
            state.expires_at,
        )

    async def take_state(self, state_hash: str, session_hash: str) -> OAuthState | None:
        """The state, removed so it works once, if this browser session started it.

        A state from another session is left alone (and not revealed): its owner can still
        finish their sign-in. Expiry is checked by the caller, who says which it was."""
        row = await self.db.fetchrow(
            "DELETE FROM oauth_states WHERE state_hash=$1 AND session_hash=$2"
            " RETURNING state_hash, session_hash, user_id, binding_id, provider,"
            " code_verifier, nonce, created_at, expires_at",
            state_hash,
            session_hash,
        )
        return None if row is None else OAuthState.from_row(row)

    async def record_attempt(self, attempt: BindingAttempt) -> None:
        await self.db.execute(
            "INSERT INTO binding_attempts (session_hash, binding_id, provider, outcome,"
            " external_id, display_name, reason, remedy, at, expires_at, problem)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (session_hash, binding_id, provider) DO UPDATE SET"
            " outcome=excluded.outcome, external_id=excluded.external_id,"
            " display_name=excluded.display_name, reason=excluded.reason,"
            " remedy=excluded.remedy, at=excluded.at, expires_at=excluded.expires_at,"
            " problem=excluded.problem",
            attempt.session_hash,
            attempt.binding_id,
            attempt.provider,
            attempt.outcome,
            attempt.external_id,
            attempt.display_name,
            attempt.reason,
            attempt.remedy,
            attempt.at,
            attempt.expires_at,
            attempt.problem,
        )

    async def attempts(
        self, session_hash: str, binding_id: int, now: int
    ) -> dict[str, BindingAttempt]:
        rows = await self.db.fetch(
            "SELECT session_hash, binding_id, provider, outcome, external_id, display_name,"
            " reason, remedy, at, expires_at, problem FROM binding_attempts"
            " WHERE session_hash=$1 AND binding_id=$2 AND expires_at>$3",
            session_hash,
            binding_id,
            now,
        )
        return {row["provider"]: BindingAttempt.from_row(row) for row in rows}

    @staticmethod
    async def take_account_slot(
        conn: Connection,
        binding_id: int,
        provider: str,
        external_id: str,
        user_id: str,
        max_ids: int,
        now: int,
        display_name: str | None = None,
    ) -> bool:
        """Count this Matrix ID against the external account's quota for the binding, in
        the grant's transaction; False when the account admits no more Matrix IDs. The
        account's display name is kept on the seat (names change: the latest wins)."""
        held = await conn.fetchval(
            "SELECT slot FROM account_slots WHERE binding_id=$1 AND provider=$2"
            " AND external_id=$3 AND user_id=$4",
            binding_id,
            provider,
            external_id,
            user_id,
        )
        if held is not None:
            if display_name is not None:
                await conn.execute(
                    "UPDATE account_slots SET display_name=$5 WHERE binding_id=$1"
                    " AND provider=$2 AND external_id=$3 AND user_id=$4",
                    binding_id,
                    provider,
                    external_id,
                    user_id,
                    display_name,
                )
            return True
        for slot in range(max_ids):
            taken = await conn.fetchval(
                "INSERT INTO account_slots (binding_id, provider, external_id, slot, user_id,"
                " created_at, display_name) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT DO NOTHING RETURNING slot",
                binding_id,
                provider,
                external_id,
                slot,
                user_id,
                now,
                display_name,
            )
            if taken is not None:
                return True
        return False

    async def add_ticket(
        self, ticket_hash: str, user_id: str, binding_id: int, expires_at: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO signin_tickets (ticket_hash, user_id, binding_id, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            ticket_hash,
            user_id,
            binding_id,
            expires_at,
        )

    async def take_ticket(self, ticket_hash: str, now: int) -> tuple[str, int] | None:
        """(user ID, binding id) of a ticket, which works once and until it expires."""
        row = await self.db.fetchrow(
            "DELETE FROM signin_tickets WHERE ticket_hash=$1 RETURNING user_id, binding_id,"
            " expires_at",
            ticket_hash,
        )
        if row is None or int(row["expires_at"]) <= now:
            return None
        return str(row["user_id"]), int(row["binding_id"])

    async def purge_expired(self, now: int) -> None:
        for table in ("oauth_states", "binding_attempts", "signin_tickets"):
            await self.db.execute(f"DELETE FROM {table} WHERE expires_at<=$1", now)
