"""The generic OpenID Connect provider: full sign-ins against a real OpenID provider
(devtools/oidc, node's oidc-provider) driven from Python through its login form, claim
rules (groups, email, email_verified), discovery failures, and GitLab's OIDC (the fake)
for a provider that puts groups only in userinfo. Claim matching and config are checked
without a network too."""

from __future__ import annotations

from collections.abc import AsyncIterator
import secrets
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from support.providers.gitlab import FakeGitLab
from support.providers.oidc_login import log_in as login_at_provider
from yarl import URL

from devtools.oidc_provider import OIDCAccount, OIDCClient
from devtools.oidc_provider import OIDCProvider as LocalOpenIDProvider
from devtools.ports import free_port
from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import (
    AuthorizationRequest,
    ProviderUnavailable,
    RuleError,
    SignInFailed,
)
from thirdparty_invite.providers.oidc import OIDCProvider, OIDCSession
from thirdparty_invite.providers.oidc_claims import claim_matches
from thirdparty_invite.providers.registry import read_provider_settings
from thirdparty_invite.services.bindings import BindingView, DescribedRule
from thirdparty_invite.services.provider_signin import ProviderSignIn
from thirdparty_invite.storage import Binding, OAuthState

# Never contacted: the login walk stops at the redirect back to it.
CALLBACK = "http://127.0.0.1:9/_matrix/maubot/plugin/invites/oauth/callback"


@pytest_asyncio.fixture(scope="module")
async def op(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalOpenIDProvider]:
    async with LocalOpenIDProvider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


def new_client(op: LocalOpenIDProvider, **options: Any) -> OIDCClient:
    return op.add_client(f"tpi-{secrets.token_hex(4)}", redirect_uris=[CALLBACK], **options)


def new_account(op: LocalOpenIDProvider, **options: Any) -> OIDCAccount:
    return op.add_account(f"user{secrets.token_hex(4)}", "provider-password", **options)


def section_for(op: LocalOpenIDProvider, client: OIDCClient, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Test SSO",
        "issuer": op.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        **extra,
    }


async def log_in(authorization_url: str, account: OIDCAccount) -> dict[str, str]:
    return await login_at_provider(authorization_url, account, CALLBACK)


async def sign_in(
    provider: OIDCProvider, account: OIDCAccount, *rule_texts: str
) -> tuple[OIDCSession, dict[str, str]]:
    rules = [provider.parse_rule(text) for text in rule_texts]
    await provider.prepare()
    state = secrets.token_urlsafe(16)
    request = provider.authorization_request(rules, CALLBACK, state)
    back = await log_in(request.url, account)
    assert back["state"] == state
    session = await provider.finish(rules, back["code"], CALLBACK, request)
    return session, dict(URL(request.url).query)


# Against the real OpenID provider


async def test_groups_staff_holds_for_staff_only(op, http) -> None:
    # The section the integration tests put under providers.oidc.staff:
    section = op.config_section(client_id="tpi-staff", redirect_uris=[CALLBACK], name="Test SSO")
    provider = OIDCProvider.from_config("staff", section, http)
    alice = new_account(op, name="Alice Example", groups=["staff", "book-club"])
    bob = new_account(op, groups=["visitors"])

    session, query = await sign_in(provider, alice, "groups:staff")
    assert (session.account.id, session.account.display_name) == (alice.sub, "Alice Example")
    assert (await session.check(provider.parse_rule("groups:staff"))).holds is True
    # PKCE and a nonce were used; only the scopes the rule needs were asked.
    assert query["code_challenge_method"] == "S256" and query["nonce"]
    assert query["scope"] == "openid profile groups"
    assert provider.client_id == query["client_id"]

    session, _ = await sign_in(provider, bob, "groups:staff")
    result = await session.check(provider.parse_rule("groups:staff"))
    assert result.holds is False
    assert result.reason == "you are not in group staff at Test SSO"


