"""What a Patreon membership is worth, against FakePatreon over real loopback HTTP:
amounts per month (annual patrons), gifts as their tier, free members refused, and what
cannot be told (no campaign link, a client registered by another creator) unknown, never
"not a patron"."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.providers.fake_oauth import fixture
from support.providers.patreon import FakePatreon
from test_patreon import verdicts

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest_asyncio.fixture(loop_scope="session")
async def patreon() -> AsyncIterator[FakePatreon]:
    async with FakePatreon() as server:
        server.auto_approve = True
        yield server


async def test_not_a_patron_is_a_plain_no(patreon: FakePatreon, http: OutboundHTTP) -> None:
    [verdict] = await verdicts(patreon, http, patreon.add_account("Dora"), "tier:Gold")
    assert verdict.holds is False
    assert verdict.reason == "the Patreon account Dora is not a patron of this campaign"


async def test_a_client_registered_by_another_creator_is_unknown_and_logged(
    patreon: FakePatreon, http: OutboundHTTP, caplog: pytest.LogCaptureFixture
) -> None:
    # The client belongs to another creator: `identity` shows that creator's campaign, so
    # the sign-in cannot say anything about the configured one.
    elsewhere = patreon.add_campaign({"Gold": 500})
    dan = patreon.add_account("Dan")
    patreon.pledge(dan, "Gold", campaign=elsewhere)
    patreon.pledge(dan, "Gold")
    patreon.client_campaign = elsewhere
    try:
        results = await verdicts(patreon, http, dan, "patron", "tier:Gold", "min_cents:1")
    finally:
        patreon.client_campaign = patreon.campaign
    assert {(v.holds, v.reason) for v in results} == {
        (None, "the bot's Patreon app is registered under another creator's account")
    }
    assert "Tell the room's admins" in results[0].remedy
    assert f"not of campaign_id {patreon.campaign.id}" in caplog.text


def test_a_membership_without_its_campaign_is_unknown() -> None:
    # Patreon's own example (without memberships.campaign in `include`) names no campaign.
    from thirdparty_invite.providers.patreon import read_identity

    document = fixture("patreon", "identity.memberships-tiers.constructed.json")
    account, membership, unclear = read_identity(document, "patreon", "123456")
    assert account.id == document["data"]["id"] and membership is None
    assert unclear == "Patreon did not say which campaign your membership is for"


async def test_an_annual_patron_pays_per_month(patreon: FakePatreon, http: OutboundHTTP) -> None:
    eva = patreon.add_account("Eva")
    member = patreon.pledge(eva, "Gold", cadence=12)
    assert member.amount_cents == 6000  # the year's amount, as Patreon reports it
    results = await verdicts(
        patreon, http, eva, "patron", "tier:Gold", "min_cents:500", "min_cents:501"
    )
    assert [v.holds for v in results] == [True, True, True, False]
    assert results[3].reason == (
        "your pledge (5.00 a month) is below the 5.01 a month this room asks for"
    )


async def test_a_gifted_membership_counts_as_its_tier(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    gil = patreon.add_account("Gil")
    member = patreon.pledge(gil, "Gold", gifted=True, status=None)
    assert member.amount_cents == 0 and member.last_charge_status is None
    results = await verdicts(
        patreon, http, gil,
        "patron", "tier:Gold", "tier:Silver", "min_cents:500", "tier:Platinum", "min_cents:501",
    )  # fmt: skip
    assert [v.holds for v in results] == [True, True, True, True, False, False]


@pytest.mark.parametrize("status", ["active_patron", None])
async def test_free_members_are_not_patrons(
    patreon: FakePatreon, http: OutboundHTTP, status: str | None
) -> None:
    fay = patreon.add_account("Fay")
    patreon.pledge(fay, None, status=status, amount_cents=0, last_charge_status=None)
    results = await verdicts(patreon, http, fay, "patron", "min_cents:1", "tier:Bronze")
    assert {(v.holds, v.reason) for v in results} == {
        (False, "your membership is free (you follow the campaign but have not pledged)")
    }


@pytest.mark.parametrize(
    ("cents", "cadence", "minimum", "holds"),
    [
        (500, 1, 500, True),
        (6000, 12, 500, True),
        (6000, 12, 501, False),
        (1500, 3, 500, True),
        # The cadence not said: decided only where every cadence agrees.
        (400, None, 500, False),
        (500, None, 500, None),
        (60000, None, 500, True),
    ],
)
async def test_amounts_per_month(cents: int, cadence: int | None, minimum: int, holds) -> None:
    from thirdparty_invite.providers.patreon_membership import Membership, membership_verdict

    membership = Membership("active_patron", cents, (), None, cadence)
    verdict = membership_verdict(membership, "min_cents", (str(minimum),))
    assert verdict.holds is holds
