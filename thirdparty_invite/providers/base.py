"""What every provider is: the small interface the services use, and its records.

A provider knows how to read a rule ("team:matrix-org/maintainers"), say it in words,
send a person to sign in with the right scopes, finish that sign-in (the code for an
external account and a short-lived way to ask about it), and check a rule for the
account. Providers know nothing about maubot, rooms or the database: the services do.

Verdicts have three values. `holds` is True or False only when the provider answered;
when it failed (down, rate limited, nonsense), `holds` is None: "unknown" never counts as
not qualifying, for a sign-in now or (later) a re-check.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from ..errors import UserFacingError
from .listing import CredentialStore, MemberListing, MemoryCredentials


class RuleError(ValueError):
    """A rule that cannot be used; the message says what is wrong, for the room admin."""


class ProviderUnavailable(UserFacingError):
    """The provider could not be asked (down, timed out, rate limited, answered nonsense).

    Nothing is recorded; the person is told to try again later."""

    def __init__(self, provider_name: str, detail: str, retry_after: float | None = None) -> None:
        # Seconds the provider asked us to wait (a rate limit), when it said.
        self.retry_after = retry_after
        self.reason = f"{provider_name} is not answering properly right now ({detail})."
        self.remedy = "Nothing was recorded: try again in a few minutes."
        super().__init__("TPI_PROVIDER_UNAVAILABLE", f"{self.reason} {self.remedy}", 502)
        self.detail = detail


class SignInFailed(UserFacingError):
    """The sign-in at the provider did not complete (denied, expired code, wrong client)."""

    def __init__(self, message: str, errcode: str = "TPI_PROVIDER_SIGNIN_FAILED") -> None:
        super().__init__(errcode, message, 400)


@attrs.frozen
class Rule:
    """One parsed rule of one provider. `text` is its canonical spelling, stored as is and
    parsed again when used, so the parsed form never needs a schema of its own."""

    provider: str  # the configured provider's id: "github", "gitlab", "oidc:staff", ...
    kind: str  # "org", "team", "tier", "group", "claim", ...
    args: tuple[str, ...]
    text: str

    @property
    def full_text(self) -> str:
        return f"{self.provider} {self.text}"


@attrs.frozen
class RuleField:
    """One blank of a rule's shape, for a rule builder: the rule's text is the shape's
    `prefix` then, for each field given a value, its `separator` and the value."""

    name: str
    label: str
    separator: str = ""
    optional: bool = False
    choices: tuple[str, ...] = ()


@attrs.frozen
class RuleShape:
    """A kind of rule a provider reads, e.g. GitHub's `team:ORG/TEAM`."""

    kind: str
    prefix: str
    usage: str
    meaning: str
    fields: tuple[RuleField, ...] = ()


@attrs.frozen
class ExternalAccount:
    """Who the person is at the provider: a stable id (never a name that can change)."""

    provider: str
    id: str
    display_name: str


@attrs.frozen
class Verdict:
    holds: bool | None  # None: the provider could not tell (never counts as a loss)
    # For the person, in their words: "you are not in team maintainers of matrix-org".
    reason: str = ""
    # What they can do about it, when there is something: a sentence, maybe with a link.
    remedy: str = ""

    @classmethod
    def yes(cls) -> Verdict:
        return cls(True)

    @classmethod
    def no(cls, reason: str, remedy: str = "") -> Verdict:
        return cls(False, reason, remedy)

    @classmethod
    def unknown(cls, reason: str, remedy: str = "Try again in a few minutes.") -> Verdict:
        return cls(None, reason, remedy)


@attrs.frozen
class AuthorizationRequest:
    """What a sign-in needs to remember between leaving for the provider and coming back
    (kept server-side with the state): the PKCE verifier and the OIDC nonce."""

    url: str
    code_verifier: str | None = None
    nonce: str | None = None


