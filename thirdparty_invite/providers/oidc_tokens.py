"""OpenID Connect machinery shared by the GitLab and the generic OIDC providers: the
discovery document, the signing keys (JWKS), ID token validation, userinfo.

An ID token is accepted only when every check passes (OpenID Connect Core 3.1.3.7): signed
with a public-key algorithm the provider advertises (never `none`, never HS*: a public key
used as an HMAC secret would let anyone sign) by a key of the provider's JWKS, issued by
the configured issuer for our client (`aud`; `azp` when there are several audiences), not
expired, not issued in the future or long ago, with the nonce this sign-in sent. Any
failure is a `SignInFailed`: nothing is recorded. The JWKS is fetched on first use, kept a
day, and fetched again when a token names an unknown key id (rotation), at most once a
minute, so a flood of made-up key ids cannot make us hammer the provider.

joserfc is optional like authlib (registry.authlib_missing() gates providers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
import hmac
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..net.http import OutboundHTTP
from .base import AuthorizationRequest, ProviderUnavailable, SignInFailed
from .oauth import OAuthClient, ProviderHTTP, TokenResponse

try:  # optional, like authlib: without it only invite links work
    from joserfc import jws, jwt
    from joserfc.errors import (
        BadSignatureError,
        ClaimError,
        ExpiredTokenError,
        JoseError,
        MissingClaimError,
    )
    from joserfc.jwk import import_key
except ImportError:  # pragma: no cover - exercised by the missing-dependency test
    jws = jwt = import_key = None  # type: ignore[assignment]
    JoseError = ClaimError = BadSignatureError = ExpiredTokenError = Exception  # type: ignore[assignment,misc]
    MissingClaimError = Exception  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

# Algorithm -> the JWK key type that verifies it. Only public-key algorithms: HS* would
# need the client secret as key, and a JWKS public key must never serve as an HMAC secret.
KEY_TYPE_OF_ALGORITHM = {
    **{f"{family}{bits}": "RSA" for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}
LEEWAY = 120  # seconds of clock skew tolerated on exp, nbf and iat
MAX_TOKEN_AGE = 3600  # an ID token fresh from the token endpoint is never older than this
JWKS_MAX_AGE = 24 * 3600.0  # keys are fetched again after this long anyway
JWKS_MIN_REFETCH_INTERVAL = 60.0  # at most one fetch per minute for unknown key ids
MAX_KEYS = 50  # keys read from one JWKS: a real one holds a handful
BAD_ID_TOKEN = "TPI_PROVIDER_BAD_ID_TOKEN"
DISCOVERY_TTL = 3600.0
DISCOVERY_RETRY = 60.0  # after a failed refresh, the old document serves this long


# -- discovery ---------------------------------------------------------------------------


@attrs.frozen
class ProviderMetadata:
    """What we use of an OpenID provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    signing_algorithms: tuple[str, ...]  # advertised and acceptable (see KEY_TYPE_OF_ALGORITHM)
    token_auth_methods: tuple[str, ...]

    @property
    def token_auth(self) -> str:
        """How to authenticate at the token endpoint: Basic unless only Post is offered."""
        methods = self.token_auth_methods
        only_post = "client_secret_post" in methods and "client_secret_basic" not in methods
        return "client_secret_post" if only_post else "client_secret_basic"


def discovery_url(issuer: str) -> str:
    # OpenID Connect Discovery 4: strip one trailing slash, append the well-known path.
    return issuer.removesuffix("/") + "/.well-known/openid-configuration"


