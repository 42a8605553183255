"""Room upgrades through Synapse's real `POST /rooms/{roomId}/upgrade`: the bot follows a
room it serves to the replacement (room version 10 -> 12, whose IDs name no server), takes
its invite links and queued invites along, and tells the admins; or, when it cannot get in,
says what to do and carries everything over once invited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import attrs
import pytest
import pytest_asyncio

from devtools.matrix_user import MatrixUser
from devtools.plugin import find_link
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@attrs.frozen
class World:
    stack: RunningStack
    admin_room: str

    @property
    def admin(self) -> MatrixUser:
        return self.stack.admin

    @property
    def bot(self) -> MatrixUser:
        return self.stack.bot


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(stack: RunningStack) -> AsyncIterator[World]:
    """The module's stack, with an admin room the bot reports to."""
    admin_room = await stack.room("Bot admins")
    await stack.configure(admin_room=admin_room)
    yield World(stack, admin_room)


async def v10_room(world: World, name: str, *, restricted_to_itself: bool) -> str:
    """A room version 10 room the bot serves. Restricted to its own members, its upgrade
    lets them (the bot included) join the replacement without an invite, as Element's
    upgrades of rooms in a space do; otherwise the replacement is invite-only."""
    admin, bot = world.admin, world.bot
    room_id = await admin.create_room(
        name,
        room_version="10",
        invite=[bot.user_id],
        power_level_content_override={
            "invite": 50,
            "users": {admin.user_id: 100, bot.user_id: 50},
        },
    )
    await admin.wait_for_membership(room_id, bot.user_id, "join", timeout=60)
    if restricted_to_itself:
        allow = [{"type": "m.room_membership", "room_id": room_id}]
        await admin.send_state(
            room_id, "m.room.join_rules", {"join_rule": "restricted", "allow": allow}
        )
    return room_id


async def upgrade(admin: MatrixUser, room_id: str, version: str = "12") -> str:
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/upgrade"
    data = await admin.request("POST", path, {"new_version": version})
    return str(data["replacement_room"])


async def ask(world: World, room_id: str, text: str, sender: MatrixUser | None = None) -> str:
    sender = sender or world.admin
    await sender.send_text(room_id, text)
    content = await sender.wait_for_message(
        room_id,
        lambda c: "m.in_reply_to" in c.get("m.relates_to", {}),
        sender=world.bot.user_id,
        timeout=60,
    )
    return str(content["body"])


async def notice(user: MatrixUser, world: World, room_id: str, text: str) -> str:
    content = await user.wait_for_message(
        room_id, lambda c: text in c.get("body", ""), sender=world.bot.user_id, timeout=60
    )
    return str(content["body"])


async def claim(world: World, user: MatrixUser, token: str) -> aiohttp.ClientSession:
    http = await world.stack.signed_in(user)
    async with http.post("api/links/claim", json={"token": token}) as resp:
        assert resp.status == 202, await resp.text()
    return http


