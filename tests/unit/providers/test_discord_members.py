"""Discord member objects that say more than "in the server" (screening, voice guests,
AutoMod quarantine, timeouts) and the token revoked when the session closes, against
FakeDiscord over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.providers.discord import FakeDiscord
from test_discord import GUILD, ROLE, SECRET, make_provider, sign_in

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest_asyncio.fixture(loop_scope="session")
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.auto_approve = True
        yield server


# --- member objects that say more than "in the server" -------------------------------------


@pytest.mark.parametrize(
    ("state", "holds", "says"),
    [
        ({"pending": True}, False, "has not finished the membership screening"),
        ({"flags": 1 << 4}, False, "is only a guest in a voice channel"),
        ({"flags": 1 << 7}, None, "Discord's AutoMod has quarantined"),
        ({"flags": 1 << 10}, None, "Discord's AutoMod has quarantined"),
        ({"flags": (1 << 7) | (1 << 0)}, None, "Discord's AutoMod has quarantined"),
        ({"pending": False, "flags": 1 << 1}, True, ""),  # onboarding done: a member
        ({"timeout_until": "2099-01-01T00:00:00+00:00"}, True, ""),  # timed out: a member
    ],
)
async def test_screening_guests_quarantine_and_timeouts(
    discord: FakeDiscord, http: OutboundHTTP, state: dict, holds: bool | None, says: str
) -> None:
    provider = make_provider(discord, http)
    pat = discord.add_account("pat")
    pat.join(GUILD, roles=[ROLE], **state)
    session = await sign_in(discord, provider, pat)
    for rule in (f"guild:{GUILD}", f"guild:{GUILD}:{ROLE}"):
        verdict = await session.check(provider.parse_rule(rule))
        assert verdict.holds is holds and says in verdict.reason
        assert bool(verdict.remedy) is (holds is not True)
    await session.close()


async def test_an_undocumented_member_object_is_unknown(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    quinn = discord.add_account("quinn")
    quinn.join(GUILD, pending="yes")  # type: ignore[arg-type]
    session = await sign_in(discord, provider, quinn)
    verdict = await session.check(provider.parse_rule(f"guild:{GUILD}"))
    assert verdict.holds is None


# --- revocation ------------------------------------------------------------------------------


async def test_closing_the_session_revokes_the_token(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    rae = discord.add_account("rae")
    rae.join(GUILD)
    session = await sign_in(discord, provider, rae)
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is True
    issued = discord._tokens[session._token]
    discord.requests.clear()
    await session.close()  # at once: the revocation runs in the background
    await provider.revocations_done()
    assert issued.revoked  # the token stopped working at Discord, not just here
    [revoke] = discord.requests_to("revoke")
    assert revoke.path == "/api/v10/oauth2/token/revoke"
    assert revoke.form["token_type_hint"] == "access_token" and "token" in revoke.form
    assert revoke.headers["Authorization"] == "Basic <redacted>"
    assert SECRET not in revoke.target and "client_secret" not in revoke.form
    await session.close()  # nothing left to revoke: no second request
    await provider.close()
    assert len(discord.requests_to("revoke")) == 1


@pytest.mark.parametrize("fault", [503, 429, "timeout"])
async def test_a_failed_revocation_changes_nothing_the_person_sees(
    discord: FakeDiscord, http: OutboundHTTP, fault: int | str
) -> None:
    provider = make_provider(discord, http)
    provider._oauth.request_timeout = 0.3
    sam = discord.add_account("sam")
    sam.join(GUILD)
    session = await sign_in(discord, provider, sam)
    discord.fail("revoke", fault, times=1)
    await session.close()  # at once, whatever Discord does
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is None
    await provider.close()  # waits for the revocation, which failed: logged, never raised
    assert discord.requests_to("revoke")
