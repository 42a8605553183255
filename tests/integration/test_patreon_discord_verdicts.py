"""Patreon's and Discord's verdicts that are safe to act on, end to end through the real bot
and Synapse with the local Patreon and Discord answering in their documented shapes:
amounts per month (an annual patron), a gifted membership counting as its tier, free
members refused, a client registered by another creator read as "could not tell";
membership screening and voice guests refused, AutoMod quarantine "could not tell", a
timed-out member admitted; Discord's token revoked once the check is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import attrs
import pytest
import pytest_asyncio
from support.bot_commands import bind_new_room as bind
from support.bot_commands import walk_provider
from support.providers.discord import FakeDiscord, new_snowflake
from support.providers.fake_oauth import FakeOAuthServer
from support.providers.patreon import FakePatreon

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration

GUILD = new_snowflake()


@attrs.frozen
class Providers:
    patreon: FakePatreon
    discord: FakeDiscord


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def providers(stack: RunningStack) -> AsyncIterator[Providers]:
    callback = f"{stack.web_url}api/oauth/callback"
    async with FakePatreon() as patreon, FakeDiscord() as discord:
        patreon.auto_approve = discord.auto_approve = True
        sections = {
            "patreon": patreon.config_section(redirect_uris=[callback]),
            "discord": discord.config_section(redirect_uris=[callback]),
        }
        await stack.configure(providers=sections)
        yield Providers(patreon, discord)
        await stack.configure()


async def test_patreon_amounts_gifts_and_free_members(
    stack: RunningStack, providers: Providers
) -> None:
    patreon = providers.patreon
    room_id, gold = await bind(stack, "patreon tier:Gold")
    _, five_a_month = await bind(stack, "patreon min_cents:501")

    annual = patreon.add_account("Annual Gold")
    patreon.pledge(annual, "Gold", cadence=12)  # 60.00 a year: 5.00 a month
    step, invites = await walk(stack, patreon, "patreon", gold, annual)
    assert step["state"] == "passed", step
    assert [(i["room_id"], i["outcome"]) for i in invites] == [(room_id, "invited")]
    step, _ = await walk(stack, patreon, "patreon", five_a_month, annual)
    assert (step["state"], step["problem"]) == ("failed", "not_qualified"), step
    assert "5.00 a month" in step["reason"] and "5.01 a month" in step["reason"], step

    gifted = patreon.add_account("Gifted Gold")
    patreon.pledge(gifted, "Gold", gifted=True, status=None)
    step, invites = await walk(stack, patreon, "patreon", gold, gifted)
    assert step["state"] == "passed" and invites[0]["outcome"] == "invited", step

    free = patreon.add_account("Free Member")
    patreon.pledge(free, None, status=None, amount_cents=0, last_charge_status=None)
    step, invites = await walk(stack, patreon, "patreon", gold, free)
    assert (step["state"], step["problem"]) == ("failed", "not_qualified"), step
    assert "your membership is free" in step["reason"] and step["remedy"], step
    assert invites == []


async def test_a_patreon_client_of_another_creator_could_not_tell(
    stack: RunningStack, providers: Providers
) -> None:
    patreon = providers.patreon
    _, gold = await bind(stack, "patreon tier:Gold")
    elsewhere = patreon.add_campaign({"Gold": 500})
    patron = patreon.add_account("Patron Of Both")
    patreon.pledge(patron, "Gold")
    patreon.pledge(patron, "Gold", campaign=elsewhere)
    patreon.client_campaign = elsewhere
    try:
        step, invites = await walk(stack, patreon, "patreon", gold, patron)
    finally:
        patreon.client_campaign = patreon.campaign
    assert step["state"] == "error" and step.get("problem") in (None, "unknown"), step
    assert "registered under another creator's account" in step["reason"], step
    assert invites == []


@pytest.mark.parametrize(
    ("state", "outcome", "says"),
    [
        ({"pending": True}, "failed", "has not finished the membership screening"),
        ({"flags": 1 << 4}, "failed", "only a guest in a voice channel"),
        ({"flags": 1 << 7}, "error", "AutoMod has quarantined"),
        ({"timeout_until": "2099-01-01T00:00:00+00:00"}, "passed", ""),
    ],
    ids=["screening", "guest", "quarantined", "timed out"],
)
async def test_discord_member_states_and_the_token_revoked(
    stack: RunningStack, providers: Providers, state: dict, outcome: str, says: str
) -> None:
    discord = providers.discord
    room_id, binding = await bind(stack, f"discord guild:{GUILD}")
    account = discord.add_account(f"member{len(discord.accounts)}")
    account.join(GUILD, **state)
    step, invites = await walk(stack, discord, "discord", binding, account)
    assert step["state"] == outcome and says in step.get("reason", ""), step
    if outcome == "failed":
        assert step["problem"] == "not_qualified" and step["remedy"], step
    assert [i["room_id"] for i in invites] == ([room_id] if outcome == "passed" else [])
    # The person's token is revoked at Discord once the check is over.
    [issued] = [t for t in discord._tokens.values() if t.account is account]
    for _ in range(300):
        if issued.revoked:
            break
        await asyncio.sleep(0.1)
    assert issued.revoked
    assert any(
        r.headers["Authorization"] == "Basic <redacted>" for r in discord.requests_to("revoke")
    )


async def walk(
    stack: RunningStack,
    server: FakeOAuthServer,
    provider: str,
    binding: str,
    account: object,
    user: MatrixUser | None = None,
) -> tuple[dict, list]:
    """`user` (default: a new Matrix user) signs in at `provider` as `account`: (the
    provider's step once checked, their invites)."""
    server.sign_in_as(account)
    walked = await walk_provider(stack, provider, binding, server.approve, user)
    assert walked.granted is (walked.step["state"] == "passed"), walked
    return walked.step, walked.invites
