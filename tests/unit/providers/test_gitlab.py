"""The GitLab provider against the fake GitLab (real HTTP on loopback): config, rules, the
OpenID Connect sign-in (PKCE, nonce, ID token, single-use codes, client authentication),
group rules direct / inherited / through subgroups, role rules and their pagination, fewer
scopes granted, and faults (5xx, hangs, bad bodies), which are never a "no"."""

from __future__ import annotations

from collections.abc import AsyncIterator
import secrets

import aiohttp
import pytest
import pytest_asyncio
from support.providers.gitlab import FakeGitLab, GitLabAccount
from yarl import URL

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers import gitlab as gitlab_module
from thirdparty_invite.providers.base import ProviderUnavailable, RuleError, SignInFailed, Verdict
from thirdparty_invite.providers.gitlab import GitLabProvider, GitLabSession
from thirdparty_invite.providers.registry import read_provider_settings

CLIENT_SECRET = "fake-gitlab-secret-0123456789"
# Never contacted: the tests read the code from GitLab's redirect.
CALLBACK = "http://127.0.0.1:9/_matrix/maubot/plugin/invites/oauth/callback"


@pytest_asyncio.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as server:
        server.auto_approve = True
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest.fixture
def provider(gitlab: FakeGitLab, http: OutboundHTTP) -> GitLabProvider:
    section = gitlab.config_section(client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    return GitLabProvider.from_config("gitlab", section, http)


async def sign_in(
    provider: GitLabProvider,
    gitlab: FakeGitLab,
    account: GitLabAccount,
    *rule_texts: str,
    grants: set[str] | None = None,
) -> GitLabSession:
    rules = [provider.parse_rule(text) for text in rule_texts]
    gitlab.sign_in_as(account, grants)
    state = secrets.token_urlsafe(16)
    request = provider.authorization_request(rules, CALLBACK, state)
    back = await gitlab.approve(request.url)
    assert back["state"] == state
    return await provider.finish(rules, back["code"], CALLBACK, request)


async def verdict(
    provider: GitLabProvider, gitlab: FakeGitLab, account: GitLabAccount, rule_text: str
) -> Verdict:
    session = await sign_in(provider, gitlab, account, rule_text)
    try:
        return await session.check(provider.parse_rule(rule_text))
    finally:
        await session.close()


# Config


def test_config_defaults_to_gitlab_com() -> None:
    provider = GitLabProvider.from_config("gitlab", {"client_id": "a", "client_secret": "b"}, None)
    assert provider.base_url == "https://gitlab.com"
    assert provider.display_name == "GitLab"
    assert provider.client.endpoints.authorize_url == "https://gitlab.com/oauth/authorize"
    assert provider.client.endpoints.token_url == "https://gitlab.com/oauth/token"


def test_config_self_hosted_base_url() -> None:
    section = {"client_id": "a", "client_secret": "b", "base_url": "https://git.example.org/"}
    provider = GitLabProvider.from_config("gitlab", section, None)
    assert provider.base_url == "https://git.example.org"  # the issuer has no trailing slash
    assert provider.display_name == "GitLab (git.example.org)"
    assert provider.validator.issuer == "https://git.example.org"
    assert provider.validator.jwks.url == "https://git.example.org/oauth/discovery/keys"


@pytest.mark.parametrize(
    ("section", "key", "why"),
    [
        ({"client_id": "a"}, "client_secret", "must be a non-empty string"),
        ({"client_id": "a", "client_secret": " "}, "client_secret", "must be a non-empty string"),
        (
            {"client_id": "a", "client_secret": "b", "base_url": "http://git.example.org"},
            "base_url",
            "must use https://",
        ),
        ({"client_id": "a", "client_secret": "b", "base_url": "ftp://x"}, "base_url", "http(s)"),
        (
            {"client_id": "a", "client_secret": "b", "base_url": "https://x/?a=1"},
            "base_url",
            "query",
        ),
        ({"client_id": "a", "client_secret": "b", "group": "x"}, "group", "unknown setting"),
    ],
)
def test_config_errors_name_the_key(section: dict, key: str, why: str) -> None:
    with pytest.raises(ValueError) as error:
        GitLabProvider.from_config("gitlab", section, None)
    assert str(error.value).startswith(f"{key}: ")
    assert why in str(error.value)


def test_registry_reports_the_wrong_key() -> None:
    problems: list[str] = []
    read_provider_settings({"gitlab": {"client_id": "a", "client_secret": 5}}, problems)
    assert problems == ["providers.gitlab.client_secret: must be a non-empty string"]


# Rules


@pytest.mark.parametrize(
    ("text", "canonical", "args"),
    [
        ("group:gnome", "group:gnome", ("gnome",)),
        ("group:/gnome/infra/", "group:gnome/infra", ("gnome/infra",)),
        ("GROUP:gnome:Developer", "group:gnome:developer", ("gnome", "developer")),
        ("group:gnome:40", "group:gnome:maintainer", ("gnome", "maintainer")),
        ("group:a.b_c-d/e:planner", "group:a.b_c-d/e:planner", ("a.b_c-d/e", "planner")),
    ],
)
def test_parse_rule(provider: GitLabProvider, text: str, canonical: str, args: tuple) -> None:
    rule = provider.parse_rule(text)
    assert (rule.text, rule.args, rule.kind) == (canonical, args, "group")


@pytest.mark.parametrize(
    "text",
    ["org:gnome", "group:", "group:gnome:admin", "group:gnome:35", "group:-x", "group:a//b"],
)
def test_parse_rule_refuses(provider: GitLabProvider, text: str) -> None:
    with pytest.raises(RuleError):
        provider.parse_rule(text)


def test_describe_and_scopes(provider: GitLabProvider) -> None:
    plain = provider.parse_rule("group:gnome")
    role = provider.parse_rule("group:gnome/infra:maintainer")
    assert "subgroups included" in provider.describe(plain)
    assert "at least the Maintainer role" in provider.describe(role)
    # read_api only when a rule names a role: the fewest scopes.
    assert provider.scopes([plain]) == ["openid"]
    assert provider.scopes([plain, role]) == ["openid", "read_api"]


def test_authorization_url_uses_pkce_nonce_and_state(provider: GitLabProvider) -> None:
    request = provider.authorization_request([provider.parse_rule("group:x")], CALLBACK, "st")
    query = dict(URL(request.url).query)
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["nonce"] == request.nonce and request.code_verifier
    assert query["scope"] == "openid" and query["state"] == "st"
    assert CLIENT_SECRET not in request.url


# Sign-in


async def test_sign_in_reads_the_account_from_the_id_token(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", name="Alice Example", groups={"gnome": "guest"})
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    assert session.account.id == str(alice.id)  # GitLab's numeric user id, never the name
    assert session.account.display_name == "alice"
    assert session.account.provider == "gitlab"


async def test_secret_travels_only_in_the_token_request_body(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "developer"})
    session = await sign_in(provider, gitlab, alice, "group:gnome:developer")
    assert (await session.check(provider.parse_rule("group:gnome:developer"))).holds
    assert gitlab.requests
    for request in gitlab.requests:
        assert CLIENT_SECRET not in request.target
    [token_request] = gitlab.requests_to("token")
    assert token_request.form["client_secret"] == "<redacted>"  # sent, in the body
    assert token_request.form["code_verifier"] == "<redacted>"  # PKCE
    [authorize] = gitlab.requests_to("authorize")
    assert authorize.query["code_challenge_method"] == "S256"
    api_auth = {
        r.headers.get("Authorization")
        for r in gitlab.requests_to("api")
        if r.path != "/oauth/discovery/keys"
    }
    assert api_auth == {"Bearer <redacted>"}


async def test_a_reused_code_is_refused(provider, gitlab) -> None:
    alice = gitlab.add_account("alice")
    rules = [provider.parse_rule("group:gnome")]
    gitlab.sign_in_as(alice)
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await gitlab.approve(request.url)
    await provider.finish(rules, back["code"], CALLBACK, request)
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish(rules, back["code"], CALLBACK, request)


async def test_an_expired_code_is_refused(provider, gitlab) -> None:
    rules = [provider.parse_rule("group:gnome")]
    gitlab.sign_in_as(gitlab.add_account("alice"))
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await gitlab.approve(request.url)
    gitlab.expire_codes()
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish(rules, back["code"], CALLBACK, request)


async def test_a_wrong_client_secret_is_the_operators_problem(gitlab, http) -> None:
    section = gitlab.config_section(client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    provider = GitLabProvider.from_config("gitlab", {**section, "client_secret": "x"}, http)
    with pytest.raises(SignInFailed) as error:
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")
    assert error.value.errcode == "TPI_PROVIDER_MISCONFIGURED"


async def test_a_wrong_verifier_is_refused(provider, gitlab) -> None:
    rules = [provider.parse_rule("group:gnome")]
    gitlab.sign_in_as(gitlab.add_account("alice"))
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await gitlab.approve(request.url)
    forged = type(request)(request.url, "another-verifier-" + "x" * 40, request.nonce)
    with pytest.raises(SignInFailed):
        await provider.finish(rules, back["code"], CALLBACK, forged)


async def test_an_id_token_with_another_nonce_is_refused(provider, gitlab) -> None:
    gitlab.id_token_overrides["nonce"] = "not-the-one-we-sent"
    with pytest.raises(SignInFailed) as error:
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")
    assert error.value.errcode == "TPI_PROVIDER_BAD_ID_TOKEN"
    assert "nonce" in error.value.message


async def test_an_id_token_for_another_application_is_refused(provider, gitlab) -> None:
    gitlab.id_token_overrides["aud"] = "someone-else"
    with pytest.raises(SignInFailed, match="another application"):
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")


async def test_a_rotated_signing_key_is_fetched(provider, gitlab) -> None:
    alice = gitlab.add_account("alice")
    await sign_in(provider, gitlab, alice, "group:gnome")
    gitlab.rotate_signing_key(keep_old=False)
    provider.validator.jwks.min_refetch_interval = 0  # no waiting a minute in a test
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    assert session.account.id == str(alice.id)
    assert provider.validator.jwks.fetches == 2


async def test_without_the_openid_scope_there_is_no_sign_in(provider, gitlab) -> None:
    # The person (or the application's settings) left out openid: no ID token comes.
    with pytest.raises(SignInFailed) as error:
        await sign_in(
            provider, gitlab, gitlab.add_account("alice"), "group:gnome", grants={"read_api"}
        )
    assert error.value.errcode == "TPI_PROVIDER_MISCONFIGURED"


async def test_token_endpoint_down_is_unavailable(provider, gitlab) -> None:
    gitlab.fail("token", 502)
    with pytest.raises(ProviderUnavailable):
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")


async def test_jwks_down_is_unavailable(provider, gitlab) -> None:
    gitlab.fail("api", 503)  # the signing keys are served beside the API
    with pytest.raises(ProviderUnavailable):
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")


# Group rules


@pytest.mark.parametrize(
    ("memberships", "rule", "holds"),
    [
        ({"gnome": "guest"}, "group:gnome", True),  # direct
        ({"gnome": "guest"}, "group:gnome/infra", True),  # inherited into the subgroup
        ({"gnome/infra": "developer"}, "group:gnome", True),  # a subgroup counts
        ({"gnome/infra/ci": "developer"}, "group:gnome", True),  # at any depth
        ({"GNOME": "guest"}, "group:gnome", True),  # paths compare without case
        ({"gnome-extras": "owner"}, "group:gnome", False),  # a prefix is not a subgroup
        ({"gnome/infra": "owner"}, "group:gnome/design", False),  # a sibling is not
        ({"kde": "owner"}, "group:gnome", False),
        ({}, "group:gnome", False),
    ],
)
async def test_group_rule(provider, gitlab, memberships, rule, holds) -> None:
    gitlab.add_group("gnome/design")
    gitlab.add_group("gnome/infra")
    alice = gitlab.add_account("alice", groups=memberships)
    result = await verdict(provider, gitlab, alice, rule)
    assert result.holds is holds, result
    if not holds:
        assert "not a member of the group" in result.reason
        assert "Ask an owner" in result.remedy


@pytest.mark.parametrize(
    ("memberships", "rule", "holds"),
    [
        ({"gnome": "developer"}, "group:gnome:developer", True),
        ({"gnome": "developer"}, "group:gnome:reporter", True),
        ({"gnome": "developer"}, "group:gnome:maintainer", False),
        ({"gnome/infra": "maintainer"}, "group:gnome:maintainer", True),  # in a subgroup
        ({"gnome": "owner"}, "group:gnome/infra:maintainer", True),  # inherited role
        ({"gnome": "guest", "gnome/infra": "owner"}, "group:gnome/infra:owner", True),
        ({"gnome": "guest", "gnome/infra": "owner"}, "group:gnome/design:reporter", False),
        ({"gnome": "planner"}, "group:gnome:planner", True),
    ],
)
async def test_role_rule(provider, gitlab, memberships, rule, holds) -> None:
    gitlab.add_group("gnome/design")
    gitlab.add_group("gnome/infra")
    alice = gitlab.add_account("alice", groups=memberships)
    result = await verdict(provider, gitlab, alice, rule)
    assert result.holds is holds, result
    if not holds:
        assert "at least the" in result.reason


async def test_role_rule_asks_for_that_level(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "maintainer"})
    assert (await verdict(provider, gitlab, alice, "group:gnome:maintainer")).holds
    [listing] = [r for r in gitlab.requests_to("api") if r.path == "/api/v4/groups"]
    assert listing.query["min_access_level"] == "40"
    assert listing.query["per_page"] == "100"


async def test_role_rules_page_through_many_groups(provider, gitlab) -> None:
    # 250 groups before "zz-target" in name order: the match is on the third page.
    groups = {f"team-{n:03}": "developer" for n in range(250)}
    alice = gitlab.add_account("alice", groups={**groups, "zz-target": "developer"})
    session = await sign_in(provider, gitlab, alice, "group:zz-target:developer")
    assert (await session.check(provider.parse_rule("group:zz-target:developer"))).holds
    pages = [r.query["page"] for r in gitlab.requests_to("api") if r.path == "/api/v4/groups"]
    assert pages == ["1", "2", "3"]
    # The pages read are kept: another rule at the same role reads no page again.
    assert (await session.check(provider.parse_rule("group:team-007:developer"))).holds
    assert len([r for r in gitlab.requests_to("api") if r.path == "/api/v4/groups"]) == 3


async def test_role_rule_stops_at_the_first_match(provider, gitlab) -> None:
    groups = {f"team-{n:03}": "developer" for n in range(250)}
    alice = gitlab.add_account("alice", groups={**groups, "aa-first": "developer"})
    assert (await verdict(provider, gitlab, alice, "group:aa-first:developer")).holds
    assert len([r for r in gitlab.requests_to("api") if r.path == "/api/v4/groups"]) == 1


async def test_too_many_groups_is_unknown_not_no(provider, gitlab, monkeypatch) -> None:
    monkeypatch.setattr(gitlab_module, "MAX_GROUP_PAGES", 2)
    alice = gitlab.add_account("alice", groups={f"t-{n:03}": "developer" for n in range(250)})
    result = await verdict(provider, gitlab, alice, "group:elsewhere:developer")
    assert result.holds is None
    assert "more groups" in result.reason


async def test_pagination_by_link_header_alone(provider, gitlab) -> None:
    # Some proxies drop x-* headers: the Link header's next page is followed instead.
    from thirdparty_invite.providers.gitlab import _next_page
    from thirdparty_invite.providers.oauth import ApiResponse

    link = '<https://elsewhere.example/api/v4/groups?page=3&per_page=100>; rel="next"'
    assert _next_page(ApiResponse(200, {"link": link}, []), 2) == 3
    assert _next_page(ApiResponse(200, {"x-next-page": ""}, []), 2) is None
    assert _next_page(ApiResponse(200, {"x-next-page": "2"}, []), 2) is None  # no going back
    assert _next_page(ApiResponse(200, {}, []), 1) is None


async def test_fewer_scopes_granted_is_not_a_no(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(
        provider, gitlab, alice, "group:gnome", "group:gnome:owner", grants={"openid"}
    )
    assert (await session.check(provider.parse_rule("group:gnome"))).holds
    result = await session.check(provider.parse_rule("group:gnome:owner"))
    assert result.holds is None
    assert "read_api" in result.reason and "Sign in again" in result.remedy
    assert not [r for r in gitlab.requests_to("api") if r.path == "/api/v4/groups"]


async def test_insufficient_scope_answer_is_not_a_no(provider, gitlab) -> None:
    # A token whose scopes GitLab did not report, refused by the API.
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome:owner", grants={"openid"})
    session._tokens = type(session._tokens)(  # type: ignore[misc]
        session._tokens.access_token,
        "bearer",
        None,
        None,
        {},  # type: ignore[union-attr]
    )
    result = await session.check(provider.parse_rule("group:gnome:owner"))
    assert result.holds is None and "read_api" in result.reason


async def test_an_old_gitlab_without_planner_is_unknown(provider, gitlab) -> None:
    gitlab.supports_planner = False
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    result = await verdict(provider, gitlab, alice, "group:gnome:planner")
    assert result.holds is None
    assert "HTTP 400" in result.reason


# Faults while checking: never a "no"


@pytest.mark.parametrize("rule", ["group:gnome", "group:gnome:developer"])
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (503, "HTTP 503"),
        (500, "HTTP 500"),
        (403, "HTTP 403"),  # userinfo's empty 403 (a token without openid)
        (401, "HTTP 401"),
        ("timeout", "did not answer in time"),
        ("malformed", "not JSON"),
        ("html", "not JSON"),
        ("huge", "too large"),
        ("empty", ""),
    ],
)
async def test_faults_are_unknown(provider, gitlab, rule, mode, reason) -> None:
    provider.client.request_timeout = 0.5  # a hang ends in half a second
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, rule)
    gitlab.fail("api", mode)
    result = await session.check(provider.parse_rule(rule))
    assert result.holds is None, result
    assert reason in result.reason
    assert result.remedy == "Try again in a few minutes."


