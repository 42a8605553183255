"""A person's walk through a binding's providers, from "Continue with GitHub" to a grant.

1. `start`: the page (signed in with a Matrix ID) asks to sign in at one provider of a
   binding. A random `state` is stored hashed with the PKCE verifier and the nonce, bound
   to the browser session and the binding, for 10 minutes; the person goes to the
   provider with the fewest scopes the binding's rules need.
2. `callback`: the provider sends the browser back to the instance's one callback URL.
   The state is taken once and only by the session that started it (a forged, replayed,
   expired or foreign state does nothing), the attempt is recorded as "checking", and the
   browser goes back to the page at once. In a task (`provider_checks.py`) the code is
   exchanged on the server, the rules of that provider are checked, the access token is
   dropped, and the outcome replaces "checking" (the page polls `progress`).
3. When every provider of the binding has passed, the grant is made: at most
   `max_matrix_ids_per_account` Matrix IDs per external account and binding (atomic),
   then the invites are queued exactly as for a link.

A provider that fails (down, slow, nonsense) is an error outcome: nothing counts and the
person may try again; it never counts as "does not qualify".
"""

from __future__ import annotations

import hashlib
import secrets

import attrs

from ..durations import now_ms
from ..errors import UserFacingError
from ..providers.base import Provider, Verdict
from ..storage import BindingAttempt, OAuthState, Storage
from .bindings import BindingService, BindingView
from .grants import GrantService, GrantSource
from .provider_checks import (
    CANCELLED,
    CHECK_DEADLINE_S,
    NOT_QUALIFIED,
    STOP_GRACE_S,
    UNKNOWN,
    KeepToken,
    ProviderChecks,
)

STATE_LIFETIME_MS = 10 * 60 * 1000
TICKET_LIFETIME_MS = 30 * 60 * 1000
# A "checking" row older than this has lost its task (the instance that ran it died).
CHECK_ABANDONED_MS = int(CHECK_DEADLINE_S * 1000) + 30 * 1000
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _well_formed(value: object, max_length: int = 128) -> bool:
    return (
        isinstance(value, str)
        and 16 <= len(value) <= max_length
        and all(c in _TOKEN_CHARS for c in value)
    )


@attrs.frozen
class CallbackResult:
    """Where the browser goes after the callback: the binding's page, or (when nothing
    about the sign-in can be trusted) the page with a problem code."""

    public_id: str | None
    problem: str | None = None


@attrs.frozen
class ProviderProgress:
    provider_id: str
    provider_name: str
    state: str  # "todo", "checking", "passed", "failed", "error"
    account: str | None = None
    reason: str = ""
    remedy: str = ""
    problem: str | None = None  # NOT_QUALIFIED, ACCOUNT_IN_USE, UNKNOWN or CANCELLED


@attrs.frozen
class BindingProgress:
    view: BindingView
    providers: tuple[ProviderProgress, ...]
    granted: int | None = None  # the grant's id


