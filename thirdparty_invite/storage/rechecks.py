"""The re-check schedule: one row per binding, taken under a lease.

Several maubot instances may share one PostgreSQL database (or one instance restarts in
the middle of a re-check): a binding's re-check runs where its lease was taken, and a
lease that is not renewed in time (the instance died) lapses, so another picks it up.
On PostgreSQL the due row is taken with `FOR UPDATE SKIP LOCKED`, so two instances never
wait on, or both take, the same row; SQLite has one writer, and the conditional UPDATE
decides.

A run that cannot finish (a provider down or rate limiting) keeps its run id, rule
position and cursor: the next attempt resumes where it stopped instead of starting over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from mautrix.util.async_db import Database, Scheme

_COLUMNS = (
    "binding_id, next_at, lease_owner, lease_until, run_id, run_started_at, run_position,"
    " run_cursor, run_calls, errors, last_started_at, last_finished_at, last_outcome,"
    " last_detail, last_calls"
)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@attrs.frozen
class RecheckState:
    binding_id: int
    next_at: int
    lease_owner: str | None
    lease_until: int
    run_id: int
    run_started_at: int | None
    run_position: int | None  # None: no run in progress; else the rule being listed
    run_cursor: str | None
    run_calls: int
    errors: int  # runs in a row that could not finish (for back-off)
    last_started_at: int | None
    last_finished_at: int | None
    last_outcome: str | None
    last_detail: str
    last_calls: int

    @property
    def in_progress(self) -> bool:
        return self.run_position is not None

    @classmethod
    def from_row(cls, row: Any) -> RecheckState:
        return cls(
            binding_id=int(row["binding_id"]),
            next_at=int(row["next_at"]),
            lease_owner=row["lease_owner"],
            lease_until=int(row["lease_until"]),
            run_id=int(row["run_id"]),
            run_started_at=_int_or_none(row["run_started_at"]),
            run_position=_int_or_none(row["run_position"]),
            run_cursor=row["run_cursor"],
            run_calls=int(row["run_calls"]),
            errors=int(row["errors"]),
            last_started_at=_int_or_none(row["last_started_at"]),
            last_finished_at=_int_or_none(row["last_finished_at"]),
            last_outcome=row["last_outcome"],
            last_detail=row["last_detail"] or "",
            last_calls=int(row["last_calls"]),
        )


class RecheckStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def schedule(self, binding_id: int, next_at: int) -> None:
        """A row for the binding (a new binding's first re-check); existing rows stay."""
        await self.db.execute(
            "INSERT INTO rechecks (binding_id, next_at) VALUES ($1, $2)"
            " ON CONFLICT (binding_id) DO NOTHING",
            binding_id,
            next_at,
        )

    async def get(self, binding_id: int) -> RecheckState | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM rechecks WHERE binding_id=$1", binding_id
        )
        return None if row is None else RecheckState.from_row(row)

    async def take_due(self, owner: str, now: int, lease_until: int) -> RecheckState | None:
        """Lease the binding whose re-check is most overdue, if any is due and free."""
        due = (
            "SELECT r.binding_id FROM rechecks r JOIN bindings b ON b.id = r.binding_id"
            " WHERE b.removed_at IS NULL AND r.next_at <= $1 AND r.lease_until < $1"
            " ORDER BY r.next_at LIMIT 1"
        )
        take = (
            f"UPDATE rechecks SET lease_owner=$2, lease_until=$3 WHERE binding_id=$4"
            f" AND lease_until < $1 RETURNING {_COLUMNS}"
        )
        async with self.db.acquire() as conn, conn.transaction():
            lock = " FOR UPDATE OF r SKIP LOCKED" if self.db.scheme != Scheme.SQLITE else ""
            binding_id = await conn.fetchval(due + lock, now)
            if binding_id is None:
                return None
            row = await conn.fetchrow(take, now, owner, lease_until, binding_id)
        return None if row is None else RecheckState.from_row(row)

    async def take(self, binding_id: int, owner: str, now: int, lease_until: int) -> bool:
        """Lease one binding now, due or not (`!invitebot recheck`); False when another
        run holds it."""
        taken = await self.db.fetchval(
            "UPDATE rechecks SET lease_owner=$2, lease_until=$3"
            " WHERE binding_id=$4 AND (lease_until < $1 OR lease_owner=$2) RETURNING binding_id",
            now,
            owner,
            lease_until,
            binding_id,
        )
        return taken is not None

    async def start_run(self, binding_id: int, owner: str, now: int) -> int | None:
        """A new run (a new run id, from the first rule); None when the lease was lost."""
        run_id = await self.db.fetchval(
            "UPDATE rechecks SET run_id=run_id+1, run_started_at=$3, run_position=0,"
            " run_cursor=NULL, run_calls=0 WHERE binding_id=$1 AND lease_owner=$2"
            " RETURNING run_id",
            binding_id,
            owner,
            now,
        )
        return None if run_id is None else int(run_id)

    async def next_walk(self, binding_id: int, owner: str) -> int | None:
        """A new run id for walking the listings once more within the same run (the
        run's position and cursor stay); None when the lease was lost."""
        run_id = await self.db.fetchval(
            "UPDATE rechecks SET run_id=run_id+1 WHERE binding_id=$1 AND lease_owner=$2"
            " RETURNING run_id",
            binding_id,
            owner,
        )
        return None if run_id is None else int(run_id)

    async def progress(
        self,
        binding_id: int,
        owner: str,
        position: int,
        cursor: str | None,
        calls: int,
        lease_until: int,
    ) -> bool:
        """Remember where the run is and renew the lease; False when the lease was lost
        (this instance was too slow and another took over: it must stop)."""
        kept = await self.db.fetchval(
            "UPDATE rechecks SET run_position=$3, run_cursor=$4, run_calls=$5, lease_until=$6"
            " WHERE binding_id=$1 AND lease_owner=$2 RETURNING binding_id",
            binding_id,
            owner,
            position,
            cursor,
            calls,
            lease_until,
        )
        return kept is not None

    async def finish(
        self,
        binding_id: int,
        owner: str,
        now: int,
        next_at: int,
        outcome: str,
        detail: str,
        calls: int,
        *,
        completed: bool,
        taken_next_at: int,
    ) -> None:
        """End this attempt and release the lease. A completed run clears the run and the
        error count; an incomplete one keeps its position for the next attempt.

        `taken_next_at` is the row's `next_at` when this attempt took it: if it changed
        since (a webhook or an admin asked for a re-check while this one ran, and may have
        seen the provider's change after this run read that page), the earlier of the two
        stands, so the request is not lost for an interval."""
        run_reset = (
            ", run_position=NULL, run_cursor=NULL, run_calls=0, errors=0"
            if completed
            else ", run_calls=$7, errors=errors+1"
        )
        await self.db.execute(
            "UPDATE rechecks SET lease_owner=NULL, lease_until=0,"
            " next_at=CASE WHEN next_at<>$8 AND next_at<$3 THEN next_at ELSE $3 END,"
            " last_started_at=run_started_at, last_finished_at=$4, last_outcome=$5,"
            f" last_detail=$6, last_calls=$7{run_reset}"
            " WHERE binding_id=$1 AND lease_owner=$2",
            binding_id,
            owner,
            next_at,
            now,
            outcome,
            detail,
            calls,
            taken_next_at,
        )

    async def request_now(self, binding_ids: Iterable[int], now: int) -> list[int]:
        """Make these bindings due now (a webhook, `!invitebot recheck`); the ids that
        have a schedule row."""
        scheduled = []
        for binding_id in binding_ids:
            found = await self.db.fetchval(
                "UPDATE rechecks SET next_at=$2 WHERE binding_id=$1 RETURNING binding_id",
                binding_id,
                now,
            )
            if found is not None:
                scheduled.append(int(found))
        return scheduled

    async def next_due_at(self) -> int | None:
        value = await self.db.fetchval(
            "SELECT MIN(r.next_at) FROM rechecks r JOIN bindings b ON b.id = r.binding_id"
            " WHERE b.removed_at IS NULL"
        )
        return None if value is None else int(value)
