"""Claiming an invite link by direct message to the bot: real Synapse, full maubot, the .mbp.

People open a direct chat with the bot the way Element does (a room created with
`is_direct: true` and the bot invited) and send `!invitebot claim <link>`.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from devtools.matrix_user import CLIENT_V3, MatrixUser
from devtools.plugin import ask_for_link, room_managed_by_bot

pytestmark = pytest.mark.integration


async def new_room_and_link(world: dict, name: str, uses: int) -> tuple[str, str, str]:
    """(room ID, full link, token) of a fresh room the bot manages."""
    room_id = await room_managed_by_bot(world["admin"], world["bot"], name)
    url, token = await ask_for_link(world["admin"], world["bot"], room_id, f"--uses {uses}")
    return room_id, f"{url}#{token}", token


async def open_direct_chat(world: dict, user: MatrixUser) -> str:
    """A DM with the bot, as clients create one; returns it once the bot has greeted."""
    bot: MatrixUser = world["bot"]
    dm = await user.create_dm(bot.user_id)
    greeting = await user.wait_for_message(dm, sender=bot.user_id, timeout=60)
    assert "`!invitebot claim <link>`" in greeting["body"]
    return dm


async def ask(world: dict, user: MatrixUser, room_id: str, text: str) -> str:
    """Send `text`; the bot's direct answer (its reply to that message)."""
    event_id = await user.send_text(room_id, text)
    content = await user.wait_for_message(
        room_id,
        lambda c: c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id,
        sender=world["bot"].user_id,
        timeout=60,
    )
    return content["body"]


async def claim_result(world: dict, user: MatrixUser, dm: str) -> str:
    """The bot's second message: how the queued invites went."""
    content = await user.wait_for_message(
        dm,
        lambda c: c.get("body", "").startswith("How your invites went"),
        sender=world["bot"].user_id,
        timeout=70,
    )
    return content["body"]


async def uses_listed(world: dict, room_id: str) -> str:
    return await ask(world, world["admin"], room_id, "!invitebot links")


async def test_claim_by_direct_message_invites(world, make_user) -> None:
    room_id, link, token = await new_room_and_link(world, "DM claim room", uses=2)
    user = await make_user("dmclaim")
    dm = await open_direct_chat(world, user)

    reply = await ask(world, user, dm, f"!invitebot claim {link}")
    assert reply.startswith("Link accepted: inviting you to DM claim room")
    assert token not in reply
    result = await claim_result(world, user, dm)
    assert "**DM claim room**: invited!" in result
    assert f"https://matrix.to/#/{room_id}" in result
    await user.wait_for_invite(room_id)
    assert await world["admin"].membership(room_id, user.user_id) == "invite"
    assert "1 of 2 uses left" in await uses_listed(world, room_id)


async def test_second_claim_by_the_same_person_spends_no_use(world, make_user) -> None:
    room_id, link, token = await new_room_and_link(world, "Reclaim room", uses=1)
    user = await make_user("reclaim")
    dm = await open_direct_chat(world, user)
    assert "Link accepted:" in await ask(world, user, dm, f"!invitebot claim <{link}>")
    assert "invited!" in await claim_result(world, user, dm)

    again = await ask(world, user, dm, f"!invitebot claim `{token}`")
    assert again.startswith("Link accepted (you had claimed it before; no use was spent)")
    assert "you already have an invite" in await claim_result(world, user, dm)
    assert "0 of 1 uses left" in await uses_listed(world, room_id)


async def test_used_up_link_invites_nobody_more(world, make_user) -> None:
    room_id, link, _ = await new_room_and_link(world, "Small room", uses=1)
    first, second = await make_user("first"), await make_user("second")
    first_dm = await open_direct_chat(world, first)
    assert "Link accepted" in await ask(world, first, first_dm, f"!invitebot claim {link}")
    assert "invited!" in await claim_result(world, first, first_dm)

    second_dm = await open_direct_chat(world, second)
    reply = await ask(world, second, second_dm, f"!invitebot claim {link}")
    assert "used as many times as allowed" in reply
    assert await world["admin"].membership(room_id, second.user_id) is None


async def test_unknown_and_missing_codes(world, make_user) -> None:
    user = await make_user("unknown")
    dm = await open_direct_chat(world, user)
    unknown = "https://example.org/invite#notARealTokenAtAll123456"
    assert "not valid" in await ask(world, user, dm, f"!invitebot claim {unknown}")
    assert "not valid" in await ask(world, user, dm, "!invitebot claim short")
    assert "`!invitebot claim <link>`" in await ask(world, user, dm, "!invitebot claim")


