"""The re-check service and the loss policy on SQLite and the real PostgreSQL.

The provider here is a small in-process one that lists members page by page with ETags,
as providers/listing.py asks of every provider; tests/integration/test_rechecks.py runs
the same service inside maubot against the local GitHub and a real Synapse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
import hashlib
import logging
from typing import Any

from maubot.lib.plugin_db import ProxyPostgresDatabase
from mautrix.util.async_db import Database
import pytest
from support.postgres import POSTGRES_URL

from thirdparty_invite.config import RecheckSettings
from thirdparty_invite.durations import now_ms
from thirdparty_invite.providers.base import (
    AuthorizationRequest,
    ExternalAccount,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    Rule,
    SignInFailed,
    Verdict,
)
from thirdparty_invite.providers.listing import ListingPage, MemberListing
from thirdparty_invite.sealing import new_key, read_key
from thirdparty_invite.services.bindings import BindingService, BindingView
from thirdparty_invite.services.grants import GrantService, GrantSource
from thirdparty_invite.services.kept_tokens import KeptTokens
from thirdparty_invite.services.loss_policy import LossPolicy
from thirdparty_invite.services.rechecks import RecheckService
from thirdparty_invite.storage import Storage, upgrade_table

PAGE = 3


class Club:
    """Who is in each club, and how the listing behaves (faults, calls counted)."""

    def __init__(self) -> None:
        self.members: dict[str, list[str]] = {}
        self.calls = 0
        self.not_modified = 0
        self.fail_at_page: int | None = None
        self.retry_after: float | None = None
        self.tokens: dict[str, str] = {}  # account -> its current refresh token
        self.unreadable: set[str] = set()


class ClubListing(MemberListing):
    def __init__(self, club: Club, name: str) -> None:
        self.club, self.name = club, name

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        members = self.club.members.get(self.name, [])
        page = int(cursor or 0)
        while True:
            self.club.calls += 1
            if self.club.fail_at_page == page:
                raise ProviderUnavailable("Club", "HTTP 500", retry_after=self.club.retry_after)
            chunk = members[page * PAGE : (page + 1) * PAGE]
            key = f"{self.name}?page={page}"
            etag = hashlib.sha256(repr(chunk).encode()).hexdigest()[:16]
            more = (page + 1) * PAGE < len(members)
            following = str(page + 1) if more else None
            if (etags or {}).get(key) == etag:
                self.club.not_modified += 1
                yield ListingPage(key, None, etag, following)
            else:
                yield ListingPage(key, tuple(chunk), etag, following)
            if not more:
                return
            page += 1


class ClubProvider(Provider):
    kind = "club"

    def __init__(self, club: Club) -> None:
        super().__init__("club", "Club")
        self.club = club

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> Provider:
        raise NotImplementedError

    def parse_rule(self, text: str) -> Rule:
        return Rule(self.id, "club", (text,), text)

    def describe(self, rule: Rule) -> str:
        return f"members of the {rule.args[0]} club"

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return []

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        raise NotImplementedError

    async def finish(
        self, rules: Sequence[Rule], code: str, redirect_uri: str, request: AuthorizationRequest
    ) -> ProviderSession:
        raise NotImplementedError

    def listing(self, rule: Rule) -> MemberListing | None:
        if rule.args[0] in ("secret", "private"):
            return None  # "private" clubs are checked person by person
        return ClubListing(self.club, rule.args[0])

    keeps_refresh_tokens = True

    async def resume(self, rules: Sequence[Rule], refresh_token: str) -> ProviderSession:
        """Refresh tokens are "account:generation"; each use rotates it, and an old one
        (or one the club revoked) is refused as providers refuse them."""
        self.club.calls += 1
        if self.club.fail_at_page is not None:
            raise ProviderUnavailable("Club", "HTTP 503")
        account, _, generation = refresh_token.partition(":")
        if self.club.tokens.get(account) != refresh_token:
            raise SignInFailed("the refresh token was refused")
        rotated = f"{account}:{int(generation) + 1}"
        self.club.tokens[account] = rotated
        return ClubSession(self.club, account, rotated)


class ClubSession(ProviderSession):
    def __init__(self, club: Club, account: str, refresh_token: str) -> None:
        self.club = club
        self.account = ExternalAccount("club", account, account)
        self.refresh_token = refresh_token

    async def check(self, rule: Rule) -> Verdict:
        if self.account.id in self.club.unreadable:
            return Verdict.unknown("the club would not say")
        held = self.account.id in self.club.members.get(rule.args[0], [])
        return Verdict.yes() if held else Verdict.no("not in the club")


class Registry:
    """Stands in for ProviderRegistry: the one club provider."""

    unavailable = ""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def get(self, provider_id: str) -> Provider | None:
        return self.provider if provider_id == "club" else None

    def all(self) -> list[Provider]:
        return [self.provider]

    @staticmethod
    def known_kinds() -> list[str]:
        return ["club"]


class Notices:
    """Stands in for RoomOps where the policy talks to rooms: what it said, where."""

    bot_user_id = "@bot:x"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_notice(self, room_id: str, text: str) -> None:
        self.sent.append((room_id, text))


class World:
    def __init__(self, storage: Storage, settings: RecheckSettings | None = None) -> None:
        self.storage = storage
        self.club = Club()
        self.notices = Notices()
        self.bindings = BindingService(storage, Registry(ClubProvider(self.club)))  # type: ignore[arg-type]
        self.grants = GrantService(storage, wake_queue=lambda: None)
        self.settings = settings or RecheckSettings()
        self.policy = LossPolicy(
            storage,
            self.notices,
            self.settings,
            "",
            lambda: None,  # type: ignore[arg-type]
        )
        self.service = self.recheck_service()

    def recheck_service(self) -> RecheckService:
        kept = KeptTokens(self.storage, read_key(new_key()), logging.getLogger("test"))
        self.kept = kept
        return RecheckService(
            self.storage, self.bindings, self.policy, kept, self.settings, logging.getLogger("t")
        )

    async def bind(self, rules: str = "club core", rooms: tuple[str, ...] = ("!room:x",)):
        return await self.bindings.create("@admin:x", rules, rooms)

    async def admit(self, view: BindingView, user_id: str, account: str) -> None:
        """Admitted through the binding as the sign-in service admits: a seat, a grant."""
        binding_id = view.binding.id

        async def take_seat(conn: Any, now: int) -> None:
            assert await self.storage.signins.take_account_slot(
                conn, binding_id, "club", account, user_id, 1, now
            )

        source = GrantSource(binding_id=binding_id, external_id=f"club:{account}")
        await self.grants.grant(user_id, view.binding.rooms, source, take_seat)

    async def kicks(self) -> list[tuple[str, str, str | None]]:
        return [
            (q.room_id, q.user_id, q.reason)
            for q in await self.storage.queue.all()
            if q.action == "kick" and q.state == "pending"
        ]


@pytest.fixture
def world(storage: Storage) -> World:
    return World(storage)


async def admitted_club(world: World, policy: str = "kick", grace_ms: int = 0) -> BindingView:
    world.club.members["core"] = [f"acct{i}" for i in range(10)]
    view = await world.bind()
    for i in range(10):
        await world.admit(view, f"@p{i}:x", f"acct{i}")
    return await world.bindings.set_policy(view, policy, grace_ms, "@admin:x")


async def test_someone_gone_from_the_listing_is_kicked_with_the_rule_named(world: World) -> None:
    view = await admitted_club(world)
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "ok" and outcome.lost == 0 and outcome.checked == 10
    world.club.members["core"].remove("acct4")
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "ok" and outcome.lost == 1, outcome
    assert await world.kicks() == [
        ("!room:x", "@p4:x", "You no longer meet this room's rule: members of the core club.")
    ]
    assert any("@p4:x" in text for _, text in world.notices.sent)
    actions = [e.action for e in await world.storage.audit.recent("!room:x", 50)]
    assert "no_longer_qualifies" in actions and "kick_queued" in actions
    assert "recheck" in actions and "granted" in actions
    # The policy acts once: the next re-check queues nothing new.
    await world.storage.db.execute("DELETE FROM invite_queue WHERE action='kick'")
    await world.service.recheck_now(view)
    assert await world.kicks() == []


async def test_notify_tells_the_admins_and_dry_run_only_writes_the_audit_log(
    world: World,
) -> None:
    view = await admitted_club(world, "notify")
    await world.service.recheck_now(view)
    world.club.members["core"].remove("acct1")
    await world.service.recheck_now(view)
    assert await world.kicks() == []
    assert [room for room, text in world.notices.sent if "@p1:x" in text] == ["!room:x"]
    world.notices.sent.clear()
    await world.bindings.set_policy(view, "dry-run", 0, "@admin:x")
    world.club.members["core"].remove("acct2")
    await world.service.recheck_now(view)
    assert await world.kicks() == [] and world.notices.sent == []
    actions = [(e.action, e.target) for e in await world.storage.audit.recent("!room:x", 50)]
    assert ("loss_dry_run", "@p2:x") in actions and ("loss_notify", "@p1:x") in actions


async def test_grace_delays_the_kick_and_a_return_cancels_it(world: World) -> None:
    view = await admitted_club(world, "kick", grace_ms=60_000)
    await world.service.recheck_now(view)
    world.club.members["core"].remove("acct3")
    await world.service.recheck_now(view)
    assert await world.kicks() == []  # within the grace period
    # The next re-check comes when the grace period ends, not an interval later.
    state = await world.service.state(view.binding.id)
    assert state.next_at <= now_ms() + 61_000
    assert any("unless they qualify again" in text for _, text in world.notices.sent)
    world.club.members["core"].append("acct3")  # back within the grace period
    await world.service.recheck_now(view)
    assert await world.storage.losses.for_binding(view.binding.id) == []
    # Gone again, and this time the grace period runs out.
    world.club.members["core"].remove("acct3")
    await world.service.recheck_now(view)
    await world.storage.db.execute("UPDATE losses SET first_at = first_at - 120000")
    await world.service.recheck_now(view)
    assert [user for _, user, _ in await world.kicks()] == ["@p3:x"]


async def test_a_provider_failure_midway_touches_nobody_and_resumes_there(world: World) -> None:
    view = await admitted_club(world)
    await world.service.recheck_now(view)
    world.club.members["core"] = world.club.members["core"][:9]  # acct9 left
    world.club.fail_at_page = 2
    world.club.retry_after = 120
    before = now_ms()
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "incomplete", outcome
    assert (
        await world.kicks() == [] and await world.storage.losses.for_binding(view.binding.id) == []
    )
    state = await world.service.state(view.binding.id)
    assert state.run_position == 0 and state.run_cursor == "2" and state.errors == 1
    assert state.next_at >= before + 119_000  # as the provider asked
    world.club.fail_at_page = None
    world.club.calls = 0
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "ok" and outcome.lost == 1
    # The last page only (it resumed where it stopped), then one more walk of the three
    # pages for the one it missed, who is missing from that too.
    assert world.club.calls == 1 + 3


async def test_a_listing_shrunk_past_the_limit_stops_until_an_admin_accepts(world: World) -> None:
    view = await admitted_club(world)
    await world.service.recheck_now(view)
    world.club.members["core"] = world.club.members["core"][:5]  # half of them at once
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "shrunk" and "50% fewer" in outcome.detail
    assert await world.kicks() == [] and world.notices.sent
    assert (await world.service.recheck_now(view)).outcome == "shrunk"  # still held back
    outcome = await world.service.recheck_now(view, accept_shrink=True)
    assert outcome.outcome == "ok" and outcome.lost == 5
    assert len(await world.kicks()) == 5


async def test_an_unchanged_listing_costs_only_not_modified_pages(world: World) -> None:
    view = await admitted_club(world)
    first = await world.service.recheck_now(view)
    assert first.calls == 4  # ten members, three a page
    world.club.not_modified = 0
    second = await world.service.recheck_now(view)
    assert second.outcome == "ok" and second.lost == 0
    assert world.club.not_modified == 4
    # A change on one page is read in full; the rest are carried over.
    world.club.members["core"][4] = "stranger"
    world.club.not_modified = 0
    third = await world.service.recheck_now(view)
    # The second walk, looking again for the one missed, is four 304s.
    assert third.lost == 1 and world.club.not_modified == 3 + 4


async def test_people_with_another_way_in_are_kept(world: World) -> None:
    view = await admitted_club(world)
    other = await world.bind("club other")
    world.club.members["other"] = ["acct5"]
    await world.admit(other, "@p5:x", "acct5")
    await world.service.recheck_now(view)
    world.club.members["core"].remove("acct5")
    await world.service.recheck_now(view)
    assert await world.kicks() == []
    kept = [e for e in await world.storage.audit.recent("!room:x", 50) if e.action == "kept"]
    assert [e.target for e in kept] == ["@p5:x"]


async def test_rules_that_cannot_be_listed_are_unknown_never_a_loss(world: World) -> None:
    view = await world.bind("club secret")
    view.rules[0].provider.keeps_refresh_tokens = False  # and keeps no tokens either
    await world.admit(view, "@p:x", "acct")
    await world.bindings.set_policy(view, "kick", 0, "@admin:x")
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "not_listable" and "cannot list" in outcome.detail
    assert await world.kicks() == []


async def test_the_worker_runs_due_rechecks_and_schedules_the_next(world: World) -> None:
    view = await admitted_club(world)
    assert not await world.service.run_due_once()  # the first is an interval away
    assert await world.service.request_now([view.binding.id], "test", "@admin:x") == [
        view.binding.id
    ]
    assert await world.service.run_due_once()
    state = await world.service.state(view.binding.id)
    assert state.last_outcome == "ok" and state.last_calls == 4
    interval = world.settings.interval * 1000
    assert now_ms() + 0.85 * interval < state.next_at < now_ms() + 1.15 * interval
    assert not await world.service.run_due_once()


@pytest.mark.postgres
async def test_two_instances_on_one_database_run_each_recheck_once(
    postgres_database: Any,
) -> None:
    world = World(Storage(postgres_database))
    views = []
    world.club.members["core"] = [f"acct{i}" for i in range(10)]
    for n in range(6):
        view = await world.bind()
        await world.admit(view, f"@p{n}:x", f"acct{n}")
        views.append(view)
    await world.service.request_now([v.binding.id for v in views], "test", "@admin:x")
    # The second instance has its own connection pool to the same schema, as a second
    # maubot process running this plugin instance would.
    pool = Database.create(POSTGRES_URL, log=logging.getLogger("test.pg.second"))
    await pool.start()
    other_db = ProxyPostgresDatabase(
        pool=pool,
        instance_id=postgres_database.schema_name.removeprefix("mbp_"),
        max_conns=3,
        upgrade_table=upgrade_table,
        log=logging.getLogger("test.pg.second.instance"),
    )
    await other_db.start()
    second_world = World(Storage(other_db))
    second_world.club = world.club  # the same provider, listed by either instance
    second_world.bindings.registry.provider.club = world.club  # type: ignore[attr-defined]
    first, second = world.service, second_world.recheck_service()
    assert first.owner != second.owner

    async def drain(service: RecheckService) -> int:
        runs = 0
        while await service.run_due_once():
            runs += 1
        return runs

    try:
        runs = await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    finally:
        await other_db.stop()
        await pool.stop()
    assert sum(runs) == 6 and runs[1] + runs[3] > 0, runs  # both took part
    assert world.club.calls == 6 * 4  # every binding listed exactly once


async def test_without_a_listing_people_are_rechecked_one_by_one_with_kept_tokens(
    world: World,
) -> None:
    world.club.members["private"] = ["a1", "a2", "a3", "a4"]
    view = await world.bind("club private")
    for n in range(1, 6):
        await world.admit(view, f"@p{n}:x", f"a{n}")
    view = await world.bindings.set_policy(view, "kick", 0, "@admin:x")
    provider = view.rules[0].provider
    for n in (1, 2, 3, 5):  # a4 signed in before tokens were kept: nothing to resume
        world.club.tokens[f"a{n}"] = f"a{n}:0"
        session = ClubSession(world.club, f"a{n}", f"a{n}:0")
        await world.kept.keep(provider, session)
    world.club.unreadable.add("a2")  # the provider cannot say for a2
    world.club.tokens["a3"] = "a3:revoked"  # a3 revoked the app at the provider
    outcome = await world.service.recheck_now(view)
    # a5 is not in the club: the only loss. a2, a3 and a4 could not be seen.
    assert outcome.outcome == "ok" and outcome.lost == 1, outcome
    assert "3 could not be checked" in outcome.detail
    assert [user for _, user, _ in await world.kicks()] == ["@p5:x"]
    assert await world.storage.kept_tokens.get("club", "a3") is None  # dropped
    # Each use rotated the token, and the new one was kept: a second re-check works.
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "ok", outcome
    assert world.club.tokens["a1"] == "a1:2"
    sealed = await world.storage.kept_tokens.get("club", "a1")
    assert sealed is not None and "a1:2" not in sealed


async def test_a_provider_down_during_person_checks_concludes_nothing(world: World) -> None:
    world.club.members["private"] = []
    view = await world.bind("club private")
    await world.admit(view, "@p:x", "a")
    view = await world.bindings.set_policy(view, "kick", 0, "@admin:x")
    world.club.tokens["a"] = "a:0"
    await world.kept.keep(view.rules[0].provider, ClubSession(world.club, "a", "a:0"))
    world.club.fail_at_page = 0
    outcome = await world.service.recheck_now(view)
    assert outcome.outcome == "incomplete" and await world.kicks() == []


async def test_a_request_during_a_run_is_kept_for_right_after_it(world: World) -> None:
    view = await admitted_club(world)
    listing_pages = ClubListing.pages

    async def pages_with_a_webhook(self, cursor=None, etags=None):  # type: ignore[no-untyped-def]
        async for page in listing_pages(self, cursor, etags):
            # A webhook arrives while the run reads the listing.
            await world.service.request_now([view.binding.id], "webhook", "webhook:test")
            yield page

    ClubListing.pages = pages_with_a_webhook  # type: ignore[method-assign]
    try:
        await world.service.recheck_now(view)
    finally:
        ClubListing.pages = listing_pages  # type: ignore[method-assign]
    state = await world.service.state(view.binding.id)
    assert state.last_outcome == "ok" and state.next_at <= now_ms()  # due again at once
    assert await world.service.run_due_once()
    state = await world.service.state(view.binding.id)
    assert state.next_at > now_ms() + 60_000  # and then the interval


async def test_someone_a_shifting_listing_skipped_is_not_lost(world: World) -> None:
    """Offset paging: a member of an earlier page leaves while the walk is past it, so
    the first of the next page moves onto a page already read and is not seen."""
    view = await admitted_club(world)
    await world.service.recheck_now(view)
    listing_pages = ClubListing.pages

    async def pages_while_someone_leaves(self, cursor=None, etags=None):  # type: ignore[no-untyped-def]
        async for page in listing_pages(self, cursor, etags):
            yield page
            if "acct1" in world.club.members["core"] and page.key.endswith("page=0"):
                # acct1 (page 0, already read) leaves: acct3 moves from page 1 to page 0.
                world.club.members["core"].remove("acct1")

    ClubListing.pages = pages_while_someone_leaves  # type: ignore[method-assign]
    try:
        outcome = await world.service.recheck_now(view)
    finally:
        ClubListing.pages = listing_pages  # type: ignore[method-assign]
    # acct3 was only skipped by the first walk: not lost. acct1, seen by the first walk
    # before leaving, counts as there this time (seen is seen) ...
    assert outcome.lost == 0, outcome
    assert await world.kicks() == []
    # ... and is found gone by the next re-check.
    outcome = await world.service.recheck_now(view)
    assert outcome.lost == 1 and [user for _, user, _ in await world.kicks()] == ["@p1:x"]


async def test_stopping_ends_a_walk_between_pages_and_it_resumes_there(world: World) -> None:
    view = await admitted_club(world)
    listing_pages = ClubListing.pages
    reading = asyncio.Event()

    async def slow_pages(self, cursor=None, etags=None):  # type: ignore[no-untyped-def]
        async for page in listing_pages(self, cursor, etags):
            reading.set()
            await asyncio.sleep(0.2)  # a provider taking its time
            yield page

    ClubListing.pages = slow_pages  # type: ignore[method-assign]
    try:
        world.service.start()
        await world.service.request_now([view.binding.id], "test", "@admin:x")
        await asyncio.wait_for(reading.wait(), 10)
        await world.service.stop()
    finally:
        ClubListing.pages = listing_pages  # type: ignore[method-assign]
    state = await world.service.state(view.binding.id)
    assert state.last_outcome == "incomplete" and state.in_progress, state
    assert state.lease_owner is None  # released, for the next start
    # Nothing was left half-written: the database takes a transaction, and the re-check
    # resumes from its page.
    async with world.storage.db.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1")
    outcome = await world.recheck_service().recheck_now(view)
    assert outcome.outcome == "ok", outcome


async def test_the_audit_names_a_binding_by_its_public_id(world: World) -> None:
    view = await admitted_club(world)
    granted = [e for e in await world.storage.audit.recent("!room:x", 50) if e.action == "granted"]
    assert granted and {e.target for e in granted} == {f"binding {view.binding.public_id}"}


async def test_stopping_the_worker_ends_its_loop_without_waiting_out_the_grace(
    world: World,
) -> None:
    """stop() during a pass used to be forgotten (the wake-up was cleared after the
    pass), so every stop waited out its grace and then cancelled: 10 s per maubot
    instance stop."""
    for _ in range(5):
        world.service.start()
        await asyncio.sleep(0)  # stop() lands while the first pass is under way
        assert await world.service.loop.stop(grace=60), "it had to be cancelled"
