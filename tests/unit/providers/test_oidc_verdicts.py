"""OpenID Connect verdicts that are safe to act on, against the real OpenID provider
(devtools/oidc, node's oidc-provider): only scopes the provider lists in
`scopes_supported` are asked (a Keycloak-like provider refuses others with invalid_scope),
Microsoft Entra's group overage is unknown with the operator's remedy, `email` rules need
`email_verified` to be a real boolean true (unless `require_verified_email: false`), and
the access token is revoked at the discovery document's `revocation_endpoint`."""

from __future__ import annotations

from collections.abc import AsyncIterator
import secrets
from typing import Any

import attrs
import pytest
import pytest_asyncio
from support.providers.oidc_login import log_in
from yarl import URL

from devtools.oidc_provider import OIDCAccount, OIDCClient
from devtools.oidc_provider import OIDCProvider as LocalOpenIDProvider
from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.oidc import OIDCProvider, OIDCSession
from thirdparty_invite.providers.oidc_claims import group_overage
from thirdparty_invite.providers.oidc_discovery import parse_metadata

CALLBACK = "http://127.0.0.1:9/_matrix/maubot/plugin/invites/oauth/callback"


@pytest_asyncio.fixture(scope="module")
async def op(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalOpenIDProvider]:
    async with LocalOpenIDProvider(tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest_asyncio.fixture(scope="module")
async def keycloak(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LocalOpenIDProvider]:
    """As Keycloak with a Group Membership mapper: no groups scope, invalid_scope."""
    workdir = tmp_path_factory.mktemp("keycloak")
    async with LocalOpenIDProvider(workdir, keycloak_like=True) as provider:
        yield provider


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


def provider_at(op: LocalOpenIDProvider, http: OutboundHTTP, **extra: Any) -> OIDCProvider:
    client: OIDCClient = op.add_client(f"tpi-{secrets.token_hex(4)}", redirect_uris=[CALLBACK])
    section = {
        "name": "Test SSO",
        "issuer": op.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        **extra,
    }
    return OIDCProvider.from_config("sso", section, http)


def new_account(op: LocalOpenIDProvider, **options: Any) -> OIDCAccount:
    return op.add_account(f"user{secrets.token_hex(4)}", "provider-password", **options)


async def sign_in(
    provider: OIDCProvider, account: OIDCAccount, *rule_texts: str
) -> tuple[OIDCSession, dict[str, str]]:
    rules = [provider.parse_rule(text) for text in rule_texts]
    await provider.prepare()
    request = provider.authorization_request(rules, CALLBACK, "state")
    back = await log_in(request.url, account, CALLBACK)
    assert "code" in back, back
    session = await provider.finish(rules, back["code"], CALLBACK, request)
    return session, dict(URL(request.url).query)


async def check(session: OIDCSession, text: str):
    return await session.check(session.provider.parse_rule(text))


# Scopes the provider offers


async def test_keycloak_is_not_asked_for_a_scope_it_does_not_offer(keycloak, http) -> None:
    # The README's Keycloak example, with the default claims (groups: {scope: groups}).
    provider = provider_at(keycloak, http)
    alice = new_account(keycloak, groups=["/staff"])
    session, query = await sign_in(provider, alice, "groups:staff")
    assert query["scope"] == "openid profile"  # no "groups": Keycloak would refuse it
    assert (await check(session, "groups:staff")).holds is True  # the mapper's claim
    result = await check(session, "groups:admins")
    assert result.holds is False and "not in group admins" in result.reason


async def test_a_claim_whose_scope_is_not_offered_is_not_a_refused_scope(keycloak, http):
    # Not asked (Keycloak does not offer "dept"), so not "you did not allow it": the claim
    # must come from a mapper, and the operator is told it does not.
    provider = provider_at(keycloak, http, claims={"department": {"scope": "dept"}})
    session, query = await sign_in(provider, new_account(keycloak), "department:sales")
    assert "dept" not in query["scope"].split()
    result = await check(session, "department:sales")
    assert result.holds is False and "may not release the 'department' claim" in result.remedy


async def test_keycloak_refuses_an_unknown_scope(keycloak, http) -> None:
    # What the plugin used to do: ask for "groups" anyway. The sign-in never comes back
    # with a code, so nobody could ever be admitted.
    provider = provider_at(keycloak, http)
    await provider.prepare()
    request = provider.authorization_request([provider.parse_rule("groups:x")], CALLBACK, "s")
    url = URL(request.url).update_query(scope="openid profile groups")
    back = await log_in(str(url), new_account(keycloak), CALLBACK)
    assert back["error"] == "invalid_scope" and back["state"] == "s"


async def test_configured_scopes_are_filtered_too(op, http) -> None:
    provider = provider_at(op, http, scopes=["profile", "roles"])
    session, query = await sign_in(provider, new_account(op, groups=["staff"]), "groups:staff")
    assert query["scope"] == "openid profile groups"
    assert (await check(session, "groups:staff")).holds is True


def test_without_scopes_supported_every_scope_is_asked() -> None:
    # scopes_supported is optional in discovery: nothing is filtered then.
    document = {
        "issuer": "https://sso.example.org",
        "authorization_endpoint": "https://sso.example.org/auth",
        "token_endpoint": "https://sso.example.org/token",
        "jwks_uri": "https://sso.example.org/jwks",
    }
    metadata = parse_metadata(document, "https://sso.example.org")
    assert metadata.scopes_supported is None and metadata.revocation_endpoint is None
    provider = OIDCProvider.from_config(
        "sso", {"issuer": "https://sso.example.org", "client_id": "a", "client_secret": "b"}, None
    )
    rules = [provider.parse_rule("groups:staff")]
    assert provider.requested_scopes(rules, metadata) == ["openid", "profile", "groups"]
    bad = parse_metadata({**document, "revocation_endpoint": "not a url"}, document["issuer"])
    assert bad.revocation_endpoint is None  # a broken courtesy turns it off, not sign-ins


# Microsoft Entra's group overage


async def test_group_overage_is_unknown_with_the_operators_remedy(op, http) -> None:
    provider = provider_at(op, http)
    many = new_account(op, groups=["staff"], group_overage=True)
    session, _ = await sign_in(provider, many, "groups:staff")
    assert "groups" not in session.claims and "groups" in session.claims["_claim_names"]
    result = await check(session, "groups:staff")
    assert result.holds is None
    assert "group overage" in result.reason
    assert "groups assigned to the application" in result.remedy and "app roles" in result.remedy


@pytest.mark.parametrize(
    ("claims", "name", "overage"),
    [
        ({"_claim_names": {"groups": "src1"}}, "groups", True),
        ({"hasgroups": True}, "groups", True),
        ({"hasgroups": "true"}, "groups", False),  # not Entra's boolean
        ({"hasgroups": True}, "roles", False),
        ({"_claim_names": {"realm_access": "s"}}, "realm_access.roles", True),
        ({"_claim_names": ["groups"]}, "groups", False),
        ({}, "groups", False),
    ],
)
def test_group_overage_shapes(claims: dict, name: str, overage: bool) -> None:
    assert group_overage(claims, name) is overage


# email rules need a verified address


@pytest.mark.parametrize(
    ("email_verified", "holds", "words"),
    [
        (True, True, ""),
        (False, False, "not verified"),
        ("true", None, "did not say whether"),  # a string is not a boolean
        ("omit", None, "did not say whether"),
    ],
)
async def test_email_rules_need_a_boolean_true(op, http, email_verified, holds, words) -> None:
    provider = provider_at(op, http)
    account = new_account(op, email="jane@example.org", email_verified=email_verified)
    session, _ = await sign_in(provider, account, "email:*@example.org")
    result = await check(session, "email:*@example.org")
    assert result.holds is holds, result
    assert words in result.reason
    if holds is None:
        assert "require_verified_email: false" in result.remedy
        assert (await check(session, "email_verified:true")).holds is None


async def test_the_operator_may_turn_verification_off(op, http) -> None:
    provider = provider_at(op, http, require_verified_email=False)
    account = new_account(op, email="jane@example.org", email_verified="omit")
    session, _ = await sign_in(provider, account, "email:*@example.org")
    assert (await check(session, "email:*@example.org")).holds is True


def test_require_verified_email_must_be_a_boolean() -> None:
    section = {"issuer": "https://sso.example.org", "client_id": "a", "client_secret": "b"}
    with pytest.raises(ValueError, match=r"^require_verified_email: "):
        OIDCProvider.from_config("sso", {**section, "require_verified_email": "no"}, None)


# Revocation


async def test_the_access_token_is_revoked_at_the_end(op, http) -> None:
    provider = provider_at(op, http)
    session, _ = await sign_in(provider, new_account(op, groups=["staff"]), "groups:staff")
    metadata = provider.discovery.cached
    assert metadata.revocation_endpoint == f"{op.issuer}/token/revocation"
    token = session._tokens.access_token
    assert (await check(session, "groups:staff")).holds is True
    client = session.machinery.client
    assert (await client.get_json(metadata.userinfo_endpoint, token)).status == 200
    await session.close()  # at once: the revocation runs in the background
    await provider.close()  # which waits for it
    # Dropped is not revoked: the provider no longer takes it.
    assert (await client.get_json(metadata.userinfo_endpoint, token)).status == 401


async def test_without_a_revocation_endpoint_close_only_drops(op, http) -> None:
    provider = provider_at(op, http)
    session, _ = await sign_in(provider, new_account(op), "sub:x")
    metadata = attrs.evolve(session.machinery.metadata, revocation_endpoint=None)
    session.machinery = attrs.evolve(session.machinery, metadata=metadata)
    await session.close()
    assert session._tokens is None


# Kept refresh tokens, for per-person re-checks (no member list at an OpenID provider)


async def test_a_kept_refresh_token_resumes_the_checks(op, http) -> None:
    provider = provider_at(op, http, keep_refresh_tokens=True)
    alice = new_account(op, groups=["staff"])
    session, query = await sign_in(provider, alice, "groups:staff")
    assert "offline_access" in query["scope"].split() and query["prompt"] == "consent"
    kept = session.refresh_token
    assert kept
    await session.close()  # the access token is not revoked: that may end the grant

    op.set_groups(alice.preferred_username, ["visitors"])  # alice left staff since
    resumed = await provider.resume([provider.parse_rule("groups:staff")], kept)
    assert resumed.account.id == alice.sub
    # The one to keep next: the provider's new one, or the same when it did not rotate it.
    assert resumed.refresh_token
    result = await check(resumed, "groups:staff")
    assert result.holds is False and "not in group staff" in result.reason
    await resumed.close()

    again = await provider.resume([], resumed.refresh_token)
    assert again.account.id == alice.sub


async def test_a_refresh_token_no_longer_accepted_is_a_failed_sign_in(op, http) -> None:
    from thirdparty_invite.providers.base import SignInFailed

    provider = provider_at(op, http, keep_refresh_tokens=True)
    session, _ = await sign_in(provider, new_account(op), "sub:x")
    kept = session.refresh_token
    metadata = provider.discovery.cached
    assert await session.machinery.client.revoke_token(metadata.revocation_endpoint, kept)
    with pytest.raises(SignInFailed):
        await provider.resume([], kept)
    plain = provider_at(op, http)  # keeps nothing
    with pytest.raises(SignInFailed, match="keeps no refresh tokens"):
        await plain.resume([], kept)


async def test_without_keeping_no_refresh_token_is_asked(op, http) -> None:
    provider = provider_at(op, http)
    session, query = await sign_in(provider, new_account(op), "sub:x")
    assert "offline_access" not in query["scope"].split() and "prompt" not in query
    assert session.refresh_token is None


def test_keep_refresh_tokens_must_be_a_boolean() -> None:
    section = {"issuer": "https://sso.example.org", "client_id": "a", "client_secret": "b"}
    with pytest.raises(ValueError, match=r"^keep_refresh_tokens: "):
        OIDCProvider.from_config("sso", {**section, "keep_refresh_tokens": "yes"}, None)


async def test_a_refresh_without_an_id_token_asks_userinfo_who_it_is(op, http) -> None:
    provider = provider_at(op, http, keep_refresh_tokens=True)
    alice = new_account(op, groups=["staff"])
    session, _ = await sign_in(provider, alice, "groups:staff")
    client = session.machinery.client
    real_refresh = client.refresh

    async def refresh_without_id_token(token: str):
        return attrs.evolve(await real_refresh(token), id_token=None)

    client.refresh = refresh_without_id_token  # type: ignore[method-assign]
    resumed = await provider.resume([], session.refresh_token)
    assert resumed.account.id == alice.sub
    assert (await check(resumed, "groups:staff")).holds is True