async def test_email_rules(op, http) -> None:
    provider = OIDCProvider.from_config("sso", section_for(op, new_client(op)), http)
    verified = new_account(op, email="Jane@Example.ORG")
    unverified = new_account(op, email="mallory@example.org", email_verified=False)
    rules = ("email:*@example.org", "email_verified:true")

    session, query = await sign_in(provider, verified, *rules)
    assert query["scope"] == "openid profile email"
    for text in rules:
        assert (await session.check(provider.parse_rule(text))).holds is True, text
    other_domain = await session.check(provider.parse_rule("email:*@example.com"))
    assert other_domain.holds is False and "does not match" in other_domain.reason

    session, _ = await sign_in(provider, unverified, *rules)
    for text in rules:
        result = await session.check(provider.parse_rule(text))
        assert result.holds is False, text
    # An email rule alone never admits an address the provider says is unverified.
    result = await session.check(provider.parse_rule("email:*@example.org"))
    assert "not verified" in result.reason


async def test_keycloak_style_group_paths(op, http) -> None:
    provider = OIDCProvider.from_config("kc", section_for(op, new_client(op)), http)
    member = new_account(op, groups=["/staff", "/staff/admins"])
    sub_only = new_account(op, groups=["/staff/admins"])

    session, _ = await sign_in(provider, member, "groups:staff")
    for text, holds in [("groups:staff", True), ("groups:/staff", True), ("groups:admins", False)]:
        assert (await session.check(provider.parse_rule(text))).holds is holds, text

    session, _ = await sign_in(provider, sub_only, "groups:staff")
    for text, holds in [
        ("groups:staff", False),
        ("groups:/staff/*", True),
        ("groups:staff/*", True),
    ]:
        assert (await session.check(provider.parse_rule(text))).holds is holds, text


async def test_userinfo_true_reads_the_userinfo_endpoint(op, http) -> None:
    section = section_for(op, new_client(op), userinfo=True)
    provider = OIDCProvider.from_config("sso", section, http)
    session, _ = await sign_in(provider, new_account(op, groups=["staff"]), "groups:staff")
    assert session._userinfo_loaded
    assert (await session.check(provider.parse_rule("groups:staff"))).holds is True


async def test_client_secret_post_when_configured(op, http) -> None:
    client = new_client(op, token_endpoint_auth_method="client_secret_post")
    section = section_for(op, client, token_auth="client_secret_post")
    post = OIDCProvider.from_config("sso", section, http)
    session, _ = await sign_in(post, new_account(op, groups=["staff"]), "groups:staff")
    assert (await session.check(post.parse_rule("groups:staff"))).holds


async def test_a_secret_with_reserved_characters_passes_basic_auth(op, http) -> None:
    # RFC 6749 2.3.1: Basic's ID and secret are form-urlencoded first; oidc-provider
    # decodes them, so a secret holding ':', '+', '%' or a space must arrive intact.
    client = new_client(op, client_secret="s3cr:et+50% of/it&more=")
    provider = OIDCProvider.from_config("sso", section_for(op, client), http)
    session, _ = await sign_in(provider, new_account(op, groups=["staff"]), "groups:staff")
    assert (await session.check(provider.parse_rule("groups:staff"))).holds is True


async def test_a_code_is_single_use(op, http) -> None:
    provider = OIDCProvider.from_config("sso", section_for(op, new_client(op)), http)
    account = new_account(op)
    rules = [provider.parse_rule("sub:x")]
    await provider.prepare()
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await log_in(request.url, account)
    await provider.finish(rules, back["code"], CALLBACK, request)
    with pytest.raises(SignInFailed, match="expired or was already used"):
        await provider.finish(rules, back["code"], CALLBACK, request)


async def test_a_wrong_client_secret_is_the_operators_problem(op, http) -> None:
    section = {**section_for(op, new_client(op)), "client_secret": "wrong"}
    provider = OIDCProvider.from_config("sso", section, http)
    with pytest.raises(SignInFailed) as error:
        await sign_in(provider, new_account(op), "groups:staff")
    assert error.value.errcode == "TPI_PROVIDER_MISCONFIGURED"


async def test_a_nonce_from_another_sign_in_is_refused(op, http) -> None:
    provider = OIDCProvider.from_config("sso", section_for(op, new_client(op)), http)
    rules = [provider.parse_rule("groups:staff")]
    await provider.prepare()
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await log_in(request.url, new_account(op))
    other = provider.authorization_request(rules, CALLBACK, "s2")  # its own nonce
    swapped = type(request)(request.url, request.code_verifier, other.nonce)
    with pytest.raises(SignInFailed, match=r"\(nonce\)"):
        await provider.finish(rules, back["code"], CALLBACK, swapped)


# Discovery


