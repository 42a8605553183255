"""ID token validation, the JWKS cache and discovery, with keys and tokens made here with
joserfc (RSA and EC) and a JWKS served on loopback: every way a token can be wrong is
refused (audience, issuer, nonce, expiry, not yet valid, `alg: none`, HS256 signed with the
public key, bad signature, unknown key id, missing claims), rotation is followed, and the
JWKS is not hammered."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
import functools
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web
import attrs
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
import pytest
import pytest_asyncio

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.base import ProviderUnavailable, SignInFailed
from thirdparty_invite.providers.oidc_discovery import (
    JWKSCache,
    ProviderDiscovery,
    discovery_url,
    parse_jwks,
    parse_metadata,
)
from thirdparty_invite.providers.oidc_tokens import IDTokenValidator

ISSUER = "https://sso.example.org/realms/main"
CLIENT_ID = "thirdparty-invite"
NONCE = "n-0S6_WzA2Mj"


@attrs.frozen
class Ago:
    """A time this many seconds before the test runs (negative: after)."""

    seconds: int


class Clock:
    """A clock the test moves by hand (no sleeping, no timed assertions)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class KeyServer:
    """Serves `keys` as a JWKS (and `discovery` as a discovery document) on loopback."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.discovery: Any = {}
        self.status = 200
        self.fetches = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> KeyServer:
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response({"keys": self.keys})

    async def _discovery(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.discovery)


def new_rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})


@functools.cache
def rsa_key(kid: str) -> RSAKey:
    """One key per key id for the whole run: RSA keys are slow to make."""
    return new_rsa_key(kid)


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"})


def public(key: Any) -> dict[str, Any]:
    return key.as_dict(private=False)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "name": "Jane Doe",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, payload: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, payload, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[KeyServer]:
    async with KeyServer() as keys:
        yield keys


@pytest_asyncio.fixture
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(server: KeyServer, http: OutboundHTTP, clock: Clock) -> IDTokenValidator:
    jwks = JWKSCache("Test SSO", f"{server.url}/jwks", http, clock=clock)
    algorithms = ["RS256", "ES256"]
    return IDTokenValidator("Test SSO", ISSUER, CLIENT_ID, jwks, algorithms, clock=clock)


@pytest.fixture
def key(server: KeyServer) -> RSAKey:
    signing = rsa_key("k1")
    server.keys = [public(signing)]
    return signing


async def refused(validator: IDTokenValidator, token: str, nonce: str | None = NONCE) -> str:
    with pytest.raises(SignInFailed) as error:
        await validator.validate(token, nonce)
    assert error.value.errcode == "TPI_PROVIDER_BAD_ID_TOKEN"
    assert "Nothing was recorded" in error.value.message
    return error.value.message


# Accepted


async def test_a_good_rsa_token_gives_its_claims(validator, key) -> None:
    result = await validator.validate(sign(key, claims()), NONCE)
    assert result["sub"] == "248289761001" and result["name"] == "Jane Doe"


async def test_a_good_ec_token_gives_its_claims(validator, server) -> None:
    signing = ec_key("ec-1")
    server.keys = [public(rsa_key("k1")), public(signing)]
    result = await validator.validate(sign(signing, claims(), "ES256"), NONCE)
    assert result["sub"] == "248289761001"


async def test_several_audiences_need_azp(validator, key) -> None:
    two = [CLIENT_ID, "another-client"]
    assert await validator.validate(sign(key, claims(aud=two, azp=CLIENT_ID)), NONCE)
    assert "(azp)" in await refused(validator, sign(key, claims(aud=two)))
    assert "(azp)" in await refused(validator, sign(key, claims(aud=two, azp="another-client")))
    assert "(azp)" in await refused(validator, sign(key, claims(azp="another-client")))


async def test_small_clock_skew_is_tolerated(validator, key, clock) -> None:
    token = sign(key, claims(exp=int(clock.now) - 60, iat=int(clock.now) + 60))
    assert await validator.validate(token, NONCE)


async def test_a_token_without_kid_is_checked_against_each_fitting_key(validator, server) -> None:
    first, second = rsa_key("a"), rsa_key("b")
    server.keys = [public(first), public(second)]
    token = jwt.encode({"alg": "RS256"}, claims(), second, algorithms=["RS256"])
    assert (await validator.validate(token, NONCE))["sub"]


# Refused claims


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"aud": "another-client"}, "another application (aud)"),
        ({"aud": ["another-client"]}, "another application (aud)"),
        ({"iss": "https://evil.example.org/realms/main"}, "another provider (iss)"),
        ({"iss": ISSUER + "/"}, "another provider (iss)"),  # exact match, no normalising
        ({"nonce": "someone-elses-nonce"}, "does not belong to this sign-in (nonce)"),
        ({"nonce": [NONCE, "x"]}, "(nonce)"),
        ({"exp": Ago(600)}, "has expired"),
        ({"nbf": Ago(-600)}, "not valid yet (nbf)"),
        ({"iat": Ago(-600)}, "issued in the future (iat)"),
        ({"iat": Ago(3 * 3600)}, "too long ago (iat)"),
        ({"exp": "tomorrow"}, "(exp)"),
        ({"sub": ""}, "(sub)"),
        ({"sub": 12345}, "(sub)"),
        ({"sub": "x" * 300}, "too long"),
        ({"sub": None}, "lacks sub"),
        ({"exp": None, "iat": None}, "lacks exp, iat"),
        ({"nonce": None}, "lacks nonce"),
        ({"aud": None}, "lacks aud"),
    ],
)
async def test_wrong_claims_are_refused(validator, key, changes, why) -> None:
    # Times are read when the test runs, not when the parameters were collected (a long
    # suite ran past a "future" collected ten minutes earlier).
    changes = {
        k: int(time.time()) - v.seconds if isinstance(v, Ago) else v for k, v in changes.items()
    }
    assert why in await refused(validator, sign(key, claims(**changes)))


async def test_no_nonce_expected_accepts_a_token_without_one(validator, key) -> None:
    assert await validator.validate(sign(key, claims(nonce=None)), None)


# Refused signatures and algorithms


async def test_alg_none_is_refused(validator, key, server) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims()).encode())
    assert "algorithm 'none'" in await refused(validator, f"{header}.{payload}.")
    assert server.fetches == 0  # refused before any key is fetched


async def test_hs256_signed_with_the_public_key_is_refused(validator, key) -> None:
    # Key confusion: the RSA public key (as published) used as an HMAC secret.
    # joserfc refuses to build such a key, so the token is made by hand, as an attacker would.
    signing_input = ".".join(
        b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": "k1"}, claims())
    )
    mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256)
    token = f"{signing_input}.{b64(mac.digest())}"
    assert "algorithm 'HS256'" in await refused(validator, token)


def test_symmetric_and_none_algorithms_are_never_allowed() -> None:
    jwks = JWKSCache("Test SSO", "https://unused.example/jwks", None)  # type: ignore[arg-type]
    validator = IDTokenValidator("Test SSO", ISSUER, CLIENT_ID, jwks, ["none", "HS256", "RS256"])
    assert validator.algorithms == ("RS256",)


async def test_an_algorithm_the_provider_does_not_advertise_is_refused(server, http, key) -> None:
    jwks = JWKSCache("Test SSO", f"{server.url}/jwks", http)
    only_ec = IDTokenValidator("Test SSO", ISSUER, CLIENT_ID, jwks, ["ES256"])
    assert "algorithm 'RS256'" in await refused(only_ec, sign(key, claims()))


async def test_a_bad_signature_is_refused(validator, key) -> None:
    impostor = new_rsa_key("k1")  # same key id, another key
    assert "signature is wrong" in await refused(validator, sign(impostor, claims()))
    header, _, signature = sign(key, claims()).split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    assert "signature is wrong" in await refused(validator, f"{header}.{forged}.{signature}")


async def test_a_key_of_the_wrong_type_is_not_used(validator, server) -> None:
    signing = rsa_key("rsa-shared-kid")
    server.keys = [public(ec_key("shared-kid"))]  # the kid names an EC key
    token = sign(signing, claims(), kid="shared-kid")
    assert "not published" in await refused(validator, token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "é.é.é", "x" * 200_000])
async def test_garbage_is_refused(validator, key, token) -> None:
    why = await refused(validator, token)
    assert "not a signed token" in why or "malformed" in why


# The JWKS: unknown key ids, rotation, no hammering


async def test_an_unknown_kid_is_fetched_once_then_refused(validator, key, server, clock) -> None:
    await validator.validate(sign(key, claims()), NONCE)
    assert server.fetches == 1
    clock.now += 120  # past the one-minute refetch bound
    stranger = rsa_key("unknown")
    assert "not published" in await refused(validator, sign(stranger, claims()))
    assert server.fetches == 2
    # A flood of made-up key ids right after: no more fetches within the minute.
    for n in range(20):
        await refused(validator, sign(stranger, claims(), kid=f"made-up-{n}"))
    assert server.fetches == 2


async def test_key_rotation_is_followed(validator, key, server, clock) -> None:
    await validator.validate(sign(key, claims()), NONCE)
    rotated = rsa_key("k2")
    server.keys = [public(rotated)]
    clock.now += 120
    token = sign(rotated, claims(iat=int(clock.now), exp=int(clock.now) + 300))
    assert (await validator.validate(token, NONCE))["sub"]
    assert server.fetches == 2
    # The new keys serve the next sign-ins without another fetch.
    token = sign(rotated, claims(iat=int(clock.now), exp=int(clock.now) + 300))
    assert await validator.validate(token, NONCE)
    assert server.fetches == 2


async def test_keys_are_fetched_again_after_a_day(validator, key, server, clock) -> None:
    await validator.validate(sign(key, claims()), NONCE)
    clock.now += 25 * 3600
    token = sign(key, claims(iat=int(clock.now), exp=int(clock.now) + 300))
    await validator.validate(token, NONCE)
    assert server.fetches == 2


async def test_concurrent_sign_ins_share_one_fetch(validator, key, server) -> None:
    tokens = [sign(key, claims()) for _ in range(10)]
    results = await asyncio.gather(*(validator.validate(t, NONCE) for t in tokens))
    assert len(results) == 10 and server.fetches == 1


async def test_jwks_down_is_unavailable_not_a_refusal(validator, key, server) -> None:
    server.status = 503
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await validator.validate(sign(key, claims()), NONCE)


async def test_jwks_without_usable_keys_is_unavailable(validator, server) -> None:
    server.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]
    with pytest.raises(ProviderUnavailable, match="no usable key"):
        await validator.validate(sign(rsa_key("k1"), claims()), NONCE)


def test_parse_jwks_keeps_only_public_signature_keys() -> None:
    signing, encryption = rsa_key("sig"), rsa_key("enc")
    document = {
        "keys": [
            public(signing),
            {**public(encryption), "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "not-a-number"},
            "junk",
            signing.as_dict(private=True),  # a leaked private part is not kept
        ]
    }
    keys = parse_jwks(document)
    assert [k.kid for k in keys] == ["sig", "sig"]
    assert all(not k.key.is_private for k in keys)
    with pytest.raises(ValueError):
        parse_jwks({"keys": "nope"})


# Discovery


def discovery_document(**changes: Any) -> dict[str, Any]:
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "response_types_supported": ["code", "id_token"],
        "id_token_signing_alg_values_supported": ["PS256", "RS256", "HS256", "none"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post"],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


def test_discovery_url_strips_one_trailing_slash() -> None:
    assert (
        discovery_url("https://a.example/x/")
        == "https://a.example/x/.well-known/openid-configuration"
    )


def test_parse_metadata() -> None:
    metadata = parse_metadata(discovery_document(), ISSUER)
    assert metadata.signing_algorithms == ("PS256", "RS256")  # never HS256 or none
    assert metadata.token_auth == "client_secret_post"  # the only secret method offered
    plain = parse_metadata(
        discovery_document(token_endpoint_auth_methods_supported=None, userinfo_endpoint=None),
        ISSUER,
    )
    assert plain.token_auth == "client_secret_basic"  # the spec's default
    assert plain.userinfo_endpoint is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"issuer": "https://sso.example.org/realms/other"}, "names the issuer"),
        ({"issuer": None}, "names the issuer"),
        ({"token_endpoint": "http://sso.example.org/token"}, "not an https URL"),
        ({"jwks_uri": None}, "jwks_uri is not a URL"),
        ({"authorization_endpoint": "javascript:alert(1)"}, "not a URL"),
        ({"response_types_supported": ["id_token"]}, "authorization code"),
        ({"id_token_signing_alg_values_supported": ["HS256", "none"]}, "public-key algorithm"),
    ],
)
def test_parse_metadata_refuses(changes: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_metadata(discovery_document(**changes), ISSUER)
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_metadata(["issuer"], ISSUER)


async def test_discovery_is_cached_and_refreshed(server, http) -> None:
    clock = Clock(1000.0)
    issuer = server.url
    server.discovery = discovery_document(issuer=issuer, token_endpoint=f"{issuer}/token")
    discovery = ProviderDiscovery("Test SSO", issuer, http, clock=clock)
    first = await discovery.get()
    assert first.token_endpoint == f"{issuer}/token" and discovery.fresh
    await discovery.get()
    assert server.fetches == 1
    clock.now += 3601
    assert not discovery.fresh
    server.discovery = discovery_document(issuer=issuer, token_endpoint=f"{issuer}/token2")
    assert (await discovery.get()).token_endpoint == f"{issuer}/token2"
    assert server.fetches == 2


async def test_a_failed_refresh_keeps_the_old_document(server, http) -> None:
    clock = Clock(1000.0)
    server.discovery = discovery_document(issuer=server.url)
    discovery = ProviderDiscovery("Test SSO", server.url, http, clock=clock)
    first = await discovery.get()
    clock.now += 3601
    server.status = 502
    assert await discovery.get() == first  # the provider hiccups; sign-ins go on
    await discovery.get()
    assert server.fetches == 2  # and it is not asked again at once


async def test_discovery_failures_are_unavailable(server, http) -> None:
    server.discovery = discovery_document()  # names ISSUER, not the server's URL
    discovery = ProviderDiscovery("Test SSO", server.url, http)
    with pytest.raises(ProviderUnavailable, match="names the issuer"):
        await discovery.get()
    server.status = 500
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await discovery.get()
