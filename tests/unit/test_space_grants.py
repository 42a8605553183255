"""Grants over spaces: who a room added later is owed to (storage, SQLite and PostgreSQL),
and SpaceRooms/GrantService over maubot's real client talking to a local homeserver that
answers the hierarchy and members endpoints in the spec's shapes, then goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging

from aiohttp import web
from maubot.testing import bot as maubot_testing
import pytest
import pytest_asyncio

from thirdparty_invite.durations import now_ms
from thirdparty_invite.matrix.rooms import HomeserverUnavailable, RoomOps
from thirdparty_invite.services.grants import GrantService, GrantSource
from thirdparty_invite.services.spaces import SpaceRooms
from thirdparty_invite.storage import BindingRule, Storage

SPACE, A, B = "!space:hs.test", "!a:hs.test", "!b:hs.test"


class SpaceServer:
    """The bot's homeserver, as far as spaces go: `/hierarchy` (max_depth=0) from `spaces`
    (room -> (room_type, [(child, content)])), `/members` from `members`; 403 for rooms it
    does not know (the bot is not in them); `down` answers 502 to everything."""

    def __init__(self) -> None:
        self.spaces: dict[str, tuple[str | None, list[tuple[str, dict]]]] = {}
        self.members: dict[str, dict[str, str]] = {}
        self.names: dict[str, str] = {}  # rooms the bot is in, by name (it may not invite)
        self.down = False
        self.hierarchy_calls = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _hierarchy(self, request: web.Request) -> web.Response:
        self.hierarchy_calls += 1
        room_id = request.match_info["room"]
        if self.down:
            raise web.HTTPBadGateway()
        if room_id not in self.spaces:
            return web.json_response(
                {"errcode": "M_FORBIDDEN", "error": "not in room"}, status=403
            )
        room_type, children = self.spaces[room_id]
        entry: dict = {
            "room_id": room_id,
            "num_joined_members": 3,
            "world_readable": False,
            "guest_can_join": False,
            "children_state": [
                {
                    "type": "m.space.child",
                    "state_key": child,
                    "content": content,
                    "sender": "@admin:hs.test",
                    "origin_server_ts": 1000 + i,
                }
                for i, (child, content) in enumerate(children)
            ],
        }
        if room_type:
            entry["room_type"] = room_type
        return web.json_response({"rooms": [entry]})

    async def _members(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room"]
        if self.down:
            raise web.HTTPBadGateway()
        chunk = [
            {
                "type": "m.room.member",
                "state_key": user,
                "sender": user,
                "content": {"membership": membership},
                "event_id": f"$m{i}",
                "room_id": room_id,
                "origin_server_ts": 1,
            }
            for i, (user, membership) in enumerate(self.members.get(room_id, {}).items())
        ]
        return web.json_response({"chunk": chunk})

    async def _state(self, request: web.Request) -> web.Response:
        room_id = request.match_info["room"]
        if self.down:
            raise web.HTTPBadGateway()
        if room_id not in self.names:
            refusal = {"errcode": "M_FORBIDDEN", "error": "not in room"}
            return web.json_response(refusal, status=403)

        def state(event_type: str, content: dict, sender: str = "@admin:hs.test") -> dict:
            return {"type": event_type, "state_key": "", "sender": sender, "content": content}

        return web.json_response(
            [
                state("m.room.create", {"room_version": "10", "creator": "@admin:hs.test"}),
                state("m.room.name", {"name": self.names[room_id]}),
                state("m.room.power_levels", {"invite": 50, "users": {"@admin:hs.test": 100}}),
            ]
        )

    async def __aenter__(self) -> SpaceServer:
        app = web.Application()
        app.router.add_get("/_matrix/client/v1/rooms/{room}/hierarchy", self._hierarchy)
        app.router.add_get("/_matrix/client/v3/rooms/{room}/members", self._members)
        app.router.add_get("/_matrix/client/v3/rooms/{room}/state", self._state)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def homeserver() -> AsyncIterator[SpaceServer]:
    async with SpaceServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def spaces(homeserver: SpaceServer) -> AsyncIterator[SpaceRooms]:
    bot = maubot_testing.TestBot(mxid="@bot:hs.test", mxurl=homeserver.url)
    rooms = RoomOps(bot.client, request_timeout=5)
    try:
        yield SpaceRooms(rooms, "", logging.getLogger("test.spaces"))
    finally:
        await bot.client.api.session.close()


def via(*servers: str) -> dict:
    return {"via": list(servers)}


async def test_expand_lists_each_space_then_its_rooms_once(
    homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    homeserver.spaces[SPACE] = ("m.space", [(B, via("hs.test")), (A, via("hs.test"))])
    homeserver.spaces["!other:hs.test"] = ("m.space", [(A, via("hs.test")), (SPACE, via("x"))])
    homeserver.spaces["!plain:hs.test"] = (None, [])
    expanded = await spaces.expand(("!plain:hs.test", SPACE, "!other:hs.test", "!gone:hs.test"))
    assert expanded == ("!plain:hs.test", SPACE, "!other:hs.test", "!gone:hs.test", B, A)


async def test_children_of_children_are_not_followed(
    homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    homeserver.spaces[SPACE] = ("m.space", [(A, via("hs.test"))])
    homeserver.spaces[A] = ("m.space", [(B, via("hs.test"))])  # a sub-space
    assert await spaces.expand((SPACE,)) == (SPACE, A)


async def test_a_down_homeserver_uses_a_recent_answer_else_says_so(
    homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    homeserver.spaces[SPACE] = ("m.space", [(A, via("hs.test"))])
    assert await spaces.expand((SPACE,)) == (SPACE, A)
    homeserver.down = True
    spaces._cache[SPACE] = (0.0, spaces._cache[SPACE][1])  # the minute is over
    assert await spaces.expand((SPACE,)) == (SPACE, A)  # a day-old answer still serves
    spaces.forget(SPACE)
    with pytest.raises(HomeserverUnavailable):
        await spaces.expand((SPACE,))


async def test_a_grant_for_a_space_queues_its_rooms_or_the_named_ones_when_down(
    storage: Storage, homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    grants = GrantService(storage, lambda: None, spaces)
    link = await storage.links.create("h", "@admin:hs.test", (SPACE,), None, None, now_ms())
    source = GrantSource(link_id=link.id)
    homeserver.spaces[SPACE] = ("m.space", [(A, via("hs.test")), (B, {})])  # B was removed
    grant = await grants.grant("@alice:hs.test", (SPACE,), source)
    assert grant.rooms == (SPACE, A)
    assert [(q.room_id, q.state) for q in await storage.queue.for_user("@alice:hs.test")] == [
        (SPACE, "pending"),
        (A, "pending"),
    ]
    homeserver.down = True
    spaces.forget(SPACE)
    grant = await grants.grant("@bob:hs.test", (SPACE,), source)
    assert grant.rooms == (SPACE,)


async def test_a_room_added_later_is_owed_to_grantees_still_in_the_space(
    storage: Storage, homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    grants = GrantService(storage, lambda: None, spaces)
    assert await grants.cover_child(SPACE, A) is None  # nothing names the space
    now = now_ms()
    link = await storage.links.create("h", "@admin:hs.test", (SPACE,), None, None, now)
    assert await grants.cover_child(SPACE, A) == 0  # named, nobody admitted yet
    for user in ("@in:hs.test", "@invited:hs.test", "@left:hs.test", "@kicked:hs.test"):
        await grants.grant(user, (SPACE,), GrantSource(link_id=link.id))
    homeserver.members[SPACE] = {
        "@in:hs.test": "join",
        "@invited:hs.test": "invite",
        "@left:hs.test": "leave",
        "@kicked:hs.test": "ban",
        "@stranger:hs.test": "join",  # in the space without a grant for it
    }
    assert await grants.cover_child(SPACE, B) == 2
    queued = {q.user_id for q in await storage.queue.all() if q.room_id == B}
    assert queued == {"@in:hs.test", "@invited:hs.test"}


async def test_grantees_of_a_room_leave_out_revoked_removed_and_lost(storage: Storage) -> None:
    now = now_ms()
    grants = GrantService(storage, lambda: None)
    live = await storage.links.create("h1", "@admin:x", (SPACE, A), None, None, now)
    revoked = await storage.links.create("h2", "@admin:x", (SPACE,), None, None, now)
    await grants.grant("@a:x", (SPACE,), GrantSource(link_id=live.id))
    await grants.grant("@b:x", (SPACE,), GrantSource(link_id=revoked.id))
    await storage.links.revoke(revoked.id, "@admin:x", now)
    assert [user for user, _ in await storage.links.grantees_of_room(SPACE)] == ["@a:x"]
    assert await storage.links.grantees_of_room(B) == []

    rules = (BindingRule("github", "org:x"),)
    binding = await storage.bindings.create("pub1", "@admin:x", rules, (SPACE,), now, now)
    removed = await storage.bindings.create("pub2", "@admin:x", rules, (SPACE,), now, now)
    for user in ("@c:x", "@d:x", "@e:x"):
        await grants.grant(user, (SPACE,), GrantSource(binding_id=binding.id, external_id=user))
    await grants.grant("@f:x", (SPACE,), GrantSource(binding_id=removed.id, external_id="f"))
    await storage.bindings.remove(removed.id, "@admin:x", now)
    # @d lost the rule and the policy acted; @e lost it but is within the grace period.
    await storage.db.execute(
        "INSERT INTO losses (binding_id, user_id, first_at, reason, acted_at, action)"
        " VALUES ($1, '@d:x', $2, 'r', $2, 'kick'), ($1, '@e:x', $2, 'r', NULL, NULL)",
        binding.id,
        now,
    )
    assert [user for user, _ in await storage.bindings.grantees_of_room(SPACE)] == [
        "@c:x",
        "@e:x",
    ]


async def test_catching_up_queues_only_who_was_never_queued_or_failed(
    storage: Storage, homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    grants = GrantService(storage, lambda: None, spaces)
    link = await storage.links.create("h", "@admin:hs.test", (SPACE,), None, None, now_ms())
    homeserver.spaces[SPACE] = ("m.space", [])
    await grants.grant("@in:hs.test", (SPACE,), GrantSource(link_id=link.id))
    await grants.grant("@out:hs.test", (SPACE,), GrantSource(link_id=link.id))
    homeserver.members[SPACE] = {"@in:hs.test": "join", "@out:hs.test": "leave"}
    # A room added while the bot was stopped: no event came.
    homeserver.spaces[SPACE] = ("m.space", [(A, via("hs.test"))])
    spaces.forget(SPACE)
    assert await grants.cover_missed() == 1
    assert await grants.cover_missed() == 0  # queued already
    assert await grants.cover_missed(B) == 0  # not a room of a covered space
    (row,) = [q for q in await storage.queue.all() if q.room_id == A]
    assert row.user_id == "@in:hs.test"
    await storage.queue.fail(row.id, "M_FORBIDDEN", "not in room", now_ms())
    assert await grants.bot_joined(A) == 1  # the bot is in the room now: failed ones again
    homeserver.down = True
    spaces.forget(SPACE)
    assert await grants.cover_missed() == 0  # nothing known: left for the next time


async def test_power_gaps_name_the_rooms_of_a_space_where_the_bot_cannot_invite(
    homeserver: SpaceServer, spaces: SpaceRooms
) -> None:
    homeserver.spaces[SPACE] = ("m.space", [(A, via("hs.test")), (B, via("hs.test"))])
    homeserver.names.update({SPACE: "Community", A: "General"})
    assert await spaces.power_gaps((SPACE,)) == [
        "In General, a room of Community, I lack invite (needs power level 50, has 0): "
        "raise my power level there.",
        f"I am not in {B}, a room of Community: invite me there, or the people admitted to "
        "the space cannot be invited to it.",
    ]
    assert await spaces.power_gaps((A,)) == []  # no space: the command checks it itself
    homeserver.down = True
    (sentence,) = await spaces.power_gaps((SPACE,))
    assert sentence.startswith("My homeserver did not answer")
