"""Refresh tokens kept for per-person re-checks, and the re-check they serve.

Only for providers whose operator turned on `keep_refresh_tokens` and only when the
instance has a `rechecks.token_key`: the sign-in service keeps the refresh token of an
account that passed, sealed (sealing.py); a re-check resumes a session with it, checks
the binding's rules of that provider, and keeps the token the provider hands back (many
rotate them). A token the provider no longer accepts (the person revoked the app, or it
expired) is dropped, and that person is unknown until they sign in again: never a loss.
"""

from __future__ import annotations

import logging

import attrs

from ..durations import now_ms
from ..providers.base import Provider, ProviderSession, Rule, SignInFailed
from ..sealing import TokenVault, VaultError
from ..storage import Storage


@attrs.frozen
class PersonVerdicts:
    """What a per-person re-check found for one provider's rules of a binding."""

    reasons: dict[str, str]  # Matrix ID -> the rule (in words) no longer met
    unknown: set[str]  # Matrix IDs whose status could not be seen
    calls: int


class KeptTokens:
    def __init__(self, storage: Storage, key: bytes | None, log: logging.Logger) -> None:
        self.storage = storage
        self.vault = TokenVault(key) if key else None
        self.log = log

    def usable_for(self, provider: Provider) -> bool:
        return self.vault is not None and provider.keeps_refresh_tokens

    async def keep(self, provider: Provider, session: ProviderSession) -> None:
        """After a sign-in that passed: keep its refresh token, when this is wanted."""
        if self.vault is None or not provider.keeps_refresh_tokens or not session.refresh_token:
            return
        account = session.account.id
        sealed = self.vault.seal(provider.id, account, session.refresh_token)
        await self.storage.kept_tokens.put(provider.id, account, sealed, now_ms())

    async def recheck(
        self,
        binding_id: int,
        provider: Provider,
        rules: list[tuple[Rule, str]],
    ) -> PersonVerdicts:
        """Each seat holder of the binding at `provider`, resumed with their kept token
        and checked against `rules` (each with its words). ProviderUnavailable from the
        provider propagates: the whole re-check then stops without concluding."""
        assert self.vault is not None
        reasons: dict[str, str] = {}
        unknown: set[str] = set()
        calls = 0
        accounts: dict[str, list[str]] = {}  # one account may admit several Matrix IDs
        for holder in await self.storage.listings.seat_holders_at(binding_id, provider.id):
            accounts.setdefault(holder.external_id, []).append(holder.user_id)
        for external_id, user_ids in accounts.items():
            calls += 1
            verdict = await self._check_account(provider, external_id, rules)
            for user_id in user_ids:
                if verdict is None:
                    unknown.add(user_id)
                elif verdict:
                    reasons[user_id] = verdict
        return PersonVerdicts(reasons, unknown, calls)

    async def _check_account(
        self, provider: Provider, external_id: str, rules: list[tuple[Rule, str]]
    ) -> str | None:
        """ "" when the account still holds every rule, the first rule (in words) the
        provider says it no longer holds, or None when that cannot be seen."""
        assert self.vault is not None
        sealed = await self.storage.kept_tokens.get(provider.id, external_id)
        if sealed is None:
            return None  # signed in before tokens were kept, or the token was dropped
        try:
            token = self.vault.open(provider.id, external_id, sealed)
        except VaultError:
            self.log.warning("A kept %s token does not open (key changed?)", provider.id)
            return None
        try:
            session = await provider.resume([rule for rule, _ in rules], token)
        except SignInFailed:
            # Revoked or expired: only the person can renew it. Unknown, never a loss.
            await self.storage.kept_tokens.delete(provider.id, external_id)
            return None
        try:
            if session.account.id != external_id:
                return None  # the provider answered for someone else
            if session.refresh_token and session.refresh_token != token:
                await self.keep(provider, session)  # providers rotate them
            for rule, words in rules:
                verdict = await session.check(rule)
                if verdict.holds is False:
                    return words
                if verdict.holds is None:
                    return None
            return ""
        finally:
            await session.close()
