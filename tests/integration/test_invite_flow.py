"""End to end: the .mbp in a full maubot server, a real Synapse, real users and invites."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from devtools.matrix_user import MatrixUser
from devtools.plugin import RunningPlugin, find_link, instance_config
from devtools.web_client import signed_in_session

pytestmark = pytest.mark.integration

# invite needs 50 so that plain members are "under-powered" in these rooms.
ROOM_POWER = {"invite": 50}


async def room_with_bot(world: dict, version: str | None, bot_level: int = 50) -> str:
    admin: MatrixUser = world["admin"]
    bot: MatrixUser = world["bot"]
    room_id = await admin.create_room(
        f"Room v{version or 'default'}",
        room_version=version,
        invite=[bot.user_id],
        power_level_content_override={
            **ROOM_POWER,
            "users": {admin.user_id: 100, bot.user_id: bot_level},
        }
        if version == "10"
        else {**ROOM_POWER, "users": {bot.user_id: bot_level}},
    )
    await admin.wait_for_membership(room_id, bot.user_id, "join")
    return room_id


async def command(world: dict, room_id: str, text: str, sender: MatrixUser | None = None) -> str:
    sender = sender or world["admin"]
    await sender.send_text(room_id, text)
    content = await sender.wait_for_message(
        room_id,
        lambda c: "m.in_reply_to" in c.get("m.relates_to", {}),  # the answer, not a notice
        sender=world["bot"].user_id,
        timeout=60,
    )
    return content["body"]


async def open_session(plugin: RunningPlugin, user: MatrixUser) -> aiohttp.ClientSession:
    """A browser-like session (cookie jar, Origin) signed in with a fresh OpenID token."""
    return await signed_in_session(plugin.web_url, user)


async def wait_invites(http: aiohttp.ClientSession, room_id: str) -> dict:
    for _ in range(150):
        async with http.get("api/invites") as resp:
            invites = [i for i in (await resp.json())["invites"] if i["room_id"] == room_id]
        if invites and invites[0]["state"] != "pending":
            return invites[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"invite to {room_id} still pending")


@pytest.mark.parametrize("version", ["10", "12"])
async def test_link_to_invite_to_join(world, make_user, version: str) -> None:
    room_id = await room_with_bot(world, version)
    reply = await command(world, room_id, "!invitebot link --uses 3 --expires 1d")
    assert "3 of 3 uses left" in reply
    _, token = find_link(reply)

    user = await make_user("joiner")
    http = await open_session(world["plugin"], user)
    async with http:
        async with http.post("api/links/inspect", json={"token": token}) as resp:
            info = await resp.json()
        assert info["status"] == "active" and info["rooms"][0]["name"] == f"Room v{version}"
        async with http.post("api/links/claim", json={"token": token}) as resp:
            assert resp.status == 202
        result = await wait_invites(http, room_id)
    assert (result["state"], result["outcome"]) == ("done", "invited")
    await user.wait_for_invite(room_id)
    assert await world["admin"].membership(room_id, user.user_id) == "invite"
    await user.join(room_id)
    assert await world["admin"].membership(room_id, user.user_id) == "join"

    status = await command(world, room_id, "!invitebot status")
    assert f"room version {version}" in status and "1 delivered" in status


async def test_replayed_openid_token_is_refused(world, make_user) -> None:
    plugin: RunningPlugin = world["plugin"]
    user = await make_user("replay")
    openid = await user.request_openid_token()
    async with aiohttp.ClientSession(headers={"Origin": plugin.origin}) as http:
        async with http.post(plugin.web_url + "api/session", json=openid) as resp:
            assert resp.status == 200
        async with http.post(plugin.web_url + "api/session", json=openid) as resp:
            assert resp.status == 401 and (await resp.json())["errcode"] == "TPI_TOKEN_REPLAYED"
        forged = {**openid, "access_token": "not-a-real-token-abc"}
        async with http.post(plugin.web_url + "api/session", json=forged) as resp:
            assert resp.status == 401 and (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_concurrent_claims_make_exactly_the_allowed_invites(world, make_user) -> None:
    room_id = await room_with_bot(world, None)
    _, token = find_link(await command(world, room_id, "!invitebot link --uses 4"))
    users = [await make_user(f"racer{i}") for i in range(12)]
    sessions = [await open_session(world["plugin"], user) for user in users]

    async def claim(http: aiohttp.ClientSession) -> int:
        async with http.post("api/links/claim", json={"token": token}) as resp:
            return resp.status

    statuses = await asyncio.gather(*(claim(http) for http in sessions))
    assert sorted(statuses) == [202] * 4 + [410] * 8
    winners = [s for s, status in zip(sessions, statuses, strict=True) if status == 202]
    for http in winners:
        assert (await wait_invites(http, room_id))["outcome"] == "invited"
    for http in sessions:
        await http.close()
    members = await world["admin"].members(room_id)
    invited = {u for u, m in members.items() if m == "invite"}
    assert len(invited) == 4 and invited <= {u.user_id for u in users}


async def test_unusable_links_and_revoke(world, make_user) -> None:
    room_id = await room_with_bot(world, None)
    reply = await command(world, room_id, "!invitebot link --uses 1")
    _, token = find_link(reply)
    link_id = reply.split("#", 1)[1].split()[0].strip("*")
    listing = await command(world, room_id, "!invitebot links")
    assert f"#{link_id}" in listing and "active" in listing
    assert "revoked" in await command(world, room_id, f"!invitebot revoke {link_id}")
    user = await make_user("late")
    async with await open_session(world["plugin"], user) as http:
        async with http.post("api/links/claim", json={"token": token}) as resp:
            assert resp.status == 410
            assert (await resp.json())["errcode"] == "TPI_LINK_REVOKED"
    assert "already revoked" in await command(world, room_id, f"!invitebot revoke {link_id}")
    assert "no invite link #999999" in await command(world, room_id, "!invitebot revoke 999999")


async def test_banned_and_already_joined_people(world, make_user) -> None:
    admin: MatrixUser = world["admin"]
    room_id = await room_with_bot(world, None)
    _, token = find_link(await command(world, room_id, "!invitebot link --uses 5"))
    banned = await make_user("banned")
    await admin.ban(room_id, banned.user_id, "test")
    member = await make_user("member")
    await admin.invite(room_id, member.user_id)
    await member.join(room_id)
    async with await open_session(world["plugin"], banned) as http:
        async with http.post("api/links/claim", json={"token": token}) as resp:
            assert resp.status == 202
        result = await wait_invites(http, room_id)
    assert (result["state"], result["errcode"]) == ("failed", "TPI_USER_BANNED")
    assert "unban" in result["error"]
    notice = await admin.wait_for_message(
        room_id, lambda c: "Could not invite" in c.get("body", ""), sender=world["bot"].user_id
    )
    assert banned.user_id in notice["body"]
    async with await open_session(world["plugin"], member) as http:
        async with http.post("api/links/claim", json={"token": token}) as resp:
            assert resp.status == 202
        assert (await wait_invites(http, room_id))["outcome"] == "already_joined"


async def test_under_powered_people_and_bot(world, make_user) -> None:
    admin: MatrixUser = world["admin"]
    room_id = await room_with_bot(world, None)
    mallory = await make_user("mallory")
    await admin.invite(room_id, mallory.user_id)
    await mallory.join(room_id)
    reply = await command(world, room_id, "!invitebot link", sender=mallory)
    assert "Only people who may invite" in reply and "needs power level 50" in reply

    weak_room = await room_with_bot(world, "10", bot_level=0)
    reply = await command(world, weak_room, "!invitebot link")
    assert "I lack invite (needs power level 50, has 0)" in reply
    status = await command(world, weak_room, "!invitebot status")
    assert "I lack power for: invite" in status


async def test_help_is_generated_from_the_commands(world) -> None:
    room_id = await room_with_bot(world, None)
    reply = await command(world, room_id, "!invitebot help")
    for usage in ("link [--uses N]", "links", "revoke <id>", "status", "help"):
        assert f"`!invitebot {usage}" in reply


async def test_bot_declines_invites_from_non_operators(world, make_user) -> None:
    stranger = await make_user("stranger")
    bot: MatrixUser = world["bot"]
    room_id = await stranger.create_room("Stranger's room", invite=[bot.user_id])
    await stranger.wait_for_membership(room_id, bot.user_id, "leave")


async def test_pages_are_served_from_the_mbp(world) -> None:
    plugin: RunningPlugin = world["plugin"]
    async with aiohttp.ClientSession(base_url=plugin.web_url) as http:
        for path, kind in (
            ("invite", "text/html"),
            ("static/invite.js", "text/javascript"),
            ("static/style.css", "text/css"),
            ("api/openapi.json", "application/json"),
        ):
            async with http.get(path) as resp:
                assert resp.status == 200, path
                assert resp.headers["Content-Type"].startswith(kind), path


async def test_one_link_for_two_rooms(world, make_user) -> None:
    room_a = await room_with_bot(world, None)
    room_b = await room_with_bot(world, "10")
    reply = await command(world, room_a, f"!invitebot link --uses 1 {room_a} {room_b}")
    assert "Room vdefault, Room v10" in reply
    _, token = find_link(reply)
    user = await make_user("both")
    async with await open_session(world["plugin"], user) as http:
        async with http.post("api/links/claim", json={"token": token}) as resp:
            assert resp.status == 202
        for room_id in (room_a, room_b):
            assert (await wait_invites(http, room_id))["outcome"] == "invited"
    for room_id in (room_a, room_b):
        assert await world["admin"].membership(room_id, user.user_id) == "invite"


async def test_config_change_applies_without_restart(world) -> None:
    plugin: RunningPlugin = world["plugin"]
    synapse = world["synapse"]
    room_id = await room_with_bot(world, None)
    assert "expires in" in await command(world, room_id, "!invitebot link")
    changed = instance_config(synapse, [world["admin"].user_id], links={"default_expiry": ""})
    await plugin.maubot.set_instance_config(plugin.instance_id, changed)
    assert "never expires" in await command(world, room_id, "!invitebot link")
    await plugin.maubot.set_instance_config(
        plugin.instance_id, instance_config(synapse, [world["admin"].user_id])
    )
