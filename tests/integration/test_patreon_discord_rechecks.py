"""Re-checks through Patreon's campaign members and Discord's guild members, end to end on
the real stack with the local Patreon (the creator's token, refreshed and rotated) and the
local Discord (a bot with the Server Members intent): former and declined patrons are
kicked while a gift and an annual pledge stay; someone who left the server is kicked while
a quarantined member stays; a rate limit or a bot without the intent removes nobody.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import pytest_asyncio
from support.bot_commands import command
from support.providers.discord import DiscordAccount, FakeDiscord, new_snowflake
from support.providers.patreon import FakePatreon, PatreonAccount
from test_patreon_discord_verdicts import bind, walk

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration

GUILD = new_snowflake()
CROWD = 30  # people in the listings who never came to the room (keeps the shrink guard calm)


@attrs.frozen
class Providers:
    patreon: FakePatreon
    discord: FakeDiscord
    bot_token: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def providers(stack: RunningStack) -> AsyncIterator[Providers]:
    callback = f"{stack.web_url}api/oauth/callback"
    async with FakePatreon() as patreon, FakeDiscord() as discord:
        patreon.auto_approve = discord.auto_approve = True
        bot_token = discord.add_bot([GUILD])
        for n in range(CROWD):
            patreon.pledge(patreon.add_account(f"Crowd {n}"), "Gold")
            discord.add_account(f"crowd{n}").join(GUILD)
        sections = {
            "patreon": patreon.config_section(redirect_uris=[callback], recheck=True),
            "discord": discord.config_section(redirect_uris=[callback], bot_token=bot_token),
        }
        await stack.configure(providers=sections)
        yield Providers(patreon, discord, bot_token)
        await stack.configure()


async def admitted(
    stack: RunningStack,
    server: FakePatreon | FakeDiscord,
    kind: str,
    room_id: str,
    binding: str,
    account: PatreonAccount | DiscordAccount,
) -> MatrixUser:
    """Someone who walked the binding's page as `account`, was invited and joined."""
    person = await stack.user(kind)
    step, invites = await walk(stack, server, kind, binding, account, person)
    assert step["state"] == "passed" and invites, step
    await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
    await person.join(room_id)
    return person


async def test_patreon_former_and_declined_patrons_go_gifts_and_annual_pledges_stay(
    stack: RunningStack, providers: Providers
) -> None:
    patreon = providers.patreon
    room_id, binding = await bind(stack, "patreon tier:Gold")
    assert "policy **kick**" in await command(stack, room_id, f"!invitebot policy {binding} kick")
    people = {}
    for name, options in [
        ("monthly", {}),
        ("annual", {"cadence": 12}),
        ("gift", {"gifted": True, "status": None}),
        ("declines", {}),
    ]:
        account = patreon.add_account(name)
        member = patreon.pledge(account, "Gold", **options)
        people[name] = (
            await admitted(stack, patreon, "patreon", room_id, binding, account),
            member,
        )
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "4 people checked; all still qualify" in reply, reply

    people["monthly"][1].patron_status = "former_patron"
    people["declines"][1].patron_status = "declined_patron"
    patreon.expire_tokens()  # the creator's access token too: refreshed on the way
    refreshes = patreon.creator_api.refreshes
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "2 no longer qualify" in reply, reply
    assert patreon.creator_api.refreshes == refreshes + 1
    for gone in ("monthly", "declines"):
        user = people[gone][0]
        await stack.admin.wait_for_membership(room_id, user.user_id, "leave", timeout=60)
    for stays in ("annual", "gift"):
        assert await stack.admin.membership(room_id, people[stays][0].user_id) == "join"

    # A rate limit stops the re-check; nobody is touched.
    people["annual"][1].patron_status = "former_patron"
    patreon.fail("api", 429)
    try:
        reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    finally:
        patreon.clear_failures()
    assert "Nobody was touched" in reply and "rate limited" in reply, reply
    assert await stack.admin.membership(room_id, people["annual"][0].user_id) == "join"


async def test_discord_leavers_go_quarantined_members_stay(
    stack: RunningStack, providers: Providers
) -> None:
    discord = providers.discord
    room_id, binding = await bind(stack, f"discord guild:{GUILD}")
    assert "policy **kick**" in await command(stack, room_id, f"!invitebot policy {binding} kick")
    people = {}
    for name in ("leaver", "quarantined", "timed_out"):
        account = discord.add_account(name)
        account.join(GUILD)
        user = await admitted(stack, discord, "discord", room_id, binding, account)
        people[name] = (user, account)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "3 people checked; all still qualify" in reply, reply

    people["leaver"][1].leave(GUILD)
    people["quarantined"][1].memberships[GUILD].flags = 1 << 7
    people["timed_out"][1].memberships[GUILD].timeout_until = "2099-01-01T00:00:00+00:00"
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply, reply
    await stack.admin.wait_for_membership(room_id, people["leaver"][0].user_id, "leave", 60)
    for stays in ("quarantined", "timed_out"):
        assert await stack.admin.membership(room_id, people[stays][0].user_id) == "join"

    # A bot without the Server Members intent: the re-check stops and says what to do.
    people["timed_out"][1].leave(GUILD)
    discord.bots[providers.bot_token].members_intent = False
    try:
        reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    finally:
        discord.bots[providers.bot_token].members_intent = True
    assert "enable the Server Members intent" in reply and "Nobody was touched" in reply, reply
    assert await stack.admin.membership(room_id, people["timed_out"][0].user_id) == "join"
