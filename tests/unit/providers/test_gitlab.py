"""The GitLab provider against the fake GitLab (real HTTP on loopback): config, rules, the
OpenID Connect sign-in (PKCE, nonce, ID token, single-use codes, client authentication),
group rules as GitLab means them (direct, inherited, shared; not subgroup-only, not
awaiting a seat, not blocked) asked as the person or with the operator's token, roles,
fewer scopes granted, token revocation, and faults (5xx, hangs, bad bodies, rate limits),
which are never a "no". The re-check listing is in test_gitlab_listing.py."""

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
from thirdparty_invite.providers.base import ProviderUnavailable, RuleError, SignInFailed, Verdict
from thirdparty_invite.providers.gitlab import GitLabProvider, GitLabSession
from thirdparty_invite.providers.gitlab_members import Credential
from thirdparty_invite.providers.oauth import TokenResponse
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


@pytest_asyncio.fixture
async def provider(gitlab: FakeGitLab, http: OutboundHTTP) -> AsyncIterator[GitLabProvider]:
    section = gitlab.config_section(client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    provider = GitLabProvider.from_config("gitlab", section, http)
    yield provider
    await provider.close()  # the revocations still running


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
        ({"client_id": "a", "client_secret": "b", "recheck": "t"}, "recheck", "a mapping"),
        (
            {"client_id": "a", "client_secret": "b", "recheck": {"token": ""}},
            "recheck.token",
            "non-empty",
        ),
        (
            {"client_id": "a", "client_secret": "b", "recheck": {"tokn": "x"}},
            "recheck.tokn",
            "unknown setting",
        ),
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
    assert provider.describe(plain) == (
        f"members of the group gnome on {provider.display_name} (also through a parent group "
        "or a shared group)"
    )
    assert "at least the Maintainer role" in provider.describe(role)
    # GitLab's claims answer no rule exactly: the person's read_api, unless the operator's
    # token reads the members.
    assert provider.scopes([plain]) == ["openid", "read_api"]
    assert provider.scopes([plain, role]) == ["openid", "read_api"]
    section = {"client_id": "a", "client_secret": "b", "recheck": {"token": "glpat-x"}}
    with_token = GitLabProvider.from_config("gitlab", section, None)
    assert with_token.scopes([plain, role]) == ["openid"]


def test_authorization_url_uses_pkce_nonce_and_state(provider: GitLabProvider) -> None:
    request = provider.authorization_request([provider.parse_rule("group:x")], CALLBACK, "st")
    query = dict(URL(request.url).query)
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["nonce"] == request.nonce and request.code_verifier
    assert query["scope"] == "openid read_api" and query["state"] == "st"
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
    await session.close()
    await provider.close()
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
        if r.path not in ("/oauth/discovery/keys", "/oauth/revoke")
    }
    assert api_auth == {"Bearer <redacted>"}
    [revoke] = [r for r in gitlab.requests if r.path == "/oauth/revoke"]
    assert revoke.form["token"] == "<redacted>" and revoke.form["client_secret"] == "<redacted>"


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


# Group rules: what GitLab means by a member


