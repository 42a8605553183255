"""OpenID Connect sign-in steps shared by the GitLab and the generic OIDC providers: ID token
validation, the code exchange that must bring one, and userinfo.

An ID token is accepted only when every check passes (OpenID Connect Core 3.1.3.7): signed
with a public-key algorithm the provider advertises (never `none`, never HS*: a public key
used as an HMAC secret would let anyone sign) by a key of the provider's JWKS
(oidc_discovery.JWKSCache), issued by the configured issuer for our client (`aud`; `azp`
when there are several audiences), not expired, not issued in the future or long ago,
with the nonce this sign-in sent. Any failure is a `SignInFailed`: nothing is recorded.

joserfc is optional like authlib (registry.authlib_missing() gates providers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import hmac
import logging
import time
from typing import Any

from .base import AuthorizationRequest, ProviderUnavailable, SignInFailed
from .oauth import OAuthClient, TokenResponse
from .oidc_discovery import KEY_TYPE_OF_ALGORITHM, JWKSCache, SigningKey

try:  # optional, like authlib: without it only invite links work
    from joserfc import jws, jwt
    from joserfc.errors import (
        BadSignatureError,
        ClaimError,
        ExpiredTokenError,
        JoseError,
        MissingClaimError,
    )
except ImportError:  # pragma: no cover - exercised by the missing-dependency test
    jws = jwt = None  # type: ignore[assignment]
    JoseError = ClaimError = BadSignatureError = ExpiredTokenError = Exception  # type: ignore[assignment,misc]
    MissingClaimError = Exception  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

LEEWAY = 120  # seconds of clock skew tolerated on exp, nbf and iat
MAX_TOKEN_AGE = 3600  # an ID token fresh from the token endpoint is never older than this
BAD_ID_TOKEN = "TPI_PROVIDER_BAD_ID_TOKEN"


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
