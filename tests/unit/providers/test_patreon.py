"""providers/patreon.py against FakePatreon over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from support.providers.fake_oauth import fixture
from support.providers.patreon import FakePatreon, PatreonAccount, PatreonTier

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import (
    AuthorizationRequest,
    ProviderUnavailable,
    RuleError,
    SignInFailed,
)
from thirdparty_invite.providers.patreon import IDENTITY_QUERY, PatreonProvider
from thirdparty_invite.providers.registry import read_provider_settings

CALLBACK = "http://127.0.0.1:9/api/oauth/callback"
SECRET = "patreon-client-secret-never-in-a-url"
OFFLINE = {"client_id": "c", "client_secret": "s", "campaign_id": "123456"}


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


def make_provider(server: FakePatreon, http: OutboundHTTP | None) -> PatreonProvider:
    section = server.config_section(
        client_id="cid", client_secret=SECRET, redirect_uris=[CALLBACK]
    )
    provider = PatreonProvider.from_config("patreon", section, http)
    assert isinstance(provider, PatreonProvider)
    return provider


async def sign_in(server: FakePatreon, provider: PatreonProvider, account: PatreonAccount):
    server.sign_in_as(account)
    request = provider.authorization_request([], CALLBACK, "state-1")
    back = await server.approve(request.url)
    assert back["state"] == "state-1"
    return await provider.finish([], back["code"], CALLBACK, request)


async def verdicts(server: FakePatreon, http: OutboundHTTP, account: PatreonAccount, *rules: str):
    provider = make_provider(server, http)
    session = await sign_in(server, provider, account)
    return [await session.check(provider.parse_rule(rule)) for rule in rules]


# --- rules and config -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "args", "canonical"),
    [
        ("", "patron", (), "patron"),
        (" Patron ", "patron", (), "patron"),
        ("tier:Gold", "tier", ("Gold",), "tier:Gold"),
        ("TIER:  Gold   Supporter ", "tier", ("Gold Supporter",), "tier:Gold Supporter"),
        ("tier:54321", "tier", ("54321",), "tier:54321"),
        ("tier:Level 2: Gold", "tier", ("Level 2: Gold",), "tier:Level 2: Gold"),
        ("min_cents:500", "min_cents", ("500",), "min_cents:500"),
        ("min_cents:0500", "min_cents", ("500",), "min_cents:500"),
    ],
)
def test_parse_rule_accepts(text: str, kind: str, args: tuple[str, ...], canonical: str) -> None:
    provider = PatreonProvider.from_config("patreon", OFFLINE, None)
    rule = provider.parse_rule(text)
    assert (rule.kind, rule.args, rule.text) == (kind, args, canonical)
    assert provider.parse_rule(rule.text) == rule


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("patrons", "Unknown Patreon rule"),
        ("gold", "Unknown Patreon rule"),
        ("level:Gold", "Unknown Patreon rule"),
        ("tier:", "Name the tier"),
        ("tier:" + "x" * 101, "Name the tier"),
        ("tier:Gold\x00", "Name the tier"),
        ("min_cents:", "whole number of cents"),
        ("min_cents:5.00", "whole number of cents"),
        ("min_cents:-5", "whole number of cents"),
        ("min_cents:0", "whole number of cents"),
        ("min_cents:100000001", "whole number of cents"),
    ],
)
def test_parse_rule_refuses_with_a_reason(text: str, says: str) -> None:
    provider = PatreonProvider.from_config("patreon", OFFLINE, None)
    with pytest.raises(RuleError, match=says):
        provider.parse_rule(text)


def test_describe_says_or_above() -> None:
    provider = PatreonProvider.from_config("patreon", OFFLINE, None)
    said = [provider.describe(provider.parse_rule(t)) for t in ("", "tier:Gold", "min_cents:550")]
    assert said == [
        "active patrons of this Patreon campaign",
        "patrons of this Patreon campaign at tier Gold or above",
        "patrons of this Patreon campaign pledging at least 5.50 a month (campaign currency)",
    ]
    named = PatreonProvider.from_config("patreon", {**OFFLINE, "campaign_name": "Ada's"}, None)
    assert named.describe(named.parse_rule("tier:Gold")) == (
        "patrons of Ada's on Patreon at tier Gold or above"
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"campaign_id": None}, "campaign_id: must be your campaign's numeric ID"),
        ({"campaign_id": "my-campaign"}, "campaign_id: must be your campaign's numeric ID"),
        ({"campaign_id": True}, "campaign_id: must be your campaign's numeric ID"),
        ({"client_secret": None}, "client_secret: must be a non-empty string"),
        ({"client_id": ""}, "client_id: must be a non-empty string"),
        ({"web_url": "www.patreon.com"}, "web_url: must be an absolute http"),
        ({"api_url": "http://patreon.example/api/oauth2"}, "api_url: must use https"),
        ({"campaign": "1"}, "campaign: unknown setting"),
    ],
)
def test_from_config_names_the_wrong_key(change: dict, error: str) -> None:
    with pytest.raises(ValueError, match=f"^{error}"):
        PatreonProvider.from_config("patreon", {**OFFLINE, **change}, None)


def test_from_config_defaults_and_a_numeric_campaign_id() -> None:
    provider = PatreonProvider.from_config("patreon", {**OFFLINE, "campaign_id": 987}, None)
    assert provider.campaign_id == "987"
    assert provider.web_url == "https://www.patreon.com"
    assert provider.api_url == "https://www.patreon.com/api/oauth2"
    assert provider.required_settings == ("client_id", "client_secret", "campaign_id")


def test_registry_names_the_key() -> None:
    problems: list[str] = []
    read_provider_settings({"patreon": {"client_id": "c", "client_secret": "s"}}, problems)
    assert problems == [
        "providers.patreon.campaign_id: must be your campaign's numeric ID (digits), not None"
    ]


# --- rules against the fake ---------------------------------------------------------------


async def test_scopes_are_identity_only(patreon: FakePatreon) -> None:
    provider = make_provider(patreon, None)
    rules = [provider.parse_rule(t) for t in ("", "tier:Gold", "min_cents:1")]
    assert provider.scopes(rules) == ["identity"]
    request = provider.authorization_request(rules, CALLBACK, "st")
    query = aiohttp.client.URL(request.url).query
    assert request.url.startswith(f"{patreon.url}/oauth2/authorize?")
    assert query["scope"] == "identity" and query["code_challenge_method"] == "S256"
    assert SECRET not in request.url


async def test_an_active_patron_and_each_rule(patreon: FakePatreon, http: OutboundHTTP) -> None:
    gold = patreon.campaign.tier("Gold")
    alice = patreon.add_account("Alice Example")
    patreon.pledge(alice, "Gold")
    results = await verdicts(
        patreon, http, alice,
        "patron", "tier:Gold", "tier:gold", f"tier:{gold.id}", "tier:Silver", "tier:Bronze",
        "min_cents:500", "min_cents:501", "tier:Platinum",
    )  # fmt: skip
    assert [v.holds for v in results] == [True] * 7 + [False, False]
    assert results[7].reason == (
        "your pledge (5.00 a month) is below the 5.01 a month this room asks for"
    )
    assert results[8].reason == "your tier (Gold) is below Platinum"


async def test_a_tier_name_ignores_case_and_spacing(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    campaign_tier = patreon.campaign.tier("Silver")
    campaign_tier.title = "Silver  Supporter"
    try:
        bea = patreon.add_account("Bea")
        patreon.pledge(bea, "Silver  Supporter")
        [verdict] = await verdicts(patreon, http, bea, "tier:silver supporter")
        assert verdict.holds is True
    finally:
        campaign_tier.title = "Silver"


@pytest.mark.parametrize(
    ("status", "charge", "reason"),
    [
        ("declined_patron", "Declined", "your pledge is not active (declined payment)"),
        ("former_patron", "Paid", "your pledge is not active (you are a former patron)"),
        (None, None, "your membership is free (you follow the campaign but have not pledged)"),
    ],
)
async def test_inactive_patrons_are_told_why(
    patreon: FakePatreon, http: OutboundHTTP, status: str | None, charge: str | None, reason: str
) -> None:
    carl = patreon.add_account("Carl")
    patreon.pledge(carl, "Platinum", status=status, last_charge_status=charge)
    results = await verdicts(patreon, http, carl, "patron", "tier:Bronze", "min_cents:1")
    assert {(v.holds, v.reason) for v in results} == {(False, reason)}
    assert results[0].remedy


async def test_an_active_membership_here_wins_over_one_elsewhere(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    elsewhere = patreon.add_campaign({"Gold": 500})
    ella = patreon.add_account("Ella")
    patreon.pledge(ella, "Gold", campaign=elsewhere, status="former_patron")
    patreon.pledge(ella, "Bronze")
    patreon.show_all_memberships = True
    try:
        results = await verdicts(patreon, http, ella, "patron", "tier:Gold")
    finally:
        patreon.show_all_memberships = False
    assert [v.holds for v in results] == [True, False]


async def test_without_the_campaigns_tiers_a_higher_tier_is_unknown(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    fred = patreon.add_account("Fred")
    patreon.pledge(fred, "Platinum")
    patreon.campaign_tiers_visible = False
    try:
        results = await verdicts(patreon, http, fred, "tier:Gold", "tier:Platinum", "patron")
    finally:
        patreon.campaign_tiers_visible = True
    assert [v.holds for v in results] == [None, True, True]
    assert results[0].reason == "Patreon did not say how your tier compares with Gold"


async def test_a_rule_naming_a_missing_tier_is_unknown(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    gus = patreon.add_account("Gus")
    patreon.pledge(gus, "Silver")
    [verdict] = await verdicts(patreon, http, gus, "tier:Diamond")
    assert verdict.holds is None  # a renamed tier must never read as a lost pledge
    assert "names the Patreon tier 'Diamond', which the campaign does not have" in verdict.reason


async def test_a_pledge_without_a_tier(patreon: FakePatreon, http: OutboundHTTP) -> None:
    hugo = patreon.add_account("Hugo", vanity="hugo")
    patreon.pledge(hugo, None, amount_cents=250)
    provider = make_provider(patreon, http)
    session = await sign_in(patreon, provider, hugo)
    assert session.account.display_name == "Hugo" and session.account.id == hugo.id
    tier = await session.check(provider.parse_rule("tier:Bronze"))
    assert tier.reason == "your pledge does not include a tier (Bronze or above is needed)"
    assert (await session.check(provider.parse_rule("min_cents:250"))).holds is True


async def test_the_fake_identity_answer_is_the_documented_one(
    patreon: FakePatreon, http: OutboundHTTP
) -> None:
    documented = fixture("patreon", "identity.memberships-tiers.constructed.json")
    campaign = patreon.add_campaign({})
    campaign.tiers.append(patreon_tier := PatreonTier("Patron", 100, "54321"))
    platform = patreon.add_account("Platform Team")
    platform.id = "987654321"
    member = patreon.pledge(platform, campaign=campaign, amount_cents=400)
    member.id, member.tiers = "03ca69c3-ebea-4b9a-8fac-e4a837873254", [patreon_tier]
    patreon.show_all_memberships = True
    patreon.sign_in_as(platform)
    provider = make_provider(patreon, http)
    request = provider._oauth.authorization_request(CALLBACK, ["identity", "identity[email]"], "s")
    back = await patreon.approve(request.url)
    try:
        token = await provider._oauth.exchange_code(back["code"], CALLBACK, request)
        answer = await provider._oauth.get_json(
            f"{provider.api_url}/v2/identity",
            token.access_token,
            params={
                "include": "memberships,memberships.currently_entitled_tiers",
                "fields[user]": "full_name,email",
                "fields[member]": "patron_status,currently_entitled_amount_cents,"
                "last_charge_status,last_charge_date",
                "fields[tier]": "title,amount_cents",
            },
        )
    finally:
        patreon.show_all_memberships = False
    assert answer.body == documented
    # The provider's own query is accepted as it stands (unknown includes answer 400).
    answer = await provider._oauth.get_json(
        f"{provider.api_url}/v2/identity", token.access_token, params=IDENTITY_QUERY
    )
    assert answer.status == 200


# --- the sign-in and faults --------------------------------------------------------------


async def test_the_secret_goes_in_the_form_only(patreon: FakePatreon, http: OutboundHTTP) -> None:
    ivan = patreon.add_account("Ivan")
    patreon.requests.clear()
    await sign_in(patreon, make_provider(patreon, http), ivan)
    [token] = patreon.requests_to("token")
    assert token.form["client_secret"] == "<redacted>" and token.form["client_id"] == "cid"
    assert token.form["code_verifier"] == "<redacted>"
    assert "Authorization" not in token.headers
    for request in patreon.requests:
        assert SECRET not in request.target


async def test_a_sent_challenge_is_verified(patreon: FakePatreon, http: OutboundHTTP) -> None:
    provider = make_provider(patreon, http)
    patreon.sign_in_as(patreon.add_account("Jo"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await patreon.approve(request.url)
    forged = AuthorizationRequest(url=request.url, code_verifier="y" * 64)
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish([], back["code"], CALLBACK, forged)


@pytest.mark.parametrize("refusal", ["reused", "expired", "wrong redirect", "wrong secret"])
async def test_the_token_endpoint_refuses(
    patreon: FakePatreon, http: OutboundHTTP, refusal: str
) -> None:
    provider = make_provider(patreon, http)
    patreon.sign_in_as(patreon.add_account("Kim"))
    request = provider.authorization_request([], CALLBACK, "st")
    back = await patreon.approve(request.url)
    redirect_uri, errcode = CALLBACK, "TPI_PROVIDER_SIGNIN_FAILED"
    if refusal == "reused":
        await provider.finish([], back["code"], CALLBACK, request)
    elif refusal == "expired":
        patreon.expire_codes()
    elif refusal == "wrong redirect":
        redirect_uri = CALLBACK + "/other"
    else:
        section = {**patreon.config_section("cid", SECRET), "client_secret": "nope"}
        provider = PatreonProvider.from_config("patreon", section, http)
        errcode = "TPI_PROVIDER_MISCONFIGURED"
    with pytest.raises(SignInFailed) as refused:
        await provider.finish([], back["code"], redirect_uri, request)
    assert refused.value.errcode == errcode


async def test_a_refused_scope_stops_the_sign_in(patreon: FakePatreon, http: OutboundHTTP) -> None:
    provider = make_provider(patreon, http)
    patreon.sign_in_as(patreon.add_account("Lou"), grants=set())
    request = provider.authorization_request([], CALLBACK, "st")
    back = await patreon.approve(request.url)
    with pytest.raises(SignInFailed) as refused:
        await provider.finish([], back["code"], CALLBACK, request)
    assert refused.value.errcode == "TPI_PROVIDER_SCOPES_DENIED"


@pytest.mark.parametrize(
    ("area", "fault", "detail"),
    [
        ("api", 429, "rate limited, retry in 9 s"),
        ("api", 503, "HTTP 503"),
        ("api", 500, "HTTP 500"),
        ("api", 401, "it refused the sign-in it had just granted"),
        ("api", 400, "HTTP 400"),
        ("api", "malformed", "its answer was not JSON"),
        ("api", "html", "its answer was not JSON"),
        ("api", "huge", "its answer was too large"),
        ("api", "empty", "its answer could not be read"),
        ("token", 503, "HTTP 503"),
        ("token", 429, "token endpoint 429"),
        ("token", "html", "its answer was not JSON"),
    ],
)
async def test_faults_are_unavailable_never_a_refusal(
    patreon: FakePatreon, http: OutboundHTTP, area: str, fault: int | str, detail: str
) -> None:
    provider = make_provider(patreon, http)
    mona = patreon.add_account("Mona")
    patreon.pledge(mona, "Gold")
    patreon.sign_in_as(mona)
    request = provider.authorization_request([], CALLBACK, "st")
    back = await patreon.approve(request.url)
    patreon.fail(area, fault, times=1)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await provider.finish([], back["code"], CALLBACK, request)
    assert detail in unavailable.value.detail


async def test_a_hanging_patreon_is_given_up(patreon: FakePatreon, http: OutboundHTTP) -> None:
    provider = make_provider(patreon, http)
    provider._oauth.request_timeout = 0.3
    patreon.sign_in_as(patreon.add_account("Nils"))
    for area in ("api", "token"):
        request = provider.authorization_request([], CALLBACK, "st")
        back = await patreon.approve(request.url)
        patreon.fail(area, "timeout", times=1)
        with pytest.raises(ProviderUnavailable, match="did not answer in time"):
            await provider.finish([], back["code"], CALLBACK, request)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"data": []},
        {"data": {"type": "user"}},
        {"data": {"id": "1", "type": "user"}},  # no memberships relationship at all
        {"data": {"id": "1", "relationships": {"memberships": {"data": "x"}}}},
        {"data": {"id": "1", "relationships": {"memberships": {"data": [{"id": "m"}]}}},
         "included": [{"type": "member", "id": "m", "attributes": {"patron_status": 3},
                       "relationships": {"campaign": {"data": {"id": "123456"}}}}]},
    ],
)  # fmt: skip
def test_an_unreadable_identity_never_reads_as_not_a_patron(document: object) -> None:
    from thirdparty_invite.providers.patreon import read_identity
    from thirdparty_invite.providers.patreon_membership import UnreadableDocument

    with pytest.raises(UnreadableDocument):
        read_identity(document, "patreon", "123456")


@pytest.mark.parametrize(
    ("entitled", "campaign", "rule", "holds"),
    [
        # Entitled to the named tier (by title or ID): yes, whatever else is known.
        ([("2", "Gold", None)], None, "tier:gold", True),
        ([("2", "Gold", None)], None, "tier:2", True),
        # Higher by amount, the bar known from the campaign's tiers: yes; lower: no.
        ([("3", "Platinum", 1000)], [("2", "Gold", 500)], "tier:Gold", True),
        ([("1", "Bronze", 100)], [("2", "Gold", 500)], "tier:Gold", False),
        # Two tiers with one title: the cheaper sets the bar.
        ([("1", "Bronze", 300)], [("2", "Gold", 500), ("9", "gold", 200)], "tier:Gold", True),
        # What the person's tier costs is unknown: never a refusal.
        ([("7", "", None)], [("2", "Gold", 500)], "tier:Gold", None),
        # The bar is unknown (no campaign tiers, the named tier has no amount): unknown.
        ([("1", "Bronze", 100)], None, "tier:Gold", None),
        ([("1", "Bronze", 100)], [("2", "Gold", None)], "tier:Gold", None),
    ],
)
async def test_tier_semantics(
    entitled: list[tuple[str, str, int | None]],
    campaign: list[tuple[str, str, int | None]] | None,
    rule: str,
    holds: bool | None,
) -> None:
    from thirdparty_invite.providers.base import ExternalAccount
    from thirdparty_invite.providers.patreon import PatreonSession
    from thirdparty_invite.providers.patreon_membership import Membership, Tier

    membership = Membership(
        "active_patron",
        500,
        tuple(Tier(*t) for t in entitled),
        None if campaign is None else tuple(Tier(*t) for t in campaign),
    )
    provider = PatreonProvider.from_config("patreon", OFFLINE, None)
    session = PatreonSession(ExternalAccount("patreon", "1", "P"), membership)
    assert (await session.check(provider.parse_rule(rule))).holds is holds
