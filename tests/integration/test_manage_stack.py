"""The admin panel's API on the real stack (Synapse, maubot, the built plugin, a local
GitHub): an admin creates a link and a binding through api/manage, a person comes in
through each, and the admin sees them in the room's view; a non-admin sees no rooms and
cannot act by crafting requests; an admin demoted mid-session is refused at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import secrets

import aiohttp
import pytest
import pytest_asyncio
from support.providers.github import FakeGitHub

from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(stack: RunningStack) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        section = server.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
        await stack.configure(providers={"github": section})
        await stack.wait_web_ready()
        yield server
        await stack.configure()


async def post(http: aiohttp.ClientSession, path: str, body: dict) -> tuple[int, dict]:
    async with http.post(path, json=body) as resp:
        return resp.status, await resp.json()


async def command(stack: RunningStack, room_id: str, text: str) -> str:
    """The bot's reply to a command the admin types in the room."""
    event_id = await stack.admin.send_text(room_id, text)
    reply = await stack.admin.wait_for_message(
        room_id,
        lambda c: c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id,
        sender=stack.bot.user_id,
        timeout=60,
    )
    return reply["body"]


async def manage(http: aiohttp.ClientSession, name: str, body: dict) -> tuple[int, dict]:
    return await post(http, f"api/manage/{name}", body)


async def rooms_of(http: aiohttp.ClientSession, want: str | None, timeout: float = 30) -> list:
    """The panel's room list, once it shows `want` (None: as it is now): the list reads the
    state the bot's sync keeps, which follows the homeserver within a sync or two."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await manage(http, "rooms", {})
        assert status == 200, body
        ids = [room["room_id"] for room in body["rooms"]]
        if want is None or want in ids or asyncio.get_running_loop().time() > deadline:
            return body["rooms"]
        await asyncio.sleep(0.5)


async def join_through_github(
    stack: RunningStack, github: FakeGitHub, binding: str, login: str
) -> str:
    """A new person proves membership of matrix-org at GitHub: their Matrix ID."""
    person = await stack.user("member")
    github.sign_in_as(github.add_account(login).join_org("matrix-org"))
    async with await stack.signed_in(person) as http:
        status, started = await post(
            http, "api/oauth/start", {"binding": binding, "provider": "github"}
        )
        assert status == 200, started
        back = await github.visit_authorize(started["authorize_url"])
        async with http.get(back, allow_redirects=False) as resp:
            assert resp.status == 303
        for _ in range(300):
            _, progress = await post(http, "api/bindings/progress", {"binding": binding})
            if progress["granted"]:
                break
            await asyncio.sleep(0.1)
        assert progress["granted"], progress
    return person.user_id


async def test_an_admin_creates_a_link_and_a_binding_and_sees_who_came(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Panel room", topic="Where the panel is tried")
    reply = await command(stack, room_id, "!invitebot link --uses 1")
    assert f"{stack.web_url}manage#{room_id}" in reply  # the chat reply gives the panel

    async with await stack.signed_in(stack.admin) as admin:
        rooms = await rooms_of(admin, room_id)
        [room] = [r for r in rooms if r["room_id"] == room_id]
        # The admin created the room: a creator (room v12) or power 100 (earlier versions).
        assert (room["name"], room["topic"], room["is_space"]) == (
            "Panel room",
            "Where the panel is tried",
            False,
        )

        status, created = await manage(
            admin, "links/create", {"room_id": room_id, "name": "Friends", "uses": 5}
        )
        assert status == 200, created
        token = created["url"].rsplit("#", 1)[1]
        alice = await stack.user("alice")
        async with await stack.signed_in(alice) as http:
            status, claimed = await post(http, "api/links/claim", {"token": token})
            assert status == 202, claimed
        await stack.admin.wait_for_membership(room_id, alice.user_id, "invite", timeout=60)

        status, bound = await manage(
            admin, "bindings/create", {"room_id": room_id, "rules": "github org:matrix-org"}
        )
        assert status == 200, bound
        binding = bound["binding"]["id"]
        assert bound["url"] == f"{stack.web_url}join#{binding}"
        bob = await join_through_github(stack, github, binding, f"bob{secrets.token_hex(2)}")
        await stack.admin.wait_for_membership(room_id, bob, "invite", timeout=60)

        status, view = await manage(admin, "room", {"room_id": room_id})
        assert status == 200, view
        by_id = {link["id"]: link for link in view["links"]}
        link = by_id[created["link"]["id"]]
        assert (link["name"], link["uses_left"]) == ("Friends", 4)
        assert [j["user_id"] for j in link["joined"]] == [alice.user_id]
        assert [b["id"] for b in view["bindings"]] == [binding]
        assert (
            view["bindings"][0]["description"] == "members of the GitHub organisation matrix-org"
        )
        how = {(p["user_id"], p["how"], p["link_id"] or p["binding"]) for p in view["people"]}
        assert how == {(alice.user_id, "link", link["id"]), (bob, "binding", binding)}
        actions = [entry["action"] for entry in view["audit"]]
        assert {"link_created", "binding_created", "granted", "invited"} <= set(actions)

        status, revoked = await manage(
            admin, "links/revoke", {"room_id": room_id, "link_id": link["id"]}
        )
        assert (status, revoked["link"]["state"]) == (200, "revoked")

        # A new name reaches the list through the bot's sync, not through page loads.
        await stack.admin.send_state(room_id, "m.room.name", {"name": "Renamed room"})
        for _ in range(60):
            names = {r["room_id"]: r["name"] for r in await rooms_of(admin, None)}
            if names[room_id] == "Renamed room":
                break
            await asyncio.sleep(0.5)
        assert names[room_id] == "Renamed room"


async def test_a_non_admin_sees_no_rooms_and_cannot_act(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Not yours")
    mallory = await stack.user("mallory")
    await stack.admin.invite(room_id, mallory.user_id)
    await mallory.join(room_id)
    async with await stack.signed_in(mallory) as http:
        assert await rooms_of(http, None) == []
        answers = set()
        for target in (room_id, f"!{secrets.token_hex(9)}:{stack.synapse.server_name}"):
            for name, body in (
                ("room", {"room_id": target}),
                ("links/create", {"room_id": target}),
                ("bindings/create", {"room_id": target, "rules": "github org:matrix-org"}),
                ("invites/retry", {"room_id": target, "user_id": mallory.user_id}),
            ):
                status, answer = await manage(http, name, body)
                answers.add((status, answer["errcode"], answer["error"]))
        [(status, errcode, _)] = answers
        assert (status, errcode) == (403, "TPI_NOT_ROOM_ADMIN")


async def test_an_admin_demoted_mid_session_is_refused(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Shifting power")
    carol = await stack.user("carol")
    await stack.admin.invite(room_id, carol.user_id)
    await carol.join(room_id)
    await stack.admin.set_power_level(room_id, carol.user_id, 50)
    async with await stack.signed_in(carol) as http:
        assert room_id in [r["room_id"] for r in await rooms_of(http, room_id)]
        assert (await manage(http, "room", {"room_id": room_id}))[0] == 200
        await stack.admin.set_power_level(room_id, carol.user_id, 0)
        status, answer = await manage(http, "links/create", {"room_id": room_id})
        assert (status, answer["errcode"]) == (403, "TPI_NOT_ROOM_ADMIN")
        assert "power to invite" in answer["error"]
        # The fresh read also reached the bot's state store: the list has dropped the room.
        assert room_id not in [r["room_id"] for r in await rooms_of(http, None)]
