"""What a room admin types, and what a page posts, in the integration tests: one copy for
every test module (they had grown one each)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import re

import aiohttp
import attrs
import yarl

from devtools.matrix_user import MatrixUser
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


async def bind_new_room(stack: RunningStack, rules: str) -> tuple[str, str]:
    """A new room bound by `rules`: (its id, the binding's public id)."""
    room_id = await stack.room(rules)
    _, public_id = await bind(stack, room_id, rules)
    return room_id, public_id


@attrs.frozen
class Walk:
    """One provider step of a binding's page, walked through the API as the page does."""

    step: dict  # the provider's step once its check ended
    granted: bool
    invites: list  # the person's invites, once none is pending (when the step passed)
    authorize_url: str


async def walk_provider(
    stack: RunningStack,
    provider: str,
    binding: str,
    approve: Callable[[str], Awaitable[dict]],
    user: MatrixUser | None = None,
) -> Walk:
    """`user` (default: a new Matrix user) signs in at `provider`; `approve(authorize_url)`
    plays the provider's pages and returns the query it sends back."""
    user = user or await stack.user(provider)
    async with await stack.signed_in(user) as http:
        status, started = await post(
            http, "api/oauth/start", {"binding": binding, "provider": provider}
        )
        assert status == 200, started
        back = await approve(started["authorize_url"])
        callback = yarl.URL(f"{stack.web_url}api/oauth/callback").with_query(back)
        async with http.get(callback, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        for _ in range(300):
            status, body = await post(http, "api/bindings/progress", {"binding": binding})
            assert status == 200, body
            [step] = body["providers"]
            if step["state"] != "checking":
                break
            await asyncio.sleep(0.1)
        invites: list = []
        for _ in range(240 if step["state"] == "passed" else 1):
            async with http.get("api/invites") as resp:
                invites = (await resp.json())["invites"]
            if invites and all(i["state"] != "pending" for i in invites):
                break
            await asyncio.sleep(0.25)
    return Walk(step, body["granted"], invites, started["authorize_url"])
