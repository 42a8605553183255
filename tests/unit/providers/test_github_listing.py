"""GitHub's member listings for re-checks against the fake GitHub (real HTTP on loopback):
the recheck config, org, team, collaborator and sponsor listings page by page, Link paging
and resuming, ETags and free 304s, App installation tokens minted and cached, rate limits
and every answer that must stop a listing rather than shorten it."""

from __future__ import annotations

from collections.abc import AsyncIterator
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
import pytest
import pytest_asyncio
from support.providers.github import FakeGitHub

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import ProviderUnavailable
from thirdparty_invite.providers.github import GitHubProvider
from thirdparty_invite.providers.github_app import RENEW_BEFORE, AppInstallation
from thirdparty_invite.providers.github_listing import _reaches
from thirdparty_invite.providers.github_sponsors import SponsorListing
from thirdparty_invite.providers.listing import ListingPage, MemberListing
from thirdparty_invite.providers.registry import read_provider_settings

ORG = "matrix-org"


@pytest_asyncio.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.add_org(ORG)
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest.fixture
def operator(github: FakeGitHub) -> Any:
    return github.add_account("operator").join_org(ORG)


def provider_with(github: FakeGitHub, http: OutboundHTTP, recheck: Any) -> GitHubProvider:
    section: dict[str, Any] = github.config_section()
    if recheck is not None:
        section["recheck"] = recheck
    return GitHubProvider.from_config("github", section, http)


@pytest.fixture
def provider(github: FakeGitHub, http: OutboundHTTP, operator: Any) -> GitHubProvider:
    token = github.listings.personal_token(operator, {"read:org", "repo", "read:user"})
    return provider_with(github, http, {"token": token})


def listing(provider: GitHubProvider, rule_text: str) -> MemberListing:
    found = provider.listing(provider.parse_rule(rule_text))
    assert found is not None
    return found


async def walk(
    listing: MemberListing, cursor: str | None = None, etags: dict[str, str] | None = None
) -> list[ListingPage]:
    return [page async for page in listing.pages(cursor, etags)]


def members(pages: list[ListingPage]) -> set[str]:
    return {member for page in pages for member in page.members or ()}


def etags_of(pages: list[ListingPage]) -> dict[str, str]:
    return {page.key: page.etag for page in pages if page.etag}


# Config


