"""Any OpenID Connect provider (Keycloak, Authentik, Authelia, Kanidm, Google, ...), each
configured under `providers.oidc.<id>`; rules match claims: `groups:staff`,
`email:*@example.org`, `email_verified:true`.

Config (base-config.yaml documents it for operators):

    issuer: https://sso.example.org/realms/main   # discovery at <issuer>/.well-known/...
    client_id: ...
    client_secret: ...
    name: Our Keycloak          # shown to people; default: the id
    scopes: [profile]           # asked for on every sign-in besides openid
    claims:                     # the words rules may use; these are the defaults
      groups: {claim: groups, scope: groups}
      email: {claim: email, scope: email, ignore_case: true}
      email_verified: {claim: email_verified, scope: email}
      sub: {claim: sub}
    userinfo: auto              # auto | true | false
    token_auth: ...             # client_secret_basic | client_secret_post; default: what
                                # discovery offers, Basic first (the spec's default)
    require_verified_email: true   # email rules need email_verified, a real boolean true
    keep_refresh_tokens: false     # keep people's refresh tokens for per-person re-checks

`claims` maps a rule's word to the claim it reads (a dotted name reaches into objects:
`realm_access.roles`) and the scope that releases it, asked for only when a rule of the
sign-in uses that word: `groups: {claim: roles, scope: ""}` makes `groups:staff` read
`roles`; `department: {claim: department}` adds a word; `sub: null` removes one. With
`userinfo: auto` a claim missing from the ID token is looked up once at the userinfo
endpoint (Authelia and GitLab put groups only there); `true` always reads it, `false`
never.

A scope the discovery document does not list in `scopes_supported` is never asked for:
Keycloak refuses the whole sign-in (invalid_scope) for one it does not offer, and has no
`groups` scope; its groups come from a "Group Membership" mapper on the client's
dedicated scope, released without asking (the README says how to set it up).

Matching (oidc_claims): a list claim holds when one element matches, a value with *, ?
or [ is a glob, `email` compares without case. An `email` rule holds only for an address
the provider calls verified (`email_verified: true`, a boolean) unless the operator sets
`require_verified_email: false`; oidc_session.py says what is unknown rather than "no".

The account is the ID token's `sub` (unique per issuer); its display name comes from
`name`, `preferred_username` or `email`.

Re-checks: an OpenID provider has no member list. With `keep_refresh_tokens: true` (and the
instance's `rechecks.token_key`) the sign-in asks for `offline_access` too (when offered;
with `prompt=consent`, which OpenID Connect Core 11 requires for it), the refresh token is
kept sealed by the services, and `resume` gets fresh tokens with it for a per-person
re-check: the refreshed ID token (or, without one, userinfo) names the account. The access
token is then not revoked after the checks: RFC 7009 lets a provider revoke the refresh
token with it (oidc-provider revokes the whole grant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import logging
from typing import Any

import attrs

from .base import (
    AuthorizationRequest,
    ExternalAccount,
    Provider,
    ProviderUnavailable,
    Rule,
    RuleError,
    RuleField,
    RuleShape,
    SignInFailed,
)
from .oauth import OAuthClient, OAuthEndpoints, TokenResponse
from .oidc_claims import SCOPE, is_glob, read_claims
from .oidc_discovery import JWKSCache, ProviderDiscovery, ProviderMetadata
from .oidc_session import OIDCSession
from .oidc_tokens import IDTokenValidator, exchange_and_validate
from .revocations import BackgroundRevocations
from .settings import refuse_unknown_settings, text_setting, url_setting

log = logging.getLogger(__name__)

SETTINGS = tuple(
    "name issuer client_id client_secret scopes claims userinfo token_auth "
    "require_verified_email keep_refresh_tokens".split()
)
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
MAX_VALUE_LENGTH = 256


def _read_scopes(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ("profile",)
    if not isinstance(raw, list) or not all(
        isinstance(s, str) and SCOPE.fullmatch(s) for s in raw
    ):
        raise ValueError("scopes: must be a list of scope names, such as [profile, email]")
    return tuple(dict.fromkeys(s for s in raw if s != "openid"))


def _read_userinfo(raw: Any) -> bool | None:
    if raw is None or raw == "auto":
        return None
    if not isinstance(raw, bool):
        raise ValueError("userinfo: must be auto, true or false")
    return raw


@attrs.frozen
class _Machinery:
    """What one discovery document gives: the OAuth client and the ID token validator."""

    metadata: ProviderMetadata
    client: OAuthClient
    validator: IDTokenValidator


class OIDCProvider(Provider):
    kind = "oidc"

    def __init__(self, provider_id: str, section: Mapping[str, Any], http: Any) -> None:
        refuse_unknown_settings(section, SETTINGS)
        super().__init__(provider_id, text_setting(section, "name", provider_id))
        # Exactly as configured: the ID tokens' iss must equal it.
        self.issuer = url_setting(section, "issuer", exact=True)
        self.client_id = text_setting(section, "client_id")
        self._client_secret = text_setting(section, "client_secret")
        self.extra_scopes = _read_scopes(section.get("scopes"))
        self.claims = read_claims(section.get("claims"))
        self.userinfo = _read_userinfo(section.get("userinfo"))
        # email rules admit an address only when email_verified is a real boolean true.
        self.require_verified_email = section.get("require_verified_email", True)
        if not isinstance(self.require_verified_email, bool):
            raise ValueError("require_verified_email: must be true or false")
        self.keeps_refresh_tokens = section.get("keep_refresh_tokens", False)
        if not isinstance(self.keeps_refresh_tokens, bool):
            raise ValueError("keep_refresh_tokens: must be true or false")
        self.token_auth = section.get("token_auth")
        if self.token_auth not in (None, *TOKEN_AUTH_METHODS):
            raise ValueError(f"token_auth: must be one of {', '.join(TOKEN_AUTH_METHODS)}")
        self.http = http
        self.discovery = ProviderDiscovery(self.display_name, self.issuer, http)
        self._machinery: _Machinery | None = None
        self._dropped_scopes_logged: set[str] = set()
        self.revocations = BackgroundRevocations()

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> OIDCProvider:
        return cls(provider_id, section, http)

    # -- rules -----------------------------------------------------------------------------

    def parse_rule(self, text: str) -> Rule:
        word, colon, value = text.strip().partition(":")
        word = word.strip().lower()
        words = ", ".join(sorted(self.claims))
        if not colon or not word:
            raise RuleError(f"a rule for {self.display_name} is CLAIM:VALUE, e.g. groups:staff")
        if word not in self.claims:
            raise RuleError(
                f"{self.display_name} rules may use {words}, not {word!r} (the operator can "
                "add claims in the config)"
            )
        if not 0 < len(value) <= MAX_VALUE_LENGTH or any(
            c.isspace() or not c.isprintable() for c in value
        ):
            raise RuleError(
                "the value after ':' must be 1 to 256 characters, no spaces (? for one)"
            )
        if self.claims[word].claim == "email_verified":
            if value.lower() not in ("true", "false"):
                raise RuleError("email_verified is true or false")
            value = value.lower()
        return Rule(self.id, "claim", (word, value), f"{word}:{value}")

    def rule_shapes(self) -> list[RuleShape]:
        return [
            RuleShape(
                word,
                f"{word}:",
                f"{word}:VALUE",
                "true or false"
                if self.claims[word].claim == "email_verified"
                else "the claim's value; * and ? match any characters",
                (RuleField("value", "Value"),),
            )
            for word in sorted(self.claims)
        ]

    def describe(self, rule: Rule) -> str:
        word, value = rule.args
        at = f"at {self.display_name}"
        verb = "matches" if is_glob(value) else "is"
        if word == "groups":
            return f"members of group{'s matching' if is_glob(value) else ''} {value} {at}"
        if word == "email":
            return f"people whose email address {at} {verb} {value}"
        if word == "email_verified":
            verified = "a verified" if value == "true" else "an unverified"
            return f"people with {verified} email address {at}"
        return f"people whose {word} {at} {verb} {value}"

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        """The scopes the rules' claims need, before the provider's own say (see
        `requested_scopes`)."""
        scopes = ["openid", *self.extra_scopes]
        if self.keeps_refresh_tokens and "offline_access" not in scopes:
            scopes.append("offline_access")
        for rule in rules:
            spec = self.claims.get(rule.args[0]) if rule.provider == self.id else None
            if spec is not None and spec.scope and spec.scope not in scopes:
                scopes.append(spec.scope)
        return scopes

    def requested_scopes(self, rules: Sequence[Rule], metadata: ProviderMetadata) -> list[str]:
        """`scopes` less any the provider does not list in `scopes_supported`: Keycloak
        refuses a sign-in that asks for one (invalid_scope). A claim whose scope is not
        offered must come without it (a Keycloak mapper on the client's dedicated scope)."""
        wanted = self.scopes(rules)
        offered = [s for s in wanted if s == "openid" or metadata.offers_scope(s)]
        dropped = set(wanted) - set(offered) - self._dropped_scopes_logged
        if dropped:
            self._dropped_scopes_logged |= dropped
            log.info(
                "%s: not asking for %s: the provider does not offer it (scopes_supported)",
                self.display_name,
                ", ".join(sorted(dropped)),
            )
        return offered

    # -- discovery -------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Read the discovery document (cached for an hour; a stale one is read again, and
        serves on when that fails), which `authorization_request` builds the URL from.
        Raises ProviderUnavailable."""
        await self._ready()

    async def close(self) -> None:
        await self.revocations.done()  # tokens still being revoked

    async def _ready(self) -> _Machinery:
        return self._machinery_for(await self.discovery.get())

    def _machinery_for(self, metadata: ProviderMetadata) -> _Machinery:
        built = self._machinery
        if built is not None and built.metadata == metadata:
            return built
        if built is not None and built.metadata.jwks_uri == metadata.jwks_uri:
            jwks = built.validator.jwks  # keep the keys across a refreshed document
        else:
            jwks = JWKSCache(self.display_name, metadata.jwks_uri, self.http)
        endpoints = OAuthEndpoints(
            authorize_url=metadata.authorization_endpoint,
            token_url=metadata.token_endpoint,
            token_auth=self.token_auth or metadata.token_auth,
        )
        client = OAuthClient(
            self.display_name, self.client_id, self._client_secret, endpoints, self.http
        )
        validator = IDTokenValidator(
            self.display_name, self.issuer, self.client_id, jwks, metadata.signing_algorithms
        )
        self._machinery = _Machinery(metadata, client, validator)
        return self._machinery

    # -- sign-in ---------------------------------------------------------------------------

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        metadata = self.discovery.cached
        if metadata is None:  # prepare() was not awaited, or could not read it
            raise ProviderUnavailable(self.display_name, "its discovery document is not read yet")
        client = self._machinery_for(metadata).client
        scopes = self.requested_scopes(rules, metadata)
        # OpenID Connect Core 11: offline access needs the consent prompt.
        extra = {"prompt": "consent"} if "offline_access" in scopes else None
        return client.authorization_request(redirect_uri, scopes, state, nonce=True, extra=extra)

    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> OIDCSession:
        machinery = await self._ready()
        tokens, claims = await exchange_and_validate(
            machinery.client, machinery.validator, code, redirect_uri, request
        )
        return await self._session(machinery, tokens, claims)

    async def resume(self, rules: Sequence[Rule], refresh_token: str) -> OIDCSession:
        """A session from a kept refresh token (see the module's docstring)."""
        if not self.keeps_refresh_tokens:
            raise SignInFailed(f"{self.display_name} keeps no refresh tokens here")
        machinery = await self._ready()
        tokens = await machinery.client.refresh(refresh_token)
        if tokens.id_token:  # a refreshed ID token has no nonce (Core 12.2)
            claims = await machinery.validator.validate(tokens.id_token, None)
        else:
            url = machinery.metadata.userinfo_endpoint
            if url is None:
                raise ProviderUnavailable(self.display_name, "it named no account on refresh")
            response = await machinery.client.get_json(url, tokens.access_token)
            claims = response.body if response.status == 200 else None
            if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
                raise ProviderUnavailable(self.display_name, "userinfo named no account")
        session = await self._session(machinery, tokens, claims)
        session.refresh_token = session.refresh_token or refresh_token  # not rotated
        return session

    async def _session(
        self, machinery: _Machinery, tokens: TokenResponse, claims: dict[str, Any]
    ) -> OIDCSession:
        display = claims.get("name") or claims.get("preferred_username") or claims.get("email")
        account = ExternalAccount(self.id, claims["sub"], str(display or claims["sub"])[:200])
        session = OIDCSession(self, machinery, account, tokens, claims)
        if self.keeps_refresh_tokens:
            kept = tokens.raw.get("refresh_token")
            session.refresh_token = kept if isinstance(kept, str) and kept else None
        if self.userinfo is True:
            await session.load_userinfo()
        return session
