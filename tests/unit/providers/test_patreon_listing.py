"""providers/patreon_listing.py against FakePatreon's creator side over real loopback HTTP:
the campaign's members page by page, the creator's token refreshed and rotated, rate
limits and answers in unexpected shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
import json

import pytest
import pytest_asyncio
from support.providers.fake_oauth import fixture
from support.providers.patreon import FakePatreon

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import ProviderUnavailable, RuleError
from thirdparty_invite.providers.listing import ListingPage
from thirdparty_invite.providers.patreon import PatreonProvider
from thirdparty_invite.providers.patreon_listing import CREDENTIAL, MEMBERS_QUERY
from thirdparty_invite.providers.registry import read_provider_settings

OFFLINE = {"client_id": "c", "client_secret": "s", "campaign_id": "123456"}


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest_asyncio.fixture(loop_scope="session")
async def patreon() -> AsyncIterator[FakePatreon]:
    async with FakePatreon(tiers={"Bronze": 100, "Silver": 300, "Gold": 500}) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def world(patreon: FakePatreon) -> AsyncIterator[dict[str, str]]:
    """One patron of each awkward documented kind; their user ids by name."""
    people = {}
    for name, tier, options in [
        ("gold", "Gold", {}),
        ("annual_silver", "Silver", {"cadence": 12}),
        ("gifted_gold", "Gold", {"gifted": True, "status": None}),
        ("bronze", "Bronze", {}),
        ("declined", "Gold", {"status": "declined_patron", "last_charge_status": "Declined"}),
        ("former", "Gold", {"status": "former_patron"}),
        ("free", None, {"status": None, "amount_cents": 0}),
    ]:
        account = patreon.add_account(name)
        patreon.pledge(account, tier, **options)
        people[name] = account.id
    yield people
    patreon.creator_api.page_cap = None


def make_provider(server: FakePatreon, http: OutboundHTTP) -> PatreonProvider:
    provider = PatreonProvider.from_config("patreon", server.config_section(recheck=True), http)
    assert isinstance(provider, PatreonProvider)
    return provider


async def read_all(provider: PatreonProvider, rule: str) -> list[ListingPage]:
    listing = provider.listing(provider.parse_rule(rule))
    assert listing is not None
    return [page async for page in listing.pages()]


def holders(pages: list[ListingPage]) -> set[str]:
    return {m for page in pages for m in page.members or ()}


# --- config ------------------------------------------------------------------------------


def test_no_recheck_credentials_no_listing() -> None:
    provider = PatreonProvider.from_config("patreon", OFFLINE, None)
    assert provider.listing(provider.parse_rule("patron")) is None
    empty = {**OFFLINE, "recheck": {"creator_access_token": "", "creator_refresh_token": ""}}
    assert PatreonProvider.from_config("patreon", empty, None).listing(
        provider.parse_rule("patron")
    ) is None  # fmt: skip


@pytest.mark.parametrize(
    ("recheck", "problem"),
    [
        ("token", "recheck: must be a mapping of creator_access_token and"),
        ({"creator_access_token": "a"}, "recheck.creator_refresh_token: must be a non-empty"),
        ({"creator_access_token": 5, "creator_refresh_token": "r"}, "recheck.creator_access"),
        ({"access_token": "a", "creator_refresh_token": "r"}, "recheck.access_token: unknown"),
    ],
)
def test_recheck_settings_name_the_wrong_key(recheck: object, problem: str) -> None:
    problems: list[str] = []
    read_provider_settings({"patreon": {**OFFLINE, "recheck": recheck}}, problems)
    assert len(problems) == 1 and problems[0].startswith(f"providers.patreon.{problem}")


# --- the listing ---------------------------------------------------------------------------


async def test_members_holding_each_rule_across_short_pages(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(patreon, http)
    patreon.creator_api.page_cap = 2  # pages shorter than asked, more following
    patreon.requests.clear()
    pages = await read_all(provider, "patron")
    paying = {world[n] for n in ("gold", "annual_silver", "gifted_gold", "bronze")}
    assert holders(pages) == paying  # declined, former and free members left out
    assert len(pages) == 4 and pages[-1].next_cursor is None
    assert pages[0].key == "first" and all(p.next_cursor for p in pages[:-1])
    assert sum(p.calls for p in pages) == 4
    [first, *_] = patreon.requests_to("api")
    assert first.query["include"] == "currently_entitled_tiers,user"
    assert first.query["page[count]"] == "1000" and "page[cursor]" not in first.query
    assert first.headers["Authorization"] == "Bearer <redacted>"

    silver_up = {world[n] for n in ("gold", "annual_silver", "gifted_gold")}
    assert holders(await read_all(provider, "tier:Silver")) == silver_up
    assert holders(await read_all(provider, "tier:gold")) == {world["gold"], world["gifted_gold"]}
    # Per month: the annual Silver patron pays 36.00 a year, 3.00 a month.
    assert holders(await read_all(provider, "min_cents:300")) == silver_up
    assert holders(await read_all(provider, "min_cents:301")) == {
        world["gold"],
        world["gifted_gold"],
    }


async def test_a_listing_resumes_from_a_cursor(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(patreon, http)
    patreon.creator_api.page_cap = 3
    listing = provider.listing(provider.parse_rule("patron"))
    assert listing is not None
    first = await anext(aiter(listing.pages()))
    rest = [page async for page in listing.pages(first.next_cursor)]
    assert rest[0].key == f"cursor:{first.next_cursor}"
    assert holders([first, *rest]) == holders(await read_all(provider, "patron"))


async def test_the_last_page_without_a_next_key(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    patreon.creator_api.last_cursor = "absent"
    try:
        pages = await read_all(make_provider(patreon, http), "patron")
    finally:
        patreon.creator_api.last_cursor = "null"
    assert len(pages) == 1 and world["gold"] in holders(pages)


async def test_a_rule_naming_a_missing_tier_stops_the_listing(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    with pytest.raises(ProviderUnavailable, match="the campaign has no tier 'Diamond'"):
        await read_all(make_provider(patreon, http), "tier:Diamond")


async def test_the_creator_token_is_refreshed_and_the_new_pair_kept(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(patreon, http)
    patreon.expire_tokens()  # every access token dies; refresh tokens still work
    refreshes = patreon.creator_api.refreshes
    pages = await read_all(provider, "patron")
    assert world["gold"] in holders(pages)
    assert patreon.creator_api.refreshes == refreshes + 1
    assert pages[0].calls == 3  # refused, refreshed, asked again
    [refresh] = [r for r in patreon.requests_to("token") if r.form.get("grant_type")]
    assert refresh.form["refresh_token"] == "<redacted>" and refresh.form["client_id"]
    saved = json.loads(await provider.credentials.load(CREDENTIAL) or "{}")
    assert set(saved) == {"access_token", "refresh_token", "configured_as"}
    # The stored pair is used next time: no refresh.
    assert holders(await read_all(provider, "patron")) == holders(pages)
    assert patreon.creator_api.refreshes == refreshes + 1

    # The configured refresh token was rotated away: without the stored pair it is refused.
    stale = PatreonProvider.from_config(
        "patreon", {**patreon.config_section(), "recheck": provider_section(provider)}, http
    )
    patreon.expire_tokens()
    with pytest.raises(ProviderUnavailable, match="refused to refresh the creator's token"):
        await read_all(stale, "patron")


def provider_section(provider: PatreonProvider) -> dict[str, str]:
    creator = provider.creator
    assert creator is not None
    access, refresh = creator._configured
    return {"creator_access_token": access, "creator_refresh_token": refresh}


async def test_a_new_pair_in_the_config_wins_over_the_stored_one(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(patreon, http)
    stale = {"access_token": "old", "refresh_token": "old", "configured_as": "another pair"}
    await provider.credentials.save(CREDENTIAL, json.dumps(stale))
    assert world["gold"] in holders(await read_all(provider, "patron"))


async def test_rate_limits_carry_patreons_wait(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(patreon, http)
    patreon.fail("api", 429, times=1)
    with pytest.raises(ProviderUnavailable) as limited:
        await read_all(provider, "patron")
    assert limited.value.retry_after == 9  # the documented body's retry_after_seconds
    assert "rate limited, retry in 9 s" in limited.value.detail


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: {k: v for k, v in d.items() if k != "meta"},
        lambda d: {**d, "data": {"id": "1"}},
        lambda d: {**d, "data": [{**m, "relationships": {}} for m in d["data"]]},
        lambda d: {
            **d,
            "data": [{**m, "attributes": {"pledge_cadence": "12"}} for m in d["data"]],
        },
        lambda d: {**d, "meta": {"pagination": {"cursors": {"next": 7}}}},
        lambda d: [d],
    ],
    ids=["no meta", "data not a list", "no user", "cadence text", "odd cursor", "a list"],
)
async def test_a_page_in_an_unexpected_shape_stops_the_listing(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str], mangle
) -> None:
    patreon.creator_api.mangle = mangle
    try:
        with pytest.raises(ProviderUnavailable, match="a member page could not be read"):
            await read_all(make_provider(patreon, http), "patron")
    finally:
        patreon.creator_api.mangle = None


@pytest.mark.parametrize("fault", [500, 503, "malformed", "html", "huge"])
async def test_faults_stop_the_listing(
    patreon: FakePatreon, http: OutboundHTTP, world: dict[str, str], fault: int | str
) -> None:
    patreon.fail("api", fault, times=1)
    with pytest.raises(ProviderUnavailable):
        await read_all(make_provider(patreon, http), "patron")


async def test_another_creators_token_is_refused_and_the_setup_problem_logged(
    patreon: FakePatreon, http: OutboundHTTP, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = patreon.add_campaign({"Gold": 500})
    access, refresh = patreon.creator_tokens(elsewhere)
    section = {
        **patreon.config_section(),
        "recheck": {"creator_access_token": access, "creator_refresh_token": refresh},
    }
    provider = PatreonProvider.from_config("patreon", section, http)
    with pytest.raises(ProviderUnavailable, match="does not let the creator's token list"):
        await read_all(provider, "patron")
    # Before sign-ins, in the background: the operator reads it in the log.
    await provider.prepare()
    assert provider._setup_task is not None
    await provider._setup_task
    assert f"campaign_id {patreon.campaign.id} is not a campaign of the account" in caplog.text
    await provider.prepare()  # once is enough
    # At bind: refused, with the reason.
    with pytest.raises(RuleError, match="the bot's Patreon setup is wrong: campaign_id"):
        await provider.validate_rule(provider.parse_rule("patron"))
    caplog.clear()
    right = make_provider(patreon, http)  # the right creator: nothing to say
    await right.prepare()
    assert right._setup_task is not None
    await right._setup_task
    assert "is not a campaign" not in caplog.text
    assert await right.validate_rule(right.parse_rule("tier:gold")) is None
    with pytest.raises(
        RuleError, match="the campaign has no tier 'Diamond' \\(its tiers: Bronze, Si"
    ):
        await right.validate_rule(right.parse_rule("tier:Diamond"))
    patreon.fail("api", 503)
    try:
        note = await right.validate_rule(right.parse_rule("tier:Gold"))
    finally:
        patreon.clear_failures()
    assert note == "could not check this rule with Patreon now (HTTP 503)."
    unset = PatreonProvider.from_config("patreon", patreon.config_section(), http)
    assert await unset.validate_rule(unset.parse_rule("patron")) is None


async def test_the_fake_member_page_is_the_documented_one(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    from support.providers.patreon import PatreonTier

    documented = fixture("patreon", "campaigns-campaign_id-members.200.json")
    async with FakePatreon(tiers={}) as server:
        server.campaign.tiers.append(tier := PatreonTier("Patron", 100, "54321"))
        team = server.add_account("Platform Team")
        member = server.pledge(team, "Patron", amount_cents=400)
        member.id = "03ca69c3-ebea-4b9a-8fac-e4a837873254"
        server.creator_api.page_cap = 1
        later = server.pledge(server.add_account("Someone Else"), "Patron")
        later.id = "ffffffff-0000-4000-8000-000000000000"  # sorts after the documented one
        provider = make_provider(server, http)
        creator = provider.creator
        assert creator is not None and tier.id == "54321"
        query = {
            "include": "currently_entitled_tiers",
            "fields[member]": "full_name,is_follower,last_charge_date,last_charge_status,"
            "lifetime_support_cents,currently_entitled_amount_cents,patron_status",
            "fields[tier]": "amount_cents,title",
        }
        url = f"{provider.api_url}/v2/campaigns/{server.campaign.id}/members"
        answer, _ = await creator.get(url, query)
        # Our own query is accepted as it stands.
        assert (await creator.get(url, MEMBERS_QUERY))[0].status == 200
    body = answer.body
    expected_member = documented["data"][0]
    expected_member["relationships"].pop("address")
    assert body["data"][0] == expected_member
    documented_tier = documented["included"][1]
    assert body["included"][0]["id"] == documented_tier["id"]
    assert set(body["included"][0]["attributes"]) == {"amount_cents", "title"}
    assert set(body["meta"]["pagination"]) == set(documented["meta"]["pagination"])
    assert isinstance(body["meta"]["pagination"]["cursors"]["next"], str)