@pytest_asyncio.fixture
async def operator_provider(
    gitlab: FakeGitLab, http: OutboundHTTP
) -> AsyncIterator[GitLabProvider]:
    """The provider with the operator's group access token of "gnome" (recheck.token)."""
    section = gitlab.config_section(client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    section["recheck"] = {"token": gitlab.add_group_token("gnome")}
    provider = GitLabProvider.from_config("gitlab", section, http)
    yield provider
    await provider.close()


GROUP_CASES = [
    ({"gnome": "guest"}, "group:gnome", True),  # direct
    ({"gnome": "guest"}, "group:gnome/infra", True),  # inherited from the parent group
    ({"gnome/infra/ci": "developer"}, "group:gnome/infra/ci", True),
    ({"gnome/infra": "developer"}, "group:gnome", False),  # a subgroup's member only
    ({"gnome/infra/ci": "developer"}, "group:gnome", False),  # at any depth
    ({"gnome": "guest"}, "group:GNOME", True),  # paths compare without case
    ({"gnome-extras": "owner"}, "group:gnome", False),  # a prefix is not the group
    ({"gnome/infra": "owner"}, "group:gnome/design", False),  # a sibling is not
    ({"kde": "owner"}, "group:gnome", False),
    ({"gnome": 5}, "group:gnome", False),  # Minimal Access opens nothing
    ({}, "group:gnome", False),
]


@pytest.mark.parametrize("asked_by", ["person", "operator"])
@pytest.mark.parametrize(("memberships", "rule", "holds"), GROUP_CASES)
async def test_group_rule(
    provider, operator_provider, gitlab, asked_by, memberships, rule, holds
) -> None:
    gitlab.add_group("gnome/design")
    gitlab.add_group("gnome/infra/ci")
    chosen = provider if asked_by == "person" else operator_provider
    alice = gitlab.add_account("alice", groups=memberships)
    result = await verdict(chosen, gitlab, alice, rule)
    assert result.holds is holds, result
    if not holds:
        assert f"group {rule.split(':')[1]}" in result.reason or "minimal" in result.reason
        assert "Ask an owner" in result.remedy


@pytest.mark.parametrize("asked_by", ["person", "operator"])
async def test_members_of_a_shared_group_count(
    provider, operator_provider, gitlab, asked_by
) -> None:
    # gnome is shared with the group "friends" at Developer: friends' members are gnome
    # members at the lower of Developer and their own role (and so of gnome's subgroups).
    gitlab.add_group("gnome/infra")
    gitlab.share_group("gnome", "friends", "developer")
    bob = gitlab.add_account("bob", groups={"friends": "owner"})
    chosen = provider if asked_by == "person" else operator_provider
    assert (await verdict(chosen, gitlab, bob, "group:gnome")).holds is True
    assert (await verdict(chosen, gitlab, bob, "group:gnome/infra:developer")).holds is True
    result = await verdict(chosen, gitlab, bob, "group:gnome:maintainer")
    assert result.holds is False and "at least the Maintainer role" in result.reason
    # The userinfo claims never mention the share: they could not have admitted bob.
    assert "gnome" not in gitlab.member_paths(bob)


@pytest.mark.parametrize("asked_by", ["person", "operator"])
async def test_a_membership_awaiting_a_seat_does_not_count(
    provider, operator_provider, gitlab, asked_by
) -> None:
    carol = gitlab.add_account("carol")
    gitlab.set_awaiting(carol, "gnome", "developer")
    gitlab.add_group("gnome", visibility="public")  # carol can see it, and her entry
    assert "gnome" in gitlab.member_paths(carol)  # the claims would have said yes
    chosen = provider if asked_by == "person" else operator_provider
    result = await verdict(chosen, gitlab, carol, "group:gnome")
    assert result.holds is False
    assert "waiting for a seat" in result.reason and "Pending members" in result.remedy


async def test_awaiting_in_a_private_group_is_not_a_member_either(provider, gitlab) -> None:
    carol = gitlab.add_account("carol")
    gitlab.set_awaiting(carol, "gnome", "owner")
    result = await verdict(provider, gitlab, carol, "group:gnome")
    assert result.holds is False and "not a member" in result.reason


async def test_a_blocked_user_does_not_count(operator_provider, gitlab) -> None:
    dave = gitlab.add_account("dave", groups={"gnome": "owner"})
    session = await sign_in(operator_provider, gitlab, dave, "group:gnome")
    dave.state = "blocked"  # blocked after signing in
    result = await session.check(operator_provider.parse_rule("group:gnome"))
    assert result.holds is False and "not active" in result.reason


@pytest.mark.parametrize(
    ("memberships", "rule", "holds"),
    [
        ({"gnome": "developer"}, "group:gnome:developer", True),
        ({"gnome": "developer"}, "group:gnome:reporter", True),
        ({"gnome": "developer"}, "group:gnome:maintainer", False),
        ({"gnome/infra": "maintainer"}, "group:gnome:maintainer", False),  # subgroup only
        ({"gnome": "owner"}, "group:gnome/infra:maintainer", True),  # inherited role
        ({"gnome": "guest", "gnome/infra": "owner"}, "group:gnome/infra:owner", True),
        ({"gnome": "guest", "gnome/infra": "owner"}, "group:gnome/design:reporter", False),
        ({"gnome": "planner"}, "group:gnome:planner", True),
        ({"gnome": "planner"}, "group:gnome:reporter", False),
    ],
)
async def test_role_rule(provider, gitlab, memberships, rule, holds) -> None:
    gitlab.add_group("gnome/design")
    gitlab.add_group("gnome/infra")
    alice = gitlab.add_account("alice", groups=memberships)
    result = await verdict(provider, gitlab, alice, rule)
    assert result.holds is holds, result
    if not holds:
        assert "at least the" in result.reason or "not a member" in result.reason


async def test_one_request_per_rule_to_the_members_api(provider, gitlab) -> None:
    gitlab.add_group("gnome/infra")
    alice = gitlab.add_account("alice", groups={"gnome": "maintainer"})
    assert (await verdict(provider, gitlab, alice, "group:gnome/infra:maintainer")).holds
    [asked] = [r for r in gitlab.requests_to("api") if "/members/" in r.path]
    assert asked.target == f"/api/v4/groups/gnome%2Finfra/members/all/{alice.id}"
    assert asked.headers["Authorization"] == "Bearer <redacted>"


async def test_the_operators_token_asks_and_people_grant_only_openid(
    operator_provider, gitlab
) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "developer"})
    session = await sign_in(operator_provider, gitlab, alice, "group:gnome:developer")
    assert (await session.check(operator_provider.parse_rule("group:gnome:developer"))).holds
    [authorize] = gitlab.requests_to("authorize")
    assert authorize.query["scope"] == "openid"
    asked = [r for r in gitlab.requests_to("api") if "/members/" in r.path]
    assert [r.headers.get("PRIVATE-TOKEN") for r in asked] == ["<redacted>"]
    assert "Authorization" not in asked[0].headers


