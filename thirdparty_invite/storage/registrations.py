"""Registration tokens minted for people without a Matrix account, and the opt-ins.

The token itself is kept (not a hash): it is needed to delete it at the homeserver when it
expires unused, and to hand it again to the browser session that asked for it. It is
single-use, lives `registration.token_lifetime`, and is worth nothing once used. Caps:
- one token per external account per binding: `registration_token_accounts`' primary key;
- the per-account quota counts the token as a Matrix ID (`account_slots` plus live tokens);
- the daily cap: a counter per UTC day taken with a conditional UPDATE, as a link's uses.
"""

from __future__ import annotations

from typing import Any

import attrs
from mautrix.util.async_db import Connection, Database

_TABLES = {"binding": "bindings", "link": "invite_links"}
_COLUMNS = (
    "id, token, session_hash, binding_id, link_id, accounts, minted_at, expires_at, used_at,"
    " claimed_by"
)


async def create_registration_tables(conn: Connection, serial: str) -> None:
    """Migration v7 (storage/migrations.py)."""
    # Opt-in per link and binding (`--register`).
    for table in _TABLES.values():
        await conn.execute(
            f"ALTER TABLE {table} ADD COLUMN offers_registration INTEGER NOT NULL DEFAULT 0"
        )
    # `token` is NULL while the homeserver is being asked; `accounts` are the binding's
    # external accounts it counts against ("provider:id ..."); claimed_by is the Matrix ID
    # it admitted; used_at: the homeserver said an account was made with it.
    await conn.execute(
        f"""CREATE TABLE registration_tokens (
            id            {serial},
            token         TEXT UNIQUE,
            session_hash  TEXT NOT NULL,
            binding_id    BIGINT,
            link_id       BIGINT,
            accounts      TEXT NOT NULL DEFAULT '',
            minted_at     BIGINT NOT NULL,
            expires_at    BIGINT NOT NULL,
            used_at       BIGINT,
            claimed_by    TEXT,
            claimed_at    BIGINT
        )"""
    )
    await conn.execute(
        "CREATE INDEX registration_tokens_expires_idx ON registration_tokens (expires_at)"
    )
    await conn.execute(
        """CREATE TABLE registration_token_accounts (
            binding_id   BIGINT NOT NULL,
            provider     TEXT NOT NULL,
            external_id  TEXT NOT NULL,
            token_id     BIGINT NOT NULL REFERENCES registration_tokens (id) ON DELETE CASCADE,
            PRIMARY KEY (binding_id, provider, external_id)
        )"""
    )
    await conn.execute(
        "CREATE TABLE registration_days (day TEXT PRIMARY KEY, minted INTEGER NOT NULL)"
    )


@attrs.frozen
class MintedToken:
    id: int
    token: str | None = attrs.field(repr=False)
    session_hash: str
    binding_id: int | None
    link_id: int | None
    accounts: tuple[tuple[str, str], ...]  # (provider, external id)
    minted_at: int
    expires_at: int
    used_at: int | None
    claimed_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> MintedToken:
        accounts = tuple(
            tuple(a.split(":", 1)) for a in (row["accounts"] or "").split(" ") if ":" in a
        )
        return cls(
            id=int(row["id"]),
            token=row["token"],
            session_hash=row["session_hash"],
            binding_id=_int(row["binding_id"]),
            link_id=_int(row["link_id"]),
            accounts=accounts,  # type: ignore[arg-type]
            minted_at=int(row["minted_at"]),
            expires_at=int(row["expires_at"]),
            used_at=_int(row["used_at"]),
            claimed_by=row["claimed_by"],
        )