def test_recheck_settings_are_read_and_wrong_ones_named(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    assert (
        provider_with(github, http, None).listing(
            provider_with(github, http, None).parse_rule("org:x")
        )
        is None
    )
    app_id, pem = github.listings.register_app()
    app = provider_with(
        github, http, {"app_id": int(app_id), "installation_id": "7", "private_key": pem}
    )
    assert isinstance(app.recheck, AppInstallation)
    assert (app.recheck.app_id, app.recheck.installation_id) == (app_id, "7")
    public = RSAKey.import_key(pem).as_pem(private=False).decode()
    wrong = {
        "recheck: must be a mapping": "ghp_x",
        "recheck.tokn: unknown setting": {"tokn": "x"},
        "recheck.token: must be a non-empty string": {"token": ""},
        "recheck.app_id: give either token or a GitHub App": {"token": "x", "app_id": 1},
        "recheck.private_key: a GitHub App needs": {"app_id": 1, "installation_id": 2},
        "recheck.app_id: must be a number": {
            "app_id": "abc",
            "installation_id": 2,
            "private_key": pem,
        },
        "recheck.installation_id: must be a number": {
            "app_id": 1,
            "installation_id": True,
            "private_key": pem,
        },
        "recheck.private_key: must be the App's private key": {
            "app_id": 1,
            "installation_id": 2,
            "private_key": "not a key",
        },
        "recheck.private_key: must be the App's RSA private key": {
            "app_id": 1,
            "installation_id": 2,
            "private_key": "-----BEGIN junk-----",
        },
        "recheck.private_key: is a public key": {
            "app_id": 1,
            "installation_id": 2,
            "private_key": public,
        },
    }
    for message, recheck in wrong.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            provider_with(github, http, recheck)
    # The operator reads them under the provider's name, like every other key.
    problems: list[str] = []
    section = {**github.config_section(), "recheck": {"token": "x", "app_id": 1}}
    read_provider_settings({"github": section}, problems)
    assert problems == [
        "providers.github.recheck.app_id: give either token or a GitHub App, not both"
    ]
    assert provider_with(github, http, {}).recheck is None


# Organisations: paging, ETags, who is listed


async def test_org_listing_pages_by_link_and_lists_active_members_only(
    github: FakeGitHub, provider: GitHubProvider, operator: Any
) -> None:
    owner = github.add_account("owner").join_org(ORG, role="admin")
    invited = github.add_account("invited").join_org(ORG, state="pending")
    billing = github.add_account("billing").join_org(ORG, role="billing_manager")
    crowd = github.listings.generate(ORG, 248)  # 250 with the operator and the owner
    pages = await walk(listing(provider, f"org:{ORG}"))
    assert [len(page.members or ()) for page in pages] == [100, 100, 50]
    found = members(pages)
    assert {str(operator.id), str(owner.id)} <= found
    assert {str(invited.id), str(billing.id)}.isdisjoint(found)
    assert found >= {str(i) for i in crowd.ids} and len(found) == 250
    # The key of each page is its URL, and each page points at the next one's.
    assert pages[0].key.endswith(f"/orgs/{ORG}/members?per_page=100&role=all")
    assert [page.next_cursor for page in pages] == [pages[1].key, pages[2].key, None]
    assert "page=3" in pages[2].key
    # The token's own membership is read first (concealed members are shown to members).
    assert [page.calls for page in pages] == [2, 1, 1]
    assert len(github.requests_to(f"/api/v3/user/memberships/orgs/{ORG}")) == 1


async def test_unchanged_pages_answer_304_and_cost_nothing(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    github.listings.generate(ORG, 299)
    org = listing(provider, f"org:{ORG}")
    first = await walk(org)
    limit_after_first = github.rate_limit_remaining
    github.listings.reset_counts()
    second = await walk(org, etags=etags_of(first))
    assert [page.members for page in second] == [None, None, None]
    assert [page.etag for page in second] == [page.etag for page in first]
    assert [page.key for page in second] == [page.key for page in first]
    assert (github.listings.calls, github.listings.not_modified) == (3, 3)
    assert github.listings.charged == 0 and github.rate_limit_remaining == limit_after_first
    # The membership was read within the hour: not asked again.
    assert sum(page.calls for page in second) == 3
    sent = github.requests_to(f"/api/v3/orgs/{ORG}/members")[-3:]
    assert [r.headers.get("If-None-Match") for r in sent] == [page.etag for page in first]
    # A 304 without its ETag keeps the one that was sent.
    github.listings.etag_on_304 = False
    third = await walk(org, etags=etags_of(first))
    assert [(page.members, page.etag) for page in third] == [(None, p.etag) for p in first]


async def test_a_change_shows_on_the_pages_it_touches(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    crowd = github.listings.generate(ORG, 299)
    org = listing(provider, f"org:{ORG}")
    first = await walk(org)
    gone = crowd.ids[150]
    crowd.remove(gone)
    second = await walk(org, etags=etags_of(first))
    assert second[0].members is None  # page 1 unchanged
    assert second[1].members is not None and second[1].etag != first[1].etag
    assert str(gone) not in members(second)
    assert len(second[2].members or ()) == 99


async def test_a_new_page_behind_an_unchanged_last_page_is_read(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    crowd = github.listings.generate(ORG, 199)  # two full pages with the operator
    org = listing(provider, f"org:{ORG}")
    first = await walk(org)
    assert len(first) == 2 and first[1].next_cursor is None
    [newcomer] = crowd.add(1)
    second = await walk(org, etags=etags_of(first))
    # Both old pages are unchanged (304), but the 304's Link leads on to the new page.
    assert [page.members for page in second[:2]] == [None, None]
    assert second[2].members == (str(newcomer),)


async def test_a_walk_resumes_at_its_cursor(github: FakeGitHub, provider: GitHubProvider) -> None:
    github.listings.generate(ORG, 299)
    org = listing(provider, f"org:{ORG}")
    first = await walk(org)
    resumed = await walk(org, cursor=first[1].key)
    assert [page.key for page in resumed] == [page.key for page in first[1:]]
    with pytest.raises(ProviderUnavailable, match="outside the API"):
        await walk(org, cursor="http://127.0.0.1:9/api/v3/orgs/x/members?page=2")


async def test_a_token_outside_the_org_would_see_public_members_only(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    outsider = github.add_account("outsider")
    token = github.listings.personal_token(outsider, {"read:org"})
    provider = provider_with(github, http, {"token": token})
    with pytest.raises(ProviderUnavailable, match="not an active member of matrix-org"):
        await walk(listing(provider, f"org:{ORG}"))
    assert not github.requests_to(f"/api/v3/orgs/{ORG}/members")


# Refusals and limits: the listing stops, it never comes out shorter


async def test_rate_limits_stop_the_walk_with_the_wait(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    github.listings.generate(ORG, 299)
    org = listing(provider, f"org:{ORG}")
    for mode, low, high in (
        ("rate_limit", 3500, 3700),
        ("rate_limit_429", 3500, 3700),
        ("secondary", 60, 60),
    ):
        github.listings.fail(mode, page=2, times=1)
        read = []
        with pytest.raises(ProviderUnavailable) as caught:
            async for page in org.pages():
                read.append(page)
        assert len(read) == 1, mode  # the first page was read, nothing after it
        assert caught.value.retry_after is not None
        assert low <= caught.value.retry_after <= high, (mode, caught.value.retry_after)
        assert "rate limited" in caught.value.detail
    # The hourly limit running out on its own.
    github.rate_limit_remaining = 2
    with pytest.raises(ProviderUnavailable, match="rate limited") as caught:
        await walk(org)
    assert caught.value.retry_after and caught.value.retry_after > 3000


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        (500, "HTTP 500"),
        (502, "HTTP 502"),
        ("short", "a page of 93 entries"),
        ("malformed", "a page of dict entries"),
        (404, "not found, or not visible"),
    ],
)
async def test_faults_stop_the_walk(
    github: FakeGitHub, provider: GitHubProvider, fault: int | str, detail: str
) -> None:
    github.listings.generate(ORG, 299)
    github.listings.fail(fault, page=2)
    read = []
    with pytest.raises(ProviderUnavailable, match=detail):
        async for page in listing(provider, f"org:{ORG}").pages():
            read.append(page)
    assert len(read) == 1


async def test_a_timeout_stops_the_walk(github: FakeGitHub, provider: GitHubProvider) -> None:
    provider.client.request_timeout = 0.3
    github.listings.fail("timeout")
    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        await walk(listing(provider, f"org:{ORG}"))


async def test_credentials_refused_are_said_for_the_operator(
    github: FakeGitHub, http: OutboundHTTP, operator: Any
) -> None:
    dead = provider_with(github, http, {"token": "ghp_revoked"})
    with pytest.raises(ProviderUnavailable, match="credentials were refused"):
        await walk(listing(dead, f"org:{ORG}"))
    narrow = github.listings.personal_token(operator, {"read:user"})
    no_scope = provider_with(github, http, {"token": narrow})
    with pytest.raises(ProviderUnavailable, match="needs the scopes read:org"):
        await walk(listing(no_scope, f"team:{ORG}/core"))
    github.orgs[ORG].requires_sso = True
    unauthorised = github.listings.personal_token(operator, {"read:org"})
    sso = provider_with(github, http, {"token": unauthorised})
    operator.join_team(ORG, "core")
    with pytest.raises(ProviderUnavailable, match="SAML single sign-on"):
        await walk(listing(sso, f"team:{ORG}/core"))
    authorised = github.listings.personal_token(operator, {"read:org"}, sso=True)
    allowed = provider_with(github, http, {"token": authorised})
    assert members(await walk(listing(allowed, f"team:{ORG}/core"))) == {str(operator.id)}


# Teams and repositories


async def test_team_listing_counts_maintainers_not_invitations(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    lead = github.add_account("lead").join_org(ORG).join_team(ORG, "core", role="maintainer")
    dev = github.add_account("dev").join_org(ORG).join_team(ORG, "core")
    invited = github.add_account("invited").join_team(ORG, "core", state="pending")
    github.add_account("other").join_org(ORG).join_team(ORG, "web")
    pages = await walk(listing(provider, f"team:{ORG}/core"))
    assert members(pages) == {str(lead.id), str(dev.id)}
    assert str(invited.id) not in members(pages)
    assert pages[0].key.endswith(f"/orgs/{ORG}/teams/core/members?per_page=100&role=all")
    with pytest.raises(ProviderUnavailable, match="not found"):
        await walk(listing(provider, f"team:{ORG}/nonesuch"))


async def test_repository_listing_keeps_those_at_the_level(
    github: FakeGitHub, provider: GitHubProvider
) -> None:
    github.add_repo(f"{ORG}/synapse")
    people = {
        level: github.add_account(f"u-{level}").give_access(f"{ORG}/synapse", level)
        for level in ("pull", "triage", "push", "maintain", "admin")
    }
    pushers = members(await walk(listing(provider, f"repo:{ORG}/synapse:push")))
    assert pushers == {str(people[level].id) for level in ("push", "maintain", "admin")}
    triagers = members(await walk(listing(provider, f"repo:{ORG}/synapse:triage")))
    assert str(people["triage"].id) in triagers and str(people["pull"].id) not in triagers
    # Everyone may pull a public repository: there is nobody to list.
    assert provider.listing(provider.parse_rule(f"repo:{ORG}/synapse:read")) is None


# Sponsors (GraphQL)


async def test_sponsor_listing_pages_by_cursor_and_applies_the_minimum(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    maintainer = github.add_account("maintainer")
    monthly = github.add_account("monthly").sponsor("maintainer", 1000)
    small = github.add_account("small").sponsor("maintainer", 300)
    once = github.add_account("once").sponsor("maintainer", 5000, one_time=True)
    crowd = github.listings.generate("sponsor:maintainer", 150)  # $5 a month each
    token = github.listings.personal_token(maintainer, {"read:user"})
    provider = provider_with(github, http, {"token": token})
    pages = await walk(listing(provider, "sponsor:maintainer"))
    assert [len(page.members or ()) for page in pages] == [100, 53]
    assert pages[0].next_cursor == pages[1].key.rsplit(":", 1)[1]
    everyone = {str(a.id) for a in (monthly, small, once)} | {str(i) for i in crowd.ids}
    assert members(pages) == everyone
    at_least_5 = members(await walk(listing(provider, "sponsor:maintainer:500")))
    assert at_least_5 == everyone - {str(small.id), str(once.id)}
    resumed = await walk(listing(provider, "sponsor:maintainer"), cursor=pages[0].next_cursor)
    assert members(resumed) == members(pages[1:])


async def test_sponsor_listing_refuses_what_it_cannot_see_whole(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    maintainer = github.add_account("maintainer")
    fan = github.add_account("fan").sponsor("maintainer", 500)
    stranger = github.add_account("stranger")
    theirs = provider_with(
        github, http, {"token": github.listings.personal_token(stranger, {"read:user"})}
    )
    with pytest.raises(ProviderUnavailable, match="would hide the private sponsors"):
        await walk(listing(theirs, "sponsor:maintainer"))
    own = provider_with(
        github, http, {"token": github.listings.personal_token(maintainer, {"read:user"})}
    )
    github.listings.hide_sponsor(fan)
    with pytest.raises(ProviderUnavailable, match="may not see"):
        await walk(listing(own, "sponsor:maintainer"))
    github.listings.hidden_sponsors.clear()
    github.rate_limit_remaining = 0
    with pytest.raises(ProviderUnavailable, match="rate limited") as caught:
        await walk(listing(own, "sponsor:maintainer"))
    assert caught.value.retry_after and caught.value.retry_after > 3000
    github.rate_limit_remaining = 100
    with pytest.raises(ProviderUnavailable, match="no account nobody"):
        await walk(listing(own, "sponsor:nobody"))
    narrow = github.listings.personal_token(maintainer, {"read:org"})
    scopeless = provider_with(github, http, {"token": narrow})
    with pytest.raises(ProviderUnavailable, match="INSUFFICIENT_SCOPES"):
        await walk(listing(scopeless, "sponsor:maintainer"))


async def test_an_organisation_owner_may_list_its_sponsors(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    owner = github.add_account("owner").join_org(ORG, role="admin")
    fan = github.add_account("fan").sponsor(ORG, 500)
    provider = provider_with(
        github, http, {"token": github.listings.personal_token(owner, {"read:user"})}
    )
    assert members(await walk(listing(provider, f"sponsor:{ORG}"))) == {str(fan.id)}


# A GitHub App's installation


def app_provider(
    github: FakeGitHub, http: OutboundHTTP, account: str = ORG, **permissions: str
) -> GitHubProvider:
    app_id, pem = github.listings.register_app()
    installation = github.listings.install_app(app_id, account, permissions or None)
    recheck = {"app_id": app_id, "installation_id": installation, "private_key": pem}
    return provider_with(github, http, recheck)


async def test_an_app_mints_one_installation_token_and_reuses_it(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    github.listings.generate(ORG, 250)
    provider = app_provider(github, http)
    org = listing(provider, f"org:{ORG}")
    first = await walk(org)
    # Installation read + token minted, then the pages: within ceil(M/100) + 2.
    assert [page.calls for page in first] == [3, 1, 1]
    assert len(members(first)) == 250  # concealed members too: it is installed on ORG
    second = await walk(org, etags=etags_of(first))
    assert [page.members for page in second] == [None, None, None]
    assert sum(page.calls for page in second) == 3
    assert github.listings.minted == 1 and github.listings.app_calls == 2
    # The JWT the fake checked: RS256, iss the App, iat 60 s back, exp within 10 minutes.
    assert isinstance(provider.recheck, AppInstallation)
    claims = jwt.decode(provider.recheck.app_jwt(), provider.recheck._key).claims
    now = time.time()
    assert claims["iss"] == provider.recheck.app_id
    assert now - 62 <= claims["iat"] <= now - 58 and claims["exp"] - now <= 600


async def test_an_installation_token_is_renewed_before_it_expires(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    provider = app_provider(github, http)
    assert isinstance(provider.recheck, AppInstallation)
    org = listing(provider, f"org:{ORG}")
    await walk(org)
    await walk(org)
    assert github.listings.minted == 1
    # Within five minutes of its end, a token is replaced before it is used.
    provider.recheck._expires_at = time.time() + RENEW_BEFORE - 1
    await walk(org)
    assert github.listings.minted == 2
    # A token GitHub no longer takes is dropped: the next walk mints a new one.
    github.listings.expire_installation_tokens()
    with pytest.raises(ProviderUnavailable, match="credentials were refused"):
        await walk(org)
    await walk(org)
    assert github.listings.minted == 3
    assert github.listings.app_calls == 4  # the installation was read once


async def test_app_refusals_are_said_for_the_operator(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    elsewhere = app_provider(github, http, account="someone-else")
    with pytest.raises(ProviderUnavailable, match="installed on someone-else, not matrix-org"):
        await walk(listing(elsewhere, f"org:{ORG}"))
    app_id, _ = github.listings.register_app()
    _, other_pem = github.listings.register_app()
    installation = github.listings.install_app(app_id, ORG)
    wrong_key = provider_with(
        github,
        http,
        {"app_id": app_id, "installation_id": installation, "private_key": other_pem},
    )
    with pytest.raises(ProviderUnavailable, match="was refused \\(401\\)"):
        await walk(listing(wrong_key, f"org:{ORG}"))
    _, pem = github.listings.register_app(app_id)
    missing = provider_with(
        github, http, {"app_id": app_id, "installation_id": 1, "private_key": pem}
    )
    with pytest.raises(ProviderUnavailable, match="has no installation 1"):
        await walk(listing(missing, f"org:{ORG}"))
    no_members = app_provider(github, http, metadata="read")
    with pytest.raises(ProviderUnavailable, match="forbidden"):
        await walk(listing(no_members, f"org:{ORG}"))


# Entries in shapes the listings must not guess about


def test_entries_without_what_the_rule_needs_stop_the_listing(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    push = _reaches("push")
    # An older server without triage and maintain: the strongest flag set decides.
    assert push({"permissions": {"pull": True, "push": True, "admin": False}})
    assert not push({"permissions": {"pull": True, "push": False, "admin": False}})
    for odd in ({}, {"permissions": None}, {"permissions": {"pull": True, "push": "yes"}}):
        with pytest.raises(ValueError):
            push(odd)
    provider = provider_with(github, http, {"token": "x"})
    minimum = SponsorListing(provider, provider.recheck, "maintainer", 500)  # type: ignore[arg-type]
    monthly = {"isOneTimePayment": False, "tier": {"monthlyPriceInCents": 500}}
    assert minimum._sponsor({**monthly, "sponsorEntity": {"databaseId": 7}}) == "7"
    for odd in (
        {**monthly, "sponsorEntity": {"databaseId": "7"}},
        {**monthly, "sponsorEntity": {"databaseId": True}},
        {
            "isOneTimePayment": False,
            "tier": {"monthlyPriceInCents": None},
            "sponsorEntity": {"databaseId": 7},
        },
    ):
        with pytest.raises(ValueError):
            minimum._sponsor(odd)
    with pytest.raises(TypeError):  # a sponsorship without a tier: another shape
        minimum._sponsor(
            {"isOneTimePayment": False, "tier": None, "sponsorEntity": {"databaseId": 7}}
        )