class ProviderSession(abc.ABC):
    """A finished sign-in: the account, and the means to ask the provider about it.

    It holds the person's access token only while rules are checked; `close()` revokes it
    where the provider offers revocation (dropped is not revoked), and drops it. Nothing
    of it is stored, except `refresh_token` when the operator turned on keeping refresh
    tokens for the provider (per-person re-checks): the sign-in service then seals and
    keeps it, and `close()` must leave it valid."""

    account: ExternalAccount
    # Set only by providers whose operator turned on `keep_refresh_tokens`.
    refresh_token: str | None = None

    @abc.abstractmethod
    async def check(self, rule: Rule) -> Verdict: ...

    async def close(self) -> None:  # noqa: B027 - optional: most hold nothing to release
        pass


class Provider(abc.ABC):
    """One configured provider. Subclasses set `kind` (the word in config and rules) and
    `display_name`, read their config section in `from_config`, and implement the rest."""

    kind: ClassVar[str]
    display_name: str
    # The config keys every instance of this provider needs, for `!invitebot providers`.
    required_settings: ClassVar[tuple[str, ...]] = ("client_id", "client_secret")
    # The secret the provider signs its webhook deliveries with (`webhook_secret`), on the
    # providers that send any; None: their webhook is not set up.
    webhook_secret: str | None = None

    def __init__(self, provider_id: str, display_name: str) -> None:
        self.id = provider_id
        self.display_name = display_name
        # Credentials that change at run time (refreshed listing tokens); the services
        # replace it with one kept in the plugin's database.
        self.credentials: CredentialStore = MemoryCredentials()

    @classmethod
    @abc.abstractmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> Provider:
        """Build from the provider's config section; raise ValueError naming a wrong key.
        `http` is the plugin's `OutboundHTTP`."""

    @abc.abstractmethod
    def parse_rule(self, text: str) -> Rule:
        """The rule in `text` (what follows the provider's name); raise RuleError."""

    def rule_shapes(self) -> list[RuleShape]:
        """The kinds of rule `parse_rule` reads, field by field (for the admin panel's
        rule builder; `parse_rule` stays the judge of what is valid)."""
        return []

    @abc.abstractmethod
    def describe(self, rule: Rule) -> str:
        """The rule in words, completing "Open to ...": "members of team maintainers of
        matrix-org on GitHub"."""

    @abc.abstractmethod
    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        """The fewest scopes that let every rule in `rules` be checked."""

    async def validate_rule(self, rule: Rule) -> str | None:
        """At `bind` only, after `parse_rule`: anything the provider must ask to know the
        rule can ever be checked. Raise RuleError when it cannot (a GitHub repository this
        app is not shown); return a sentence for the admin when the question could not be
        asked now (the rule is bound anyway); None when all is well. Never raises
        ProviderUnavailable."""
        return None

    async def prepare(self) -> None:  # noqa: B027 - optional: most need nothing fetched
        """Anything the provider must fetch before it can build an authorization URL (an
        OpenID Connect discovery document). The sign-in service awaits it before each
        `authorization_request`, which cannot wait for the network. Raises
        ProviderUnavailable."""

    @abc.abstractmethod
    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        """Where to send the person to sign in (with PKCE and nonce where supported).
        Called after `prepare`."""

    @abc.abstractmethod
    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> ProviderSession:
        """Exchange the code (on the server: the client secret never reaches the page) and
        identify the account. Raises SignInFailed or ProviderUnavailable."""

    # The operator turned on keeping refresh tokens (`keep_refresh_tokens`): people are
    # re-checked one by one with them, where no listing exists.
    keeps_refresh_tokens: bool = False

    async def resume(self, rules: Sequence[Rule], refresh_token: str) -> ProviderSession:
        """A session from a kept refresh token, for a per-person re-check; its
        `refresh_token` is the one to keep next (providers may rotate them). Raises
        SignInFailed when the provider no longer accepts the token (revoked, expired:
        only the person can fix that, by signing in again), ProviderUnavailable when it
        could not be asked."""
        raise SignInFailed(f"{self.display_name} keeps no refresh tokens here")

    def listing(self, rule: Rule) -> MemberListing | None:
        """Everyone who holds `rule` now, listed with credentials the operator configured
        for re-checks (see listing.py); None when this provider cannot list that rule or
        has no such credentials (its people are then not re-checked in bulk)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional: for caches or sessions held
        pass