async def outcome(http: aiohttp.ClientSession, room_id: str) -> dict:
    for _ in range(300):
        async with http.get("api/invites") as resp:
            invites = [i for i in (await resp.json())["invites"] if i["room_id"] == room_id]
        if invites and invites[0]["state"] != "pending":
            return invites[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no finished invite to {room_id}")


async def test_the_bot_follows_an_upgrade_it_may_join(world: World) -> None:
    admin = world.admin
    old = await v10_room(world, "Restricted lobby", restricted_to_itself=True)
    _, token = find_link(await ask(world, old, "!invitebot link --uses 5"))

    new = await upgrade(admin, old)
    assert ":" not in new  # room version 12: no server part

    await admin.wait_for_membership(new, world.bot.user_id, "join", timeout=60)
    told = await notice(admin, world, new, "I followed this room's upgrade")
    assert f"replaces {old}" in told and "carried over 1 invite link" in told
    told_admins = await notice(admin, world, world.admin_room, "was upgraded")
    assert "Restricted lobby" in told_admins and new in told_admins

    # The old link leads to the new room now.
    person = await world.stack.user("late")
    async with await claim(world, person, token) as http:
        assert (await outcome(http, new))["outcome"] == "invited"
    await person.wait_for_invite(new, timeout=60)
    assert await admin.membership(old, person.user_id) is None
    assert "active" in await ask(world, new, "!invitebot links")
    assert "room version 12" in await ask(world, new, "!invitebot status")


async def test_the_bot_asks_to_be_invited_then_carries_everything_over(world: World) -> None:
    admin = world.admin
    old = await v10_room(world, "Private lobby", restricted_to_itself=False)
    moderator = await world.stack.user("moderator")  # may invite, but is no operator
    await admin.invite(old, moderator.user_id)
    await moderator.join(old)
    await admin.set_power_level(old, moderator.user_id, 50)
    _, token = find_link(await ask(world, old, "!invitebot link --uses 5"))

    new = await upgrade(admin, old)

    told = await notice(admin, world, old, "I cannot follow it to the new room")
    assert "Invite me there" in told and "1 invite link" in told
    assert f"https://matrix.to/#/{new}?via=" in told
    await notice(admin, world, world.admin_room, "I cannot follow it")
    assert await admin.membership(new, world.bot.user_id) is None

    # Someone claims the old link meanwhile: invited to the old room, for now.
    early = await world.stack.user("early")
    async with await claim(world, early, token) as http:
        assert (await outcome(http, old))["outcome"] == "invited"

    # A moderator (no operator) invites the bot into the new room: it joins and moves in.
    await admin.invite(new, moderator.user_id)
    await moderator.join(new)
    await moderator.invite(new, world.bot.user_id)
    await admin.wait_for_membership(new, world.bot.user_id, "join", timeout=60)
    told = await notice(admin, world, new, "I followed this room's upgrade")
    assert "1 invite link and 1 queued invite" in told
    await early.wait_for_invite(new, timeout=60)  # re-invited where the room lives on

    later = await world.stack.user("later")
    async with await claim(world, later, token) as http:
        assert (await outcome(http, new))["outcome"] == "invited"


async def test_upgrades_missed_while_stopped_are_followed_to_the_end_on_start(
    world: World,
) -> None:
    stack, admin = world.stack, world.admin
    first = await v10_room(world, "Chain", restricted_to_itself=True)
    _, token = find_link(await ask(world, first, "!invitebot link --uses 5"))

    await stack.maubot.set_instance_started(stack.instance_id, False)
    try:
        # Both replacements stay restricted to members of the first room (Synapse copies
        # the join rule), so the bot can walk the chain on its own.
        second = await upgrade(admin, first)
        third = await upgrade(admin, second)
    finally:
        await stack.maubot.set_instance_started(stack.instance_id, True)

    await admin.wait_for_membership(third, world.bot.user_id, "join", timeout=60)
    assert await admin.membership(second, world.bot.user_id) == "join"
    told = await notice(admin, world, third, "I followed this room's upgrade")
    assert f"replaces {first}" in told and "1 invite link" in told
    person = await stack.user("chained")
    async with await claim(world, person, token) as http:
        assert (await outcome(http, third))["outcome"] == "invited"


async def bot_notices(world: World, room_id: str, text: str) -> list[str]:
    """The bot's messages in the room containing `text`, oldest first (room history)."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages"
    data = await world.admin.request("GET", path, params={"dir": "b", "limit": "100"})
    return [
        str(evt["content"].get("body", ""))
        for evt in reversed(data.get("chunk", []))
        if evt.get("type") == "m.room.message"
        and evt.get("sender") == world.bot.user_id
        and text in str(evt["content"].get("body", ""))
    ]


async def wait_for_log(world: World, pattern: str, count: int, timeout: float = 90) -> None:
    """Until maubot's log holds `pattern` `count` times: the bot's own word that it has
    handled a trigger, so that what it did not post can be asserted."""
    deadline = asyncio.get_running_loop().time() + timeout
    while world.stack.maubot.log_text().count(pattern) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{pattern!r} not {count} times in maubot's log")
        await asyncio.sleep(0.2)


async def test_an_upgrade_is_followed_once_whatever_triggers_it_again(world: World) -> None:
    """The tombstone, the invite into the new room and the invite's second delivery (in
    the new room's timeline, once the bot is in) all lead to the same upgrade: one move,
    one notice, the right count, even with a person's invite still unanswered in the old
    room (who must be invited to the new room, once)."""
    admin = world.admin
    old = await v10_room(world, "Private hall", restricted_to_itself=False)
    _, token = find_link(await ask(world, old, "!invitebot link --uses 5"))
    waiting = await world.stack.user("waiting")  # invited to the old room, never answers
    async with await claim(world, waiting, token) as http:
        assert (await outcome(http, old))["outcome"] == "invited"
    await waiting.wait_for_invite(old, timeout=60)

    new = await upgrade(admin, old)
    await notice(admin, world, old, "I cannot follow it to the new room")
    await admin.invite(new, world.bot.user_id)
    await admin.wait_for_membership(new, world.bot.user_id, "join", timeout=60)
    told = await notice(admin, world, new, "I followed this room's upgrade")
    assert "carried over 1 invite link and 1 queued invite." in told
    await waiting.wait_for_invite(new, timeout=60)

    # Every trigger again: the tombstone (as after a restart: the bot's start looks for
    # them), and the invite (its second delivery comes by itself).
    await admin.send_state(old, "m.room.tombstone", {"replacement_room": new, "body": "again"})
    await wait_for_log(world, f"Upgrade of {old} to {new} was followed already", 2)
    assert await bot_notices(world, new, "I followed this room's upgrade") == [told]
    admin_notices = await bot_notices(world, world.admin_room, "Private hall was upgraded")
    assert len(admin_notices) == 1 and "1 queued invite" in admin_notices[0]
    assert await admin.membership(new, waiting.user_id) == "invite"