async def test_a_token_that_cannot_see_the_group_is_unknown_not_no(
    operator_provider, gitlab
) -> None:
    # The operator's token belongs to gnome; kde is out of its sight: a 404 there says
    # nothing about the person.
    erin = gitlab.add_account("erin", groups={"kde": "owner"})
    result = await verdict(operator_provider, gitlab, erin, "group:kde")
    assert result.holds is None
    assert "re-check token" in result.remedy and "kde" in result.remedy
    # Within its sight, a 404 is a "no" (the group itself was seen once, then remembered).
    frank = gitlab.add_account("frank")
    for _ in range(2):
        assert (await verdict(operator_provider, gitlab, frank, "group:gnome")).holds is False
    assert len([r for r in gitlab.requests if r.path == "/api/v4/groups/gnome"]) == 1


async def test_a_refused_operator_token_is_unknown(gitlab, http) -> None:
    section = gitlab.config_section(client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    section["recheck"] = {"token": "glpat-revoked"}
    provider = GitLabProvider.from_config("gitlab", section, http)
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    result = await verdict(provider, gitlab, alice, "group:gnome")
    assert result.holds is None and "refused" in result.remedy


async def test_without_membership_state_every_membership_is_active(provider, gitlab) -> None:
    gitlab.sends_membership_state = False  # GitLab CE: no seats to await
    alice = gitlab.add_account("alice", groups={"gnome": "guest"})
    assert (await verdict(provider, gitlab, alice, "group:gnome")).holds is True


async def test_fewer_scopes_granted_is_not_a_no(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome", grants={"openid"})
    result = await session.check(provider.parse_rule("group:gnome"))
    assert result.holds is None
    assert "read_api" in result.reason and "Sign in again" in result.remedy
    assert not [r for r in gitlab.requests_to("api") if "/members/" in r.path]


async def test_insufficient_scope_answer_is_not_a_no(provider, gitlab) -> None:
    # A token whose scopes GitLab did not report, refused by the API.
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome:owner", grants={"openid"})
    session._tokens = TokenResponse(session._tokens.access_token, "bearer", None, None, {})
    result = await session.check(provider.parse_rule("group:gnome:owner"))
    assert result.holds is None and "read_api" in result.reason


# Revocation


async def test_the_token_is_revoked_after_the_checks(provider, gitlab, http) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    token = session._tokens.access_token
    assert (await session.check(provider.parse_rule("group:gnome"))).holds
    await session.close()  # at once: the revocation runs in the background
    await provider.close()  # which waits for it
    assert gitlab.revoked_tokens == 1
    # Dropped is not revoked: GitLab no longer takes it.
    response = await provider.api.get(
        f"{gitlab.url}/api/v4/groups/gnome", Credential.person(token)
    )
    assert response.status == 401
    await session.close()  # twice: nothing more to revoke
    await provider.close()
    assert gitlab.revoked_tokens == 1
    with pytest.raises(RuntimeError):
        await session.check(provider.parse_rule("group:gnome"))


async def test_a_failed_revocation_changes_nothing_for_the_person(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    assert (await session.check(provider.parse_rule("group:gnome"))).holds
    gitlab.fail("revoke", 503)
    await session.close()
    await provider.close()  # logged, not raised
    assert gitlab.revoked_tokens == 0


async def test_a_hanging_revocation_is_given_up(provider, gitlab) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    provider.revocations.timeout = 0.3
    gitlab.fail("revoke", "timeout")
    await session.close()  # does not wait
    await provider.close()  # waits at most the revocation's bound
    assert gitlab.revoked_tokens == 0


# Faults while checking: never a "no"


@pytest.mark.parametrize("rule", ["group:gnome", "group:gnome:developer"])
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (503, "HTTP 503"),
        (500, "HTTP 500"),
        (403, "HTTP 403"),
        (401, "HTTP 401"),
        (429, "rate limited, retry in"),
        ("timeout", "did not answer in time"),
        ("malformed", "not JSON"),
        ("html", "not JSON"),
        ("huge", "too large"),
        ("empty", ""),
    ],
)
async def test_faults_are_unknown(provider, gitlab, rule, mode, reason) -> None:
    provider.client.request_timeout = provider.api.request_timeout = 0.5
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, rule)
    gitlab.fail("members", mode)
    result = await session.check(provider.parse_rule(rule))
    assert result.holds is None, result
    assert reason in result.reason
    assert result.remedy == "Try again in a few minutes."