class ProviderSignIn:
    def __init__(
        self,
        storage: Storage,
        bindings: BindingService,
        grants: GrantService,
        callback_url: str,
        max_ids_per_account: int,
        keep_token: KeepToken | None = None,
    ) -> None:
        self.storage = storage
        self.bindings = bindings
        self.grants = grants
        self.callback_url = callback_url
        self.checks = ProviderChecks(
            storage, grants, callback_url, max_ids_per_account, keep_token
        )

    async def start(self, session_id: str, user_id: str, public_id: str, provider_id: str) -> str:
        """The provider's authorization URL for this person, binding and provider."""
        view = await self.bindings.get(public_id)
        provider = next((p for p in view.providers if p.id == provider_id), None)
        if provider is None:
            raise UserFacingError(
                "M_INVALID_PARAM", f"This invite does not ask for {provider_id}.", 400
            )
        state = secrets.token_urlsafe(32)
        await provider.prepare()  # e.g. OpenID discovery; ProviderUnavailable: a 502
        request = provider.authorization_request(
            view.rules_of(provider.id), self.callback_url, state
        )
        now = now_ms()
        await self.storage.signins.add_state(
            OAuthState(
                state_hash=secret_hash(state),
                session_hash=secret_hash(session_id),
                user_id=user_id,
                binding_id=view.binding.id,
                provider=provider.id,
                code_verifier=request.code_verifier,
                nonce=request.nonce,
                created_at=now,
                expires_at=now + STATE_LIFETIME_MS,
            )
        )
        return request.url

    async def callback(
        self,
        session_id: str | None,
        state: str | None,
        code: str | None,
        error: str | None,
    ) -> CallbackResult:
        """Finish a sign-in at a provider; never raises for anything the browser sent."""
        if not session_id:
            return CallbackResult(None, "session_missing")
        if not _well_formed(state):
            return CallbackResult(None, "state_invalid")
        assert isinstance(state, str)
        session_hash = secret_hash(session_id)
        taken = await self.storage.signins.take_state(secret_hash(state), session_hash)
        if taken is None:
            return CallbackResult(None, "state_invalid")
        view = await self.bindings.by_id(taken.binding_id)
        if view is None or view.binding.removed_at is not None:
            return CallbackResult(None, "binding_removed")
        public_id = view.binding.public_id
        provider = next((p for p in view.providers if p.id == taken.provider), None)
        if provider is None:
            return CallbackResult(public_id, "state_invalid")
        if taken.expires_at <= now_ms():
            took_long = Verdict.unknown(
                f"The sign-in at {provider.display_name} took too long (over 10 minutes).",
                "Try again: it takes a minute.",
            )
            await self.checks.record(session_hash, view, provider, took_long)
            return CallbackResult(public_id)
        if error or not code:
            verdict, problem = _declined(provider, error)
            await self.checks.record(session_hash, view, provider, verdict, problem=problem)
            return CallbackResult(public_id)
        # The exchange and the checks are a few calls to the provider (seconds when it is
        # slow): the browser goes back to the page now, which shows that the check runs.
        await self.checks.begin(session_hash, view, provider, code, taken)
        return CallbackResult(public_id)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        await self.checks.stop(grace)

    async def progress(self, session_id: str, user_id: str, public_id: str) -> BindingProgress:
        """Where this browser session stands with the binding's providers, and whether
        the person holds a grant from it (made by the callback of the last provider)."""
        view = await self.bindings.get(public_id)
        session_hash = secret_hash(session_id)
        grant = await self.grants.find(user_id, GrantSource(binding_id=view.binding.id))
        attempts = await self.storage.signins.attempts(session_hash, view.binding.id, now_ms())
        states = []
        for provider in view.providers:
            attempt = attempts.get(provider.id)
            if attempt is None:
                states.append(ProviderProgress(provider.id, provider.display_name, "todo"))
                continue
            if attempt.outcome == "checking" and attempt.at + CHECK_ABANDONED_MS <= now_ms():
                states.append(_abandoned(provider))
                continue
            states.append(
                ProviderProgress(
                    provider.id,
                    provider.display_name,
                    attempt.outcome,
                    attempt.display_name,
                    attempt.reason,
                    attempt.remedy,
                    _problem_of(attempt),
                )
            )
        return BindingProgress(view, tuple(states), grant)

    async def issue_ticket(self, user_id: str, view: BindingView) -> str:
        """A one-time sign-in ticket for a person whose Matrix ID is already proven (they
        sent `!invitebot claim` in a direct chat). Only its hash is kept."""
        ticket = secrets.token_urlsafe(32)
        await self.storage.signins.add_ticket(
            secret_hash(ticket), user_id, view.binding.id, now_ms() + TICKET_LIFETIME_MS
        )
        return ticket

    async def redeem_ticket(self, ticket: str) -> tuple[str, BindingView]:
        """(Matrix ID, binding) of a ticket, which works once."""
        taken = None
        if _well_formed(ticket):
            taken = await self.storage.signins.take_ticket(secret_hash(ticket), now_ms())
        view = None if taken is None else await self.bindings.by_id(taken[1])
        if taken is None or view is None:
            raise UserFacingError(
                "TPI_TICKET_INVALID",
                "This sign-in link was already used or has expired. Send the invite link to "
                "the bot again for a new one.",
                410,
            )
        return taken[0], view


def _problem_of(attempt: BindingAttempt) -> str | None:
    """The attempt's problem; rows from before schema v4 have none, so it is derived."""
    if attempt.problem is not None or attempt.outcome in ("passed", "checking"):
        return attempt.problem
    return NOT_QUALIFIED if attempt.outcome == "failed" else UNKNOWN


def _abandoned(provider: Provider) -> ProviderProgress:
    """A check whose instance died before it ended (its task is gone with it)."""
    return ProviderProgress(
        provider.id,
        provider.display_name,
        "error",
        reason=f"The check of your {provider.display_name} account did not finish.",
        remedy="Try again.",
        problem=UNKNOWN,
    )


def _declined(provider: Provider, error: str | None) -> tuple[Verdict, str]:
    if error == "access_denied":
        verdict = Verdict.unknown(
            f"You cancelled the sign-in at {provider.display_name}.",
            "Continue again when you are ready.",
        )
        return verdict, CANCELLED
    verdict = Verdict.unknown(
        f"{provider.display_name} did not complete the sign-in"
        + (f" ({error[:80]})." if error else ".")
    )
    return verdict, UNKNOWN
