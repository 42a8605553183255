"""The stack the browser tests run against (devtools/stack.py): an OpenID provider, Synapse
using it for SSO, maubot with the plugin, a room admin and the bot."""

from __future__ import annotations

import re

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

PASSWORD = "correct horse battery staple"
IDP_NAME = "Example Login"  # the single sign-on provider, as Synapse names it to users

# The running stack as the browser tests know it: `site.user()`, `site.room(...)`,
# `site.link(...)`, `site.expire_link(...)`, ...
Site = RunningStack


async def device_ids(user: MatrixUser) -> set[str]:
    """The user's devices: the page's temporary sign-in must leave this unchanged."""
    return {device["device_id"] for device in await user.devices()}


BINDING_LINK = re.compile(r"https?://\S+/join#[A-Za-z0-9_-]{16}")


async def bind(stack: RunningStack, room_id: str, rules: str) -> str:
    """``!invitebot bind RULES`` typed by the admin in the room: the binding's link."""
    event_id = await stack.admin.send_text(room_id, f"!invitebot bind {rules}")
    reply = await stack.admin.wait_for_message(
        room_id,
        lambda c: c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id,
        sender=stack.bot.user_id,
        timeout=60,
    )
    match = BINDING_LINK.search(reply["body"])
    assert match, reply["body"]
    return match.group(0)
