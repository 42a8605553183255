"""matrix/state_cache.py over mautrix's real SQL state store (maubot's), on SQLite and on
PostgreSQL as maubot may run: the bot's joined rooms with their power levels and create
event in one query, and a fresh read written back."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from pathlib import Path
import secrets

import asyncpg
from maubot.testing.bot import TestBot as MaubotTestBot
from mautrix.client.state_store.asyncpg import PgStateStore
from mautrix.types import Membership, RoomID, StateEvent, UserID
from mautrix.util.async_db import Database
import pytest
import pytest_asyncio
from support.postgres import POSTGRES_URL
import yarl

from thirdparty_invite.matrix.state_cache import StateCache

BOT = "@bot:hs.test"


@pytest_asyncio.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    loop_scope="session",
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PgStateStore]:
    dropped = None
    if request.param == "sqlite":
        url = f"sqlite:{tmp_path / 'maubot.db'}"
    else:  # a database of its own, as maubot's
        name = f"tpi_state_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(POSTGRES_URL)
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.close()
        url, dropped = str(yarl.URL(POSTGRES_URL).with_path(f"/{name}")), name
    db = Database.create(
        url, upgrade_table=PgStateStore.upgrade_table, log=logging.getLogger("test.state")
    )
    await db.start()
    try:
        yield PgStateStore(db)
    finally:
        await db.stop()
        if dropped:
            admin = await asyncpg.connect(POSTGRES_URL)
            await admin.execute(f"DROP DATABASE {dropped}")
            await admin.close()


def raw(event_type: str, content: dict, sender: str = "@alice:hs.test") -> dict:
    return {
        "type": event_type,
        "state_key": "",
        "sender": sender,
        "content": content,
        "event_id": f"${event_type}",
        "origin_server_ts": 1,
    }


async def test_joined_rooms_and_what_a_fresh_read_writes_back(store: PgStateStore) -> None:
    bot = MaubotTestBot(mxid=BOT)
    bot.client.state_store = store
    cache = StateCache(bot.client)
    assert await cache.joined_rooms() == []

    # As sync leaves them: a v12 space, a room without its create event, a room left.
    await store.set_membership(RoomID("!space"), UserID(BOT), Membership.JOIN)
    for event in (
        raw("m.room.create", {"room_version": "12", "type": "m.space"}),
        raw("m.room.power_levels", {"users": {BOT: 150}, "invite": 50}),
    ):
        await store.update_state(StateEvent.deserialize({**event, "room_id": "!space"}))
    await store.set_membership(RoomID("!half:hs.test"), UserID(BOT), Membership.JOIN)
    await store.set_power_levels(RoomID("!half:hs.test"), {"users": {BOT: 100}})
    await store.set_membership(RoomID("!gone:hs.test"), UserID(BOT), Membership.LEAVE)
    await store.set_membership(RoomID("!other:hs.test"), UserID("@else:hs.test"), Membership.JOIN)

    rooms = {room.room_id: room for room in await cache.joined_rooms()}
    assert set(rooms) == {"!space", "!half:hs.test"}
    space = rooms["!space"]
    assert space.complete and space.is_space
    assert space.power.can("@alice:hs.test", "invite")  # the v12 creator
    assert not space.power.can("@bob:hs.test", "invite")
    assert not rooms["!half:hs.test"].complete

    await cache.remember(
        "!half:hs.test",
        {
            "m.room.create": raw("m.room.create", {"room_version": "10"}),
            "m.room.power_levels": raw("m.room.power_levels", {"users": {"@bob:hs.test": 50}}),
        },
    )
    rooms = {room.room_id: room for room in await cache.joined_rooms()}
    assert rooms["!half:hs.test"].complete
    assert rooms["!half:hs.test"].power.can("@bob:hs.test", "invite")
    await bot.client.api.session.close()


async def test_without_a_sql_state_store_nothing_is_known() -> None:
    bot = MaubotTestBot(mxid=BOT)
    assert await StateCache(bot.client).joined_rooms() is None
    await StateCache(bot.client).remember("!r:hs.test", {})  # no store: nothing to write
    await bot.client.api.session.close()
