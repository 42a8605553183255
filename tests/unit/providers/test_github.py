"""The GitHub provider against the fake GitHub (real HTTP on loopback): config, rules,
the sign-in (PKCE, single-use codes, client authentication), every rule kind's yes, no
and pending; what GitHub hides (fewer scopes granted, organisations' app restrictions,
single sign-on, private repositories, teams it does not show) is unknown, never no; rate
limits and faults; repo rules refused at bind time; tokens revoked after the check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
import logging
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support.providers.fake_oauth import s256
from support.providers.github import FIXTURES, FakeGitHub

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import (
    ProviderSession,
    ProviderUnavailable,
    Rule,
    RuleError,
    SignInFailed,
    Verdict,
)
from thirdparty_invite.providers.github import GitHubProvider
from thirdparty_invite.providers.registry import read_provider_settings

CLIENT_ID = "Iv1.fakeclientid"
CLIENT_SECRET = "fake-secret-0123456789abcdef"
# Never contacted: the tests read the code from GitHub's redirect.
CALLBACK = "http://127.0.0.1:9/_matrix/maubot/plugin/invites/github/callback"
APP_PAGE = f"/settings/connections/applications/{CLIENT_ID}"


@pytest_asyncio.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        server.add_org("matrix-org")
        server.add_repo("matrix-org/synapse")
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest.fixture
def provider(github: FakeGitHub, http: OutboundHTTP) -> GitHubProvider:
    section = github.config_section(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, callback_url=CALLBACK
    )
    return GitHubProvider.from_config("github", section, http)


async def sign_in(
    provider: GitHubProvider, github: FakeGitHub, *rule_texts: str
) -> tuple[ProviderSession, list[Rule]]:
    rules = [provider.parse_rule(text) for text in rule_texts]
    request = provider.authorization_request(rules, CALLBACK, "state-123")
    back = await github.visit_authorize(request.url)
    assert back.query["state"] == "state-123"
    session = await provider.finish(rules, back.query["code"], CALLBACK, request)
    return session, rules


async def verdict_for(provider: GitHubProvider, github: FakeGitHub, rule_text: str) -> Verdict:
    session, [rule] = await sign_in(provider, github, rule_text)
    try:
        return await session.check(rule)
    finally:
        await session.close()


def assert_no(verdict: Verdict, *reason_parts: str, remedy: Sequence[str] = ()) -> None:
    assert verdict.holds is False, verdict
    assert_words(verdict, reason_parts, remedy)


def assert_unknown(verdict: Verdict, *reason_parts: str, remedy: Sequence[str] = ()) -> None:
    assert verdict.holds is None, verdict
    assert_words(verdict, reason_parts, remedy)


def assert_words(verdict: Verdict, reason_parts: Sequence[str], remedy: Sequence[str]) -> None:
    for part in reason_parts:
        assert part in verdict.reason, (part, verdict)
    for part in remedy:
        assert part in verdict.remedy, (part, verdict)


# Config


def test_config_defaults_to_github_com() -> None:
    provider = GitHubProvider.from_config("github", {"client_id": "a", "client_secret": "b"}, None)
    assert (provider.web_url, provider.api_url, provider.graphql_url) == (
        "https://github.com",
        "https://api.github.com",
        "https://api.github.com/graphql",
    )
    assert provider.client.endpoints.authorize_url == "https://github.com/login/oauth/authorize"
    assert provider.client.endpoints.token_url == "https://github.com/login/oauth/access_token"
    assert provider.display_name == "GitHub"


def test_config_for_github_enterprise_server() -> None:
    section = {
        "client_id": "a",
        "client_secret": "b",
        "web_url": "https://ghe.example.org/",
        "api_url": "https://ghe.example.org/api/v3/",
    }
    provider = GitHubProvider.from_config("github", section, None)
    assert provider.web_url == "https://ghe.example.org"
    assert provider.api_url == "https://ghe.example.org/api/v3"
    assert provider.graphql_url == "https://ghe.example.org/api/graphql"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": ""}, "client_id: must be a non-empty string"),
        ({"client_id": 12}, "client_id: must be a non-empty string"),
        ({"client_secret": None}, "client_secret: must be a non-empty string"),
        ({"client_secret": "  "}, "client_secret: must be a non-empty string"),
        ({"web_url": "github.com"}, "web_url: must be an absolute http(s) URL"),
        ({"web_url": "ftp://github.com"}, "web_url: must be an absolute http(s) URL"),
        ({"api_url": "http://api.example.org"}, "api_url: must use https://"),
        ({"api_url": "http://127.evil.example"}, "api_url: must use https://"),
        ({"api_url": ["https://api.github.com"]}, "api_url: must be a URL"),
        ({"graphql_url": "https://x.example/graphql?a=1"}, "graphql_url: must not carry"),
        ({"web_url": "https://user:pw@github.com"}, "web_url: must not carry"),
        ({"name": "GitHub"}, "name: unknown setting"),
        ({"api_ur": "https://api.github.com"}, "api_ur: unknown setting"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    section = {"client_id": "a", "client_secret": "b", **change}
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        GitHubProvider.from_config("github", section, None)


def test_config_allows_plain_http_on_loopback_only() -> None:
    section = {"client_id": "a", "client_secret": "b", "web_url": "http://127.0.0.1:8080"}
    assert GitHubProvider.from_config("github", section, None).web_url == "http://127.0.0.1:8080"
    section["web_url"] = "http://[::1]:8080"
    assert GitHubProvider.from_config("github", section, None).web_url == "http://[::1]:8080"


def test_registry_reports_the_wrong_key_under_providers_github() -> None:
    problems: list[str] = []
    settings = read_provider_settings(
        {"github": {"client_id": "a", "client_secret": "", "web_url": "https://github.com"}},
        problems,
    )
    assert problems == ["providers.github.client_secret: must be a non-empty string"]
    assert settings.configured == ()
    problems.clear()
    settings = read_provider_settings(
        {"github": {"client_id": "a", "client_secret": "b"}}, problems
    )
    assert problems == [] and [c.kind for c in settings.configured] == ["github"]


# Rules


@pytest.mark.parametrize(
    ("text", "canonical", "described"),
    [
        ("org:matrix-org", "org:matrix-org", "members of the GitHub organisation matrix-org"),
        ("org:Matrix-Org", "org:matrix-org", "members of the GitHub organisation matrix-org"),
        (
            "team:matrix-org/maintainers",
            "team:matrix-org/maintainers",
            "members of team maintainers of matrix-org on GitHub",
        ),
        (
            "team:Acme/Core_Devs",
            "team:acme/core_devs",
            "members of team core_devs of acme on GitHub",
        ),
        (
            "repo:matrix-org/synapse",
            "repo:matrix-org/synapse:push",
            "people with push access to matrix-org/synapse on GitHub",
        ),
        (
            "repo:matrix-org/synapse:admin",
            "repo:matrix-org/synapse:admin",
            "people with admin access to matrix-org/synapse on GitHub",
        ),
        (
            "repo:a/b.c_d-e:write",
            "repo:a/b.c_d-e:push",
            "people with push access to a/b.c_d-e on GitHub",
        ),
        (
            "repo:a/.github:read",
            "repo:a/.github:pull",
            "people with pull access to a/.github on GitHub",
        ),
        ("repo:a/b:Triage", "repo:a/b:triage", "people with triage access to a/b on GitHub"),
        ("sponsor:octocat", "sponsor:octocat", "GitHub sponsors of @octocat"),
        (
            "sponsor:@OctoCat:500",
            "sponsor:octocat:500",
            "GitHub sponsors of @octocat (at least $5.00 a month)",
        ),
        (
            "sponsor:octocat:0123456",
            "sponsor:octocat:123456",
            "GitHub sponsors of @octocat (at least $1,234.56 a month)",
        ),
        ("ORG:" + "a" * 39, "org:" + "a" * 39, "members of the GitHub organisation " + "a" * 39),
    ],
)
def test_good_rules(provider: GitHubProvider, text: str, canonical: str, described: str) -> None:
    rule = provider.parse_rule(text)
    assert (rule.provider, rule.text) == ("github", canonical)
    assert provider.parse_rule(rule.text) == rule  # the canonical text parses to itself
    assert provider.describe(rule) == described


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "GitHub rules are one of org:ORG, team:ORG/TEAM"),
        ("members:matrix-org", "GitHub rules are one of"),
        ("org:", "org rules look like org:ORG"),
        ("org:-matrix", "org rules look like org:ORG"),
        ("org:matrix-", "org rules look like org:ORG"),
        ("org:matrix--org", "org rules look like org:ORG"),
        ("org:matrix_org", "org rules look like org:ORG"),
        ("org:" + "a" * 40, "org rules look like org:ORG"),
        ("org:a/b", "org rules look like org:ORG"),
        ("org:a:b", "org rules look like org:ORG"),
        ("team:matrix-org", "team rules look like team:ORG/TEAM"),
        ("team:matrix-org/", "team rules look like team:ORG/TEAM"),
        ("team:matrix-org/core team", "team rules look like team:ORG/TEAM (TEAM as in the team"),
        ("team:matrix-org/a/b", "team rules look like team:ORG/TEAM"),
        ("repo:synapse", "repo rules look like repo:OWNER/REPO[:LEVEL]"),
        ("repo:matrix-org/..", "repo rules look like"),
        ("repo:matrix-org/.", "repo rules look like"),
        ("repo:matrix-org/" + "a" * 101, "repo rules look like"),
        ("repo:matrix-org/syn apse", "repo rules look like"),
        ("repo:matrix-org/synapse:owner", "the access level is one of pull, triage, push"),
        ("repo:matrix-org/synapse:push:x", "repo rules look like"),
        ("sponsor:", "sponsor rules look like sponsor:LOGIN[:MIN_CENTS]"),
        ("sponsor:octocat:5.00", "sponsor rules look like"),
        ("sponsor:octocat:-5", "sponsor rules look like"),
        ("sponsor:octocat:0", "the minimum is in cents"),
        ("sponsor:octocat:1234567890", "sponsor rules look like"),
        ("sponsor:octo_cat", "sponsor rules look like"),
    ],
)
def test_bad_rules_say_what_is_expected(
    provider: GitHubProvider, text: str, expected: str
) -> None:
    with pytest.raises(RuleError) as error:
        provider.parse_rule(text)
    assert str(error.value).startswith(expected), str(error.value)


@pytest.mark.parametrize(
    ("texts", "scopes"),
    [
        ([], []),
        (["org:a"], ["read:org"]),
        (["team:a/b", "repo:a/b"], ["read:org"]),
        (["sponsor:a"], ["read:user"]),
        (["org:a", "sponsor:b:100"], ["read:org", "read:user"]),
    ],
)
def test_scopes_are_the_fewest(
    provider: GitHubProvider, texts: list[str], scopes: list[str]
) -> None:
    assert provider.scopes([provider.parse_rule(t) for t in texts]) == scopes


# Signing in


async def test_sign_in_asks_read_org_only_with_pkce_and_never_sends_the_secret_in_a_url(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.add_account("alice", name="Alice").join_org("matrix-org")
    github.sign_in_as(github.accounts["alice"])
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    assert session.account.provider == "github"
    assert session.account.id == str(github.accounts["alice"].id)  # the stable numeric id
    assert session.account.display_name == "alice"
    assert await session.check(rule) == Verdict.yes()

    [authorize] = github.requests_to("/login/oauth/authorize")
    assert authorize.query["scope"] == "read:org"
    assert authorize.query["client_id"] == CLIENT_ID
    assert authorize.query["code_challenge_method"] == "S256"
    [token] = github.requests_to("/login/oauth/access_token")
    assert token.method == "POST" and token.query == {}
    assert token.form["client_secret"] == "[redacted]"  # sent, in the body
    assert s256(token.form["code_verifier"]) == authorize.query["code_challenge"]
    assert token.headers["Accept"] == "application/json"
    for request in github.requests:
        assert CLIENT_SECRET not in request.path
        assert all(CLIENT_SECRET not in value for value in request.query.values())
        assert "Authorization" not in request.headers  # recorded without secrets
    api_calls = [r for r in github.requests if r.path.startswith("/api/")]
    assert [r.path for r in api_calls] == [
        "/api/v3/user",
        "/api/v3/user/memberships/orgs/matrix-org",
    ]
    assert all(r.headers["Accept"] == "application/vnd.github+json" for r in api_calls)


async def test_sponsor_rules_also_ask_read_user(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.sign_in_as(github.add_account("alice").sponsor("octocat", 500))
    github.add_account("octocat")
    session, rules = await sign_in(provider, github, "org:matrix-org", "sponsor:octocat")
    [authorize] = github.requests_to("/login/oauth/authorize")
    assert authorize.query["scope"] == "read:org read:user"
    assert (await session.check(rules[1])).holds is True


async def test_consent_page_buttons(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.auto_approve = False
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    rules = [provider.parse_rule("org:matrix-org")]
    request = provider.authorization_request(rules, CALLBACK, "s1")
    back = await github.visit_authorize(request.url, decision="cancel")
    assert back.query["error"] == "access_denied" and back.query["state"] == "s1"
    assert "code" not in back.query
    back = await github.visit_authorize(request.url)  # pressing Authorize
    session = await provider.finish(rules, back.query["code"], CALLBACK, request)
    assert (await session.check(rules[0])).holds is True


async def test_denied_authorization_redirects_with_access_denied(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.auto_approve = "deny"
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s2")
    back = await github.visit_authorize(request.url)
    assert (back.query["error"], back.query["state"]) == ("access_denied", "s2")


async def test_a_code_is_single_use_even_when_raced(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    outcomes = await asyncio.gather(
        *(provider.finish([], code, CALLBACK, request) for _ in range(5)), return_exceptions=True
    )
    sessions = [o for o in outcomes if isinstance(o, ProviderSession)]
    refusals = [o for o in outcomes if isinstance(o, SignInFailed)]
    assert len(sessions) == 1 and len(refusals) == 4
    assert "expired or was already used" in refusals[0].message


async def test_an_expired_code_is_refused(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    github.expire_codes()
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish([], code, CALLBACK, request)


async def test_a_wrong_pkce_verifier_is_refused(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    other = provider.authorization_request([], CALLBACK, "s")  # another verifier
    code = (await github.visit_authorize(request.url)).query["code"]
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish([], code, CALLBACK, other)
    [token] = github.requests_to("/login/oauth/access_token")
    assert token.form["code_verifier"] == other.code_verifier != request.code_verifier


async def test_wrong_client_credentials_are_the_operators_problem(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    section = github.config_section(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, callback_url=CALLBACK
    )
    wrong = GitHubProvider.from_config("github", {**section, "client_secret": "nope"}, http)
    github.sign_in_as(github.add_account("alice"))
    request = wrong.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    with pytest.raises(SignInFailed) as error:
        await wrong.finish([], code, CALLBACK, request)
    assert error.value.errcode == "TPI_PROVIDER_MISCONFIGURED"
    assert "incorrect_client_credentials" in error.value.message


async def test_redirect_uri_mismatch(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], f"{CALLBACK}/deeper", "s")  # under it: fine
    code = (await github.visit_authorize(request.url)).query["code"]
    with pytest.raises(SignInFailed) as error:  # but the exchange must name the same one
        await provider.finish([], code, CALLBACK, request)
    assert error.value.errcode == "TPI_PROVIDER_MISCONFIGURED"
    assert "redirect_uri_mismatch" in error.value.message
    # Outside the registered callback: GitHub sends the browser to the registered one.
    request = provider.authorization_request([], "http://127.0.0.1:9/elsewhere", "s3")
    back = await github.visit_authorize(request.url)
    assert str(back.with_query(None)) == CALLBACK
    assert (back.query["error"], back.query["state"]) == ("redirect_uri_mismatch", "s3")


@pytest.mark.parametrize("failure", [503, "malformed", "huge", "html"])
async def test_token_endpoint_faults_are_unavailable(
    provider: GitHubProvider, github: FakeGitHub, failure: int | str
) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    github.fail("token", failure)
    with pytest.raises(ProviderUnavailable):
        await provider.finish([], code, CALLBACK, request)


@pytest.mark.parametrize("failure", [502, "malformed", "html"])
async def test_user_endpoint_faults_are_unavailable(
    provider: GitHubProvider, github: FakeGitHub, failure: int | str
) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    github.fail("user", failure)
    with pytest.raises(ProviderUnavailable):
        await provider.finish([], code, CALLBACK, request)


async def test_a_hanging_github_is_given_up_on(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    provider.client.request_timeout = 0.5
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    rules = [provider.parse_rule("org:matrix-org")]
    request = provider.authorization_request(rules, CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    github.fail("token", "timeout", times=1)
    # The outer bound only keeps a broken client from hanging the suite; it measures nothing.
    with pytest.raises(ProviderUnavailable) as error:
        await asyncio.wait_for(provider.finish(rules, code, CALLBACK, request), 60)
    assert "did not answer in time" in error.value.detail
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    github.fail("api", "timeout")
    verdict = await asyncio.wait_for(session.check(rule), 60)
    assert verdict.holds is None and "did not answer in time" in verdict.reason


# Rules checked


async def test_org_rules(provider: GitHubProvider, github: FakeGitHub) -> None:
    alice = github.add_account("alice")
    github.sign_in_as(alice)
    assert_no(
        await verdict_for(provider, github, "org:matrix-org"),
        "you (@alice on GitHub) are not a member of the organisation matrix-org",
    )
    alice.join_org("matrix-org", state="pending")
    assert_no(
        await verdict_for(provider, github, "org:matrix-org"),
        "not accepted the invitation to the organisation matrix-org",
        remedy=[f"{github.url}/orgs/matrix-org/invitation"],
    )
    alice.join_org("matrix-org", role="billing_manager")
    assert_no(await verdict_for(provider, github, "org:matrix-org"), "billing manager")
    alice.join_org("matrix-org", role="admin")
    assert (await verdict_for(provider, github, "org:Matrix-Org")).holds is True
    alice.join_org("matrix-org")
    assert (await verdict_for(provider, github, "org:matrix-org")).holds is True


async def test_team_rules(provider: GitHubProvider, github: FakeGitHub) -> None:
    alice = github.add_account("alice").join_org("matrix-org")
    github.sign_in_as(alice)
    assert_no(
        await verdict_for(provider, github, "team:matrix-org/maintainers"),
        "you (@alice on GitHub) are not in team maintainers of matrix-org",
    )
    alice.join_team("matrix-org", "maintainers", state="pending")
    assert_no(
        await verdict_for(provider, github, "team:matrix-org/maintainers"),
        "not accepted the invitation to team maintainers of matrix-org",
        remedy=["/orgs/matrix-org/invitation"],
    )
    alice.join_team("matrix-org", "maintainers", role="maintainer")
    assert (await verdict_for(provider, github, "team:matrix-org/maintainers")).holds is True
    alice.join_team("matrix-org", "maintainers", role="member")
    assert (await verdict_for(provider, github, "team:matrix-org/Maintainers")).holds is True
    assert github.requests_to("/api/v3/orgs/matrix-org/teams/maintainers/memberships/alice")


async def test_repo_rules(provider: GitHubProvider, github: FakeGitHub) -> None:
    alice = github.add_account("alice")
    github.sign_in_as(alice)
    # Everyone may pull a public repository: the default level is push.
    assert (await verdict_for(provider, github, "repo:matrix-org/synapse:pull")).holds is True
    assert_no(
        await verdict_for(provider, github, "repo:matrix-org/synapse"),
        "you (@alice on GitHub) have only pull access to matrix-org/synapse; it takes push",
    )
    alice.give_access("matrix-org/synapse", "triage")
    assert_no(await verdict_for(provider, github, "repo:matrix-org/synapse"), "only triage")
    alice.give_access("matrix-org/synapse", "maintain")
    assert (await verdict_for(provider, github, "repo:matrix-org/synapse")).holds is True
    assert_no(await verdict_for(provider, github, "repo:matrix-org/synapse:admin"), "maintain")
    alice.give_access("matrix-org/synapse", "admin")
    assert (await verdict_for(provider, github, "repo:matrix-org/synapse:admin")).holds is True


async def test_a_repository_gone_private_or_deleted_is_unknown(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    # bind refuses these (below); a repository that goes private later hides everyone.
    github.add_repo("matrix-org/secret", private=True)
    github.sign_in_as(github.add_account("alice").give_access("matrix-org/secret", "admin"))
    for text in ("repo:matrix-org/secret", "repo:matrix-org/nothing-here"):
        assert_unknown(
            await verdict_for(provider, github, text),
            "it is private now, or it no longer exists",
            remedy=["public repositories only", "team rule"],
        )


async def test_a_moved_repository_is_not_a_loss(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.repos["matrix-org/synapse"].moved_to = "element-hq/synapse"
    github.sign_in_as(github.add_account("alice").give_access("matrix-org/synapse", "push"))
    verdict = await verdict_for(provider, github, "repo:matrix-org/synapse")
    assert verdict.holds is None and "moved" in verdict.reason and "new name" in verdict.remedy


async def test_sponsor_rules(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.add_account("octocat")
    github.add_org("sponsored-org")
    alice = github.add_account("alice")
    github.sign_in_as(alice)
    assert_no(
        await verdict_for(provider, github, "sponsor:octocat"),
        "you (@alice on GitHub) are not sponsoring @octocat",
        remedy=[f"{github.url}/sponsors/octocat"],
    )
    alice.sponsor("octocat", 300)
    assert (await verdict_for(provider, github, "sponsor:octocat")).holds is True
    assert_no(
        await verdict_for(provider, github, "sponsor:octocat:500"),
        "you sponsor @octocat with $3.00 a month; it takes at least $5.00",
        remedy=["Change your tier"],
    )
    alice.sponsor("octocat", 500)
    assert (await verdict_for(provider, github, "sponsor:octocat:500")).holds is True
    alice.sponsor("octocat", 10000, one_time=True)
    assert (await verdict_for(provider, github, "sponsor:octocat")).holds is True
    assert_no(await verdict_for(provider, github, "sponsor:octocat:500"), "one-time payment")
    alice.sponsor("sponsored-org", 100)
    assert (await verdict_for(provider, github, "sponsor:sponsored-org:100")).holds is True
    assert_unknown(  # a renamed or deleted account says nothing of alice
        await verdict_for(provider, github, "sponsor:nobody-here"),
        "there is no GitHub account @nobody-here to sponsor",
        remedy=["does not exist"],
    )
    assert all(r.method == "POST" for r in github.requests_to("/api/graphql"))


async def test_several_rules_checked_at_once(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.add_account("octocat")
    alice = github.add_account("alice").join_org("matrix-org").sponsor("octocat", 500)
    alice.join_team("matrix-org", "core").give_access("matrix-org/synapse", "push")
    github.sign_in_as(alice)
    session, rules = await sign_in(
        provider,
        github,
        "org:matrix-org",
        "team:matrix-org/core",
        "repo:matrix-org/synapse",
        "sponsor:octocat:500",
        "team:matrix-org/other",
    )
    verdicts = await asyncio.gather(*(session.check(rule) for rule in rules))
    assert [v.holds for v in verdicts] == [True, True, True, True, False]


# Fewer scopes, restrictions, single sign-on


@pytest.mark.parametrize("grants", [set(), {"read:user"}, {"public_repo"}])
async def test_fewer_scopes_granted_are_said_in_words(
    provider: GitHubProvider, github: FakeGitHub, grants: set[str]
) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"), grants=grants)
    verdict = await verdict_for(provider, github, "org:matrix-org")
    assert_unknown(
        verdict,
        "you did not allow reading your organisation and team memberships (read:org), so "
        "GitHub could not tell",
        remedy=["Sign in again and allow read:org this time", f"{github.url}{APP_PAGE}"],
    )
    assert not github.requests_to("/api/v3/user/memberships/orgs/matrix-org")  # not even asked


async def test_a_broader_scope_counts(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"), grants={"admin:org"})
    assert (await verdict_for(provider, github, "org:matrix-org")).holds is True


async def test_sponsor_rule_without_read_user(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.add_account("octocat")
    github.sign_in_as(github.add_account("alice").sponsor("octocat", 500), grants={"read:org"})
    assert_unknown(
        await verdict_for(provider, github, "sponsor:octocat"),
        "you did not allow reading your profile, where your sponsorships are (read:user)",
        remedy=["allow read:user"],
    )
    # Told by GraphQL itself, when the granted scopes were not known beforehand.
    session, [rule] = await sign_in(provider, github, "sponsor:octocat")
    session.granted = None  # type: ignore[attr-defined]
    assert_unknown(await session.check(rule), "(read:user)")


@pytest.mark.parametrize("rule_text", ["org:matrix-org", "team:matrix-org/core"])
async def test_a_missing_scope_found_by_the_api_answer(
    provider: GitHubProvider, github: FakeGitHub, rule_text: str
) -> None:
    # The organisation membership answers 403, the team membership 404 (GitHub hides what
    # the token may not see): both carry X-OAuth-Scopes without read:org.
    alice = github.add_account("alice").join_org("matrix-org").join_team("matrix-org", "core")
    github.sign_in_as(alice, grants={"read:user"})
    session, [rule] = await sign_in(provider, github, rule_text)
    session.granted = None  # type: ignore[attr-defined]  # as if GitHub had not said
    assert_unknown(await session.check(rule), "(read:org)", remedy=["Sign in again"])


async def test_organisation_restricting_apps(provider: GitHubProvider, github: FakeGitHub) -> None:
    org = github.add_org("octo-org", restricts_apps=True)
    alice = github.add_account("alice").join_org("octo-org").join_team("octo-org", "core")
    github.sign_in_as(alice)
    for text in ("org:octo-org", "team:octo-org/core"):
        assert_unknown(
            await verdict_for(provider, github, text),
            "the organisation octo-org has not approved this app",
            remedy=[f"{github.url}{APP_PAGE}", "Request next to octo-org"],
        )
    org.approved_apps.add(CLIENT_ID)
    assert (await verdict_for(provider, github, "org:octo-org")).holds is True
    assert (await verdict_for(provider, github, "team:octo-org/core")).holds is True


async def test_organisation_requiring_single_sign_on(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    org = github.add_org("sso-org", requires_sso=True)
    github.sign_in_as(github.add_account("alice").join_org("sso-org").join_team("sso-org", "a"))
    for text in ("org:sso-org", "team:sso-org/a"):
        assert_unknown(
            await verdict_for(provider, github, text),
            "sso-org asks you to sign in with its single sign-on",
            remedy=[f"{github.url}/orgs/sso-org/sso?authorization_request=", "authorises"],
        )
    org.requires_sso = False  # signed in through single sign-on
    assert (await verdict_for(provider, github, "team:sso-org/a")).holds is True


# Rate limits and faults: never a "no"


@pytest.mark.parametrize("secondary", [False, True])
@pytest.mark.parametrize(
    "rule_text", ["org:matrix-org", "repo:matrix-org/synapse", "sponsor:octocat"]
)
async def test_rate_limits_are_unknown(
    provider: GitHubProvider, github: FakeGitHub, secondary: bool, rule_text: str
) -> None:
    github.add_account("octocat")
    github.sign_in_as(github.add_account("alice").join_org("matrix-org").sponsor("octocat", 1))
    session, [rule] = await sign_in(provider, github, rule_text)
    github.exhaust_rate_limit(secondary=secondary)
    verdict = await session.check(rule)
    assert verdict.holds is None
    assert "limiting how often your account may be asked" in verdict.reason
    assert verdict.remedy.startswith("Try again in ")
    assert ("1 minute." if secondary else "minutes.") in verdict.remedy


@pytest.mark.parametrize("failure", [500, 503, "malformed", "huge", "html"])
@pytest.mark.parametrize(
    "rule_text",
    ["org:matrix-org", "team:matrix-org/core", "repo:matrix-org/synapse", "sponsor:octocat"],
)
async def test_api_faults_are_unknown(
    provider: GitHubProvider, github: FakeGitHub, failure: int | str, rule_text: str
) -> None:
    github.add_account("octocat")
    github.sign_in_as(github.add_account("alice"))
    session, [rule] = await sign_in(provider, github, rule_text)
    github.fail("api", failure)
    verdict = await session.check(rule)
    assert verdict.holds is None, verdict
    assert "GitHub is not answering properly right now" in verdict.reason


@pytest.mark.parametrize("status", [400, 418, 422])
async def test_unexpected_answers_are_unknown(
    provider: GitHubProvider, github: FakeGitHub, status: int
) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    github.fail("api", status)
    verdict = await session.check(rule)
    assert verdict.holds is None and "answered strangely" in verdict.reason


async def test_a_revoked_token_is_unknown(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    github.revoke_tokens()
    verdict = await session.check(rule)
    assert verdict.holds is None and "no longer accepts this sign-in" in verdict.reason


async def test_a_closed_session_asks_nothing(provider: GitHubProvider, github: FakeGitHub) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    await session.close()
    before = len(github.requests)
    assert (await session.check(rule)).holds is None
    assert len(github.requests) == before


async def test_a_sponsorship_hidden_by_single_sign_on_is_unknown(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    # GraphQL answers 200 with the field null beside a FORBIDDEN error: not "not sponsoring".
    github.add_org("sso-org", requires_sso=True)
    github.sign_in_as(github.add_account("alice").sponsor("sso-org", 500))
    assert_unknown(await verdict_for(provider, github, "sponsor:sso-org"), "FORBIDDEN")


async def test_a_team_lookup_failing_leaves_the_no_as_it_is(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    # The membership's 404 decides; the team look-up only words the remedy.
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    github.fail("team", 503)
    assert_no(await verdict_for(provider, github, "team:matrix-org/core"), "not in team core")


# Teams GitHub does not show


async def test_a_team_404_is_not_a_member_and_a_team_nobody_sees_may_be_renamed(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.add_team("matrix-org", "core")
    github.add_team("matrix-org", "security", secret=True)
    alice = github.add_account("alice").join_org("matrix-org")
    github.sign_in_as(alice)
    # A visible team she is not in: a plain no.
    verdict = await verdict_for(provider, github, "team:matrix-org/core")
    assert_no(verdict, "you (@alice on GitHub) are not in team core of matrix-org")
    assert verdict.remedy == ""
    # A secret team (visible to its members only) or no team at all: still not in it,
    # and the remedy says the rule may name a renamed team.
    for slug in ("security", "renamed-long-ago"):
        assert_no(
            await verdict_for(provider, github, f"team:matrix-org/{slug}"),
            f"are not in team {slug} of matrix-org",
            remedy=["may have been renamed", "tell the room's admins"],
        )
    alice.join_team("matrix-org", "security")  # its members see a secret team
    assert (await verdict_for(provider, github, "team:matrix-org/security")).holds is True
    assert github.requests_to("/api/v3/orgs/matrix-org/teams/core")


async def test_a_team_in_an_org_restricting_apps_is_unknown_before_any_team_lookup(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.add_org("octo-org", restricts_apps=True)
    github.sign_in_as(github.add_account("alice").join_org("octo-org"))
    assert_unknown(await verdict_for(provider, github, "team:octo-org/core"), "not approved")
    assert not github.requests_to("/api/v3/orgs/octo-org/teams/core")


# repo rules at bind time


async def test_bind_refuses_a_repository_github_does_not_show_the_app(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.add_repo("matrix-org/secret", private=True)
    for text in ("repo:matrix-org/secret", "repo:matrix-org/nothing-here:pull"):
        with pytest.raises(RuleError) as error:
            await provider.validate_rule(provider.parse_rule(text))
        message = str(error.value)
        assert "it is private, or it does not exist" in message
        assert "`repo` scope" in message and "team rule" in message
    assert await provider.validate_rule(provider.parse_rule("repo:Matrix-Org/Synapse")) is None
    # Other rules need no look-up.
    before = len(github.requests)
    for text in ("org:matrix-org", "team:a/b", "sponsor:octocat"):
        assert await provider.validate_rule(provider.parse_rule(text)) is None
    assert len(github.requests) == before
    # The look-up is the app's (Basic credentials, public data only), never a person's.
    lookups = github.requests_to("/api/v3/repos/matrix-org/secret")
    assert lookups and all("Authorization" not in r.headers for r in lookups)


async def test_bind_refuses_a_moved_repository(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.repos["matrix-org/synapse"].moved_to = "element-hq/synapse"
    with pytest.raises(RuleError, match="moved or been renamed: use its current name"):
        await provider.validate_rule(provider.parse_rule("repo:matrix-org/synapse"))


@pytest.mark.parametrize("failure", [503, "html"])
async def test_bind_goes_ahead_with_a_note_when_github_cannot_be_asked(
    provider: GitHubProvider, github: FakeGitHub, failure: int | str
) -> None:
    github.add_repo("matrix-org/secret", private=True)
    github.fail("api", failure)
    note = await provider.validate_rule(provider.parse_rule("repo:matrix-org/secret"))
    assert note is not None and "could not check that the repository" in note
    assert "nobody will get in" in note


async def test_bind_with_wrong_app_credentials_goes_ahead_with_a_note(
    github: FakeGitHub, http: OutboundHTTP
) -> None:
    section = github.config_section(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    section["client_secret"] = "not-the-secret"
    provider = GitHubProvider.from_config("github", section, http)
    note = await provider.validate_rule(provider.parse_rule("repo:matrix-org/synapse"))
    assert note is not None and "HTTP 401" in note


# Tokens revoked after the check


async def api_status(github: FakeGitHub, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{github.url}/api/v3/user", headers=headers) as response,
    ):
        return response.status


async def test_the_token_no_longer_works_after_the_check(
    provider: GitHubProvider, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    token = session._token  # type: ignore[attr-defined]
    assert await api_status(github, token) == 200
    assert (await session.check(rule)).holds is True
    with caplog.at_level(logging.DEBUG):
        await session.close()
        await provider.revocations_done()  # in the background: nobody waits for it
    assert await api_status(github, token) == 401
    assert github.revoked_tokens == 1
    [revocation] = github.requests_to(f"/api/v3/applications/{CLIENT_ID}/token")
    assert revocation.method == "DELETE" and "Authorization" not in revocation.headers
    assert token not in revocation.target and token not in caplog.text
    await session.close()  # once is enough
    await provider.revocations_done()
    assert len(github.requests_to(f"/api/v3/applications/{CLIENT_ID}/token")) == 1


async def test_a_token_is_revoked_when_the_sign_in_fails_after_the_exchange(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    github.fail("user", 502)
    with pytest.raises(ProviderUnavailable):
        await provider.finish([], code, CALLBACK, request)
    await provider.close()  # waits for the revocations still running
    assert github.revoked_tokens == 1


async def test_revocation_answers_as_github_documents(
    provider: GitHubProvider, github: FakeGitHub, http: OutboundHTTP
) -> None:
    github.sign_in_as(github.add_account("alice"))
    session, _ = await sign_in(provider, github)
    token = session._token  # type: ignore[attr-defined]
    path = f"/applications/{CLIENT_ID}/token"
    # Wrong client credentials: 401, and the token still works.
    section = github.config_section(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    impostor = GitHubProvider.from_config("github", {**section, "client_secret": "x"}, http)
    assert await impostor.revoke(token) is False
    answer = await impostor._as_app("DELETE", path, {"access_token": token})
    assert answer.status == 401 and await api_status(github, token) == 200
    # No token in the body: 422. The right app: 204, then 404 for the same token.
    assert (await provider._as_app("DELETE", path, {})).status == 422
    assert await provider.revoke(token) is True
    assert (await provider._as_app("DELETE", path, {"access_token": token})).status == 404
    assert await provider.revoke(token) is False
    assert await provider.revoke("gho_never-issued") is False
    assert await api_status(github, token) == 401


@pytest.mark.parametrize("failure", [503, "timeout", "html"])
async def test_a_failed_revocation_never_raises_and_is_bounded(
    provider: GitHubProvider,
    github: FakeGitHub,
    failure: int | str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("thirdparty_invite.providers.github.REVOKE_TIMEOUT", 0.5)
    github.sign_in_as(github.add_account("alice").join_org("matrix-org"))
    session, [rule] = await sign_in(provider, github, "org:matrix-org")
    assert (await session.check(rule)).holds is True
    github.fail("revoke", failure)
    await session.close()
    # The outer bound only keeps a broken revocation from hanging the suite.
    await asyncio.wait_for(provider.close(), 30)
    assert github.revoked_tokens == 0


async def test_a_check_cancelled_mid_sign_in_still_has_the_token_revoked(
    provider: GitHubProvider, github: FakeGitHub
) -> None:
    # Cancelled while GitHub holds /user (a stop): the cancellation is not held up by the
    # revocation, which follows in the background once GitHub answers.
    github.sign_in_as(github.add_account("alice"))
    request = provider.authorization_request([], CALLBACK, "s")
    code = (await github.visit_authorize(request.url)).query["code"]
    release = github.hold("user")
    finishing = asyncio.ensure_future(provider.finish([], code, CALLBACK, request))
    for _ in range(3000):  # until GitHub holds the /user request
        if github.requests_to("/api/v3/user"):
            break
        await asyncio.sleep(0.01)
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    release()
    await asyncio.wait_for(provider.close(), 30)
    assert github.revoked_tokens == 1


def test_the_fake_answers_from_the_fixtures() -> None:
    names = {path.name for path in FIXTURES.glob("*.json")}
    readme = (FIXTURES / "README.md").read_text()
    assert names and all(name in readme for name in names)
