"""providers/discord.py against FakeDiscord over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from support.providers.discord import DiscordAccount, FakeDiscord, new_snowflake

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import (
    AuthorizationRequest,
    ProviderUnavailable,
    RuleError,
    SignInFailed,
)
from thirdparty_invite.providers.discord import DiscordProvider
from thirdparty_invite.providers.registry import read_provider_settings

CALLBACK = "http://127.0.0.1:9/api/oauth/callback"
SECRET = "discord-client-secret-never-in-a-url"
GUILD, ROLE, OTHER_ROLE = "81384788765712384", "175928847299117063", "222078108977594368"


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


def make_provider(server: FakeDiscord, http: OutboundHTTP | None) -> DiscordProvider:
    section = server.config_section(
        client_id="1234567890123456789", client_secret=SECRET, redirect_uris=[CALLBACK]
    )
    provider = DiscordProvider.from_config("discord", section, http)
    assert isinstance(provider, DiscordProvider)
    return provider


async def sign_in(server: FakeDiscord, provider: DiscordProvider, account: DiscordAccount, *rules):
    server.sign_in_as(account)
    parsed = [provider.parse_rule(r) for r in rules or ("guild:" + GUILD,)]
    request = provider.authorization_request(parsed, CALLBACK, "state-123")
    back = await server.approve(request.url)
    assert back["state"] == "state-123"
    return await provider.finish(parsed, back["code"], CALLBACK, request)


# --- rules and config -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "args"),
    [
        (f"guild:{GUILD}", f"guild:{GUILD}", (GUILD,)),
        (f"  Guild: {GUILD} ", f"guild:{GUILD}", (GUILD,)),
        (f"guild:{GUILD}:{ROLE}", f"guild:{GUILD}:{ROLE}", (GUILD, ROLE)),
        # The @everyone role carries the server's ID: it means any member.
        (f"guild:{GUILD}:{GUILD}", f"guild:{GUILD}", (GUILD,)),
        ("guild:18446744073709551615", "guild:18446744073709551615", ("18446744073709551615",)),
    ],
)
def test_parse_rule_accepts(text: str, canonical: str, args: tuple[str, ...]) -> None:
    provider = DiscordProvider.from_config(
        "discord", {"client_id": "1", "client_secret": "s"}, None
    )
    rule = provider.parse_rule(text)
    assert (rule.kind, rule.text, rule.args, rule.provider) == (
        "guild",
        canonical,
        args,
        "discord",
    )
    assert provider.parse_rule(rule.text) == rule


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Say which Discord server"),
        ("guild", "Unknown Discord rule"),
        ("guild:", "Unknown Discord rule"),
        (f"server:{GUILD}", "Unknown Discord rule"),
        (f"guild:{GUILD}:{ROLE}:{ROLE}", "Unknown Discord rule"),
        ("guild:1234", "not a Discord server ID"),
        ("guild:my-server", "not a Discord server ID"),
        ("guild:123456789012345678901", "not a Discord server ID"),
        ("guild:18446744073709551616", "not a Discord server ID"),  # 2**64
        (f"guild:{GUILD}:admins", "not a Discord role ID"),
        (f"guild:{GUILD}:", "not a Discord role ID"),
    ],
)
def test_parse_rule_refuses_with_a_reason(text: str, says: str) -> None:
    provider = DiscordProvider.from_config(
        "discord", {"client_id": "1", "client_secret": "s"}, None
    )
    with pytest.raises(RuleError, match=says):
        provider.parse_rule(text)


def test_describe_names_ids() -> None:
    provider = DiscordProvider.from_config(
        "discord", {"client_id": "1", "client_secret": "s"}, None
    )
    assert provider.describe(provider.parse_rule(f"guild:{GUILD}")) == (
        f"members of the Discord server {GUILD}"
    )
    assert provider.describe(provider.parse_rule(f"guild:{GUILD}:{ROLE}")) == (
        f"members with role {ROLE} in the Discord server {GUILD}"
    )


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"client_id": "1"}, "client_secret: must be a non-empty string"),
        ({"client_id": 12, "client_secret": "s"}, "client_id: must be a non-empty string"),
        ({"client_id": "1", "client_secret": "  "}, "client_secret: must be a non-empty string"),
        ({"client_id": "1", "client_secret": "s", "web_url": "discord.com"}, "web_url: must be"),
        ({"client_id": "1", "client_secret": "s", "api_url": 5}, "api_url: must be"),
        (
            {"client_id": "1", "client_secret": "s", "api_url": "http://discord.com/api/v10"},
            "api_url: must use https",
        ),
        (
            {"client_id": "1", "client_secret": "s", "api_url": "https://d.example/api?x=1"},
            "api_url: must not carry a query, a fragment or credentials",
        ),
        (
            {"client_id": "1", "client_secret": "s", "api_ulr": "https://d.example/api"},
            r"api_ulr: unknown setting \(known: client_id, client_secret, web_url, api_url, rech",
        ),
    ],
)
def test_from_config_names_the_wrong_key(section: dict, error: str) -> None:
    with pytest.raises(ValueError, match=f"^{error}"):
        DiscordProvider.from_config("discord", section, None)


def test_from_config_defaults_to_discord_and_allows_loopback_http() -> None:
    provider = DiscordProvider.from_config(
        "discord", {"client_id": "1", "client_secret": "s"}, None
    )
    assert (provider.web_url, provider.api_url) == (
        "https://discord.com",
        "https://discord.com/api/v10",
    )
    local = DiscordProvider.from_config(
        "discord",
        {
            "client_id": "1",
            "client_secret": "s",
            "web_url": "http://127.0.0.1:8/",
            "api_url": "http://localhost:8/api",
        },
        None,
    )
    assert (local.web_url, local.api_url) == ("http://127.0.0.1:8", "http://localhost:8/api")


def test_registry_validates_the_section_and_names_the_key() -> None:
    problems: list[str] = []
    settings = read_provider_settings(
        {"discord": {"client_id": "1", "client_secret": "", "web_url": "ftp://x"}}, problems
    )
    assert problems == ["providers.discord.client_secret: must be a non-empty string"]
    assert settings.configured == ()


# --- the sign-in --------------------------------------------------------------------------


async def test_authorization_url_asks_the_minimum_with_pkce(discord: FakeDiscord) -> None:
    provider = make_provider(discord, None)
    assert provider.scopes([provider.parse_rule(f"guild:{GUILD}:{ROLE}")]) == [
        "identify",
        "guilds.members.read",
    ]
    request = provider.authorization_request([], CALLBACK, "st")
    query = aiohttp.client.URL(request.url).query
    assert request.url.startswith(f"{discord.url}/oauth2/authorize?")
    assert query["scope"] == "identify guilds.members.read"
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["response_type"] == "code" and query["state"] == "st"
    assert request.code_verifier and request.code_verifier not in request.url
    assert SECRET not in request.url


async def test_member_with_and_without_role(discord: FakeDiscord, http: OutboundHTTP) -> None:
    provider = make_provider(discord, http)
    alice = discord.add_account("alice", global_name="Alice")
    alice.join(GUILD, roles=[ROLE])
    session = await sign_in(discord, provider, alice)
    assert (session.account.id, session.account.display_name) == (alice.id, "Alice (alice)")
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is True
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}:{ROLE}"))).holds is True
    verdict = await session.check(provider.parse_rule(f"guild:{GUILD}:{OTHER_ROLE}"))
    assert verdict.holds is False
    assert verdict.reason == (
        f"the Discord account Alice (alice) does not have role {OTHER_ROLE} "
        f"in the Discord server {GUILD}"
    )
    # Three rules on one server: one call for the member object.
    assert len([r for r in discord.requests if r.path.endswith("/member")]) == 1
    await session.close()


async def test_not_a_member_is_a_plain_no(discord: FakeDiscord, http: OutboundHTTP) -> None:
    provider = make_provider(discord, http)
    bob = discord.add_account("bob")
    bob.join(new_snowflake())
    session = await sign_in(discord, provider, bob)
    verdict = await session.check(provider.parse_rule(f"guild:{GUILD}:{ROLE}"))
    assert verdict.holds is False
    assert (
        verdict.reason == f"the Discord account bob is not a member of the Discord server {GUILD}"
    )
    assert "Join the server" in verdict.remedy


async def test_a_declined_consent_and_the_consent_page(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    carol = discord.add_account("carol")
    discord.sign_in_as(carol)
    request = provider.authorization_request([], CALLBACK, "st")
    assert (await discord.approve(request.url, "deny")) == {
        "error": "access_denied",
        "state": "st",
    }
    discord.auto_approve = False
    try:
        async with aiohttp.ClientSession() as browser:
            async with browser.get(request.url, allow_redirects=False) as page:
                text = await page.text()
                assert page.status == 200 and "Matrix invites" in text
                assert (
                    "guilds.members.read" in text and ">Authorize<" in text and ">Cancel<" in text
                )
            ticket = text.split('name="ticket" value="')[1].split('"')[0]
            form = {"ticket": ticket, "decision": "authorize"}
            async with browser.post(
                f"{discord.url}/oauth2/authorize", data=form, allow_redirects=False
            ) as back:
                assert back.status == 302
                query = aiohttp.client.URL(back.headers["Location"]).query
            # Whoever allowed these scopes before comes straight back (prompt=none).
            again = provider.authorization_request([], CALLBACK, "st2")
            async with browser.get(again.url, allow_redirects=False) as direct:
                assert direct.status == 302 and "code=" in direct.headers["Location"]
    finally:
        discord.auto_approve = True
    session = await provider.finish([], query["code"], CALLBACK, request)
    assert session.account.id == carol.id


async def test_the_fake_refuses_an_unregistered_redirect_uri(discord: FakeDiscord) -> None:
    provider = make_provider(discord, None)
    discord.sign_in_as(discord.add_account("dave"))
    request = provider.authorization_request([], "http://127.0.0.1:9/elsewhere", "st")
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(request.url, allow_redirects=False) as page,
    ):
        assert page.status == 400 and "Location" not in page.headers


async def test_pkce_and_client_auth_seen_by_the_fake(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    erin = discord.add_account("erin")
    discord.requests.clear()
    await sign_in(discord, provider, erin)
    [authorize] = discord.requests_to("authorize")
    assert authorize.query["code_challenge_method"] == "S256"
    [token] = discord.requests_to("token")
    assert token.form["code_verifier"] == "<redacted>"  # sent, and checked by the fake
    assert token.headers["Authorization"] == "Basic <redacted>"
    assert "client_secret" not in token.form
    for request in discord.requests:
        assert SECRET not in request.target


async def test_a_wrong_verifier_is_refused(discord: FakeDiscord, http: OutboundHTTP) -> None:
    provider = make_provider(discord, http)
    discord.sign_in_as(discord.add_account("frank"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    forged = AuthorizationRequest(url=request.url, code_verifier="x" * 64)
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish([], back["code"], CALLBACK, forged)


async def test_a_reused_or_expired_code_is_refused(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    discord.sign_in_as(discord.add_account("gina"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    # Two tabs racing with one code: one exchange is refused; and since a replayed code
    # revokes what it gave (RFC 6749 4.1.2), the other may lose its token too: never two.
    results = await asyncio.gather(
        provider.finish([], back["code"], CALLBACK, request),
        provider.finish([], back["code"], CALLBACK, request),
        return_exceptions=True,
    )
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds in (
        ["DiscordSession", "SignInFailed"],
        ["ProviderUnavailable", "SignInFailed"],
    )
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    discord.expire_codes()
    with pytest.raises(SignInFailed) as refused:
        await provider.finish([], back["code"], CALLBACK, request)
    assert refused.value.errcode == "TPI_PROVIDER_SIGNIN_FAILED"


async def test_a_wrong_client_secret_is_an_operator_problem(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    section = discord.config_section(client_id="1234567890123456789", client_secret=SECRET)
    provider = DiscordProvider.from_config("discord", {**section, "client_secret": "wrong"}, http)
    discord.allow_redirect_uri(CALLBACK)
    discord.sign_in_as(discord.add_account("hank"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    with pytest.raises(SignInFailed) as refused:
        await provider.finish([], back["code"], CALLBACK, request)
    assert refused.value.errcode == "TPI_PROVIDER_MISCONFIGURED"


async def test_fewer_scopes_granted_than_asked(discord: FakeDiscord, http: OutboundHTTP) -> None:
    provider = make_provider(discord, http)
    discord.sign_in_as(discord.add_account("ivy"), grants={"identify"})
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    with pytest.raises(SignInFailed) as refused:
        await provider.finish([], back["code"], CALLBACK, request)
    assert refused.value.errcode == "TPI_PROVIDER_SCOPES_DENIED"


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        (429, "rate limited, retry in 65 s"),
        (503, "HTTP 503"),
        (500, "HTTP 500"),
        (404, "HTTP 404"),  # a 404 with code 0 is Discord's "no such route", not "no member"
        (401, "it refused the sign-in it had just granted"),
        ("malformed", "its answer was not JSON"),
        ("html", "its answer was not JSON"),
        ("huge", "its answer was too large"),
        ("empty", "its answer was not what its documentation describes"),
    ],
)
async def test_member_call_faults_are_unknown(
    discord: FakeDiscord, http: OutboundHTTP, fault: int | str, detail: str
) -> None:
    provider = make_provider(discord, http)
    jack = discord.add_account("jack")
    jack.join(GUILD)
    session = await sign_in(discord, provider, jack)
    discord.fail("api", fault, times=1)
    verdict = await session.check(provider.parse_rule(f"guild:{GUILD}"))
    assert verdict.holds is None
    assert detail in verdict.reason
    # The failure was not remembered: the next check asks again.
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is True


async def test_a_hanging_api_is_given_up(discord: FakeDiscord, http: OutboundHTTP) -> None:
    provider = make_provider(discord, http)
    provider._oauth.request_timeout = 0.3
    kate = discord.add_account("kate")
    kate.join(GUILD)
    session = await sign_in(discord, provider, kate)
    discord.fail("api", "timeout")
    try:
        verdict = await session.check(provider.parse_rule(f"guild:{GUILD}"))
        assert verdict.holds is None and "did not answer in time" in verdict.reason
        discord.fail("token", "timeout")
        request = provider.authorization_request([], CALLBACK, "st")
        back = await discord.approve(request.url)
        with pytest.raises(ProviderUnavailable, match="did not answer in time"):
            await provider.finish([], back["code"], CALLBACK, request)
    finally:
        discord.clear_failures()


@pytest.mark.parametrize("fault", [503, 429, "malformed", "html"])
async def test_token_endpoint_faults_are_unavailable(
    discord: FakeDiscord, http: OutboundHTTP, fault: int | str
) -> None:
    provider = make_provider(discord, http)
    discord.sign_in_as(discord.add_account("leo"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    discord.fail("token", fault, times=1)
    with pytest.raises(ProviderUnavailable):
        await provider.finish([], back["code"], CALLBACK, request)


@pytest.mark.parametrize("fault", [429, 503, 401, "malformed", "empty"])
async def test_identity_faults_are_unavailable(
    discord: FakeDiscord, http: OutboundHTTP, fault: int | str
) -> None:
    provider = make_provider(discord, http)
    discord.sign_in_as(discord.add_account("mia"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    discord.fail("api", fault, times=1)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await provider.finish([], back["code"], CALLBACK, request)
    assert unavailable.value.http_status == 502


async def test_a_revoked_token_is_unknown_not_a_loss(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    provider = make_provider(discord, http)
    ned = discord.add_account("ned")
    ned.join(GUILD)
    session = await sign_in(discord, provider, ned)
    discord.expire_tokens()
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is None
    await session.close()
    assert (await session.check(provider.parse_rule(f"guild:{GUILD}"))).holds is None


async def test_the_fake_member_answer_has_the_documented_shape(
    discord: FakeDiscord, http: OutboundHTTP
) -> None:
    from support.providers.fake_oauth import fixture

    documented = fixture("discord", "users-me-guilds-guild_id-member.200.json")
    olga = discord.add_account("olga")
    olga.join(GUILD, roles=[ROLE])
    discord.sign_in_as(olga)
    provider = make_provider(discord, http)
    request = provider.authorization_request([], CALLBACK, "st")
    back = await discord.approve(request.url)
    token = await provider._oauth.exchange_code(back["code"], CALLBACK, request)
    member = await provider._oauth.get_json(
        f"{provider.api_url}/users/@me/guilds/{GUILD}/member", token.access_token
    )
    assert set(member.body) == set(documented)
    assert member.body["roles"] == [ROLE] and member.body["user"]["id"] == olga.id