async def test_authorization_waits_for_discovery(op, http) -> None:
    provider = OIDCProvider.from_config("sso", section_for(op, new_client(op)), http)
    rules = [provider.parse_rule("groups:staff")]
    # authorization_request cannot wait for the network: before prepare() has read the
    # discovery document it says so (the sign-in service awaits prepare() first).
    with pytest.raises(ProviderUnavailable, match="not read yet"):
        provider.authorization_request(rules, CALLBACK, "s")
    await provider.prepare()
    request = provider.authorization_request(rules, CALLBACK, "s")
    assert request.url.startswith(f"{op.issuer}/auth?")
    await provider.close()


async def test_a_discovery_document_of_another_issuer_is_refused(op, http) -> None:
    # Exact comparison (OpenID Connect Discovery 4.3): a trailing slash is another issuer.
    section = {**section_for(op, new_client(op)), "issuer": op.issuer + "/"}
    provider = OIDCProvider.from_config("sso", section, http)
    with pytest.raises(ProviderUnavailable, match="names the issuer"):
        await provider.prepare()


async def test_an_unreachable_issuer_is_unavailable(http) -> None:
    section = {
        "issuer": f"http://127.0.0.1:{free_port()}/realms/main",  # nothing listens there
        "client_id": "a",
        "client_secret": "b",
    }
    provider = OIDCProvider.from_config("sso", section, http)
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        await provider.prepare()
    with pytest.raises(ProviderUnavailable):
        provider.authorization_request([provider.parse_rule("groups:x")], CALLBACK, "s")
    await provider.close()


def sign_in_service(provider: OIDCProvider, rule_text: str) -> tuple[ProviderSignIn, list]:
    """The sign-in service over one binding of one rule, with the states it stores."""
    rule = provider.parse_rule(rule_text)
    binding = Binding(1, "B1nd1ngPublicId0", "@admin:example.org", 0, "all", None, (), ())
    view = BindingView(binding, (DescribedRule(provider, rule, provider.describe(rule)),))
    states: list[OAuthState] = []

    async def get(public_id: str) -> BindingView:
        return view

    async def add_state(state: OAuthState) -> None:
        states.append(state)

    storage = SimpleNamespace(signins=SimpleNamespace(add_state=add_state))
    service = ProviderSignIn(storage, SimpleNamespace(get=get), None, CALLBACK, 1)
    return service, states


async def test_the_first_sign_in_after_start_works(op, http) -> None:
    # A provider just built (the plugin started, or its config changed) has read nothing:
    # the service awaits prepare() before asking for the URL, so the first person gets in.
    provider = OIDCProvider.from_config("sso", section_for(op, new_client(op)), http)
    service, states = sign_in_service(provider, "groups:staff")
    url = await service.start("session-id", "@alice:example.org", "B1nd1ngPublicId0", "sso")
    assert url.startswith(f"{op.issuer}/auth?")
    back = await log_in(url, new_account(op, groups=["staff"]))
    [state] = states
    assert state.provider == "sso" and state.code_verifier and state.nonce
    request = AuthorizationRequest(url, state.code_verifier, state.nonce)
    rule = provider.parse_rule("groups:staff")
    session = await provider.finish([rule], back["code"], CALLBACK, request)
    assert (await session.check(rule)).holds is True


async def test_start_says_the_provider_is_unavailable_when_discovery_fails(http) -> None:
    section = {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "a", "client_secret": "b"}
    provider = OIDCProvider.from_config("sso", section, http)
    service, states = sign_in_service(provider, "groups:staff")
    with pytest.raises(ProviderUnavailable) as error:
        await service.start("session-id", "@alice:example.org", "B1nd1ngPublicId0", "sso")
    assert (error.value.errcode, error.value.http_status) == ("TPI_PROVIDER_UNAVAILABLE", 502)
    assert states == []  # nothing stored for a sign-in that cannot start


# GitLab as a generic OIDC provider: groups only in userinfo


@pytest_asyncio.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as server:
        server.auto_approve = True
        yield server


