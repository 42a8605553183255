"""The durable invite queue across a maubot restart, under a strict invite rate limit.

This module starts its own Synapse (invites limited to 1/s with a burst of 1, per room and per
issuer) and its own maubot: the session servers have relaxed rate limits, so nothing would
ever queue up there. No assertion here is about speed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
import contextlib
from pathlib import Path
import secrets
import sqlite3
import time
from urllib.parse import quote

import aiohttp
import pytest
from support import server_logs

from devtools.matrix_user import MatrixUser
from devtools.plugin import RunningPlugin, ask_for_link, room_managed_by_bot
from devtools.stack import RunningStack, running_stack
from devtools.synapse import REFUSED_INVITE_LINE, limited_invites
from devtools.web_client import signed_in_session, wait_web_ready

pytestmark = pytest.mark.integration

USERS = 8
INVITE_429 = REFUSED_INVITE_LINE


@pytest.fixture
async def limited_stack(tmp_path: Path, mbp: Path) -> AsyncIterator[RunningStack]:
    async with running_stack(
        tmp_path, rc_invites=limited_invites(per_second=1, burst=1), mbp=mbp
    ) as stack:
        with server_logs.attached(stack.started):
            yield stack


async def open_session(plugin: RunningPlugin, user: MatrixUser) -> aiohttp.ClientSession:
    return await signed_in_session(plugin.web_url, user)


async def invite_of(http: aiohttp.ClientSession, room_id: str) -> dict:
    """The signed-in person's queue item for the room (as GET api/invites shows it)."""
    async with http.get("api/invites") as resp:
        assert resp.status == 200, await resp.text()
        items = [i for i in (await resp.json())["invites"] if i["room_id"] == room_id]
    assert len(items) == 1, items
    return items[0]


async def invited(admin: MatrixUser, room_id: str, users: list[MatrixUser]) -> set[str]:
    members = await admin.members(room_id)
    return {u.user_id for u in users if members.get(u.user_id) == "invite"}


async def wait_web_api(plugin: RunningPlugin, timeout: float = 60) -> None:
    """Until the plugin's routes answer again after the restart (401: not signed in)."""
    await wait_web_ready(plugin.web_url, timeout)


async def test_pending_invites_survive_a_restart_and_are_sent_once(
    limited_stack: RunningStack,
) -> None:
    synapse, maubot = limited_stack.synapse, limited_stack.maubot
    admin, bot, plugin = limited_stack.admin, limited_stack.bot, limited_stack.plugin
    instance_id = plugin.instance_id
    room_id = await room_managed_by_bot(admin, bot, "Restart room")
    _, token = await ask_for_link(admin, bot, room_id, f"--uses {USERS}")

    users = [await synapse.register_user(f"q{i}-{secrets.token_hex(3)}") for i in range(USERS)]
    sessions = [await open_session(plugin, user) for user in users]
    try:

        async def claim(http: aiohttp.ClientSession) -> int:
            async with http.post("api/links/claim", json={"token": token}) as resp:
                return resp.status

        assert await asyncio.gather(*(claim(http) for http in sessions)) == [202] * USERS

        # Restart while the queue is being worked: some invites sent, some still waiting.
        deadline = time.monotonic() + 60
        while len(await invited(admin, room_id, users)) < 2:
            assert time.monotonic() < deadline, "the first invites never arrived"
            await asyncio.sleep(0.1)
        # Read at once (one after the other took seconds on a busy machine, while the
        # queue went on at 1/s): with 2 of 8 invited, some are surely still pending.
        before = await asyncio.gather(*(invite_of(http, room_id) for http in sessions))
        pending = [item for item in before if item["state"] == "pending"]
        assert pending, before
        await maubot.restart()
        await wait_web_api(plugin)

        deadline = time.monotonic() + 60
        while len(await invited(admin, room_id, users)) < USERS:
            assert time.monotonic() < deadline, "not everyone was invited after the restart"
            await asyncio.sleep(0.2)
        after = [await invite_of(http, room_id) for http in sessions]
    finally:
        for http in sessions:
            await http.close()

    # The web API: every claim finished, none failed.
    assert {(i["state"], i["outcome"]) for i in after} == {("done", "invited")}, after
    # The homeserver: one invite event per person, all sent by the bot.
    members = await admin.members(room_id)
    assert all(members[u.user_id] == "invite" for u in users)
    events = await admin.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
        params={"dir": "b", "limit": "200", "filter": '{"types": ["m.room.member"]}'},
    )
    invite_events = Counter(
        e["state_key"]
        for e in events["chunk"]
        if e["content"].get("membership") == "invite" and e["sender"] == bot.user_id
    )
    assert invite_events == Counter({u.user_id: 1 for u in users}), invite_events

    # The plugin's own records, read with maubot stopped.
    await maubot.stop()
    db_path = maubot.workdir / "plugin_dbs" / f"{instance_id}.db"
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        queue = db.execute("SELECT user_id, state, outcome FROM invite_queue").fetchall()
        audit = db.execute(
            "SELECT action, target FROM audit_log WHERE room_id = ?", (room_id,)
        ).fetchall()
    assert sorted(user for user, _, _ in queue) == sorted(u.user_id for u in users)
    assert all(state == "done" for _, state, _ in queue), queue
    actions = Counter(
        (action, target)
        for action, target in audit
        if action in ("invited", "already_invited", "already_joined", "invite_failed")
    )
    # Exactly one record of the bot inviting each person: the queue lets the invite in
    # flight finish before it stops, so the restart neither repeats nor loses one.
    assert actions == Counter({("invited", u.user_id): 1 for u in users}), actions

    # The rate limit was hit and obeyed: Synapse refused invites with 429 (far more than one
    # burst was asked for), and the queue waited them out instead of failing anyone.
    refused = len(INVITE_429.findall(synapse.log_text()))
    assert refused >= 1
    assert refused <= 3 * USERS, f"{refused} refused invites: the queue did not wait"