async def test_an_entry_in_an_unexpected_shape_is_unknown(provider, gitlab, monkeypatch) -> None:
    alice = gitlab.add_account("alice", groups={"gnome": "owner"})
    session = await sign_in(provider, gitlab, alice, "group:gnome")
    monkeypatch.setattr(gitlab, "_member_json", lambda *a: {"id": alice.id, "access_level": "50"})
    result = await session.check(provider.parse_rule("group:gnome"))
    assert result.holds is None and "not as documented" in result.reason


async def test_a_hanging_token_endpoint_is_unavailable(provider, gitlab) -> None:
    provider.client.request_timeout = 0.5
    gitlab.fail("token", "timeout")
    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        await sign_in(provider, gitlab, gitlab.add_account("alice"), "group:gnome")


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


# At bind


async def test_bind_checks_the_group_is_in_the_tokens_sight(operator_provider, gitlab) -> None:
    validate, parse = operator_provider.validate_rule, operator_provider.parse_rule
    gitlab.add_group("gnome/infra")
    assert await validate(parse("group:gnome/infra")) is None
    gitlab.add_group("kde")
    with pytest.raises(RuleError, match="cannot see a group kde"):
        await validate(parse("group:kde"))
    gitlab.fail("members", 503)
    assert "could not be asked" in await validate(parse("group:gnome/x"))


async def test_bind_without_a_token_asks_nothing(provider, gitlab) -> None:
    assert await provider.validate_rule(provider.parse_rule("group:anything")) is None
    assert not gitlab.requests
