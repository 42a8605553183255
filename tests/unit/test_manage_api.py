"""The admin panel's API (api/manage/*) over HTTP: the room list from the bot's state store,
every action re-checked fresh, and no way to tell a room one may not manage from one that
does not exist. The bot's homeserver is a fake serving each room's state; the state store
is mautrix's real SQL one (maubot's), on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from pathlib import Path

import aiohttp
from mautrix.client.state_store.asyncpg import PgStateStore
from mautrix.types import Membership, RoomID, StateEvent, UserID
from mautrix.util.async_db import Database
import pytest
import pytest_asyncio
from support.fakehomeserver import FakeHomeserver
from support.plugin_web import serve_plugin_web

from devtools.web_client import web_client
from thirdparty_invite.storage import Storage

BOT = "@bot:hs.test"
ALICE, BOB = "@alice:hs.test", "@bob:hs.test"
ROOM_A, ROOM_B, SPACE = "!a:hs.test", "!b:hs.test", "!space"
JSON_TYPE = {"Content-Type": "application/json"}
ROUTES = (
    "rooms",
    "room",
    "links/create",
    "links/revoke",
    "rules/check",
    "providers",
    "bindings/create",
    "bindings/remove",
    "bindings/policy",
    "bindings/recheck",
    "invites/retry",
)


def _event(event_type: str, sender: str, content: dict) -> dict:
    return {
        "type": event_type,
        "state_key": "",
        "sender": sender,
        "content": content,
        "event_id": f"$x{event_type}",
        "origin_server_ts": 1,
    }


def room_state(name: str, users: dict[str, int], *, version: str = "10", space: bool = False):
    create = {"room_version": version} | ({"type": "m.space"} if space else {})
    return [
        _event("m.room.create", ALICE if version == "12" else BOT, create),
        _event("m.room.power_levels", BOT, {"users": users, "invite": 50, "kick": 50}),
        _event("m.room.name", BOT, {"name": name}),
    ]


class Stack:
    def __init__(self, http, services, homeserver: FakeHomeserver, store: PgStateStore) -> None:
        self.http, self.services, self.homeserver, self.store = http, services, homeserver, store

    def serve_room(self, room_id: str, state: list[dict]) -> None:
        self.homeserver.route(
            f"/_matrix/client/v3/rooms/{room_id}/state", state, headers=JSON_TYPE
        )

    async def bot_in(self, room_id: str, state: list[dict]) -> None:
        """The bot is joined and its state store holds the room, as sync leaves it."""
        self.serve_room(room_id, state)
        await self.store.set_membership(RoomID(room_id), UserID(BOT), Membership.JOIN)
        for raw in state:
            if raw["type"] in ("m.room.create", "m.room.power_levels"):
                await self.store.update_state(StateEvent.deserialize({**raw, "room_id": room_id}))

    async def sign_in(self, user_id: str) -> aiohttp.ClientSession:
        self.homeserver.sub = user_id
        session = web_client(str(self.http._base_url))
        async with session.post(
            "api/session",
            json={"access_token": f"tok-{user_id}-{id(session)}", "matrix_server_name": "hs.test"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        return session

    def state_requests(self) -> int:
        return sum(1 for r in self.homeserver.requests if r.path.endswith("/state"))


@pytest_asyncio.fixture(loop_scope="session")
async def stack(storage: Storage, tmp_path: Path) -> AsyncIterator[Stack]:
    state_db = Database.create(
        f"sqlite:{tmp_path / 'maubot.db'}",
        upgrade_table=PgStateStore.upgrade_table,
        log=logging.getLogger("test.state"),
    )
    await state_db.start()
    store = PgStateStore(state_db)
    async with FakeHomeserver() as homeserver:
        overrides = {
            "identity": {"server_urls": {"hs.test": homeserver.url}},
            "providers": {"github": {"client_id": "a", "client_secret": "b"}},
        }
        async with serve_plugin_web(storage, overrides, homeserver_url=homeserver.url) as (
            http,
            services,
            _,
        ):
            services.rooms.client.state_store = store
            stack = Stack(http, services, homeserver, store)
            await stack.bot_in(ROOM_A, room_state("Alpha", {ALICE: 50, BOT: 100}))
            await stack.bot_in(ROOM_B, room_state("Beta", {BOT: 100}))
            await stack.bot_in(SPACE, room_state("Crew", {BOT: 100}, version="12", space=True))
            yield stack
    await state_db.stop()


async def post(session: aiohttp.ClientSession, name: str, body: dict) -> tuple[int, dict]:
    async with session.post(f"api/manage/{name}", json=body) as resp:
        return resp.status, await resp.json()


async def test_the_room_list_comes_from_the_state_store(stack: Stack) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        status, body = await post(alice, "rooms", {})
        assert status == 200, body
        assert body["user_id"] == ALICE
        # Alpha (power 50 where inviting needs 50) and the v12 space she created; not Beta.
        assert [(r["room_id"], r["name"], r["is_space"]) for r in body["rooms"]] == [
            (ROOM_A, "Alpha", False),
            (SPACE, "Crew", True),
        ]
        assert [r["may_kick"] for r in body["rooms"]] == [True, True]
        # Names were read once; a second load asks the homeserver nothing.
        before = stack.state_requests()
        assert (await post(alice, "rooms", {}))[1] == body
        assert stack.state_requests() == before

    bob = await stack.sign_in(BOB)
    async with bob:
        assert await post(bob, "rooms", {}) == (200, {"user_id": BOB, "rooms": []})


async def test_a_room_the_store_lacks_is_read_once_and_kept(stack: Stack) -> None:
    await stack.store.set_membership(RoomID("!new:hs.test"), UserID(BOT), Membership.JOIN)
    stack.serve_room("!new:hs.test", room_state("Newcomers", {ALICE: 100}))
    alice = await stack.sign_in(ALICE)
    async with alice:
        _, body = await post(alice, "rooms", {})
        assert "Newcomers" in [r["name"] for r in body["rooms"]]
        assert await stack.store.get_power_levels(RoomID("!new:hs.test")) is not None
        before = stack.state_requests()
        await post(alice, "rooms", {})
        assert stack.state_requests() == before


async def test_a_room_the_bot_left_unseen_is_marked_left(stack: Stack) -> None:
    # The store says joined, the homeserver says otherwise (the bot's leave was missed).
    await stack.store.set_membership(RoomID("!ghost:hs.test"), UserID(BOT), Membership.JOIN)
    alice = await stack.sign_in(ALICE)
    async with alice:
        _, body = await post(alice, "rooms", {})
        assert "!ghost:hs.test" not in [r["room_id"] for r in body["rooms"]]
    member = await stack.store.get_member(RoomID("!ghost:hs.test"), UserID(BOT))
    assert member is not None and member.membership == Membership.LEAVE


async def test_links_created_claimed_and_revoked_through_the_panel(stack: Stack) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        status, body = await post(
            alice,
            "links/create",
            {"room_id": ROOM_A, "name": "Newsletter", "uses": 3, "expires": "7d"},
        )
        assert status == 200, body
        link, url = body["link"], body["url"]
        assert body["notes"] == []  # no space among the rooms: nothing to add
        assert url.startswith(str(stack.http._base_url)) and "/invite#" in url
        assert (link["name"], link["uses_left"], link["state"]) == ("Newsletter", 3, "active")
        token = url.rsplit("#", 1)[1]
        await stack.services.links.claim(token, BOB)

        status, view = await post(alice, "room", {"room_id": ROOM_A})
        assert status == 200, view
        assert view["room"]["name"] == "Alpha"
        [shown] = view["links"]
        assert shown["id"] == link["id"] and shown["uses_left"] == 2
        assert [j["user_id"] for j in shown["joined"]] == [BOB]
        assert "token" not in str(shown) and token not in str(view)
        assert [(p["user_id"], p["how"], p["link_id"]) for p in view["people"]] == [
            (BOB, "link", link["id"])
        ]
        assert [i["user_id"] for i in view["invites"]["pending"]] == [BOB]
        assert [e["action"] for e in view["audit"]][:2] == ["granted", "link_created"]

        status, body = await post(
            alice, "links/revoke", {"room_id": ROOM_A, "link_id": link["id"]}
        )
        assert (status, body["link"]["state"]) == (200, "revoked")
        # A link of another room (or none) is not this room's, whatever its id.
        status, body = await post(alice, "links/revoke", {"room_id": SPACE, "link_id": link["id"]})
        assert (status, body["errcode"]) == (404, "TPI_LINK_UNKNOWN")


async def test_bindings_through_the_panel(stack: Stack) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        status, body = await post(alice, "rules/check", {"rules": "github org:matrix-org"})
        assert status == 200, body
        assert body["description"] == "members of the GitHub organisation matrix-org"
        assert body["rules"][0]["text"] == "org:matrix-org"
        status, body = await post(alice, "rules/check", {"rules": "github team:nope"})
        assert (status, body["errcode"]) == (400, "TPI_BAD_RULE")
        assert body["error"].startswith("GitHub: team rules look like team:ORG/TEAM")

        status, body = await post(alice, "providers", {})
        [github] = body["providers"]
        kinds = {k["kind"]: k for k in github["rule_kinds"]}
        assert set(kinds) == {"org", "team", "repo", "sponsor"}
        assert [f["separator"] for f in kinds["team"]["fields"]] == ["", "/"]

        status, body = await post(
            alice, "bindings/create", {"room_id": ROOM_A, "rules": "github org:matrix-org"}
        )
        assert status == 200, body
        binding = body["binding"]
        assert body["url"].endswith("/join#" + binding["id"]) and binding["policy"] == "notify"

        status, body = await post(
            alice,
            "bindings/policy",
            {"room_id": ROOM_A, "binding": binding["id"], "policy": "dry-run", "grace": "3d"},
        )
        assert status == 200, body
        assert (body["binding"]["policy"], body["binding"]["grace_seconds"]) == ("dry-run", 259200)
        status, body = await post(
            alice, "bindings/policy", {"room_id": ROOM_A, "binding": binding["id"], "policy": "x"}
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

        status, view = await post(alice, "room", {"room_id": ROOM_A})
        assert [b["id"] for b in view["bindings"]] == [binding["id"]]

        status, body = await post(
            alice, "bindings/remove", {"room_id": ROOM_A, "binding": binding["id"]}
        )
        assert status == 200, body
        status, view = await post(alice, "room", {"room_id": ROOM_A})
        assert view["bindings"] == []


async def test_the_new_accounts_switch_is_refused_when_registration_is_off(stack: Stack) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        _, body = await post(alice, "providers", {})
        assert body["registration"] is None
        links_before = await stack.services.links.for_room(ROOM_A)
        for name, request in (
            ("links/create", {"room_id": ROOM_A, "register": True}),
            ("bindings/create", {"room_id": ROOM_A, "rules": "github org:x", "register": True}),
        ):
            status, answer = await post(alice, name, request)
            assert (status, answer["errcode"]) == (404, "TPI_REGISTRATION_OFF"), answer
        assert await stack.services.links.for_room(ROOM_A) == links_before  # nothing made
        status, answer = await post(alice, "links/create", {"room_id": ROOM_A, "register": 1})
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
        status, answer = await post(alice, "links/create", {"room_id": ROOM_A})
        assert answer["link"]["register"] is False


async def test_a_failed_invite_is_queued_again_only_with_a_grant(stack: Stack) -> None:
    _, token = await stack.services.links.create(ALICE, (ROOM_A,), None, None)
    await stack.services.links.claim(token, BOB)
    [row] = [i for i in await stack.services.storage.queue.all() if i.user_id == BOB]
    await stack.services.storage.queue.fail(row.id, "M_FORBIDDEN", "blocked", 1)
    alice = await stack.sign_in(ALICE)
    async with alice:
        _, view = await post(alice, "room", {"room_id": ROOM_A})
        assert [i["user_id"] for i in view["invites"]["failed"]] == [BOB]
        status, body = await post(alice, "invites/retry", {"room_id": ROOM_A, "user_id": BOB})
        assert (status, body) == (200, {"queued": [ROOM_A]})
        _, view = await post(alice, "room", {"room_id": ROOM_A})
        assert view["invites"]["failed"] == []
        status, body = await post(
            alice, "invites/retry", {"room_id": ROOM_A, "user_id": "@carol:hs.test"}
        )
        assert (status, body["errcode"]) == (404, "TPI_INVITE_UNKNOWN")


def _acts(room_id: str) -> list[tuple[str, dict]]:
    return [
        ("room", {"room_id": room_id}),
        ("links/create", {"room_id": room_id}),
        ("links/revoke", {"room_id": room_id, "link_id": 1}),
        ("bindings/create", {"room_id": room_id, "rules": "github org:x"}),
        ("bindings/remove", {"room_id": room_id, "binding": "AAAAAAAAAAAAAAAA"}),
        ("bindings/policy", {"room_id": room_id, "binding": "AAAAAAAAAAAAAAAA", "policy": "kick"}),
        ("bindings/recheck", {"room_id": room_id, "binding": "AAAAAAAAAAAAAAAA"}),
        ("invites/retry", {"room_id": room_id, "user_id": ALICE}),
    ]


async def test_a_room_one_may_not_manage_answers_as_one_that_does_not_exist(stack: Stack) -> None:
    bob = await stack.sign_in(BOB)
    async with bob:
        answers = set()
        for room_id in (ROOM_A, "!missing:hs.test", "not a room", "!a:hs.test/../state"):
            for name, body in _acts(room_id):
                status, answer = await post(bob, name, body)
                answers.add((status, answer["errcode"], answer["error"]))
        [(status, errcode, error)] = answers
        assert (status, errcode) == (403, "TPI_NOT_ROOM_ADMIN")
        assert "Alpha" not in error and ROOM_A not in error


async def test_someone_demoted_mid_session_is_refused(stack: Stack) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        assert (await post(alice, "room", {"room_id": ROOM_A}))[0] == 200
        stack.serve_room(ROOM_A, room_state("Alpha", {ALICE: 0, BOT: 100}))
        for name, body in _acts(ROOM_A):
            status, answer = await post(alice, name, body)
            assert (status, answer["errcode"]) == (403, "TPI_NOT_ROOM_ADMIN"), name
            assert "power to invite" in answer["error"]
        # The fresh read reached the state store: the list no longer shows the room.
        _, body = await post(alice, "rooms", {})
        assert ROOM_A not in [r["room_id"] for r in body["rooms"]]
        stack.serve_room(ROOM_A, room_state("Alpha", {ALICE: 50, BOT: 100}))


async def test_no_cookie_and_a_forged_origin_are_refused(stack: Stack) -> None:
    base = stack.http._base_url
    async with aiohttp.ClientSession(
        base_url=base, headers={"Origin": str(base.origin())}
    ) as anon:
        for name in ROUTES:
            status, body = await post(anon, name, {"room_id": ROOM_A})
            assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN"), name
    alice = await stack.sign_in(ALICE)
    async with alice:
        for name in ROUTES:
            async with alice.post(
                f"api/manage/{name}", json={}, headers={"Origin": "https://evil.example"}
            ) as resp:
                assert (resp.status, (await resp.json())["errcode"]) == (
                    403,
                    "TPI_ORIGIN_FORBIDDEN",
                ), name


@pytest.mark.parametrize(
    ("name", "body", "errcode"),
    [
        ("room", {}, "M_MISSING_PARAM"),
        ("room", {"room_id": 5}, "M_INVALID_PARAM"),
        ("room", {"room_id": "!a:hs.test\n"}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "uses": "3"}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "uses": 0}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "uses": True}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "rooms": ROOM_B}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "rooms": [ROOM_B] * 21}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "rooms": [{"x": 1}]}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "name": "x" * 101}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "expires": "soon"}, "M_INVALID_PARAM"),
        ("links/create", {"room_id": ROOM_A, "expires": "999d"}, "M_INVALID_PARAM"),
        ("links/revoke", {"room_id": ROOM_A, "link_id": -1}, "M_INVALID_PARAM"),
        ("rules/check", {"rules": "x" * 2000}, "M_INVALID_PARAM"),
        ("rules/check", {"rules": "gitlab group:x"}, "TPI_BAD_RULE"),
        (
            "bindings/policy",
            {"room_id": ROOM_A, "binding": "b" * 16, "policy": "kick", "grace": "1y"},
            "M_INVALID_PARAM",
        ),
    ],
)
async def test_hostile_bodies(stack: Stack, name: str, body: dict, errcode: str) -> None:
    alice = await stack.sign_in(ALICE)
    async with alice:
        status, answer = await post(alice, name, body)
        assert (status, answer["errcode"]) == (400, errcode), answer
        assert set(answer) == {"errcode", "error"}


async def test_chat_replies_give_the_panel_address(stack: Stack) -> None:
    url = stack.services.manage_url(ROOM_A)
    assert url == str(stack.http._base_url) + "manage#" + ROOM_A


async def test_the_new_accounts_switch_offers_them(storage: Storage) -> None:
    """With `registration:` set up, the switch does what `--register` does (no token is
    minted before someone qualifies, so Synapse's admin API is not asked here)."""
    async with FakeHomeserver() as homeserver:
        overrides = {
            "identity": {"server_urls": {"hs.test": homeserver.url}},
            "providers": {"github": {"client_id": "a", "client_secret": "b"}},
            "registration": {
                "server_name": "hs.test",
                "admin_api_url": "http://127.0.0.1:9",
                "admin_token": "secret",
            },
        }
        async with serve_plugin_web(storage, overrides, homeserver_url=homeserver.url) as (
            http,
            _,
            _,
        ):
            homeserver.route(
                f"/_matrix/client/v3/rooms/{ROOM_A}/state",
                room_state("Alpha", {ALICE: 50, BOT: 100}),
                headers=JSON_TYPE,
            )
            homeserver.sub = ALICE
            async with web_client(str(http._base_url)) as alice:
                async with alice.post(
                    "api/session", json={"access_token": "reg", "matrix_server_name": "hs.test"}
                ) as resp:
                    assert resp.status == 200
                _, body = await post(alice, "providers", {})
                assert body["registration"] == {"server_name": "hs.test"}
                status, made = await post(
                    alice, "links/create", {"room_id": ROOM_A, "register": True}
                )
                assert status == 200, made
                assert made["link"]["register"] is True
                assert "create one on hs.test" in made["notes"][-1]
                status, bound = await post(
                    alice,
                    "bindings/create",
                    {"room_id": ROOM_A, "rules": "github org:x", "register": True},
                )
                assert (status, bound["binding"]["register"]) == (200, True), bound
                status, view = await post(alice, "room", {"room_id": ROOM_A})
                assert status == 200, view
                assert [link["register"] for link in view["links"]] == [True]
                assert [b["register"] for b in view["bindings"]] == [True]
                assert "secret" not in str(view) + str(made) + str(bound)


async def test_external_account_names_only_where_the_operator_turned_them_on(
    stack: Stack,
) -> None:
    from thirdparty_invite.services.grants import GrantSource

    alice = await stack.sign_in(ALICE)
    async with alice:
        status, body = await post(
            alice, "bindings/create", {"room_id": ROOM_A, "rules": "github org:matrix-org"}
        )
        assert status == 200, body
        view = await stack.services.bindings.get(body["binding"]["id"])
        storage = stack.services.storage

        async def seat(conn, now: int) -> None:  # type: ignore[no-untyped-def]
            assert await storage.signins.take_account_slot(
                conn, view.binding.id, "github", "583231", "@carol:hs.test", 1, now, "octocat"
            )

        source = GrantSource(binding_id=view.binding.id, external_id="github:583231")
        await stack.services.grants.grant("@carol:hs.test", view.binding.rooms, source, seat)
        status, room = await post(alice, "room", {"room_id": ROOM_A})
        [carol] = [p for p in room["people"] if p["user_id"] == "@carol:hs.test"]
        assert carol["how"] == "binding" and carol["accounts"] == []  # off by default
        stack.services.manage.show_external_accounts = True  # web.show_external_accounts
        try:
            status, room = await post(alice, "room", {"room_id": ROOM_A})
        finally:
            stack.services.manage.show_external_accounts = False
        [carol] = [p for p in room["people"] if p["user_id"] == "@carol:hs.test"]
        assert carol["accounts"] == [{"provider": "github", "name": "octocat"}]