def parse_metadata(document: Any, issuer: str) -> ProviderMetadata:
    """The metadata in a discovery document for `issuer`; ValueError says what is wrong."""
    if not isinstance(document, dict):
        raise ValueError("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        # Exact match (Discovery 4.3): a mismatch means another provider, or a config typo.
        raise ValueError(
            f"the discovery document names the issuer {str(document.get('issuer'))[:200]!r}, "
            f"not the configured {issuer!r}"
        )
    https_only = issuer.startswith("https:")

    def endpoint(key: str, required: bool = True) -> str | None:
        value = document.get(key)
        if value is None and not required:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"{key} is not a URL")
        if https_only and parts.scheme != "https":  # no downgrade from an https issuer
            raise ValueError(f"{key} is not an https URL")
        return value

    response_types = document.get("response_types_supported")
    if isinstance(response_types, list) and "code" not in response_types:
        raise ValueError("the provider does not offer the authorization code flow")
    advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    if not isinstance(advertised, list):
        raise ValueError("id_token_signing_alg_values_supported is not a list")
    algorithms = tuple(alg for alg in advertised if alg in KEY_TYPE_OF_ALGORITHM)
    if not algorithms:
        raise ValueError(
            f"it signs ID tokens only with {', '.join(map(str, advertised))[:100]}; "
            "a public-key algorithm such as RS256 or ES256 is needed"
        )
    auth_methods = document.get("token_endpoint_auth_methods_supported") or []
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(endpoint("authorization_endpoint")),
        token_endpoint=str(endpoint("token_endpoint")),
        jwks_uri=str(endpoint("jwks_uri")),
        userinfo_endpoint=endpoint("userinfo_endpoint", required=False),
        signing_algorithms=algorithms,
        token_auth_methods=tuple(m for m in auth_methods if isinstance(m, str)),
    )


