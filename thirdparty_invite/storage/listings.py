"""What the providers' member listings showed, kept per binding and rule (its position).

A listing is never held in memory whole. Each page is written as it arrives: its ETag and
member count (`listing_pages`), and a mark for every account on it that holds a seat of
the binding (`listing_marks`, with the page and the run that saw it). A page the provider
answers "not modified" carries its marks into the new run. When every page is in, the
seat holders without a mark of this run are the ones the listing no longer shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from mautrix.util.async_db import Database

# Ids asked about in one statement (SQLite's variable limit is 999 on old builds).
_CHUNK = 400


@attrs.frozen
class SeatHolder:
    user_id: str
    external_id: str


class ListingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def etags(self, binding_id: int, position: int) -> dict[str, str]:
        """ETags of the rule's pages as last read, by page key (a few per 100 members)."""
        rows = await self.db.fetch(
            "SELECT page_key, etag FROM listing_pages"
            " WHERE binding_id=$1 AND position=$2 AND etag IS NOT NULL",
            binding_id,
            position,
        )
        return {row["page_key"]: row["etag"] for row in rows}

    async def record_page(
        self,
        binding_id: int,
        position: int,
        provider: str,
        run_id: int,
        key: str,
        etag: str | None,
        members: Sequence[str],
    ) -> None:
        """A page read in full: its count and ETag, and marks for the seat holders on it."""
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO listing_pages"
                " (binding_id, position, page_key, etag, members, run_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (binding_id, position, page_key) DO UPDATE SET"
                " etag=excluded.etag, members=excluded.members, run_id=excluded.run_id",
                binding_id,
                position,
                key,
                etag,
                len(members),
                run_id,
            )
            unique = sorted(set(members))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ", ".join(f"${n + 5}" for n in range(len(chunk)))
                # Seats first: only admitted accounts get a mark, whatever the page holds.
                await conn.execute(
                    "INSERT INTO listing_marks"
                    " (binding_id, position, external_id, page_key, run_id)"
                    f" SELECT DISTINCT binding_id, {int(position)}, external_id,"
                    " CAST($3 AS TEXT), CAST($4 AS BIGINT)"
                    " FROM account_slots WHERE binding_id=$1 AND provider=$2"
                    f" AND external_id IN ({marks})"
                    " ON CONFLICT (binding_id, position, external_id) DO UPDATE SET"
                    " page_key=excluded.page_key, run_id=excluded.run_id",
                    binding_id,
                    provider,
                    key,
                    run_id,
                    *chunk,
                )
            # Whoever this page showed before and not now is not carried by a later "not
            # modified" answer for it (if they moved to another page, that page marks them).
            await conn.execute(
                "DELETE FROM listing_marks WHERE binding_id=$1 AND position=$2 AND page_key=$3"
                " AND run_id<>$4",
                binding_id,
                position,
                key,
                run_id,
            )

    async def carry_page(self, binding_id: int, position: int, run_id: int, key: str) -> bool:
        """A page the provider says has not changed: its marks count for this run too.
        False when nothing is known of the page (then it cannot be trusted as unchanged)."""
        async with self.db.acquire() as conn, conn.transaction():
            known = await conn.fetchval(
                "UPDATE listing_pages SET run_id=$4"
                " WHERE binding_id=$1 AND position=$2 AND page_key=$3 RETURNING page_key",
                binding_id,
                position,
                key,
                run_id,
            )
            if known is None:
                return False
            await conn.execute(
                "UPDATE listing_marks SET run_id=$4"
                " WHERE binding_id=$1 AND position=$2 AND page_key=$3",
                binding_id,
                position,
                key,
                run_id,
            )
        return True

    async def forget_page(self, binding_id: int, position: int, key: str) -> None:
        """Drop what a page said (its ETag with it), so it is read in full next time."""
        await self.db.execute(
            "DELETE FROM listing_pages WHERE binding_id=$1 AND position=$2 AND page_key=$3",
            binding_id,
            position,
            key,
        )

    async def listed(self, binding_id: int, position: int, run_id: int) -> int:
        """How many held the rule in this run's listing (pages read or carried over)."""
        total = await self.db.fetchval(
            "SELECT COALESCE(SUM(members), 0) FROM listing_pages"
            " WHERE binding_id=$1 AND position=$2 AND run_id=$3",
            binding_id,
            position,
            run_id,
        )
        return int(total)

    async def last_total(self, binding_id: int, position: int) -> int | None:
        """How many held the rule at its last complete listing, if there was one."""
        total = await self.db.fetchval(
            "SELECT members FROM listing_totals WHERE binding_id=$1 AND position=$2",
            binding_id,
            position,
        )
        return None if total is None else int(total)

    async def complete(
        self, binding_id: int, position: int, run_id: int, total: int, now: int
    ) -> None:
        """The rule's listing is complete: pages it no longer has are dropped, and its
        total becomes the one the next listing is compared with."""
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM listing_pages WHERE binding_id=$1 AND position=$2 AND run_id<>$3",
                binding_id,
                position,
                run_id,
            )
            await conn.execute(
                "INSERT INTO listing_totals (binding_id, position, members, at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (binding_id, position)"
                " DO UPDATE SET members=excluded.members, at=excluded.at",
                binding_id,
                position,
                total,
                now,
            )

    async def absent(
        self, binding_id: int, position: int, provider: str, run_id: int
    ) -> list[SeatHolder]:
        """Seat holders of the binding at `provider` whom this run's listing did not show."""
        rows = await self.db.fetch(
            "SELECT s.user_id, s.external_id FROM account_slots s"
            " WHERE s.binding_id=$1 AND s.provider=$3 AND NOT EXISTS ("
            "  SELECT 1 FROM listing_marks m WHERE m.binding_id=s.binding_id"
            "  AND m.position=$2 AND m.external_id=s.external_id AND m.run_id=$4)"
            " ORDER BY s.user_id",
            binding_id,
            position,
            provider,
            run_id,
        )
        return [SeatHolder(row["user_id"], row["external_id"]) for row in rows]

    async def seat_holders(self, binding_id: int) -> list[str]:
        """Everyone holding a seat of the binding (the Matrix IDs it admitted)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM account_slots WHERE binding_id=$1 ORDER BY user_id",
            binding_id,
        )
        return [row["user_id"] for row in rows]

    async def seat_holders_at(self, binding_id: int, provider: str) -> list[SeatHolder]:
        """The binding's seat holders with the account each used at `provider`."""
        rows = await self.db.fetch(
            "SELECT user_id, external_id FROM account_slots WHERE binding_id=$1 AND provider=$2"
            " ORDER BY external_id, user_id",
            binding_id,
            provider,
        )
        return [SeatHolder(row["user_id"], row["external_id"]) for row in rows]
