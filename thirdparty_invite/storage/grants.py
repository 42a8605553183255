"""Grants: the record that a person was admitted to rooms, by a link or a binding.

Called inside the transaction that spends a link's use or checks an account's quota, so
a grant and its queue rows are written together or not at all.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection


class GrantStore:
    @staticmethod
    async def find(
        conn: Connection, user_id: str, *, link_id: int | None, binding_id: int | None
    ) -> int | None:
        """The person's grant from this link or binding, if they have one."""
        if link_id is not None:
            return await conn.fetchval(
                "SELECT id FROM grants WHERE link_id=$1 AND user_id=$2", link_id, user_id
            )
        return await conn.fetchval(
            "SELECT id FROM grants WHERE binding_id=$1 AND user_id=$2", binding_id, user_id
        )

    @staticmethod
    async def add(
        conn: Connection,
        user_id: str,
        now: int,
        *,
        link_id: int | None,
        binding_id: int | None,
        external_id: str | None,
    ) -> int:
        return await conn.fetchval(
            "INSERT INTO grants (user_id, link_id, binding_id, external_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            user_id,
            link_id,
            binding_id,
            external_id,
            now,
        )
