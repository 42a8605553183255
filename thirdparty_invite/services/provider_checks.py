"""The background half of a provider's callback: exchange the code, check the rules of that
provider with the person's token, drop the token, and settle the outcome (granting when it
was the last yes the binding needed).

The callback records the attempt as "checking" and sends the browser back to the page at
once (a slow provider would otherwise hold it on a blank page for up to 10 s); the page
polls until the outcome replaces it. Whatever happens to a check, "checking" is replaced:
a provider that is down, slow or answers nonsense, a check past its deadline, a bug, or a
stop (restart, config change) each end as an unknown outcome that counts for nothing and
says to try again. A row whose instance died is read as abandoned (`ProviderSignIn`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
import logging
from typing import Any

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
from .bindings import BindingView
from .grants import GrantService, GrantSource

ATTEMPT_LIFETIME_MS = 30 * 60 * 1000  # time to finish the other providers of a binding
# A check is a few provider calls of at most 10 s each: past this it ends as unknown.
CHECK_DEADLINE_S = 60.0
STOP_GRACE_S = 5.0  # on stop, running checks may finish for this long, then are cancelled

# Why a provider step did not pass (binding_attempts.problem), so the page can word each
# kind apart.
NOT_QUALIFIED = "not_qualified"  # the provider said no
ACCOUNT_IN_USE = "account_in_use"  # the account's Matrix IDs for this binding are spent
UNKNOWN = "unknown"  # the provider could not tell (or the check broke): nothing counts
CANCELLED = "cancelled"  # the person declined at the provider

log = logging.getLogger(__name__)


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


# Keeps a passed session's refresh token for per-person re-checks (KeptTokens.keep).
KeepToken = Callable[[Provider, ProviderSession], Awaitable[None]]


class ProviderChecks:
    """Runs the checks of callbacks as tasks it tracks, and records every outcome."""

    def __init__(
        self,
        storage: Storage,
        grants: GrantService,
        callback_url: str,
        max_ids: int,
        keep_token: KeepToken | None = None,
    ) -> None:
        self.storage = storage
        self.grants = grants
        self.callback_url = callback_url
        self.max_ids = max_ids
        self.keep_token = keep_token
        self._checks: set[asyncio.Task[None]] = set()
        self.stopped = False

    async def begin(
        self,
        session_hash: str,
        view: BindingView,
        provider: Provider,
        code: str,
        state: OAuthState,
    ) -> None:
        """Record the attempt as "checking" and start its check; returns at once."""
        if self.stopped:  # a request that reached services being replaced
            restarting = Verdict.unknown("The bot was restarting.", "Try again.")
            await self.record(session_hash, view, provider, restarting)
            return
        checking = self._attempt(session_hash, view, provider, "checking", None, Verdict(None))
        await self.storage.signins.record_attempt(checking)
        self._run(self._check_and_settle(session_hash, view, provider, code, state))

    def _run(self, check: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(check)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Let running checks finish for `grace` seconds, then cancel the rest (each
        records an error outcome: the person tries again)."""
        self.stopped = True
        if not self._checks:
            return
        _, running = await asyncio.wait(set(self._checks), timeout=grace)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=grace)

    async def _check_and_settle(
        self,
        session_hash: str,
        view: BindingView,
        provider: Provider,
        code: str,
        state: OAuthState,
    ) -> None:
        """The background half of the callback: whatever happens, "checking" is replaced."""
        name = provider.display_name
        try:
            try:
                verdict, account = await asyncio.wait_for(
                    self._check(provider, view, code, state), CHECK_DEADLINE_S
                )
            except asyncio.TimeoutError:
                verdict = Verdict.unknown(f"{name} took too long to answer.")
                account = None
            await self._settle(session_hash, state.user_id, view, provider, verdict, account)
        except asyncio.CancelledError:
            stopped = Verdict.unknown(
                f"The bot was restarted while it checked your {name} account.", "Try again."
            )
            await self._record_safely(session_hash, view, provider, stopped)
            raise
        except Exception:
            log.exception("The check at %s failed", provider.id)
            broken = Verdict.unknown(
                f"Something went wrong on our side while checking your {name} account."
            )
            await self._record_safely(session_hash, view, provider, broken)

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
            if self.keep_token is not None:
                await self.keep_token(provider, session)  # only where the operator keeps them
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

    async def _settle(
        self,
        session_hash: str,
        user_id: str,
        view: BindingView,
        provider: Provider,
        verdict: Verdict,
        account: tuple[str, str] | None,
    ) -> None:
        """Record what the provider said. A yes that completes the binding grants first,
        so the page never sees every provider passed without the grant."""
        attempt = self._attempt(
            session_hash, view, provider, _outcome(verdict), account, verdict, _problem(verdict)
        )
        refusal = None
        if verdict.holds:
            refusal = await self._grant_when_complete(session_hash, user_id, view, attempt)
        if refusal is not None:
            await self.storage.signins.record_attempt(refusal)
        if refusal is None or refusal.provider != attempt.provider:
            await self.storage.signins.record_attempt(attempt)

    def _attempt(
        self,
        session_hash: str,
        view: BindingView,
        provider: Provider,
        outcome: str,
        account: tuple[str, str] | None,
        verdict: Verdict,
        problem: str | None = None,
    ) -> BindingAttempt:
        now = now_ms()
        return BindingAttempt(
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
            problem=problem,
        )

    async def record(
        self,
        session_hash: str,
        view: BindingView,
        provider: Provider,
        verdict: Verdict,
        account: tuple[str, str] | None = None,
        problem: str | None = None,
    ) -> None:
        await self.storage.signins.record_attempt(
            self._attempt(
                session_hash,
                view,
                provider,
                _outcome(verdict),
                account,
                verdict,
                problem or _problem(verdict),
            )
        )

    async def _record_safely(
        self, session_hash: str, view: BindingView, provider: Provider, verdict: Verdict
    ) -> None:
        try:
            await self.record(session_hash, view, provider, verdict)
        except Exception:  # the database is gone too: the row is abandoned, and read so
            log.exception("Could not record the end of a check at %s", provider.id)

    async def _grant_when_complete(
        self, session_hash: str, user_id: str, view: BindingView, current: BindingAttempt
    ) -> BindingAttempt | None:
        """Grant when `current` (a pass) completes the binding; the refusal to record
        instead when an account's Matrix IDs for this binding are spent."""
        if not user_id:  # no Matrix account yet: the registration service grants later
            return None
        attempts = await self.storage.signins.attempts(session_hash, view.binding.id, now_ms())
        attempts[current.provider] = current
        passed = [attempts.get(p.id) for p in view.providers]
        if not all(a is not None and a.outcome == "passed" for a in passed):
            return None
        accounts = [(p, a) for p, a in zip(view.providers, passed, strict=True) if a]

        async def take_account_slots(conn: Connection, now: int) -> None:
            for provider, attempt in accounts:
                assert attempt.external_id is not None
                if not await self.storage.signins.take_account_slot(
                    conn,
                    view.binding.id,
                    provider.id,
                    attempt.external_id,
                    user_id,
                    self.max_ids,
                    now,
                    attempt.display_name,
                ):
                    raise AccountInUse(provider, self.max_ids)

        source = GrantSource(
            binding_id=view.binding.id,
            external_id=" ".join(f"{p.id}:{a.external_id}" for p, a in accounts),
        )
        try:
            await self.grants.grant(user_id, view.binding.rooms, source, take_account_slots)
        except AccountInUse as e:
            return self._attempt(
                session_hash, view, e.provider, "failed", None, e.verdict, ACCOUNT_IN_USE
            )
        return None


def _outcome(verdict: Verdict) -> str:
    return {True: "passed", False: "failed", None: "error"}[verdict.holds]


def _problem(verdict: Verdict) -> str | None:
    return {True: None, False: NOT_QUALIFIED, None: UNKNOWN}[verdict.holds]