class Refused(Exception):
    """A token cannot be reserved: `why` is "account_has_token", "account_full" (with the
    provider), "daily_cap" or "link_full"."""

    def __init__(self, why: str, provider: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.provider = provider


@attrs.frozen
class Reservation:
    binding_id: int | None
    link_id: int | None
    accounts: tuple[tuple[str, str], ...]
    session_hash: str
    now: int
    expires_at: int
    day: str
    daily_cap: int
    max_ids: int = 1  # Matrix IDs per external account and binding
    link_uses_left: int | None = None  # for a link with a use limit


class RegistrationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def offers(self, kind: str, item_id: int) -> bool:
        value = await self.db.fetchval(
            f"SELECT offers_registration FROM {_TABLES[kind]} WHERE id=$1", item_id
        )
        return bool(value)

    async def set_offers(self, kind: str, item_id: int, on: bool) -> None:
        await self.db.execute(
            f"UPDATE {_TABLES[kind]} SET offers_registration=$2 WHERE id=$1", item_id, int(on)
        )

    async def live_of_session(
        self, session_hash: str, binding_id: int | None, link_id: int | None, now: int
    ) -> MintedToken | None:
        """The session's token for this binding or link that can still be used."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE session_hash=$1"
            " AND (binding_id=$2 OR link_id=$3) AND token IS NOT NULL AND expires_at>$4"
            " AND used_at IS NULL AND claimed_by IS NULL ORDER BY id DESC LIMIT 1",
            session_hash,
            binding_id,
            link_id,
            now,
        )
        return None if row is None else MintedToken.from_row(row)

    async def reserve(self, r: Reservation) -> int:
        """A row for a token about to be minted, in one transaction with every cap; its
        id. Raises Refused."""
        async with self.db.acquire() as conn, conn.transaction():
            for provider, external_id in r.accounts:
                seats = await conn.fetchval(
                    "SELECT COUNT(*) FROM account_slots WHERE binding_id=$1 AND provider=$2"
                    " AND external_id=$3",
                    r.binding_id,
                    provider,
                    external_id,
                )
                if int(seats) + 1 > r.max_ids:
                    raise Refused("account_full", provider)
            if r.link_uses_left is not None:
                live = await conn.fetchval(
                    "SELECT COUNT(*) FROM registration_tokens WHERE link_id=$1"
                    " AND expires_at>$2 AND used_at IS NULL AND claimed_by IS NULL",
                    r.link_id,
                    r.now,
                )
                if int(live) >= r.link_uses_left:
                    raise Refused("link_full")
            token_id = await conn.fetchval(
                "INSERT INTO registration_tokens (session_hash, binding_id, link_id, accounts,"
                " minted_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                r.session_hash,
                r.binding_id,
                r.link_id,
                " ".join(f"{p}:{e}" for p, e in r.accounts),
                r.now,
                r.expires_at,
            )
            for provider, external_id in r.accounts:
                taken = await conn.fetchval(
                    "INSERT INTO registration_token_accounts (binding_id, provider,"
                    " external_id, token_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                    " RETURNING token_id",
                    r.binding_id,
                    provider,
                    external_id,
                    token_id,
                )
                if taken is None:
                    raise Refused("account_has_token", provider)
            await conn.execute(
                "INSERT INTO registration_days (day, minted) VALUES ($1, 0)"
                " ON CONFLICT (day) DO NOTHING",
                r.day,
            )
            counted = await conn.fetchval(
                "UPDATE registration_days SET minted = minted + 1 WHERE day=$1 AND minted<$2"
                " RETURNING minted",
                r.day,
                r.daily_cap,
            )
            if counted is None:
                raise Refused("daily_cap")
        return int(token_id)

    async def minted(self, token_id: int, token: str) -> None:
        await self.db.execute(
            "UPDATE registration_tokens SET token=$2 WHERE id=$1", token_id, token
        )

    async def release(self, token_id: int, day: str | None) -> None:
        """Forget a reservation whose token was never minted (or was deleted unused);
        `day`: give its count back to that day's cap."""
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM registration_token_accounts WHERE token_id=$1", token_id
            )
            await conn.execute("DELETE FROM registration_tokens WHERE id=$1", token_id)
            if day is not None:
                await conn.execute(
                    "UPDATE registration_days SET minted = minted - 1 WHERE day=$1 AND minted>0",
                    day,
                )

    async def by_token(self, token: str) -> MintedToken | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE token=$1", token
        )
        return None if row is None else MintedToken.from_row(row)

    @staticmethod
    async def claim(conn: Connection, token_id: int, user_id: str, now: int) -> bool:
        """Mark the token as the one that admitted `user_id`; False when it admitted
        someone already (in the grant's transaction)."""
        claimed = await conn.fetchval(
            "UPDATE registration_tokens SET claimed_by=$2, claimed_at=$3,"
            " used_at=COALESCE(used_at, $3) WHERE id=$1 AND claimed_by IS NULL RETURNING id",
            token_id,
            user_id,
            now,
        )
        return claimed is not None

    async def mark_used(self, token_id: int, now: int) -> None:
        await self.db.execute(
            "UPDATE registration_tokens SET used_at=$2 WHERE id=$1 AND used_at IS NULL",
            token_id,
            now,
        )

    async def expired_unused(self, now: int, limit: int = 100) -> list[MintedToken]:
        """Tokens past their expiry that were not seen used (the homeserver may still say
        an account was made with one)."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE expires_at<=$1"
            " AND used_at IS NULL AND claimed_by IS NULL ORDER BY expires_at LIMIT $2",
            now,
            limit,
        )
        return [MintedToken.from_row(row) for row in rows]

    async def minted_on(self, day: str) -> int:
        value = await self.db.fetchval("SELECT minted FROM registration_days WHERE day=$1", day)
        return int(value or 0)


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
