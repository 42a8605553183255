"""providers/discord_listing.py against FakeDiscord's bot API over real loopback HTTP: the
guild's members page by page after the highest id, who holds a rule (screening, guests,
quarantine, roles), rate-limit buckets and 429s, Missing Access, unexpected shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
import time

import pytest
import pytest_asyncio
from support.providers.discord import FakeDiscord, new_snowflake

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import ProviderUnavailable
from thirdparty_invite.providers.discord import DiscordProvider
from thirdparty_invite.providers.listing import ListingPage
from thirdparty_invite.providers.registry import read_provider_settings

GUILD, ROLE = "81384788765712384", "175928847299117063"
OFFLINE = {"client_id": "1", "client_secret": "s"}


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest_asyncio.fixture(loop_scope="session")
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def world(discord: FakeDiscord) -> dict[str, str]:
    """One member of each kind the docs describe; their user ids by name."""
    people = {}
    for name, state in [
        ("member", {}),
        ("with_role", {"roles": [ROLE]}),
        ("timed_out", {"roles": [ROLE], "timeout_until": "2099-01-01T00:00:00+00:00"}),
        ("screening", {"roles": [ROLE], "pending": True}),
        ("onboarded", {"pending": False, "flags": 1 << 1}),
        ("guest", {"flags": 1 << 4}),
        ("quarantined", {"roles": [ROLE], "flags": 1 << 7}),
        ("tag_blocked", {"flags": 1 << 10}),
    ]:
        account = discord.add_account(name)
        account.join(GUILD, **state)
        people[name] = account.id
    discord.add_account("elsewhere").join(new_snowflake())
    return people


def make_provider(server: FakeDiscord, http: OutboundHTTP, bot_token: str) -> DiscordProvider:
    section = server.config_section(bot_token=bot_token)
    provider = DiscordProvider.from_config("discord", section, http)
    assert isinstance(provider, DiscordProvider)
    return provider


async def read_all(provider: DiscordProvider, rule: str, cursor=None) -> list[ListingPage]:
    listing = provider.listing(provider.parse_rule(rule))
    assert listing is not None
    return [page async for page in listing.pages(cursor)]


def holders(pages: list[ListingPage]) -> set[str]:
    return {m for page in pages for m in page.members or ()}


def test_no_bot_token_no_listing() -> None:
    provider = DiscordProvider.from_config("discord", OFFLINE, None)
    assert provider.listing(provider.parse_rule(f"guild:{GUILD}")) is None
    problems: list[str] = []
    for recheck in ("token", {"bot_token": 5}, {"token": "x"}):
        read_provider_settings({"discord": {**OFFLINE, "recheck": recheck}}, problems)
    assert [p.split(":")[0] for p in problems] == [
        "providers.discord.recheck",
        "providers.discord.recheck.bot_token",
        "providers.discord.recheck.token",
    ]


async def test_who_holds_each_rule_across_pages(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    discord.page_cap = 3  # pages shorter than asked: the listing goes on until an empty one
    discord.requests.clear()
    pages = await read_all(provider, f"guild:{GUILD}")
    kept = {"member", "with_role", "timed_out", "onboarded", "quarantined", "tag_blocked"}
    assert holders(pages) == {world[n] for n in kept}  # screening and guest left out
    assert len(pages) == 4 and pages[-1].members == () and pages[-1].next_cursor is None
    assert [p.key for p in pages][:2] == ["after:0", f"after:{pages[0].next_cursor}"]
    first = discord.requests_to("api")[0]
    assert first.query == {"limit": "1000", "after": "0"}
    assert first.headers["Authorization"] == "Bot <redacted>"
    with_role = await read_all(provider, f"guild:{GUILD}:{ROLE}")
    assert holders(with_role) == {world[n] for n in ("with_role", "timed_out", "quarantined")}
    # Resuming from a page's cursor reads the rest only.
    rest = await read_all(provider, f"guild:{GUILD}", pages[1].next_cursor)
    assert holders(rest) == holders(pages[2:])
    discord.page_cap = None


async def test_missing_access_says_to_enable_the_members_intent(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    for token in (discord.add_bot([GUILD], members_intent=False), discord.add_bot([])):
        with pytest.raises(ProviderUnavailable, match="enable the Server Members intent"):
            await read_all(make_provider(discord, http, token), f"guild:{GUILD}")
    with pytest.raises(ProviderUnavailable, match="refused the bot token"):
        await read_all(make_provider(discord, http, "not-a-bot"), f"guild:{GUILD}")


async def test_an_emptied_bucket_is_waited_for(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    discord.page_cap, discord.bucket_size, discord.bucket_window = 2, 2, 0.3
    try:
        started = time.monotonic()
        pages = await read_all(provider, f"guild:{GUILD}")
    finally:
        discord.page_cap, discord.bucket_size, discord.bucket_window = None, 1000, 1.0
    assert len(pages) == 5 and len(holders(pages)) == 6
    assert time.monotonic() - started >= 0.3  # it waited for the bucket to refill
    assert not [r for r in discord.requests if r.path.endswith("/members")][5:]


async def test_a_long_wait_stops_the_listing_with_it(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    discord.page_cap, discord.bucket_size, discord.bucket_window = 2, 1, 60.0
    try:
        listing = provider.listing(provider.parse_rule(f"guild:{GUILD}"))
        assert listing is not None
        seen = []
        with pytest.raises(ProviderUnavailable) as limited:
            async for page in listing.pages():
                seen.append(page)
    finally:
        discord.page_cap, discord.bucket_size, discord.bucket_window = None, 1000, 1.0
        discord._bucket = (0.0, 0)
    assert len(seen) == 1  # the second request was never sent into a 429
    assert limited.value.retry_after is not None and 55 < limited.value.retry_after <= 60


async def test_a_429_carries_discords_wait(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    discord.fail("api", 429, times=1)  # the documented user-limit answer: retry_after 64.57
    with pytest.raises(ProviderUnavailable) as limited:
        await read_all(provider, f"guild:{GUILD}")
    assert limited.value.retry_after == pytest.approx(64.57)


@pytest.mark.parametrize("fault", [500, 502, "malformed", "html", "huge", "empty", 404])
async def test_faults_stop_the_listing(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str], fault: int | str
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    discord.fail("api", fault, times=1)
    with pytest.raises(ProviderUnavailable):
        await read_all(provider, f"guild:{GUILD}")


@pytest.mark.parametrize(
    "change",
    [
        {"flags": "16"},
        {"pending": "no"},
        {"user": {}},
        {"user": {"id": 5}},
    ],
)
async def test_a_member_in_an_unexpected_shape_stops_the_listing(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str], change: dict
) -> None:
    provider = make_provider(discord, http, discord.add_bot([GUILD]))
    original = discord._member_object

    def odd(account, member):  # type: ignore[no-untyped-def]
        return {**original(account, member), **change}

    discord._member_object = odd  # type: ignore[method-assign]
    try:
        with pytest.raises(ProviderUnavailable, match="a member page held a member"):
            await read_all(provider, f"guild:{GUILD}")
    finally:
        del discord._member_object


async def test_the_fake_member_objects_have_the_documented_keys(
    discord: FakeDiscord, http: OutboundHTTP, world: dict[str, str]
) -> None:
    from support.providers.fake_oauth import fixture

    documented = set(fixture("discord", "users-me-guilds-guild_id-member.200.json"))
    provider = make_provider(discord, http, token := discord.add_bot([GUILD]))
    answer = await provider._oauth.get_json(
        f"{provider.api_url}/guilds/{GUILD}/members",
        "",
        headers={"Authorization": f"Bot {token}"},
        params={"limit": "1000"},
    )
    by_id = {m["user"]["id"]: m for m in answer.body}
    assert set(by_id[world["member"]]) == documented  # no flags, no pending: as documented
    assert by_id[world["guest"]]["flags"] == 1 << 4
    assert by_id[world["screening"]]["pending"] is True
    assert answer.header("X-RateLimit-Bucket") and answer.header("X-RateLimit-Remaining")
