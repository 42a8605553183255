"""What an OpenID provider publishes, fetched and cached: its discovery document (where its
endpoints are, which algorithms it signs with) and its signing keys (JWKS).

The discovery document is kept an hour; when a refresh fails the old one serves on. The
JWKS is fetched on first use, kept a day, and fetched again when a token names an unknown
key id (rotation), at most once a minute, so a flood of made-up key ids cannot make us
hammer the provider. Both are public documents, fetched without a token within the same
bounds as every other request to the provider (oauth.ProviderHTTP).

joserfc is optional like authlib (registry.authlib_missing() gates providers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..net.http import OutboundHTTP
from .base import ProviderUnavailable
from .oauth import ProviderHTTP

try:  # optional, like authlib: without it only invite links work
    from joserfc.errors import JoseError
    from joserfc.jwk import import_key
except ImportError:  # pragma: no cover - exercised by the missing-dependency test
    import_key = None  # type: ignore[assignment]
    JoseError = Exception  # type: ignore[assignment,misc]

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
JWKS_MAX_AGE = 24 * 3600.0  # keys are fetched again after this long anyway
JWKS_MIN_REFETCH_INTERVAL = 60.0  # at most one fetch per minute for unknown key ids
MAX_KEYS = 50  # keys read from one JWKS: a real one holds a handful
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
    # The scopes it offers; None when the document does not say (the field is optional).
    scopes_supported: frozenset[str] | None = None
    revocation_endpoint: str | None = None  # RFC 7009, when it offers revocation

    def offers_scope(self, scope: str) -> bool:
        return self.scopes_supported is None or scope in self.scopes_supported

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

    def optional_endpoint(key: str) -> str | None:
        # Revocation is a courtesy: a broken entry turns it off, not the sign-ins.
        try:
            return endpoint(key, required=False)
        except ValueError:
            log.warning("discovery for %s: %s; not used", issuer, key)
            return None

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
    scopes = document.get("scopes_supported")
    if scopes is not None and not isinstance(scopes, list):
        raise ValueError("scopes_supported is not a list")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(endpoint("authorization_endpoint")),
        token_endpoint=str(endpoint("token_endpoint")),
        jwks_uri=str(endpoint("jwks_uri")),
        userinfo_endpoint=endpoint("userinfo_endpoint", required=False),
        signing_algorithms=algorithms,
        token_auth_methods=tuple(m for m in auth_methods if isinstance(m, str)),
        scopes_supported=(
            None if scopes is None else frozenset(s for s in scopes if isinstance(s, str))
        ),
        revocation_endpoint=optional_endpoint("revocation_endpoint"),
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
