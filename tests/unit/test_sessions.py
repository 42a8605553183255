"""Web sessions and the OpenID tokens they spend, on SQLite and PostgreSQL; migration v2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import logging
from pathlib import Path
import secrets

from maubot.lib.plugin_db import ProxyPostgresDatabase
from mautrix.util.async_db import Database, UpgradeTable
import pytest
from support.postgres import POSTGRES_URL

from thirdparty_invite.durations import now_ms
from thirdparty_invite.errors import UserFacingError
from thirdparty_invite.identity.verifier import VerifiedToken
from thirdparty_invite.services.web_sessions import WebSessionService
from thirdparty_invite.storage import Storage, upgrade_table

HOUR_MS = 3600_000


def verified(token_hash: str = "a" * 64, *, user_id: str = "@u:hs.test") -> VerifiedToken:
    return VerifiedToken(user_id, "hs.test", token_hash, now_ms() + HOUR_MS)


async def test_a_token_opens_one_session_only(storage: Storage) -> None:
    now = now_ms()
    assert await storage.sessions.create("s1", "@u:x", now, now + 1000, "t1", now + 5000)
    assert not await storage.sessions.create("s2", "@u:x", now, now + 1000, "t1", now + 5000)
    assert await storage.sessions.get_valid("s2", now) is None
    assert await storage.sessions.create("s3", "@u:x", now, now + 1000, "t2", now + 5000)


async def test_concurrent_sign_ins_with_one_token_open_one_session(storage: Storage) -> None:
    now = now_ms()
    results = await asyncio.gather(
        *(
            storage.sessions.create(f"s{i}", "@u:x", now, now + 1000, "race", now + 5000)
            for i in range(20)
        )
    )
    assert sum(results) == 1
    assert await storage.db.fetchval("SELECT COUNT(*) FROM web_sessions") == 1


async def test_sign_ins_written_together_each_get_their_own_answer(storage: Storage) -> None:
    """Sign-ins arriving while one is written are written in one batch: ten tokens, each
    tried five times, mixed with token-less sessions, in one gather (so batched)."""
    now = now_ms()
    attempts = [(f"s{i}", f"tok{i % 10}") for i in range(50)]
    attempts += [(f"dm{i}", None) for i in range(5)]
    results = await asyncio.gather(
        *(
            storage.sessions.create(sid, "@u:x", now, now + 1000, token, now + 5000)
            for sid, token in attempts
        )
    )
    opened = {sid for (sid, _), ok in zip(attempts, results, strict=True) if ok}
    assert len(opened) == 15  # one per token, and every token-less one
    for sid, token in attempts:
        stored = await storage.sessions.get_valid(sid, now)
        assert (stored is not None) == (sid in opened), sid
        if token is None:
            assert stored is not None
    assert await storage.db.fetchval("SELECT COUNT(*) FROM web_sessions") == 15


async def test_a_sign_in_that_went_away_does_not_upset_the_batch(storage: Storage) -> None:
    now = now_ms()
    tasks = [
        asyncio.create_task(
            storage.sessions.create(f"s{i}", "@u:x", now, now + 1000, f"t{i}", now + 5000)
        )
        for i in range(10)
    ]
    await asyncio.sleep(0)  # all queued; the first is being written
    tasks[3].cancel()
    tasks[7].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert [isinstance(r, asyncio.CancelledError) for r in done].count(True) == 2
    assert all(r is True for i, r in enumerate(done) if i not in (3, 7))
    # A later sign-in is written as usual.
    assert await storage.sessions.create("late", "@u:x", now, now + 1000, "t-late", now + 5000)


async def test_an_ended_session_keeps_its_token_refused_until_both_expire(
    storage: Storage,
) -> None:
    now = now_ms()
    await storage.sessions.create("s1", "@u:x", now, now + 1000, "t1", now + 5000)
    assert (await storage.sessions.get_valid("s1", now)).user_id == "@u:x"
    await storage.sessions.end("s1", now + 10)
    assert await storage.sessions.get_valid("s1", now + 10) is None
    await storage.sessions.purge_expired(now + 4999)  # the token is still alive: kept
    assert not await storage.sessions.create("s2", "@u:x", now, now + 1000, "t1", now + 5000)
    await storage.sessions.purge_expired(now + 5000)
    assert await storage.db.fetchval("SELECT COUNT(*) FROM web_sessions") == 0


async def test_a_session_outliving_its_token_is_kept_until_it_ends(storage: Storage) -> None:
    now = now_ms()
    await storage.sessions.create("s1", "@u:x", now, now + 9000, "t1", now + 1000)
    await storage.sessions.purge_expired(now + 1000)
    assert (await storage.sessions.get_valid("s1", now + 1000)).user_id == "@u:x"
    await storage.sessions.purge_expired(now + 9000)
    assert await storage.sessions.get_valid("s1", now + 1000) is None


async def test_service_opens_sessions_and_refuses_replays(storage: Storage) -> None:
    service = WebSessionService(storage, 600)
    session_id, session = await service.open(verified())
    assert (await service.get(session_id)) == session
    assert session.expires_at - session.created_at == 600_000
    # The cookie value is never stored, only its hash.
    assert (
        await storage.db.fetchval("SELECT COUNT(*) FROM web_sessions WHERE id_hash=$1", session_id)
        == 0
    )
    with pytest.raises(UserFacingError) as caught:
        await service.open(verified())
    assert (caught.value.errcode, caught.value.http_status) == ("TPI_TOKEN_REPLAYED", 401)
    # Signing out does not free the token.
    await service.close(session_id)
    assert await service.get(session_id) is None
    with pytest.raises(UserFacingError):
        await service.open(verified())
    # Another token, another session.
    other_id, _ = await service.open(verified("b" * 64))
    assert other_id != session_id


async def test_service_concurrent_replays_only_one_wins(storage: Storage) -> None:
    service = WebSessionService(storage, 600)
    results = await asyncio.gather(
        *(service.open(verified()) for _ in range(20)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    errors = [r for r in results if isinstance(r, BaseException)]
    assert {getattr(e, "errcode", None) for e in errors} == {"TPI_TOKEN_REPLAYED"}


async def test_expires_at_is_indexed_for_the_purge(storage: Storage) -> None:
    db = storage.db
    if db.scheme.value == "sqlite":
        plan = await db.fetch(
            "EXPLAIN QUERY PLAN DELETE FROM web_sessions"
            " WHERE expires_at<=$1 AND token_expires_at<=$1",
            0,
        )
        assert any("web_sessions_expires_idx" in str(tuple(row)) for row in plan)
    else:
        names = await db.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname=current_schema()"
            " AND tablename='web_sessions'"
        )
        assert "web_sessions_expires_idx" in {row["indexname"] for row in names}


# Migration v2 on a database that was in use at v1.


async def table_names(db: Database) -> set[str]:
    if db.scheme.value == "sqlite":
        rows = await db.fetch("SELECT name FROM sqlite_master WHERE type='table'")
        return {row["name"] for row in rows}
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema=current_schema()"
    )
    return {row["table_name"] for row in rows}


def only_v1() -> UpgradeTable:
    table = UpgradeTable()
    table.upgrades = upgrade_table.upgrades[:1]
    return table


async def sqlite_at(path: Path, upgrades: UpgradeTable) -> Database:
    db = Database.create(f"sqlite:{path}", upgrade_table=upgrades, log=logging.getLogger("t"))
    await db.start()
    return db


async def postgres_at(instance_id: str, upgrades: UpgradeTable) -> tuple[Database, Database]:
    pool = Database.create(POSTGRES_URL, log=logging.getLogger("test.pg"))
    await pool.start()
    db = ProxyPostgresDatabase(
        pool=pool,
        instance_id=instance_id,
        max_conns=3,
        upgrade_table=upgrades,
        log=logging.getLogger("test.pg.instance"),
    )
    await db.start()
    return pool, db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def upgraded_from_v1(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Database, int]]:
    """A database used at v1 (a live session, a spent token, an expired one), then opened
    with every migration. Yields it and the `now` the v1 rows were written at."""
    now = now_ms()

    async def fill(db: Database) -> None:
        await db.execute(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at)"
            " VALUES ('old-session', '@old:x', $1, $2)",
            now,
            now + HOUR_MS,
        )
        await db.execute(
            "INSERT INTO seen_openid_tokens (token_hash, expires_at) VALUES ('spent', $1),"
            " ('long-gone', $2)",
            now + HOUR_MS,
            now - 1,
        )

    if request.param == "sqlite":
        old = await sqlite_at(tmp_path / "plugin.db", only_v1())
        await fill(old)
        await old.stop()
        db = await sqlite_at(tmp_path / "plugin.db", upgrade_table)
        try:
            yield db, now
        finally:
            await db.stop()
    else:
        instance_id = f"test_{secrets.token_hex(6)}"
        pool, old = await postgres_at(instance_id, only_v1())
        await fill(old)
        await old.stop()
        await pool.stop()
        pool, db = await postgres_at(instance_id, upgrade_table)
        try:
            yield db, now
        finally:
            await db.stop()
            await db.delete()
            await pool.stop()


async def test_migration_v2_keeps_sessions_and_spent_tokens(
    upgraded_from_v1: tuple[Database, int],
) -> None:
    db, now = upgraded_from_v1
    assert await db.fetchval("SELECT version FROM version") == len(upgrade_table.upgrades)
    assert "seen_openid_tokens" not in await table_names(db)
    storage = Storage(db)
    # The session opened before the upgrade still works, and is purged when it ends.
    assert (await storage.sessions.get_valid("old-session", now)).user_id == "@old:x"
    # A token spent before the upgrade is still refused, and only a spent one.
    assert not await storage.sessions.create("new1", "@u:x", now, now + 1, "spent", now + 1)
    assert await storage.sessions.create("new2", "@u:x", now, now + 1, "long-gone", now + 1)
    assert await storage.sessions.create("new3", "@u:x", now, now + 1, "fresh", now + 1)
    # The migrated token is no session anybody could use.
    assert await storage.sessions.get_valid("spent:spent", now - HOUR_MS) is None
    await storage.sessions.purge_expired(now + HOUR_MS)
    assert await db.fetchval("SELECT COUNT(*) FROM web_sessions") == 0


async def test_sessions_without_a_token_never_conflict(storage: Storage) -> None:
    now = now_ms()
    for i in range(3):
        assert await storage.sessions.create(f"p{i}", "@u:x", now, now + 1000, None, 0)
    assert (await storage.sessions.get_valid("p2", now)).user_id == "@u:x"
    await storage.sessions.purge_expired(now + 1000)
    assert await storage.db.fetchval("SELECT COUNT(*) FROM web_sessions") == 0
