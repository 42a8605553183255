"""Bindings: a room (or several) open to whoever satisfies every rule of the binding."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from .records import Binding, BindingRule

_COLUMNS = "id, public_id, created_by, created_at, policy, removed_at, grace_ms"


class BindingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        public_id: str,
        created_by: str,
        rules: tuple[BindingRule, ...],
        rooms: tuple[str, ...],
        now: int,
        first_recheck_at: int,
    ) -> Binding:
        async with self.db.acquire() as conn, conn.transaction():
            binding_id = await conn.fetchval(
                "INSERT INTO bindings (public_id, created_by, created_at) VALUES ($1, $2, $3)"
                " RETURNING id",
                public_id,
                created_by,
                now,
            )
            for position, rule in enumerate(rules):
                await conn.execute(
                    "INSERT INTO binding_rules (binding_id, position, provider, rule)"
                    " VALUES ($1, $2, $3, $4)",
                    binding_id,
                    position,
                    rule.provider,
                    rule.rule,
                )
            for room_id in rooms:
                await conn.execute(
                    "INSERT INTO binding_rooms (binding_id, room_id) VALUES ($1, $2)",
                    binding_id,
                    room_id,
                )
            await conn.execute(
                "INSERT INTO rechecks (binding_id, next_at) VALUES ($1, $2)",
                binding_id,
                first_recheck_at,
            )
        return Binding(int(binding_id), public_id, created_by, now, "notify", None, rules, rooms)

    async def _complete(self, conn: Connection, row: object) -> Binding:
        binding_id = int(row["id"])  # type: ignore[index]
        rules = await conn.fetch(
            "SELECT provider, rule FROM binding_rules WHERE binding_id=$1 ORDER BY position",
            binding_id,
        )
        rooms = await conn.fetch(
            "SELECT room_id FROM binding_rooms WHERE binding_id=$1 ORDER BY room_id", binding_id
        )
        return Binding.from_row(
            row,
            tuple(BindingRule(r["provider"], r["rule"]) for r in rules),
            tuple(r["room_id"] for r in rooms),
        )

    async def get_by_public_id(self, public_id: str) -> Binding | None:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM bindings WHERE public_id=$1", public_id
            )
            return None if row is None else await self._complete(conn, row)

    async def get(self, binding_id: int) -> Binding | None:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM bindings WHERE id=$1", binding_id)
            return None if row is None else await self._complete(conn, row)

    async def for_room(self, room_id: str) -> list[Binding]:
        """The room's bindings that were not removed, oldest first."""
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM bindings WHERE removed_at IS NULL AND id IN"
                " (SELECT binding_id FROM binding_rooms WHERE room_id=$1) ORDER BY id",
                room_id,
            )
            return [await self._complete(conn, row) for row in rows]

    async def set_policy(self, binding_id: int, policy: str, grace_ms: int) -> None:
        await self.db.execute(
            "UPDATE bindings SET policy=$2, grace_ms=$3 WHERE id=$1", binding_id, policy, grace_ms
        )

    async def remove(self, binding_id: int, removed_by: str, now: int) -> bool:
        """Mark a binding removed (its grants and audit trail stay); False if it was."""
        removed = await self.db.fetchval(
            "UPDATE bindings SET removed_at=$2, removed_by=$3"
            " WHERE id=$1 AND removed_at IS NULL RETURNING id",
            binding_id,
            now,
            removed_by,
        )
        return removed is not None

    async def active_with_provider(self, provider: str) -> list[Binding]:
        """The bindings not removed that have a rule of `provider` (the ones a webhook from
        that provider may concern), oldest first."""
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM bindings WHERE removed_at IS NULL AND id IN"
                " (SELECT binding_id FROM binding_rules WHERE provider=$1) ORDER BY id",
                provider,
            )
            return [await self._complete(conn, row) for row in rows]

    async def grantees_of_room(self, room_id: str) -> list[tuple[str, int]]:
        """(person, grant id) for each grant from a binding naming the room that was not
        removed, oldest first, leaving out people whose loss the binding's policy acted on."""
        rows = await self.db.fetch(
            "SELECT g.user_id, g.id FROM grants g"
            " JOIN binding_rooms r ON r.binding_id = g.binding_id"
            " JOIN bindings b ON b.id = g.binding_id"
            " WHERE r.room_id=$1 AND b.removed_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM losses l WHERE l.binding_id = g.binding_id"
            " AND l.user_id = g.user_id AND l.acted_at IS NOT NULL)"
            " ORDER BY g.id",
            room_id,
        )
        return [(str(row["user_id"]), int(row["id"])) for row in rows]

    async def counts(self, binding_id: int) -> tuple[int, int, int]:
        """(people admitted, their invites pending, failed) of one binding."""
        admitted = await self.db.fetchval(
            "SELECT COUNT(*) FROM grants WHERE binding_id=$1", binding_id
        )
        rows = await self.db.fetch(
            "SELECT q.state, COUNT(*) AS n FROM invite_queue q JOIN grants g ON g.id = q.grant_id"
            " WHERE g.binding_id=$1 AND q.action='invite' GROUP BY q.state",
            binding_id,
        )
        states = {row["state"]: int(row["n"]) for row in rows}
        return int(admitted), states.get("pending", 0), states.get("failed", 0)
