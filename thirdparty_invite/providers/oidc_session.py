"""A finished OpenID Connect sign-in: its claims, checked against the rules, and the access
token revoked at the provider's `revocation_endpoint` (when discovery names one) once the
rules are checked, in the background (revocations.py), unless the operator keeps refresh
tokens (`keep_refresh_tokens`).

What is "unknown" rather than "no" (a wrong "no" becomes a wrong kick once re-checks act):

* a claim the person did not allow (a scope asked for and not granted);
* Microsoft Entra's group overage: with more groups than fit in a token, Entra leaves the
  `groups` claim out and says so with `_claim_names` (a distributed claim) or
  `hasgroups: true`; the groups are then only in Microsoft Graph, which the plugin does
  not read. The operator's remedy: filter the groups claim to the groups assigned to the
  application, or use app roles;
* an `email` rule when the provider does not say, as a real boolean, that the address is
  verified (`email_verified`; a string "true" is not a boolean), unless the operator set
  `require_verified_email: false`. An address the provider says is unverified is a "no".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    ExternalAccount,
    ProviderSession,
    ProviderUnavailable,
    Rule,
    SignInFailed,
    Verdict,
)
from .oauth import TokenResponse
from .oidc_claims import MISSING, ClaimSpec, claim_matches, group_overage, lookup_claim
from .oidc_tokens import fetch_userinfo

if TYPE_CHECKING:
    from .oidc import OIDCProvider, _Machinery

# Claims the protocol owns: userinfo never overrides them.
PROTOCOL_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "auth_time"}
)


class OIDCSession(ProviderSession):
    def __init__(
        self,
        provider: OIDCProvider,
        machinery: _Machinery,
        account: ExternalAccount,
        tokens: TokenResponse,
        claims: dict[str, Any],
    ) -> None:
        self.provider = provider
        self.machinery = machinery
        self.account = account
        self._tokens: TokenResponse | None = tokens
        self.claims = claims
        self._userinfo_loaded = False

    async def close(self) -> None:
        """Revoke the access token where the provider offers it (RFC 7009), and drop it;
        not when the refresh token is kept, which the revocation may take with it."""
        tokens, self._tokens = self._tokens, None
        url = self.machinery.metadata.revocation_endpoint
        if tokens is not None and url is not None and not self.provider.keeps_refresh_tokens:
            self.provider.revocations.revoke_later(self.machinery.client, url, tokens.access_token)

    async def load_userinfo(self) -> None:
        """Merge the userinfo endpoint's claims over the ID token's (once)."""
        url = self.machinery.metadata.userinfo_endpoint
        if self._userinfo_loaded or url is None or self._tokens is None:
            return
        userinfo = await fetch_userinfo(
            self.machinery.client, url, self._tokens.access_token, self.account.id
        )
        self._userinfo_loaded = True
        for name, value in userinfo.items():
            if name not in PROTOCOL_CLAIMS:
                self.claims[name] = value

    async def _claim(self, claim: str) -> Any:
        """The claim, looked up at the userinfo endpoint when the ID token lacks it and
        `userinfo` is auto; MISSING when neither has it. Raises ProviderUnavailable or
        SignInFailed (userinfo described another account)."""
        value = lookup_claim(self.claims, claim)
        if value is MISSING and self.provider.userinfo is None:
            await self.load_userinfo()
            value = lookup_claim(self.claims, claim)
        return value

    async def check(self, rule: Rule) -> Verdict:
        word, wanted = rule.args
        name = self.provider.display_name
        spec = self.provider.claims.get(word)
        if spec is None:
            return Verdict.unknown(f"the rule's claim {word!r} is no longer configured")
        try:
            value = await self._claim(spec.claim)
            verified = None
            if spec.claim == "email" and self.provider.require_verified_email:
                verified = await self._claim("email_verified")
        except ProviderUnavailable as e:
            return Verdict.unknown(f"{name} could not tell ({e.detail})")
        except SignInFailed as e:  # userinfo described another account
            return Verdict.unknown(e.message, "Start again from the invite link.")
        if value is MISSING:
            return self._missing(word, spec)
        if spec.claim == "email" and self.provider.require_verified_email:
            if verified is False:
                return Verdict.no(
                    f"your email address at {name} is not verified",
                    f"Verify it at {name}, then try again.",
                )
            if verified is not True:
                return self._verification_unknown()
        if spec.claim == "email_verified" and not isinstance(value, bool):
            return self._verification_unknown()
        if claim_matches(value, wanted, spec.ignore_case):
            return Verdict.yes()
        if word == "groups":
            return Verdict.no(
                f"you are not in group {wanted} at {name}",
                f"If you should be, ask whoever manages the groups at {name} to add you, "
                "then try again.",
            )
        if word == "email":
            return Verdict.no(f"your email address at {name} ({value}) does not match {wanted}")
        return Verdict.no(f"your {word} at {name} is not {wanted}")

    def _verification_unknown(self) -> Verdict:
        name = self.provider.display_name
        return Verdict.unknown(
            f"{name} did not say whether your email address is verified",
            f"Tell the bot's operator: {name} must release email_verified (true or false) "
            "to this application, or the operator may set require_verified_email: false.",
        )

    def _missing(self, word: str, spec: ClaimSpec) -> Verdict:
        name = self.provider.display_name
        if group_overage(self.claims, spec.claim):
            return Verdict.unknown(
                f"{name} did not send your groups: you are in more than fit in a sign-in "
                "(group overage)",
                "Tell the bot's operator: in Microsoft Entra, set the application's groups "
                "claim to the groups assigned to the application (or use app roles), so "
                "that the groups fit.",
            )
        granted = self._tokens.granted_scopes if self._tokens else None
        if spec.claim == "email_verified" and (
            granted is None or not spec.scope or spec.scope in granted
        ):
            return self._verification_unknown()
        asked = spec.scope and self.machinery.metadata.offers_scope(spec.scope)
        if asked and granted is not None and spec.scope not in granted:
            return Verdict.unknown(
                f"you did not allow {name} to share your {word}",
                "Sign in again and allow it.",
            )
        return Verdict.no(
            f"{name} shared no {word} for your account",
            f"If you should qualify, tell the bot's operator: {name} may not release the "
            f"{spec.claim!r} claim to this application.",
        )
