"""How long the admin panel's room list takes for a bot in 10, 100 and 1,000 rooms.

    .venv/bin/python bench/panel.py [--rooms 10 100 1000] [--rounds 5]

The plugin's web app is served as maubot serves it (tests/support/plugin_web.py: the real
routes, middleware and services over a SQLite plugin database), signed in as an admin
through api/session. The bot's client has maubot's own state store (mautrix's
`PgStateStore`, on a SQLite file as maubot's default database) holding N joined rooms with
their m.room.create and m.room.power_levels, as the sync loop leaves them. The admin may
invite in every room (the worst case: every room is listed, named and judged). The bot's
homeserver is a local stand-in that serves each room's state and counts the requests.

Per N: the first load (room names not known yet: each room is read once, 8 at a time,
then kept), then --rounds loads as every later page load is: the median and the slowest
over HTTP, and the homeserver requests a load made (the target is none). Then `room` for
one room (a fresh read of that room only). Target (issue 12): under a second for 1,000
rooms, from the state the bot keeps, with no homeserver request per room.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
import statistics
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # support.plugin_web, support.fakehomeserver

from mautrix.client.state_store.asyncpg import PgStateStore  # noqa: E402
from mautrix.types import Membership, RoomID, StateEvent, UserID  # noqa: E402
from mautrix.util.async_db import Database  # noqa: E402
from support.fakehomeserver import FakeHomeserver  # noqa: E402
from support.plugin_web import serve_plugin_web  # noqa: E402

from bench.common import figure, progress  # noqa: E402
from devtools.web_client import web_client  # noqa: E402
from thirdparty_invite.storage import Storage, upgrade_table  # noqa: E402

BOT, ADMIN = "@bot:hs.test", "@admin:hs.test"
TARGET_MS = 1000.0
JSON = {"Content-Type": "application/json"}


def _state(room_id: str, index: int) -> list[dict]:
    def event(kind: str, content: dict) -> dict:
        return {
            "type": kind,
            "state_key": "",
            "sender": BOT,
            "content": content,
            "event_id": f"${kind}{index}",
            "origin_server_ts": 1,
            "room_id": room_id,
        }

    return [
        event("m.room.create", {"room_version": "10"}),
        event("m.room.power_levels", {"users": {BOT: 100, ADMIN: 50}, "invite": 50}),
        event("m.room.name", {"name": f"Room {index:04}"}),
        event("m.room.topic", {"topic": f"Topic of room {index}"}),
    ]


async def fill_state_store(store: PgStateStore, homeserver: FakeHomeserver, count: int) -> None:
    for index in range(count):
        room_id = f"!room{index:04}:hs.test"
        state = _state(room_id, index)
        homeserver.route(f"/_matrix/client/v3/rooms/{room_id}/state", state, headers=JSON)
        await store.set_membership(RoomID(room_id), UserID(BOT), Membership.JOIN)
        for raw in state[:2]:
            await store.update_state(StateEvent.deserialize(raw))


async def timed_load(http, name: str, body: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    async with http.post(f"api/manage/{name}", json=body) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    return (time.perf_counter() - started) * 1000, answer


async def measure(count: int, rounds: int, workdir: Path) -> float:
    plugin_db = Database.create(
        f"sqlite:{workdir / f'plugin-{count}.db'}",
        upgrade_table=upgrade_table,
        log=logging.getLogger("bench.plugin"),
    )
    state_db = Database.create(
        f"sqlite:{workdir / f'maubot-{count}.db'}",
        upgrade_table=PgStateStore.upgrade_table,
        log=logging.getLogger("bench.state"),
    )
    await plugin_db.start()
    await state_db.start()
    store = PgStateStore(state_db)
    try:
        async with FakeHomeserver() as homeserver:
            homeserver.sub = ADMIN
            await fill_state_store(store, homeserver, count)
            overrides = {"identity": {"server_urls": {"hs.test": homeserver.url}}}
            async with serve_plugin_web(
                Storage(plugin_db), overrides, homeserver_url=homeserver.url
            ) as (_, services, base):
                services.rooms.client.state_store = store
                async with web_client(str(base)) as http:
                    async with http.post(
                        "api/session",
                        json={"access_token": f"t{count}", "matrix_server_name": "hs.test"},
                    ) as resp:
                        assert resp.status == 200, await resp.text()

                    def state_reads() -> int:
                        return sum(1 for r in homeserver.requests if r.path.endswith("/state"))

                    before = state_reads()
                    first_ms, answer = await timed_load(http, "rooms", {})
                    assert len(answer["rooms"]) == count, len(answer["rooms"])
                    figure(
                        f"N={count} first load",
                        f"{first_ms:.0f} ms",
                        f"names unknown: {state_reads() - before} rooms read once, then kept",
                    )
                    times = []
                    before = state_reads()
                    for _ in range(rounds):
                        elapsed, answer = await timed_load(http, "rooms", {})
                        times.append(elapsed)
                    requests = state_reads() - before
                    median = statistics.median(times)
                    figure(
                        f"N={count} later loads",
                        f"median {median:.0f} ms, slowest {max(times):.0f} ms",
                        f"{requests} homeserver requests in {rounds} loads",
                    )
                    room_ms, _ = await timed_load(http, "room", {"room_id": "!room0000:hs.test"})
                    figure(f"N={count} one room's view", f"{room_ms:.0f} ms", "one fresh read")
                    if requests:
                        raise AssertionError(f"{requests} homeserver requests on later loads")
                    return median
    finally:
        await state_db.stop()
        await plugin_db.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    medians = {}
    with tempfile.TemporaryDirectory(prefix="bench-panel-") as tmp:
        for count in args.rooms:
            progress(f"{count} rooms")
            medians[count] = await measure(count, args.rounds, Path(tmp))
    largest = max(medians)
    verdict = "TARGET MET" if medians[largest] < TARGET_MS else "TARGET MISSED"
    print(
        f"{verdict}: the room list for a bot in {largest:,} rooms takes "
        f"{medians[largest]:.0f} ms (median), from the state store with no homeserver request "
        f"per room (target: under {TARGET_MS:.0f} ms)",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
