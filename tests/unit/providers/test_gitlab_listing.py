"""The GitLab re-check listing against the fake GitLab: `members/all` with the operator's
group access token, page by page (offset pages, `x-next-page`, `Link`), only the people
who hold the rule (not awaiting a seat, not blocked, role high enough, shares included,
subgroup-only members out), ETags answered 304, and everything that keeps a listing from
being read exactly (429 with its wait, 5xx, refused token, bad shapes, a list that moves
while it is read) raising ProviderUnavailable, never a shorter list."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.providers.gitlab import FakeGitLab

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import ProviderUnavailable
from thirdparty_invite.providers.gitlab import GitLabProvider
from thirdparty_invite.providers.gitlab_listing import GitLabMemberListing
from thirdparty_invite.providers.gitlab_members import next_page
from thirdparty_invite.providers.listing import ListingPage
from thirdparty_invite.providers.oauth import ApiResponse


@pytest_asyncio.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as server:
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


def provider_for(gitlab: FakeGitLab, http: OutboundHTTP, token: str | None) -> GitLabProvider:
    section = gitlab.config_section()
    if token is not None:
        section["recheck"] = {"token": token}
    return GitLabProvider.from_config("gitlab", section, http)


def listing_of(provider: GitLabProvider, rule: str) -> GitLabMemberListing:
    listing = provider.listing(provider.parse_rule(rule))
    assert isinstance(listing, GitLabMemberListing)
    return listing


async def read_all(listing: GitLabMemberListing, **kwargs) -> list[ListingPage]:
    return [page async for page in listing.pages(**kwargs)]


def members(pages: list[ListingPage]) -> set[str]:
    return {member for page in pages for member in page.members or ()}


async def test_no_token_no_listing(gitlab, http) -> None:
    provider = provider_for(gitlab, http, None)
    assert provider.listing(provider.parse_rule("group:gnome")) is None


async def test_the_listing_means_what_the_rule_means(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    gitlab.add_group("gnome/infra")
    gitlab.share_group("gnome", "friends", "reporter")
    direct = gitlab.add_account("direct", groups={"gnome": "developer"})
    parent = gitlab.add_account("parent", groups={"gnome": "owner"})  # inherited in infra
    sub_only = gitlab.add_account("sub", groups={"gnome/infra": "maintainer"})
    friend = gitlab.add_account("friend", groups={"friends": "owner"})  # shared: reporter
    waiting = gitlab.add_account("waiting")
    gitlab.set_awaiting(waiting, "gnome", "developer")
    blocked = gitlab.add_account("blocked", groups={"gnome": "developer"}, name="B")
    blocked.state = "blocked"
    minimal = gitlab.add_account("minimal", groups={"gnome": 5})
    stranger = gitlab.add_account("stranger", groups={"kde": "owner"})
    provider = provider_for(gitlab, http, token)

    everyone = members(await read_all(listing_of(provider, "group:gnome")))
    assert everyone == {str(a.id) for a in (direct, parent, friend)}
    left_out = (sub_only, waiting, blocked, minimal, stranger)
    assert not everyone & {str(a.id) for a in left_out}
    infra = members(await read_all(listing_of(provider, "group:gnome/infra")))
    assert infra == {str(a.id) for a in (direct, parent, sub_only, friend)}
    developers = members(await read_all(listing_of(provider, "group:gnome:developer")))
    assert developers == {str(direct.id), str(parent.id)}  # the share gives Reporter
    assert [r.headers["PRIVATE-TOKEN"] for r in gitlab.requests_to("api")] == ["<redacted>"] * 3
    assert all("Authorization" not in r.headers for r in gitlab.requests_to("api"))


async def test_pages_follow_the_headers_not_the_counts(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    people = [gitlab.add_account(f"p{n:03}", groups={"gnome": "guest"}) for n in range(250)]
    gitlab.page_size_cap = 40  # shorter pages than asked: not the last one for that
    gitlab.send_totals = False  # as past 10,000 records
    pages = await read_all(listing_of(provider_for(gitlab, http, token), "group:gnome"))
    assert len(pages) == 7
    assert members(pages) == {str(a.id) for a in people}
    assert [p.next_cursor for p in pages] == ["2", "3", "4", "5", "6", "7", None]
    assert [p.key for p in pages][:2] == ["gnome?page=1", "gnome?page=2"]
    asked = [r.query for r in gitlab.requests_to("api")]
    assert {q["per_page"] for q in asked} == {"100"}


async def test_a_listing_resumes_from_its_cursor(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    for n in range(150):
        gitlab.add_account(f"p{n:03}", groups={"gnome": "guest"})
    listing = listing_of(provider_for(gitlab, http, token), "group:gnome")
    pages = await read_all(listing, cursor="2")
    assert [p.key for p in pages] == ["gnome?page=2"]
    assert len(pages[0].members) == 50


async def test_an_unchanged_page_costs_a_304(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    for n in range(150):
        gitlab.add_account(f"p{n:03}", groups={"gnome": "guest"})
    listing = listing_of(provider_for(gitlab, http, token), "group:gnome")
    first = await read_all(listing)
    assert all(p.etag and p.etag.startswith('W/"') for p in first)
    gitlab.add_account("late", groups={"gnome": "guest"})  # lands on the second page
    again = await read_all(listing, etags={p.key: p.etag for p in first})
    assert again[0].members is None and again[0].etag == first[0].etag
    assert again[0].next_cursor == "2"
    assert again[1].members is not None and len(again[1].members) == 51
    assert [r.headers.get("If-None-Match") for r in gitlab.requests_to("api")][2:] == [
        first[0].etag,
        first[1].etag,
    ]


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        (503, "HTTP 503"),
        (401, "refused (HTTP 401)"),
        ("malformed", "not JSON"),
        ("empty", "an unexpected shape"),
        ("timeout", "did not answer in time"),
    ],
)
async def test_a_page_that_cannot_be_read_stops_the_listing(gitlab, http, mode, detail) -> None:
    token = gitlab.add_group_token("gnome")
    for n in range(150):
        gitlab.add_account(f"p{n:03}", groups={"gnome": "guest"})
    provider = provider_for(gitlab, http, token)
    provider.api.request_timeout = 0.5
    pages = listing_of(provider, "group:gnome").pages()
    first = await anext(pages)
    assert first.next_cursor == "2"
    gitlab.fail("members", mode)
    with pytest.raises(ProviderUnavailable) as error:
        await anext(pages)
    assert detail in error.value.detail
    assert error.value.retry_after is None


async def test_a_rate_limit_says_when_to_come_back(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    gitlab.add_account("alice", groups={"gnome": "guest"})
    gitlab.fail("members", 429)
    with pytest.raises(ProviderUnavailable) as error:
        await read_all(listing_of(provider_for(gitlab, http, token), "group:gnome"))
    assert 25 <= error.value.retry_after <= 30
    assert "rate limited" in error.value.detail


async def test_a_token_without_access_is_unavailable(gitlab, http) -> None:
    token = gitlab.add_group_token("kde")  # another group's token
    gitlab.add_account("alice", groups={"gnome": "guest"})
    with pytest.raises(ProviderUnavailable, match="404"):
        await read_all(listing_of(provider_for(gitlab, http, token), "group:gnome"))


async def test_a_list_that_moves_while_read_stops(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    people = [gitlab.add_account(f"p{n:03}", groups={"gnome": "guest"}) for n in range(150)]
    pages = listing_of(provider_for(gitlab, http, token), "group:gnome").pages()
    await anext(pages)
    gitlab.set_role(people[0], "gnome", None)  # everyone after moves one place up
    with pytest.raises(ProviderUnavailable, match="changed while it was read"):
        await anext(pages)


async def test_an_entry_in_another_shape_stops_the_listing(gitlab, http, monkeypatch) -> None:
    token = gitlab.add_group_token("gnome")
    gitlab.add_account("alice", groups={"gnome": "guest"})
    monkeypatch.setattr(gitlab, "_member_json", lambda *a: {"id": "1", "state": "active"})
    with pytest.raises(ProviderUnavailable):
        await read_all(listing_of(provider_for(gitlab, http, token), "group:gnome"))


async def test_a_304_without_paging_headers_stops_the_listing(gitlab, http) -> None:
    token = gitlab.add_group_token("gnome")
    listing = listing_of(provider_for(gitlab, http, token), "group:gnome")

    async def bare_304(*args, **kwargs) -> ApiResponse:
        return ApiResponse(304, {"etag": 'W/"x"'}, None)

    listing.api.get = bare_304  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailable, match="without paging"):
        await read_all(listing, etags={"gnome?page=1": 'W/"x"'})


def test_the_next_page_by_the_link_header_alone() -> None:
    # Some proxies drop x-* headers: the Link header's next page is followed instead, by
    # its number only (the next request still goes to the configured base URL).
    link = '<https://elsewhere.example/api/v4/groups/1/members/all?page=3>; rel="next"'
    assert next_page(ApiResponse(200, {"link": link}, []), 2) == 3
    assert next_page(ApiResponse(200, {"x-next-page": ""}, []), 2) is None
    assert next_page(ApiResponse(200, {"x-next-page": "2"}, []), 2) is None  # no going back
    assert next_page(ApiResponse(200, {}, []), 1) is None