class ProviderDiscovery:
    """The discovery document, fetched on demand and kept `ttl` seconds. When a refresh
    fails the previous document serves on (retried after a minute): a provider's hiccup
    should not stop sign-ins that worked a moment ago."""

    def __init__(
        self,
        provider_name: str,
        issuer: str,
        http: OutboundHTTP,
        *,
        ttl: float = DISCOVERY_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider_name = provider_name
        self.issuer = issuer
        self.http = http
        self._requests = ProviderHTTP(provider_name, http)
        self.ttl = ttl
        self.clock = clock
        self.cached: ProviderMetadata | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    @property
    def fresh(self) -> bool:
        return self.cached is not None and self.clock() < self._expires

    async def get(self) -> ProviderMetadata:
        if self.fresh:
            return self.cached  # type: ignore[return-value]
        async with self._lock:  # concurrent sign-ins share one fetch
            if self.fresh:
                return self.cached  # type: ignore[return-value]
            try:
                self.cached = await self._fetch()
                self._expires = self.clock() + self.ttl
            except ProviderUnavailable:
                if self.cached is None:
                    raise
                log.warning("%s: discovery refresh failed; using the old one", self.provider_name)
                self._expires = self.clock() + DISCOVERY_RETRY
            return self.cached

    async def _fetch(self) -> ProviderMetadata:
        url = discovery_url(self.issuer)
        document = await self._requests.get_public_json(url, "its discovery")
        try:
            return parse_metadata(document, self.issuer)
        except ValueError as e:
            log.warning("%s: unusable discovery document at %s: %s", self.provider_name, url, e)
            raise ProviderUnavailable(self.provider_name, f"discovery: {e}") from None


# -- signing keys ------------------------------------------------------------------------


@attrs.frozen
class SigningKey:
    kid: str | None
    key_type: str  # "RSA", "EC", "OKP"
    alg: str | None  # the key's own "alg", when the JWKS says
    key: Any  # joserfc Key

    def fits(self, alg: str) -> bool:
        return KEY_TYPE_OF_ALGORITHM.get(alg) == self.key_type and self.alg in (None, alg)


def parse_jwks(document: Any) -> list[SigningKey]:
    """The public signature keys of a JWKS; others, and keys that do not import, skipped."""
    raw_keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw_keys, list):
        raise ValueError("the JWKS has no key list")
    keys = []
    for raw in raw_keys[:MAX_KEYS]:
        if not isinstance(raw, dict) or raw.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if raw.get("use", "sig") != "sig":
            continue
        public = {k: v for k, v in raw.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = import_key(public)
        except (JoseError, ValueError, TypeError):
            continue
        kid, alg = raw.get("kid"), raw.get("alg")
        kid, alg = (v if isinstance(v, str) else None for v in (kid, alg))
        keys.append(SigningKey(kid, raw["kty"], alg, key))
    return keys


class JWKSCache:
    """The provider's signing keys: fetched on first use, after `max_age`, and when a token
    names a key id we have not seen (at most once per `min_refetch_interval`)."""

    def __init__(
        self,
        provider_name: str,
        url: str,
        http: OutboundHTTP,
        *,
        max_age: float = JWKS_MAX_AGE,
        min_refetch_interval: float = JWKS_MIN_REFETCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider_name = provider_name
        self.url = url
        self.http = http
        self._requests = ProviderHTTP(provider_name, http)
        self.max_age = max_age
        self.min_refetch_interval = min_refetch_interval
        self.clock = clock
        self.fetches = 0
        self._attempts_done = 0  # fetches finished, well or not
        self._keys: list[SigningKey] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None, alg: str) -> list[SigningKey]:
        """The keys that may have signed a token with this `kid` and `alg` (several only
        when the token names no key id); [] when the provider publishes none."""
        if self._keys is None or self.clock() - self._fetched_at >= self.max_age:
            await self._refresh(self._attempts_done)
        found = self._select(kid, alg)
        if not found and self.clock() - self._fetched_at >= self.min_refetch_interval:
            await self._refresh(self._attempts_done)  # rotated keys: one more look
            found = self._select(kid, alg)
        return found

    def _select(self, kid: str | None, alg: str) -> list[SigningKey]:
        candidates = [key for key in self._keys or () if key.fits(alg)]
        if kid is not None:
            return [key for key in candidates if key.kid == kid]
        return candidates

    async def _refresh(self, attempts_seen: int) -> None:
        async with self._lock:
            if self._keys is not None and self._attempts_done != attempts_seen:
                return  # another sign-in fetched while we waited
            self._fetched_at = self.clock()  # counts even when it fails: no hammering
            self.fetches += 1
            try:
                self._keys = await self._fetch()
            finally:
                self._attempts_done += 1

    async def _fetch(self) -> list[SigningKey]:
        document = await self._requests.get_public_json(self.url, "its signing keys (JWKS)")
        try:
            keys = parse_jwks(document)
        except ValueError as e:
            raise ProviderUnavailable(self.provider_name, str(e)) from None
        if not keys:
            raise ProviderUnavailable(self.provider_name, "its JWKS holds no usable key")
        return keys


# -- ID tokens ---------------------------------------------------------------------------


_CLAIM_PROBLEMS = {
    "iss": "it was issued by another provider (iss)",
    "aud": "it was issued for another application (aud)",
    "nonce": "it does not belong to this sign-in (nonce)",
    "sub": "it names no account (sub)",
    "exp": "it has no valid expiry (exp)",
    "iat": "it was issued in the future (iat)",
    "nbf": "it is not valid yet (nbf)",
}


class IDTokenValidator:
    """Validates the ID tokens of one provider for one client; returns their claims."""

    def __init__(
        self,
        provider_name: str,
        issuer: str,
        client_id: str,
        jwks: JWKSCache,
        algorithms: Sequence[str],
        *,
        leeway: int = LEEWAY,
        max_age: int = MAX_TOKEN_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider_name = provider_name
        self.issuer = issuer
        self.client_id = client_id
        self.jwks = jwks
        self.algorithms = tuple(alg for alg in algorithms if alg in KEY_TYPE_OF_ALGORITHM)
        self.leeway = leeway
        self.max_age = max_age
        self.clock = clock

    def _refuse(self, why: str) -> SignInFailed:
        log.warning("%s: ID token refused: %s", self.provider_name, why)
        return SignInFailed(
            f"The sign-in at {self.provider_name} could not be verified: {why}. Nothing was "
            "recorded. Start again from the invite link; if it keeps happening, tell the "
            "bot's operator.",
            BAD_ID_TOKEN,
        )

    async def validate(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        registry = jws.JWSRegistry(algorithms=list(self.algorithms), strict_check_header=False)
        registry.max_header_length = 4096  # headers with certificate hints run long
        try:
            header = jws.extract_compact(id_token.encode("ascii"), registry=registry).headers()
        except (JoseError, ValueError, UnicodeError):
            raise self._refuse("the ID token is not a signed token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise self._refuse(
                f"the ID token's algorithm {str(alg)[:20]!r} is not one "
                f"{self.provider_name} signs with ({', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        keys = await self.jwks.keys_for(kid if isinstance(kid, str) else None, alg)
        if not keys:
            raise self._refuse(f"the ID token was signed with a key (kid {kid!r}) not published")
        claims = self._verified_claims(id_token, alg, keys, registry)
        self._check_claims(claims, nonce)
        return claims

    def _verified_claims(
        self, id_token: str, alg: str, keys: Sequence[SigningKey], registry: Any
    ) -> dict[str, Any]:
        for key in keys:
            try:
                token = jwt.decode(id_token, key.key, algorithms=[alg], registry=registry)
            except BadSignatureError:
                continue
            except JoseError:
                raise self._refuse("the ID token is malformed") from None
            return token.claims
        raise self._refuse("the ID token's signature is wrong")

    def _check_claims(self, claims: Mapping[str, Any], nonce: str | None) -> None:
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "sub": {"essential": True},
            "aud": {"essential": True, "value": self.client_id},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.clock()), leeway=self.leeway, **options
        )
        try:
            registry.validate(dict(claims))
        except ExpiredTokenError:
            raise self._refuse("the ID token has expired") from None
        except MissingClaimError as e:
            raise self._refuse(f"the ID token lacks {e.claim.replace(',', ', ')}") from None
        except ClaimError as e:
            raise self._refuse(_CLAIM_PROBLEMS.get(e.claim, f"its {e.claim} is wrong")) from None
        # joserfc also accepts a list that contains the nonce: it must be exactly ours.
        if nonce is not None and not (
            isinstance(claims["nonce"], str) and hmac.compare_digest(claims["nonce"], nonce)
        ):
            raise self._refuse(_CLAIM_PROBLEMS["nonce"])
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            raise self._refuse("it was issued to another application (azp)")
        if claims["iat"] < self.clock() - self.max_age - self.leeway:
            raise self._refuse("the ID token was issued too long ago (iat)")
        if len(claims["sub"]) > 255:
            raise self._refuse("its account id (sub) is too long")


# -- the sign-in steps both providers share ----------------------------------------------


async def exchange_and_validate(
    client: OAuthClient,
    validator: IDTokenValidator,
    code: str,
    redirect_uri: str,
    request: AuthorizationRequest,
) -> tuple[TokenResponse, dict[str, Any]]:
    """Trade the code for tokens and return them with the validated ID token's claims."""
    tokens = await client.exchange_code(code, redirect_uri, request)
    if not tokens.id_token:
        raise SignInFailed(
            f"{client.provider_name} signed you in but sent no ID token (the 'openid' scope "
            "was not granted). Tell the bot's operator: the application needs that scope.",
            "TPI_PROVIDER_MISCONFIGURED",
        )
    return tokens, await validator.validate(tokens.id_token, request.nonce)


async def fetch_userinfo(
    client: OAuthClient, url: str, access_token: str, expected_sub: str
) -> dict[str, Any]:
    """The claims of the userinfo endpoint, for the same account as the ID token (Core
    5.3.2: a different `sub` must be refused). Failures raise ProviderUnavailable."""
    response = await client.get_json(url, access_token)
    name = client.provider_name
    if response.status in (401, 403):
        # GitLab answers 403 with an empty body when the app lacks the openid scope.
        raise ProviderUnavailable(name, f"userinfo refused the token (HTTP {response.status})")
    if response.status != 200 or not isinstance(response.body, dict):
        raise ProviderUnavailable(name, f"userinfo answer unusable (HTTP {response.status})")
    if response.body.get("sub") != expected_sub:
        log.warning("%s: userinfo names another account than the ID token", name)
        raise SignInFailed(
            f"{name} described another account than the one that signed in. Nothing was "
            "recorded; start again from the invite link."
        )
    return response.body