async def gitlab_session(
    gitlab: FakeGitLab, http: OutboundHTTP, rule: str, **extra: Any
) -> tuple[OIDCProvider, OIDCSession]:
    config = gitlab.config_section(client_id="generic", redirect_uris=[CALLBACK])
    section = {
        "issuer": gitlab.url,
        "client_id": "generic",
        "client_secret": config["client_secret"],
        "claims": {"groups": {"claim": "groups"}},  # GitLab has no "groups" scope
        **extra,
    }
    provider = OIDCProvider.from_config("gl", section, http)
    await provider.prepare()
    rules = [provider.parse_rule(rule)]
    request = provider.authorization_request(rules, CALLBACK, "s")
    back = await gitlab.approve(request.url)
    return provider, await provider.finish(rules, back["code"], CALLBACK, request)


async def test_a_claim_missing_from_the_id_token_is_read_from_userinfo(gitlab, http) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice", groups={"gnome/infra": "developer"}))
    provider, session = await gitlab_session(gitlab, http, "groups:gnome/infra")
    assert "groups" not in session.claims  # GitLab's ID token has groups_direct only
    assert (await session.check(provider.parse_rule("groups:gnome/infra"))).holds is True
    assert (await session.check(provider.parse_rule("groups:gnome"))).holds is False
    assert len([r for r in gitlab.requests if r.path == "/oauth/userinfo"]) == 1  # once


@pytest.mark.parametrize(
    ("extra", "authorization", "form_secret"),
    [({}, "Basic <redacted>", None), ({"token_auth": "client_secret_post"}, None, "<redacted>")],
)
async def test_token_endpoint_authentication(gitlab, http, extra, authorization, form_secret):
    # Discovery offers Basic and Post: Basic (the spec's default) unless configured.
    gitlab.sign_in_as(gitlab.add_account("alice"))
    await gitlab_session(gitlab, http, "groups:gnome", **extra)
    [token_request] = gitlab.requests_to("token")
    assert token_request.headers.get("Authorization") == authorization
    assert token_request.form.get("client_secret") == form_secret


async def test_userinfo_false_never_asks(gitlab, http) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice", groups={"gnome": "developer"}))
    provider, session = await gitlab_session(gitlab, http, "groups:gnome", userinfo=False)
    result = await session.check(provider.parse_rule("groups:gnome"))
    assert result.holds is False and "shared no groups" in result.reason
    assert "release the 'groups' claim" in result.remedy
    assert not [r for r in gitlab.requests if r.path == "/oauth/userinfo"]


async def test_userinfo_about_another_account_is_refused(gitlab, http) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice", groups={"gnome": "developer"}))
    gitlab.id_token_overrides["sub"] = "999"  # userinfo will name account 1
    provider, session = await gitlab_session(gitlab, http, "groups:gnome")
    result = await session.check(provider.parse_rule("groups:gnome"))
    assert result.holds is None and "another account" in result.reason


async def test_userinfo_failure_is_unknown(gitlab, http) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice", groups={"gnome": "developer"}))
    provider, session = await gitlab_session(gitlab, http, "groups:gnome")
    gitlab.fail("api", 503)
    result = await session.check(provider.parse_rule("groups:gnome"))
    assert result.holds is None and "HTTP 503" in result.reason


async def test_a_scope_not_granted_is_not_a_no(gitlab, http) -> None:
    gitlab.sign_in_as(gitlab.add_account("alice"), grants={"openid", "profile"})
    provider, session = await gitlab_session(gitlab, http, "email:*@example.test", userinfo=False)
    session.claims.pop("email")  # as if the provider honoured the missing email scope
    result = await session.check(provider.parse_rule("email:*@example.test"))
    assert result.holds is None
    assert "did not allow" in result.reason and "Sign in again" in result.remedy


# Config and rules (no network)


def provider_with(**extra: Any) -> OIDCProvider:
    section = {"issuer": "https://sso.example.org", "client_id": "a", "client_secret": "b"}
    return OIDCProvider.from_config("staff", {**section, **extra}, None)


def test_defaults() -> None:
    provider = provider_with()
    assert provider.display_name == "staff"
    assert provider.extra_scopes == ("profile",)
    assert set(provider.claims) == {"groups", "email", "email_verified", "sub"}
    assert provider.userinfo is None  # auto


