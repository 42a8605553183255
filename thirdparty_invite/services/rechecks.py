"""Re-checks: whether the people a binding admitted still qualify, and acting on it.

A worker beside the invite queue takes due bindings from the schedule under a lease
(storage/rechecks.py), one at a time, and walks the member listing of every rule whose
provider can list it (providers/listing.py), page by page: each page's admitted accounts
are marked in the database, so nothing of the size of the provider's membership stays in
memory. Only when every listing was read completely does it conclude anything: seat
holders a listing did not show no longer qualify (LossPolicy then applies the binding's
policy), the others still do.

Nothing that could not be seen is a loss: a provider that fails, times out or rate limits
ends the attempt with nothing concluded (it resumes at the same page later, after the
provider's wait or a back-off); a listing much shorter than the last complete one stops
the re-check and tells the admins; rules whose provider cannot list them are left out
(they are "unknown", never "no").
"""

from __future__ import annotations

from collections.abc import Iterable
import logging
import random
import secrets

import attrs

from ..config import RecheckSettings
from ..durations import now_ms
from ..providers.base import Provider, ProviderUnavailable, Rule
from ..storage import RecheckState, Storage
from . import recheck_texts as texts
from .bindings import BindingService, BindingView, DescribedRule
from .kept_tokens import KeptTokens, PersonVerdicts
from .loss_policy import LossPolicy
from .poll_loop import PollLoop

LEASE_MS = 5 * 60 * 1000  # renewed with every page; lapses if this instance dies
STOP_GRACE_S = 10.0  # a provider request in flight may take that long
MAX_BACKOFF_MS = 6 * 3600 * 1000
_IDLE_POLL = 60.0


@attrs.frozen
class RecheckOutcome:
    outcome: str  # "ok", "incomplete", "shrunk", "not_listable", "busy", "removed"
    detail: str  # for the admins, in words
    calls: int = 0
    lost: int = 0
    checked: int = 0


class _LeaseLost(Exception):
    """Another instance took the binding over (this one was too slow): stop quietly."""


class _Stopping(Exception):
    """The services are stopping: end the attempt between pages, never inside a write
    (a task cancelled inside a transaction leaves it open on SQLite's one connection)."""


class _Shrunk(Exception):
    def __init__(self, described: DescribedRule, listed: int, before: int) -> None:
        self.described, self.listed, self.before = described, listed, before