async def test_a_hanging_token_endpoint_is_unavailable(provider, gitlab) -> None:
    provider.client.request_timeout = 0.5
    gitlab.fail("token", "timeout")
    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")


async def test_userinfo_about_another_account_is_refused(provider, gitlab) -> None:
    bob = gitlab.add_account("bob", groups={"gnome": "owner"})
    gitlab.id_token_overrides["sub"] = "999"  # the ID token names someone else than userinfo
    session = await sign_in(provider, gitlab, bob, "group:gnome")
    result = await session.check(provider.parse_rule("group:gnome"))
    assert result.holds is None
    assert "another account" in result.reason


# The fake itself, as the browser tests will use it


async def test_fake_shows_a_consent_page_and_cancel_denies(provider, gitlab) -> None:
    gitlab.auto_approve = False
    gitlab.sign_in_as(gitlab.add_account("alice"))
    request = provider.authorization_request([provider.parse_rule("group:x:owner")], CALLBACK, "s")
    async with aiohttp.ClientSession() as browser:
        async with browser.get(request.url) as page:
            text = await page.text()
        assert "Authorize" in text and "Cancel" in text and "Matrix invites" in text
        assert "read_api" in text and "openid" in text
        ticket = text.split('name="ticket" value="')[1].split('"')[0]
        form = {"ticket": ticket, "decision": "cancel"}
        async with browser.post(
            f"{gitlab.url}/oauth/authorize", data=form, allow_redirects=False
        ) as back:
            assert back.status == 302
            assert "error=access_denied" in back.headers["Location"]
            assert "state=s" in back.headers["Location"]


async def test_fake_refuses_an_unregistered_redirect_uri(provider, gitlab) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice"))
    rules = [provider.parse_rule("group:x")]
    request = provider.authorization_request(rules, "http://127.0.0.1:9/elsewhere", "s")
    async with aiohttp.ClientSession() as browser:
        async with browser.get(request.url, allow_redirects=False) as page:
            assert page.status == 400  # an error page, never a redirect
