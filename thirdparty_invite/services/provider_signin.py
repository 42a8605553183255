"""A person's walk through a binding's providers, from "Continue with GitHub" to a grant.

1. `start`: the page (signed in with a Matrix ID) asks to sign in at one provider of a
   binding. A random `state` is stored hashed with the PKCE verifier and the nonce, bound
   to the browser session and the binding, for 10 minutes; the person goes to the
   provider with the fewest scopes the binding's rules need.
2. `callback`: the provider sends the browser back to the instance's one callback URL.
   The state is taken once and only by the session that started it (a forged, replayed,
   expired or foreign state does nothing). The code is exchanged on the server, the
   rules of that provider are checked, the access token is dropped, and the outcome is
   kept for this session and binding.
3. When every provider of the binding has passed, the grant is made: at most
   `max_matrix_ids_per_account` Matrix IDs per external account and binding (atomic),
   then the invites are queued exactly as for a link.

A provider that fails (down, slow, nonsense) is an error outcome: nothing is recorded and
the person may try again; it never counts as "does not qualify".
"""

from __future__ import annotations

import hashlib
import logging
import secrets

import attrs
from mautrix.util.async_db import Connection

from ..durations import now_ms
from ..errors import UserFacingError
from ..providers.base import (
    AuthorizationRequest,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    Verdict,
)
from ..storage import BindingAttempt, OAuthState, Storage
from .bindings import BindingService, BindingView
from .grants import Grant, GrantService, GrantSource

STATE_LIFETIME_MS = 10 * 60 * 1000
ATTEMPT_LIFETIME_MS = 30 * 60 * 1000  # time to finish the other providers of a binding
TICKET_LIFETIME_MS = 30 * 60 * 1000
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

log = logging.getLogger(__name__)


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
    state: str  # "todo", "passed", "failed", "error"
    account: str | None = None
    reason: str = ""
    remedy: str = ""


@attrs.frozen
class BindingProgress:
    view: BindingView
    providers: tuple[ProviderProgress, ...]
    granted: int | None = None  # the grant's id


class AccountInUse(UserFacingError):
    def __init__(self, provider: Provider, max_ids: int) -> None:
        self.provider = provider
        many = "one Matrix account" if max_ids == 1 else f"{max_ids} Matrix accounts"
        name = provider.display_name
        # Which Matrix account holds the seat is not said: it is someone else's.
        self.verdict = Verdict.no(
            f"This {name} account has already been used to join with another Matrix "
            f"account, and each {name} account admits {many} here.",
            "Sign in with the Matrix account you used before, or ask a room admin.",
        )
        message = f"{self.verdict.reason} {self.verdict.remedy}"
        super().__init__("TPI_ACCOUNT_IN_USE", message, 409)


class ProviderSignIn:
    def __init__(
        self,
        storage: Storage,
        bindings: BindingService,
        grants: GrantService,
        callback_url: str,
        max_ids_per_account: int,
    ) -> None:
        self.storage = storage
        self.bindings = bindings
        self.grants = grants
        self.callback_url = callback_url
        self.max_ids = max_ids_per_account

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
            await self._record(
                session_hash,
                view,
                provider,
                Verdict.unknown(
                    f"The sign-in at {provider.display_name} took too long (over 10 minutes).",
                    "Try again: it takes a minute.",
                ),
                None,
            )
            return CallbackResult(public_id)
        if error or not code:
            await self._record(session_hash, view, provider, _declined(provider, error), None)
            return CallbackResult(public_id)
        verdict, account = await self._check(provider, view, code, taken)
        await self._record(session_hash, view, provider, verdict, account)
        if verdict.holds:
            await self._grant_when_complete(session_hash, taken.user_id, view)
        return CallbackResult(public_id)

    async def _check(
        self, provider: Provider, view: BindingView, code: str, state: OAuthState
    ) -> tuple[Verdict, tuple[str, str] | None]:
        rules = view.rules_of(provider.id)
        request = AuthorizationRequest(
            url="", code_verifier=state.code_verifier, nonce=state.nonce
        )
        session: ProviderSession | None = None
        try:
            session = await provider.finish(rules, code, self.callback_url, request)
            account = (session.account.id, session.account.display_name)
            for rule in rules:
                verdict = await session.check(rule)
                if not verdict.holds:
                    return verdict, account
            return Verdict.yes(), account
        except ProviderUnavailable as e:
            return Verdict.unknown(e.reason, e.remedy), None
        except UserFacingError as e:
            # SignInFailed (declined, expired code, a bad ID token): its message says what
            # to do. Nothing counts.
            return Verdict.unknown(e.message, ""), None
        finally:
            if session is not None:
                await session.close()  # the access token goes no further

    async def _record(
        self,
        session_hash: str,
        view: BindingView,
        provider: Provider,
        verdict: Verdict,
        account: tuple[str, str] | None,
    ) -> None:
        outcome = {True: "passed", False: "failed", None: "error"}[verdict.holds]
        now = now_ms()
        await self.storage.signins.record_attempt(
            BindingAttempt(
                session_hash=session_hash,
                binding_id=view.binding.id,
                provider=provider.id,
                outcome=outcome,
                external_id=account[0] if account else None,
                display_name=account[1] if account else None,
                reason=verdict.reason,
                remedy=verdict.remedy,
                at=now,
                expires_at=now + ATTEMPT_LIFETIME_MS,
            )
        )

    async def _grant_when_complete(
        self, session_hash: str, user_id: str, view: BindingView
    ) -> Grant | None:
        attempts = await self.storage.signins.attempts(session_hash, view.binding.id, now_ms())
        passed = [attempts.get(p.id) for p in view.providers]
        if not all(a is not None and a.outcome == "passed" for a in passed):
            return None
        accounts = [(p, a.external_id) for p, a in zip(view.providers, passed, strict=True) if a]

        async def take_account_slots(conn: Connection, now: int) -> None:
            for provider, external_id in accounts:
                assert external_id is not None
                if not await self.storage.signins.take_account_slot(
                    conn, view.binding.id, provider.id, external_id, user_id, self.max_ids, now
                ):
                    raise AccountInUse(provider, self.max_ids)

        source = GrantSource(
            binding_id=view.binding.id,
            external_id=" ".join(f"{p.id}:{external_id}" for p, external_id in accounts),
        )
        try:
            return await self.grants.grant(user_id, view.binding.rooms, source, take_account_slots)
        except AccountInUse as e:
            await self._record(session_hash, view, e.provider, e.verdict, None)
            return None

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
            states.append(
                ProviderProgress(
                    provider.id,
                    provider.display_name,
                    attempt.outcome,
                    attempt.display_name,
                    attempt.reason,
                    attempt.remedy,
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


def _declined(provider: Provider, error: str | None) -> Verdict:
    if error == "access_denied":
        return Verdict.unknown(
            f"You cancelled the sign-in at {provider.display_name}.",
            "Continue again when you are ready.",
        )
    return Verdict.unknown(
        f"{provider.display_name} did not complete the sign-in"
        + (f" ({error[:80]})." if error else ".")
    )
