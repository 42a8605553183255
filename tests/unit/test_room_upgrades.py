"""Room upgrades: moving a room's rows (SQLite and PostgreSQL), and following a tombstone
with a stand-in for the homeserver."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs
from mautrix.errors import MForbidden

from thirdparty_invite.matrix.power import RoomPower
from thirdparty_invite.matrix.rooms import RoomInfo
from thirdparty_invite.matrix.tombstones import Tombstone
from thirdparty_invite.services.room_upgrades import RoomUpgrades, describe_carried
from thirdparty_invite.storage import BindingRule, Storage

OLD, NEW, OTHER = "!old:x", "!new", "!other:x"
UPGRADED_AT = 1_000_000


async def _link(storage: Storage, token_hash: str, rooms: tuple[str, ...]) -> int:
    return (await storage.links.create(token_hash, "@admin:x", rooms, None, None, 1)).id


async def _row(
    storage: Storage,
    room_id: str,
    user_id: str,
    state: str = "pending",
    outcome: str | None = None,
    updated_at: int = UPGRADED_AT - 120_000,
    grant_id: int | None = None,
) -> None:
    async with storage.db.acquire() as conn:
        await storage.queue.enqueue(conn, room_id, user_id, grant_id, 1)
    await storage.db.execute(
        "UPDATE invite_queue SET state=$3, outcome=$4, updated_at=$5"
        " WHERE room_id=$1 AND user_id=$2",
        room_id,
        user_id,
        state,
        outcome,
        updated_at,
    )


async def _rows(storage: Storage, room_id: str) -> dict[str, tuple[str, str | None]]:
    return {
        item.user_id: (item.state, item.outcome)
        for item in await storage.queue.all()
        if item.room_id == room_id
    }


async def test_move_carries_links_bindings_and_the_right_invites(storage: Storage) -> None:
    only_old = await _link(storage, "h1", (OLD,))
    both = await _link(storage, "h2", (OLD, NEW))
    with_other = await _link(storage, "h3", (OLD, OTHER))
    untouched = await _link(storage, "h4", (OTHER,))
    await storage.bindings.create(
        "b1", "@admin:x", (BindingRule("github", "org:x"),), (OLD,), 1, first_recheck_at=2
    )
    grant_id = await storage.db.fetchval(
        "INSERT INTO grants (user_id, link_id, created_at) VALUES ('@alice:x', $1, 1)"
        " RETURNING id",
        only_old,
    )
    after = UPGRADED_AT + 5_000
    await _row(storage, OLD, "@alice:x", grant_id=grant_id)  # pending: moves
    await _row(storage, OLD, "@bob:x", "done", "invited")  # before the upgrade: history
    await _row(storage, OLD, "@carol:x", "done", "invited", after)  # into a dead room
    await _row(storage, OLD, "@dave:x", "done", "already_joined", after)  # member anyway
    await _row(storage, OLD, "@erin:x", "failed")  # banned before the upgrade: history
    await _row(storage, OLD, "@frank:x", "failed", None, after)  # failed since: retried
    await _row(storage, OLD, "@gina:x", "done", "invited")  # invite still unanswered
    await _row(storage, OLD, "@hank:x")  # pending in both rooms: one row
    await _row(storage, NEW, "@hank:x")
    await _row(storage, OLD, "@ivan:x")  # pending here, finished there: queued again
    await _row(storage, NEW, "@ivan:x", "done", "already_joined")
    await _row(storage, OTHER, "@judy:x")

    move = await storage.rooms.move(
        OLD,
        NEW,
        upgraded_at=UPGRADED_AT,
        still_invited={"@gina:x", "@bob-not-in-queue:x"},
        actor="@admin:x",
        now=UPGRADED_AT + 10_000,
    )

    assert (move.links, move.bindings, move.moved_invites, move.requeued_invites) == (
        3,
        1,
        3,
        3,
    )
    for link_id, rooms in (
        (only_old, (NEW,)),
        (both, (NEW,)),  # one row left, no primary key clash
        (with_other, tuple(sorted((NEW, OTHER)))),
        (untouched, (OTHER,)),
    ):
        assert (await storage.links.get(link_id)).rooms == rooms
    # The link's token still finds it, now leading to the new room.
    assert (await storage.links.get_by_token_hash("h1")).rooms == (NEW,)
    assert await storage.db.fetchval("SELECT room_id FROM binding_rooms") == NEW
    assert await _rows(storage, NEW) == {
        "@alice:x": ("pending", None),
        "@carol:x": ("pending", None),
        "@frank:x": ("pending", None),
        "@gina:x": ("pending", None),
        "@hank:x": ("pending", None),
        "@ivan:x": ("pending", None),
    }
    assert await _rows(storage, OLD) == {
        "@bob:x": ("done", "invited"),
        "@carol:x": ("done", "invited"),
        "@dave:x": ("done", "already_joined"),
        "@erin:x": ("failed", None),
        "@frank:x": ("failed", None),
        "@gina:x": ("done", "invited"),
    }
    assert await _rows(storage, OTHER) == {"@judy:x": ("pending", None)}
    [alice] = await storage.queue.for_user("@alice:x")
    assert alice.grant_id == grant_id and alice.next_attempt_at == UPGRADED_AT + 10_000
    [entry] = await storage.audit.recent(OLD)
    assert (entry.action, entry.target) == ("room_upgraded", NEW)
    assert "links 3" in entry.detail


async def test_a_pending_removal_follows_the_room_as_a_removal(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    async with storage.db.acquire() as conn:
        await storage.queue.enqueue_kick(conn, OLD, "@gone:x", "no longer a member", 1)
        await storage.queue.enqueue_kick(conn, OLD, "@done:x", "no longer a member", 1)
    [_, done] = [q for q in await storage.queue.all() if q.action == "kick"]
    await storage.queue.finish(done.id, "kicked", 2)
    kwargs: dict[str, Any] = {"upgraded_at": 0, "still_invited": (), "actor": "@a:x", "now": 5}
    await storage.rooms.move(OLD, NEW, **kwargs)
    moved = [q for q in await storage.queue.all() if q.room_id == NEW]
    assert [(q.user_id, q.action, q.reason) for q in moved] == [
        ("@gone:x", "kick", "no longer a member")
    ]  # the finished removal is history; neither became an invite


async def test_a_second_move_finds_nothing(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    await _row(storage, OLD, "@alice:x")
    kwargs: dict[str, Any] = {"upgraded_at": 0, "still_invited": (), "actor": "@a:x", "now": 5}
    assert not (await storage.rooms.move(OLD, NEW, **kwargs)).empty
    assert (await storage.rooms.move(OLD, NEW, **kwargs)).empty


async def test_a_second_move_requeues_nobody_and_writes_nothing(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    await _row(storage, OLD, "@gina:x", "done", "invited")  # her invite still unanswered
    kwargs: dict[str, Any] = {
        "upgraded_at": UPGRADED_AT,
        "still_invited": {"@gina:x"},
        "actor": "@a:x",
        "now": UPGRADED_AT + 1,
    }
    first = await storage.rooms.move(OLD, NEW, **kwargs)
    assert (first.links, first.requeued_invites, first.repeated) == (1, 1, False)
    assert await storage.rooms.was_moved(OLD, NEW) and not await storage.rooms.was_moved(NEW, OLD)
    # She accepted meanwhile... or not: either way she is not queued again.
    await storage.db.execute("UPDATE invite_queue SET state='done', outcome='invited'")
    again = await storage.rooms.move(OLD, NEW, **kwargs)
    assert again.empty and again.repeated
    assert await _rows(storage, NEW) == {"@gina:x": ("done", "invited")}
    assert [e.action for e in await storage.audit.recent(OLD)] == ["room_upgraded"]
    # A claim that read the room list before the move queued into the old room: a later
    # trigger carries that row over (and says so in the audit log), still re-queueing nobody.
    await _row(storage, OLD, "@late:x")
    late = await storage.rooms.move(OLD, NEW, **kwargs)
    assert (late.moved_invites, late.requeued_invites, late.repeated) == (1, 0, True)
    assert len(await storage.audit.recent(OLD)) == 2


async def test_managed_rooms_and_holdings(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    await _row(storage, OTHER, "@alice:x")
    await _row(storage, "!finished:x", "@bob:x", "done", "invited")
    await storage.bindings.create(
        "b1", "@admin:x", (BindingRule("github", "org:x"),), ("!bound:x",), 1, first_recheck_at=2
    )
    assert await storage.rooms.managed_rooms() == sorted([OLD, OTHER, "!bound:x"])
    holdings = await storage.rooms.holdings(OLD)
    assert (holdings.links, holdings.bindings, holdings.pending_invites) == (1, 0, 0)
    assert (await storage.rooms.holdings("!nothing:x")).empty
    assert not await storage.rooms.was_told(OLD, "room_upgrade_waiting", NEW)
    await storage.audit.add(1, "@bot:x", "room_upgrade_waiting", OLD, NEW)
    assert await storage.rooms.was_told(OLD, "room_upgrade_waiting", NEW)


def test_carried_things_are_counted_in_words() -> None:
    assert describe_carried(2, 0, 1) == "2 invite links and 1 queued invite"
    assert describe_carried(1, 1, 3) == "1 invite link, 1 binding and 3 queued invites"
    assert describe_carried(0, 0, 0) == ""


def test_tombstone_from_event_and_via() -> None:
    event = {
        "content": {"replacement_room": NEW, "body": "This room has been replaced"},
        "sender": "@admin:example.org",
        "origin_server_ts": 42,
    }
    tomb = Tombstone.from_event(OLD, event)
    assert tomb == Tombstone(OLD, NEW, "@admin:example.org", 42)
    assert tomb.via == ["example.org", "x"]
    assert Tombstone(NEW, "!newer", "@a:x", 1).via == ["x"]  # v12 IDs name no server
    assert Tombstone.from_event(OLD, {"content": {}}) is None  # emptied again
    assert Tombstone.from_event(OLD, {}) is None


# -- following, with a stand-in homeserver -------------------------------------------------

BOT = "@bot:x"


@attrs.define
class FakeRooms:
    """The few RoomOps calls RoomUpgrades makes, over a dict of rooms."""

    tombstones: dict[str, Tombstone] = attrs.Factory(dict)
    joinable: set[str] = attrs.Factory(set)
    joined: list[str] = attrs.Factory(list)
    members_of: dict[str, dict[str, str]] = attrs.Factory(dict)
    notices: list[tuple[str, str]] = attrs.Factory(list)
    bot_level: int = 50

    @property
    def bot_user_id(self) -> str:
        return BOT

    async def tombstone(self, room_id: str) -> Tombstone | None:
        return self.tombstones.get(room_id)

    async def join_via(self, room_id: str, servers: list[str]) -> None:
        if room_id not in self.joinable:
            raise MForbidden(403, "You are not invited to this room.")
        self.joined.append(room_id)

    async def members(self, room_id: str) -> dict[str, str]:
        return self.members_of.get(room_id, {})

    async def room_info(self, room_id: str, *, fresh: bool = False) -> RoomInfo:
        power = RoomPower.from_state(
            {"sender": "@admin:x", "content": {"room_version": "12"}},
            {"invite": 50, "users": {BOT: self.bot_level}},
        )
        return RoomInfo(room_id, "Lobby", None, power)

    async def send_notice(self, room_id: str, markdown: str) -> None:
        self.notices.append((room_id, markdown))


class FakeDirectChats:
    def __init__(self, rooms: frozenset[str] = frozenset()) -> None:
        self.rooms = rooms

    async def is_direct_chat(self, room_id: str) -> bool:
        return room_id in self.rooms


def _upgrades(storage: Storage, rooms: FakeRooms, admin_room: str = "!admins:x") -> RoomUpgrades:
    return RoomUpgrades(
        storage,
        rooms,  # type: ignore[arg-type]
        FakeDirectChats(),  # type: ignore[arg-type]
        admin_room,
        logging.getLogger("test.upgrades"),
    )


def _tomb(old: str = OLD, new: str = NEW) -> Tombstone:
    return Tombstone(old, new, "@admin:x", UPGRADED_AT)


async def test_a_tombstone_is_followed_when_the_bot_can_join(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    await _link(storage, "h2", (OLD,))
    await _row(storage, OLD, "@alice:x")
    rooms = FakeRooms(tombstones={OLD: _tomb()}, joinable={NEW})
    upgrades = _upgrades(storage, rooms)

    await upgrades.on_tombstone(_tomb())

    assert rooms.joined == [NEW]
    assert [lk.id for lk in await storage.links.list_for_room(NEW)] != []
    [(room, text), (admin_room, admin_text)] = rooms.notices
    assert room == NEW and "carried over 2 invite links and 1 queued invite." in text
    assert admin_room == "!admins:x" and "followed it to https://matrix.to/#/!new" in admin_text
    # The same upgrade seen again (the invite and the tombstone in one sync): nothing more.
    await upgrades.on_tombstone(_tomb())
    assert len(rooms.notices) == 2


async def test_the_admins_hear_what_the_bot_lacks_in_the_new_room(storage: Storage) -> None:
    rooms = FakeRooms(joinable={NEW}, bot_level=0)
    await _upgrades(storage, rooms, admin_room="").on_tombstone(_tomb())
    [(room, text)] = rooms.notices
    assert room == NEW and "I need more power: invite (needs power level 50, has 0)" in text


async def test_cannot_join_asks_once_then_an_invite_from_anyone_carries_over(
    storage: Storage,
) -> None:
    await _link(storage, "h1", (OLD,))
    rooms = FakeRooms(tombstones={OLD: _tomb()})
    upgrades = _upgrades(storage, rooms)

    await upgrades.on_tombstone(_tomb())
    [(room, text), (admin_room, _)] = rooms.notices
    assert admin_room == "!admins:x"
    assert room == OLD and "Invite me there" in text and "1 invite link" in text
    assert "https://matrix.to/#/!new?via=x" in text
    # Seen again, or after a restart (a new service): the admins were told already.
    await upgrades.on_tombstone(_tomb())
    await _upgrades(storage, rooms).catch_up()
    assert len(rooms.notices) == 2

    # Someone who is no operator invites the bot: the old room's tombstone vouches.
    rooms.joinable.add(NEW)
    assert await upgrades.follow_on_invite(NEW, "@mod:x", OLD)
    assert rooms.joined == [NEW]
    assert len(await storage.links.list_for_room(NEW)) == 1
    assert rooms.notices[2] == (
        NEW,
        f"I followed this room's upgrade (it replaces {OLD}) and carried over 1 invite link."
        " The invite links keep working and lead here now.",
    )
    # The same invite again, from the new room's timeline (no stripped state): still ours,
    # so the operators-only check never sees it (it would leave the room).
    assert len(rooms.notices) == 4  # the new room's notice, and the admin room's
    assert await upgrades.follow_on_invite(NEW, "@mod:x", None)
    assert len(rooms.notices) == 4


async def test_every_trigger_after_the_first_changes_nothing(storage: Storage) -> None:
    """The tombstone and the invite together (concurrently), the invite's second delivery,
    and a restart: one join, one move, one notice per room, with the right count, even
    with a person whose invite into the old room is still unanswered."""
    await _link(storage, "h1", (OLD,))
    await _row(storage, OLD, "@gina:x", "done", "invited")
    rooms = FakeRooms(
        tombstones={OLD: _tomb()}, joinable={NEW}, members_of={OLD: {"@gina:x": "invite"}}
    )
    upgrades = _upgrades(storage, rooms)

    await asyncio.gather(
        upgrades.on_tombstone(_tomb()), upgrades.follow_on_invite(NEW, "@mod:x", OLD)
    )
    assert rooms.joined == [NEW]
    [(room, text), (admin_room, admin_text)] = rooms.notices
    assert room == NEW and "carried over 1 invite link and 1 queued invite." in text
    assert (
        admin_room == "!admins:x"
        and "carried over 1 invite link and 1 queued invite." in admin_text
    )

    await upgrades.follow_on_invite(NEW, "@mod:x", None)  # the second delivery
    await upgrades.on_tombstone(_tomb())
    restarted = _upgrades(storage, rooms)
    await restarted.follow_on_invite(NEW, "@mod:x", OLD)
    await restarted.on_tombstone(_tomb())
    await storage.rooms.move(  # what the catch-up on start finds: nothing either
        OLD, NEW, upgraded_at=0, still_invited={"@gina:x"}, actor="@a:x", now=1
    )
    assert rooms.joined == [NEW] and len(rooms.notices) == 2
    actions = [e.action for e in await storage.audit.recent(OLD)]
    assert actions.count("room_upgraded") == 1
    # Recorded if the invite came before the move (which of the two goes first varies).
    actions = [e.action for e in await storage.audit.recent(NEW)]
    assert actions.count("bot_joined") == 1 and actions.count("bot_invited_to_replacement") <= 1


async def test_only_a_true_replacement_is_accepted_this_way(storage: Storage) -> None:
    rooms = FakeRooms(tombstones={OLD: _tomb(new="!elsewhere")}, joinable={NEW})
    upgrades = _upgrades(storage, rooms)
    assert not await upgrades.follow_on_invite(NEW, "@mallory:x", OLD)  # names another room
    assert not await upgrades.follow_on_invite(NEW, "@mallory:x", OTHER)  # no tombstone
    assert not await upgrades.follow_on_invite(NEW, "@mallory:x", None)
    assert rooms.joined == [] and rooms.notices == []


async def test_a_chain_of_upgrades_is_followed_to_its_end_on_start(storage: Storage) -> None:
    await _link(storage, "h1", (OLD,))
    await _row(storage, OLD, "@alice:x")
    rooms = FakeRooms(
        tombstones={OLD: _tomb(OLD, "!b"), "!b": _tomb("!b", "!c")}, joinable={"!b", "!c"}
    )
    await _upgrades(storage, rooms, admin_room="").catch_up()
    assert rooms.joined == ["!b", "!c"]
    assert len(await storage.links.list_for_room("!c")) == 1
    assert [i.room_id for i in await storage.queue.for_user("@alice:x")] == ["!c"]
    [(room, text)] = rooms.notices  # told once, in the room that lives on
    assert room == "!c" and f"replaces {OLD}" in text
    assert "carried over 1 invite link and 1 queued invite." in text  # not once per hop


async def test_a_direct_chat_is_not_followed(storage: Storage) -> None:
    rooms = FakeRooms(joinable={NEW})
    upgrades = _upgrades(storage, rooms)
    upgrades.direct_chats = FakeDirectChats(frozenset({OLD}))  # type: ignore[assignment]
    await upgrades.on_tombstone(_tomb())
    assert rooms.joined == [] and rooms.notices == []


async def test_an_upgraded_admin_room_asks_for_the_config_change(storage: Storage) -> None:
    rooms = FakeRooms(joinable={NEW})
    await _upgrades(storage, rooms, admin_room=OLD).on_tombstone(_tomb())
    [_, (room, text)] = rooms.notices
    assert room == OLD and "set `admin_room` to `!new`" in text
