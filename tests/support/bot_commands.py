"""What a room admin types, and what a page posts, in the integration tests: one copy for
every test module (they had grown one each)."""

from __future__ import annotations

import re

import aiohttp

from devtools.stack import RunningStack

BINDING_LINK = re.compile(r"(https?://\S+/join)#([A-Za-z0-9_-]{16})")


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


async def bind(stack: RunningStack, room_id: str, rules: str) -> tuple[str, str]:
    """`!invitebot bind RULES` typed by the admin: (the reply, the binding's public id)."""
    reply = await command(stack, room_id, f"!invitebot bind {rules}")
    match = BINDING_LINK.search(reply)
    assert match, reply
    return reply, match.group(2)


async def post(http: aiohttp.ClientSession, path: str, body: dict) -> tuple[int, dict]:
    async with http.post(path, json=body) as resp:
        return resp.status, await resp.json()