class RecheckService:
    def __init__(
        self,
        storage: Storage,
        bindings: BindingService,
        policy: LossPolicy,
        kept_tokens: KeptTokens,
        settings: RecheckSettings,
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self.bindings = bindings
        self.policy = policy
        self.kept_tokens = kept_tokens
        self.settings = settings
        self.log = log
        # Names this instance's leases; a restart is a new owner (its old leases lapse).
        self.owner = secrets.token_hex(8)
        self.loop = PollLoop(
            "thirdparty_invite-rechecks",
            "Re-check pass",
            self._run_due,
            self._seconds_until_due,
            log,
            retry_after=30.0,
        )

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        # The walk ends at the next page and resumes there after the restart; cancelling
        # is the last resort.
        await self.loop.stop(grace=STOP_GRACE_S)

    async def request_now(self, binding_ids: Iterable[int], reason: str, actor: str) -> list[int]:
        """Make these bindings' re-checks due now (a webhook, an admin) and wake the worker."""
        scheduled = await self.storage.rechecks.request_now(binding_ids, now_ms())
        if scheduled:
            self.log.info("Re-check requested by %s (%s): bindings %s", actor, reason, scheduled)
            self.loop.wake()
        return scheduled

    async def state(self, binding_id: int) -> RecheckState | None:
        return await self.storage.rechecks.get(binding_id)

    async def recheck_now(self, view: BindingView, accept_shrink: bool = False) -> RecheckOutcome:
        """Run one binding's re-check now and wait for its outcome (`!invitebot recheck`)."""
        view = await self.bindings.by_id(view.binding.id) or view  # its policy as of now
        now = now_ms()
        await self.storage.rechecks.schedule(view.binding.id, now)
        if not await self.storage.rechecks.take(view.binding.id, self.owner, now, now + LEASE_MS):
            return RecheckOutcome("busy", texts.BUSY)
        state = await self.storage.rechecks.get(view.binding.id)
        assert state is not None
        return await self._recheck(state, view, accept_shrink=accept_shrink)

    # The worker

    async def _run_due(self) -> None:
        while not self.loop.stopping and await self.run_due_once():
            pass

    async def _seconds_until_due(self) -> float:
        next_at = await self.storage.rechecks.next_due_at()
        if next_at is None:
            return _IDLE_POLL
        return min(max((next_at - now_ms()) / 1000, 0.5), _IDLE_POLL)

    async def run_due_once(self) -> bool:
        """Re-check the most overdue binding, if one is due and free; False if none was."""
        now = now_ms()
        state = await self.storage.rechecks.take_due(self.owner, now, now + LEASE_MS)
        if state is None:
            return False
        view = await self.bindings.by_id(state.binding_id)
        if view is None or view.binding.removed_at is not None:
            await self._finish(state, RecheckOutcome("removed", ""), completed=True)
            return True
        outcome = await self._recheck(state, view)
        if outcome.outcome not in ("ok", "not_listable"):
            self.log.info(
                "Re-check of binding %s: %s (%s)",
                view.binding.public_id,
                outcome.outcome,
                outcome.detail,
            )
        return True

    # One binding

    async def _recheck(
        self, state: RecheckState, view: BindingView, *, accept_shrink: bool = False
    ) -> RecheckOutcome:
        listable = [
            (position, described)
            for position, described in enumerate(view.rules)
            if described.provider.listing(described.rule) is not None
        ]
        personal = self._personal_rules(view, {position for position, _ in listable})
        if not listable and not personal:
            outcome = RecheckOutcome("not_listable", texts.not_listable(view))
            await self._finish(state, outcome, completed=True)
            return outcome
        run_id, position, cursor = state.run_id, state.run_position, state.run_cursor
        if position is None:
            started = await self.storage.rechecks.start_run(view.binding.id, self.owner, now_ms())
            if started is None:
                return RecheckOutcome("busy", texts.BUSY)
            run_id, position, cursor = started, 0, None
        calls = state.run_calls
        try:
            for rule_position, described in listable:
                if rule_position < position:
                    continue
                start = cursor if rule_position == position else None
                calls = await self._walk(view, rule_position, described, run_id, start, calls)
                await self._check_shrink(view, rule_position, described, run_id, accept_shrink)
            run_id, missed, calls = await self._look_again(view, listable, run_id, calls)
            people = []
            for provider, rules in personal:
                found = await self.kept_tokens.recheck(view.binding.id, provider, rules)
                calls += found.calls
                people.append(found)
        except _LeaseLost:
            return RecheckOutcome("busy", texts.BUSY, calls)
        except _Stopping:
            outcome = RecheckOutcome("incomplete", texts.STOPPED, calls)
            await self._finish(state, outcome, completed=False, retry_after=1)
            return outcome
        except ProviderUnavailable as e:
            outcome = RecheckOutcome("incomplete", texts.incomplete(e), calls)
            await self._finish(state, outcome, completed=False, retry_after=e.retry_after)
            return outcome
        except _Shrunk as e:
            outcome = RecheckOutcome(
                "shrunk", texts.shrunk(view, e.described, e.listed, e.before), calls
            )
            await self.policy.tell_admins(view, outcome.detail)
            await self.policy.record(view, "recheck_stopped", outcome.detail)
            # The run starts afresh next time (and stops again until an admin accepts it).
            await self._finish(state, outcome, completed=True)
            return outcome
        lost, unknown, checked, look_again = await self._conclude(
            view, listable, run_id, missed, people
        )
        outcome = RecheckOutcome("ok", texts.done(checked, lost, unknown), calls, lost, checked)
        await self._finish(state, outcome, completed=True, look_again=look_again)
        await self.policy.record(view, "recheck", outcome.detail)
        return outcome

    async def _walk(
        self,
        view: BindingView,
        position: int,
        described: DescribedRule,
        run_id: int,
        cursor: str | None,
        calls: int,
    ) -> int:
        """Read one rule's listing to its end (from `cursor`), marking as it goes."""
        listing = described.provider.listing(described.rule)
        assert listing is not None
        binding_id = view.binding.id
        listings = self.storage.listings
        etags = await listings.etags(binding_id, position)
        async for page in listing.pages(cursor, etags):
            calls += page.calls
            if page.members is None:
                if not await listings.carry_page(binding_id, position, run_id, page.key):
                    # A 304 for a page we know nothing of: read it in full next time.
                    await listings.forget_page(binding_id, position, page.key)
                    raise ProviderUnavailable(
                        described.provider.display_name, "a page came back unchanged unasked"
                    )
            else:
                await listings.record_page(
                    binding_id,
                    position,
                    described.provider.id,
                    run_id,
                    page.key,
                    page.etag,
                    page.members,
                )
            next_position, next_cursor = position, page.next_cursor
            if next_cursor is None:
                next_position += 1  # this rule is done; the next starts from its first page
            if not await self.storage.rechecks.progress(
                binding_id, self.owner, next_position, next_cursor, calls, now_ms() + LEASE_MS
            ):
                raise _LeaseLost()
            if self.loop.stopping:
                raise _Stopping()
        return calls

    async def _look_again(
        self,
        view: BindingView,
        listable: list[tuple[int, DescribedRule]],
        run_id: int,
        calls: int,
    ) -> tuple[int, dict[int, set[str]], int]:
        """Who the listings missed, confirmed by a second walk. Listings paged by offset
        (GitHub's, GitLab's) skip someone when an earlier page loses a member during the
        walk: when a walk missed seat holders, every listing is walked once more under a
        new run id (unchanged pages answer 304, so it costs little), and only accounts
        both walks missed count as missing. Returns (the run id the listings now stand
        at, missing accounts by rule position, calls)."""
        missed = await self._missed(view, listable, run_id)
        if not any(missed.values()):
            return run_id, missed, calls
        again = await self.storage.rechecks.next_walk(view.binding.id, self.owner)
        if again is None:
            raise _LeaseLost()
        for position, described in listable:
            calls = await self._walk(view, position, described, again, None, calls)
        missed_again = await self._missed(view, listable, again)
        both = {position: missed[position] & missed_again[position] for position in missed}
        return again, both, calls

    async def _missed(
        self, view: BindingView, listable: list[tuple[int, DescribedRule]], run_id: int
    ) -> dict[int, set[str]]:
        """Per listable rule: the seat-holding accounts its listing did not show."""
        missed = {}
        for position, described in listable:
            absent = await self.storage.listings.absent(
                view.binding.id, position, described.provider.id, run_id
            )
            missed[position] = {holder.external_id for holder in absent}
        return missed

    async def _check_shrink(
        self,
        view: BindingView,
        position: int,
        described: DescribedRule,
        run_id: int,
        accept_shrink: bool,
    ) -> None:
        listings = self.storage.listings
        listed = await listings.listed(view.binding.id, position, run_id)
        before = await listings.last_total(view.binding.id, position)
        dropped = (before or 0) - listed
        # One departure is never the sign of a broken listing, however small the list.
        if dropped >= 2 and dropped > before * self.settings.max_shrink and not accept_shrink:
            raise _Shrunk(described, listed, before)

    def _personal_rules(
        self, view: BindingView, listed: set[int]
    ) -> list[tuple[Provider, list[tuple[Rule, str]]]]:
        """The rules no listing covers whose provider keeps refresh tokens, by provider."""
        by_provider: dict[str, tuple[Provider, list[tuple[Rule, str]]]] = {}
        for position, described in enumerate(view.rules):
            provider = described.provider
            if position in listed or not self.kept_tokens.usable_for(provider):
                continue
            entry = by_provider.setdefault(provider.id, (provider, []))
            entry[1].append((described.rule, described.description))
        return list(by_provider.values())

    async def _conclude(
        self,
        view: BindingView,
        listable: list[tuple[int, DescribedRule]],
        run_id: int,
        missed: dict[int, set[str]],
        people: list[PersonVerdicts],
    ) -> tuple[int, int, int, int | None]:
        """Every listing is in, every person asked: who no longer qualifies (and why),
        who could not be seen, who still qualifies. Returns (lost, unknown, checked, when
        a grace period ends)."""
        binding_id = view.binding.id
        reasons: dict[str, str] = {}
        unknown: set[str] = set()
        for found in people:
            for user_id, words in found.reasons.items():
                reasons.setdefault(user_id, words)
            unknown |= found.unknown
        for position, described in listable:
            provider_id = described.provider.id
            for seat in await self.storage.listings.seat_holders_at(binding_id, provider_id):
                if seat.external_id in missed[position]:
                    reasons.setdefault(seat.user_id, described.description)
            total = await self.storage.listings.listed(binding_id, position, run_id)
            await self.storage.listings.complete(binding_id, position, run_id, total, now_ms())
        unknown -= set(reasons)  # a "no" the provider said stands
        holders = await self.storage.listings.seat_holders(binding_id)
        qualifying = [u for u in holders if u not in reasons and u not in unknown]
        look_again = await self.policy.apply(view, reasons, qualifying)
        return len(reasons), len(unknown), len(holders), look_again

    async def _finish(
        self,
        state: RecheckState,
        outcome: RecheckOutcome,
        *,
        completed: bool,
        retry_after: float | None = None,
        look_again: int | None = None,
    ) -> None:
        now = now_ms()
        if completed:
            interval = self.settings.interval * 1000
            next_at = now + int(interval * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
            if look_again is not None:  # a grace period ends sooner: act on time
                next_at = min(next_at, look_again + 1000)
        else:
            # Back off (or wait as the provider asked), and resume where it stopped.
            backoff = min(60_000 * 2 ** min(state.errors, 12), MAX_BACKOFF_MS)
            wait = int(retry_after * 1000) if retry_after and retry_after > 0 else backoff
            next_at = now + min(max(wait, 1000), MAX_BACKOFF_MS)
        await self.storage.rechecks.finish(
            state.binding_id,
            self.owner,
            now,
            next_at,
            outcome.outcome,
            outcome.detail,
            outcome.calls,
            completed=completed,
            taken_next_at=state.next_at,
        )
