"""The bot's homeserver hangs or is gone: answers stay bounded, claims are kept, the queue
waits it out quietly. The bot's client is maubot's real one, pointed at a loopback server
that accepts connections and never answers, or at a closed port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import logging

import aiohttp
from maubot.testing import bot as maubot_testing
import pytest
import pytest_asyncio
from support.fakehomeserver import FakeHomeserver
from support.plugin_web import serve_plugin_web

from thirdparty_invite.config import InviteSettings
from thirdparty_invite.durations import now_ms
from thirdparty_invite.matrix.rooms import HomeserverUnavailable, RoomOps
from thirdparty_invite.services.invite_queue import InviteQueue
from thirdparty_invite.storage import QueuedInvite, Storage

CLOSED_PORT_URL = "http://127.0.0.1:9"
ROOM = "!room:hs.test"


class HangingServer:
    """Accepts TCP connections on loopback, reads whatever comes, never answers."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def __aenter__(self) -> HangingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"


@pytest_asyncio.fixture(loop_scope="session")
async def hanging() -> AsyncIterator[HangingServer]:
    async with HangingServer() as server:
        yield server


class Reports:
    def __init__(self) -> None:
        self.done: list[tuple[int, str]] = []
        self.failed: list[tuple[int, str]] = []

    async def invite_done(self, item: QueuedInvite, outcome: str) -> None:
        self.done.append((item.id, outcome))

    async def invite_failed(self, item: QueuedInvite, errcode: str, error: str) -> None:
        self.failed.append((item.id, errcode))


async def test_room_calls_are_bounded_when_the_homeserver_hangs(hanging) -> None:
    bot = maubot_testing.TestBot(mxid="@bot:hs.test", mxurl=hanging.url)
    rooms = RoomOps(bot.client, request_timeout=0.5)
    try:
        for call in (
            rooms.room_info(ROOM),
            rooms.member(ROOM, "@u:hs.test"),
            rooms.resolve_room("#alias:hs.test"),
            rooms.joined_members(ROOM),
        ):
            with pytest.raises(HomeserverUnavailable, match=r"did not answer within 0\.5s"):
                await asyncio.wait_for(call, 30)  # the bound is RoomOps', not this one
        invite = await asyncio.wait_for(rooms.invite(ROOM, "@u:hs.test", "hi"), 30)
        assert (invite.status, invite.errcode) == (0, "TPI_HOMESERVER_UNREACHABLE")
        assert hanging.connections >= 1
    finally:
        await bot.client.api.session.close()


async def test_web_api_answers_and_keeps_claims_while_the_homeserver_hangs(
    storage: Storage, hanging: HangingServer
) -> None:
    async with FakeHomeserver() as identity_server:  # the visitor's own homeserver is fine
        identity_server.sub = "@alice:hs.test"
        overrides = {
            "identity": {"server_urls": {"hs.test": identity_server.url}},
            "matrix": {"request_timeout": 1},
        }
        async with serve_plugin_web(storage, overrides, homeserver_url=hanging.url) as served:
            http, services, _ = served
            rooms = (ROOM, "!b:hs.test")
            _, token = await services.links.create("@admin:hs.test", rooms, 5, None)
            client_timeout = aiohttp.ClientTimeout(total=30)  # far above the 1 s bound
            async with http.post(
                "api/links/inspect", json={"token": token}, timeout=client_timeout
            ) as resp:
                assert resp.status == 200
                inspected = await resp.json()
            # The room's name is not to be had: its ID stands in, and still opens it.
            assert sorted(r["name"] for r in inspected["rooms"]) == ["!b:hs.test", ROOM]
            assert inspected["rooms"][0]["matrix_to"].startswith("https://matrix.to/#/")

            async with http.post(
                "api/session", json={"access_token": "t", "matrix_server_name": "hs.test"}
            ) as resp:
                assert resp.status == 200
            async with http.post(
                "api/links/claim", json={"token": token}, timeout=client_timeout
            ) as resp:
                assert resp.status == 202, await resp.text()
            async with http.get("api/invites", timeout=client_timeout) as resp:
                invites = (await resp.json())["invites"]
            # Recorded and queued: the queue delivers when the homeserver is back.
            assert sorted((i["room_id"], i["state"]) for i in invites) == [
                ("!b:hs.test", "pending"),
                (ROOM, "pending"),
            ]
            assert len(await storage.queue.due(now_ms(), 10)) == 2


@pytest.mark.parametrize("server", ["closed port", "hanging"])
async def test_queue_waits_out_an_unreachable_homeserver_quietly(
    storage: Storage, hanging: HangingServer, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = CLOSED_PORT_URL if server == "closed port" else hanging.url
    bot = maubot_testing.TestBot(mxid="@bot:hs.test", mxurl=url)
    reports = Reports()
    log = logging.getLogger("test.queue")
    queue = InviteQueue(
        storage,
        RoomOps(bot.client, request_timeout=0.5),
        InviteSettings(reason="test", max_attempts=8, max_backoff=60),
        reports,
        log,
    )
    now = now_ms()
    async with storage.db.acquire() as conn:
        for user in ("@a:hs.test", "@b:hs.test", "@c:hs.test"):
            await storage.queue.enqueue(conn, ROOM, user, None, now)
    try:
        with caplog.at_level(logging.INFO, logger="test.queue"):
            assert await queue.run_once() == 1  # the first invite fails; the rest wait
            assert await queue.run_once() == 0  # paused for that invite's backoff
    finally:
        await bot.client.api.session.close()
    rows = sorted(await storage.queue.all(), key=lambda r: r.user_id)
    assert [(r.state, r.attempts, r.errcode) for r in rows] == [
        ("pending", 1, "TPI_HOMESERVER_UNREACHABLE"),
        ("pending", 0, None),
        ("pending", 0, None),
    ]
    assert rows[0].next_attempt_at > now
    assert reports.failed == [] and reports.done == []
    records = [r for r in caplog.records if r.name == "test.queue"]
    assert [r.levelno for r in records] == [logging.WARNING], records
    assert "unreachable" in records[0].getMessage()
    assert all(r.exc_info is None for r in records)
