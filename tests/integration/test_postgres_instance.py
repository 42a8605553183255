"""The .mbp in a maubot whose plugin databases live in PostgreSQL (schema per instance)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from support import server_logs

from devtools.plugin import ask_for_link, room_managed_by_bot
from devtools.stack import RunningStack, running_stack
from devtools.synapse import SynapseServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def pg_stack(
    tmp_path: Path, synapse: SynapseServer, mbp: Path
) -> AsyncIterator[RunningStack]:
    """Its own maubot on PostgreSQL, sharing the session's Synapse; the instance's schema
    is dropped at the end."""
    async with running_stack(
        tmp_path, synapse=synapse, database="postgres", postgres_url=POSTGRES, mbp=mbp
    ) as stack:
        with server_logs.attached(stack.started):
            yield stack


async def test_invite_with_instance_database_on_postgres(pg_stack: RunningStack) -> None:
    admin, bot, instance_id = pg_stack.admin, pg_stack.bot, pg_stack.instance_id
    user = await pg_stack.user("pguser")
    room_id = await room_managed_by_bot(admin, bot, "Postgres room")
    _, token = await ask_for_link(admin, bot, room_id, "--uses 1")
    async with await pg_stack.signed_in(user) as http:
        async with http.post("api/links/claim", json={"token": token}) as r:
            assert r.status == 202
    await admin.wait_for_membership(room_id, user.user_id, "invite")

    conn = await asyncpg.connect(POSTGRES)
    try:
        schema = f"mbp_{instance_id}"
        uses = await conn.fetchval(f'SELECT uses FROM "{schema}".invite_links')
        invited = await conn.fetchval(
            f"SELECT COUNT(*) FROM \"{schema}\".audit_log WHERE action='invited'"
        )
    finally:
        await conn.close()
    assert (uses, invited) == (1, 1)