async def test_banned_person_is_told_why(world, make_user) -> None:
    room_id, link, _ = await new_room_and_link(world, "Strict room", uses=5)
    user = await make_user("banned")
    await world["admin"].ban(room_id, user.user_id, "test")
    dm = await open_direct_chat(world, user)
    assert "Link accepted" in await ask(world, user, dm, f"!invitebot claim {link}")
    result = await claim_result(world, user, dm)
    assert "I could not invite you: you are banned from this room." in result


async def test_claim_in_a_group_room_is_refused(world, make_user) -> None:
    admin: MatrixUser = world["admin"]
    bot: MatrixUser = world["bot"]
    room_id, link, _ = await new_room_and_link(world, "Group room", uses=1)
    user = await make_user("group")
    await admin.invite(room_id, user.user_id)
    await user.join(room_id)

    event_id = await user.send_text(room_id, f"!invitebot claim {link}")
    reply = await user.wait_for_message(
        room_id, lambda c: "direct message" in c.get("body", ""), sender=bot.user_id
    )
    assert "I removed your message" in reply["body"]
    path = f"{CLIENT_V3}/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}"
    redacted = await user.request("GET", path)
    assert redacted["content"] == {}
    assert "1 of 1 uses left" in await uses_listed(world, room_id)

    # Where the bot may not redact, it says so, and still claims nothing.
    weak_room = await admin.create_room(
        "Weak room",
        invite=[bot.user_id, user.user_id],
        power_level_content_override={"redact": 50, "users": {bot.user_id: 0}},
    )
    await user.join(weak_room)
    await admin.wait_for_membership(weak_room, bot.user_id, "join")
    await user.send_text(weak_room, f"!invitebot claim {link}")
    reply = await user.wait_for_message(
        weak_room, lambda c: "direct message" in c.get("body", ""), sender=bot.user_id
    )
    assert "I could not remove your message" in reply["body"]
    assert "1 of 1 uses left" in await uses_listed(world, room_id)


async def test_direct_chat_lifecycle(world, make_user) -> None:
    bot: MatrixUser = world["bot"]
    stranger = await make_user("stranger")  # not an operator: a DM is still accepted
    dm = await open_direct_chat(world, stranger)
    direct_path = f"{CLIENT_V3}/user/{quote(bot.user_id, safe='')}/account_data/m.direct"
    assert dm in (await bot.request("GET", direct_path))[stranger.user_id]

    refused = await ask(world, stranger, dm, "!invitebot link --uses 5")
    assert "This room is a direct chat with me" in refused

    await stranger.leave(dm)
    for _ in range(150):
        if dm not in await bot.joined_rooms():
            break
        await asyncio.sleep(0.2)
    assert dm not in await bot.joined_rooms()
    assert dm not in (await bot.request("GET", direct_path)).get(stranger.user_id, [])


async def test_direct_invites_that_are_no_direct_chat(world, make_user) -> None:
    bot: MatrixUser = world["bot"]
    user, other = await make_user("groupdm"), await make_user("third")
    group_dm = await user.create_room(
        preset="trusted_private_chat", is_direct=True, invite=[bot.user_id, other.user_id]
    )
    await user.wait_for_membership(group_dm, bot.user_id, "leave", timeout=60)

    encrypted = await user.create_room(
        preset="trusted_private_chat",
        is_direct=True,
        invite=[bot.user_id],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    greeting = await user.wait_for_message(encrypted, sender=bot.user_id, timeout=60)
    assert "encryption turned off" in greeting["body"]


async def test_tokens_stay_out_of_the_logs(world, maubot_server, make_user) -> None:
    # maubot logs request bodies at DEBUG, its default: the link reply must be marked secret.
    room_id, link, token = await new_room_and_link(world, "Quiet room", uses=2)
    user = await make_user("quiet")
    dm = await open_direct_chat(world, user)
    assert "Link accepted" in await ask(world, user, dm, f"!invitebot claim {link}")
    assert "invited!" in await claim_result(world, user, dm)
    assert "no use was spent" in await ask(world, user, dm, f"!invitebot claim {token}")
    await claim_result(world, user, dm)
    log = maubot_server.log_text()
    assert room_id in log and token not in log