def test_claims_config_renames_adds_and_removes() -> None:
    provider = provider_with(
        claims={
            "groups": {"claim": "realm_access.roles", "scope": ""},
            "department": "department",
            "sub": None,
        },
        scopes=["openid", "profile", "email"],
    )
    assert provider.claims["groups"].claim == "realm_access.roles"
    assert provider.claims["department"].scope == ""
    assert "sub" not in provider.claims
    rules = [provider.parse_rule("groups:staff"), provider.parse_rule("department:sales")]
    assert provider.scopes(rules) == ["openid", "profile", "email"]  # no groups scope now
    with pytest.raises(RuleError, match="department, email, email_verified, groups"):
        provider.parse_rule("sub:1234")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"issuer": "http://sso.example.org"}, "issuer"),
        ({"issuer": ""}, "issuer"),
        ({"client_secret": ""}, "client_secret"),
        ({"scopes": "profile"}, "scopes"),
        ({"scopes": ["a b"]}, "scopes"),
        ({"claims": ["groups"]}, "claims"),
        ({"claims": {"Bad Word": "x"}}, "claims"),
        ({"claims": {"groups": {"claim": ""}}}, "claims.groups.claim"),
        ({"claims": {"groups": {"scope": "two scopes"}}}, "claims.groups.scope"),
        ({"claims": {"groups": {"ignore_case": "yes"}}}, "claims.groups.ignore_case"),
        ({"claims": {"groups": {"clam": "typo"}}}, "claims.groups"),
        ({"userinfo": "sometimes"}, "userinfo"),
        ({"token_auth": "private_key_jwt"}, "token_auth"),
        ({"issuers": "typo"}, "issuers"),
    ],
)
def test_config_errors_name_the_key(extra: dict, key: str) -> None:
    with pytest.raises(ValueError) as error:
        provider_with(**extra)
    assert str(error.value).startswith(f"{key}: ")


def test_registry_names_the_provider_and_key() -> None:
    problems: list[str] = []
    section = {"issuer": "https://sso.example.org", "client_id": "a", "client_secret": "b"}
    settings = read_provider_settings(
        {"oidc": {"staff": section, "broken": {**section, "userinfo": 3}}}, problems
    )
    assert problems == ["providers.oidc.broken.userinfo: must be auto, true or false"]
    assert [(c.id, c.kind) for c in settings.configured] == [("staff", "oidc")]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("groups:staff", "groups:staff"),
        ("GROUPS:Staff", "groups:Staff"),
        ("email:*@example.org", "email:*@example.org"),
        ("email_verified:TRUE", "email_verified:true"),
        ("groups:a:b", "groups:a:b"),  # the value may hold colons
    ],
)
def test_parse_rule(text: str, canonical: str) -> None:
    assert provider_with().parse_rule(text).text == canonical


@pytest.mark.parametrize(
    "text", ["staff", ":staff", "groups:", "roles:staff", "groups:two words", "email_verified:yes"]
)
def test_parse_rule_refuses(text: str) -> None:
    with pytest.raises(RuleError):
        provider_with().parse_rule(text)


def test_describe() -> None:
    provider = provider_with(name="Our Keycloak")
    describe = lambda text: provider.describe(provider.parse_rule(text))  # noqa: E731
    assert describe("groups:staff") == "members of group staff at Our Keycloak"
    assert describe("email:*@example.org") == (
        "people whose email address at Our Keycloak matches *@example.org"
    )
    assert (
        describe("email_verified:true") == "people with a verified email address at Our Keycloak"
    )


@pytest.mark.parametrize(
    ("value", "wanted", "ignore_case", "holds"),
    [
        (["staff", "ops"], "staff", False, True),
        (["/staff"], "staff", False, True),  # Keycloak's full path
        (["staff"], "/staff", False, True),
        (["/staff/admins"], "staff", False, False),  # a subgroup is not the group
        (["/staff/admins"], "/staff/*", False, True),
        (["Staff"], "staff", False, False),  # groups compare with case
        ("jane@Example.org", "*@example.org", True, True),
        ("jane@example.org.evil", "*@example.org", True, False),
        ("jane@sub.example.org", "*@example.org", True, False),
        (True, "true", False, True),
        (False, "true", False, False),
        ("true", "TRUE", False, True),  # booleans some providers send as strings
        (1234, "1234", False, True),
        ({"roles": ["staff"]}, "staff", False, False),
        (None, "staff", False, False),
    ],
)
def test_claim_matches(value: Any, wanted: str, ignore_case: bool, holds: bool) -> None:
    assert claim_matches(value, wanted, ignore_case) is holds
