"""Storage on SQLite and on the real PostgreSQL (in maubot's per-instance schema)."""

from __future__ import annotations

import asyncio

from mautrix.util.async_db import Database
import pytest

from thirdparty_invite.durations import now_ms
from thirdparty_invite.services.grants import GrantService
from thirdparty_invite.services.links import LinkService
from thirdparty_invite.storage import Storage, upgrade_table

TABLES = {
    "bindings",
    "invite_links",
    "invite_link_rooms",
    "web_sessions",
    "grants",
    "invite_queue",
    "audit_log",
}


async def test_migrations_create_every_table(database: Database) -> None:
    for table in TABLES:
        assert await database.table_exists(table), table
    assert await database.fetchval("SELECT version FROM version") == len(upgrade_table.upgrades)


@pytest.mark.postgres
async def test_postgres_tables_live_in_the_instance_schema(postgres_database: Database) -> None:
    db = postgres_database
    schemas = await db.fetch(
        "SELECT table_schema FROM information_schema.tables WHERE table_name='invite_links'"
    )
    assert db.schema_name in {row["table_schema"] for row in schemas}
    assert db.schema_name.startswith("mbp_test_")


async def test_link_round_trip_and_revoke(storage: Storage) -> None:
    now = now_ms()
    link = await storage.links.create("h1", "@admin:x", ("!a", "!b"), now + 1000, 3, now)
    loaded = await storage.links.get_by_token_hash("h1")
    assert loaded == link
    assert [lk.id for lk in await storage.links.list_for_room("!b")] == [link.id]
    assert await storage.links.revoke(link.id, "@admin:x", now)
    assert not await storage.links.revoke(link.id, "@admin:x", now)
    assert (await storage.links.get(link.id)).unusable_reason(now) == "revoked"


async def test_token_hashes_are_unique(storage: Storage) -> None:
    now = now_ms()
    await storage.links.create("same", "@a:x", ("!a",), None, None, now)
    with pytest.raises(Exception):  # noqa: B017 - driver-specific IntegrityError
        await storage.links.create("same", "@a:x", ("!a",), None, None, now)


async def test_concurrent_claims_never_overspend_a_link(storage: Storage) -> None:
    links = LinkService(storage, GrantService(storage, wake_queue=lambda: None))
    link, token = await links.create("@admin:x", ("!room",), 10, None)

    async def claim(i: int) -> bool:
        try:
            await links.claim(token, f"@user{i}:x")
            return True
        except Exception as e:  # the service raises UserFacingError for used-up links
            assert getattr(e, "errcode", None) == "TPI_LINK_USED_UP", e
            return False

    results = await asyncio.gather(*(claim(i) for i in range(100)))
    assert sum(results) == 10
    assert (await storage.links.get(link.id)).uses == 10
    queued = await storage.queue.all()
    assert len(queued) == 10
    assert len({q.user_id for q in queued}) == 10


async def test_second_claim_by_same_person_spends_nothing(storage: Storage) -> None:
    links = LinkService(storage, GrantService(storage, wake_queue=lambda: None))
    link, token = await links.create("@admin:x", ("!room",), 2, None)
    first = await links.claim(token, "@bob:x")
    again = await asyncio.gather(*(links.claim(token, "@bob:x") for _ in range(5)))
    assert first.first_claim and not any(r.first_claim for r in again)
    assert {r.grant_id for r in again} == {first.grant_id}
    assert (await storage.links.get(link.id)).uses == 1
    assert len(await storage.queue.all()) == 1


async def test_queue_states(storage: Storage) -> None:
    now = now_ms()
    async with storage.db.acquire() as conn:
        await storage.queue.enqueue(conn, "!r", "@u:x", None, now)
        await storage.queue.enqueue(conn, "!r", "@u:x", None, now)  # pending: untouched
    [item] = await storage.queue.due(now, 10)
    await storage.queue.retry_later(item.id, now + 60_000, "M_LIMIT_EXCEEDED", "wait", now)
    assert await storage.queue.due(now, 10) == []
    assert await storage.queue.next_due_at() == now + 60_000
    await storage.queue.fail(item.id, "TPI_USER_BANNED", "banned", now)
    assert (await storage.queue.for_user("@u:x"))[0].state == "failed"
    async with storage.db.acquire() as conn:  # a failed row can be queued again
        await storage.queue.enqueue(conn, "!r", "@u:x", None, now)
    [again] = await storage.queue.due(now, 10)
    assert again.attempts == 0 and again.errcode is None
    await storage.queue.finish(again.id, "invited", now)
    assert await storage.queue.counts_for_room("!r") == {"done": 1}


# Web sessions and the OpenID tokens they spend: tests/unit/test_sessions.py.


async def test_audit_log(storage: Storage) -> None:
    await storage.audit.add(1, "@bot:x", "invited", "!r", "@u:x", "grant 1")
    await storage.audit.add(2, "@bot:x", "invited", "!other", "@v:x")
    [entry] = await storage.audit.recent("!r")
    assert (entry.action, entry.target, entry.detail) == ("invited", "@u:x", "grant 1")
    assert len(await storage.audit.recent()) == 2
