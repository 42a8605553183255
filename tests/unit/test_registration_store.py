"""The caps on registration tokens hold under parallel requests, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import attrs

from thirdparty_invite.storage import Storage
from thirdparty_invite.storage.registrations import Refused, Reservation

NOW = 1_700_000_000_000


def reservation(**changes: object) -> Reservation:
    base = Reservation(
        binding_id=None,
        link_id=None,
        accounts=(),
        session_hash="s" * 64,
        now=NOW,
        expires_at=NOW + 3_600_000,
        day="2026-12-07",
        daily_cap=3,
    )
    return attrs.evolve(base, **changes)


async def outcomes(storage: Storage, reservations: list[Reservation]) -> list[object]:
    async def one(r: Reservation) -> object:
        try:
            return await storage.registrations.reserve(r)
        except Refused as e:
            return e.why

    return list(await asyncio.gather(*(one(r) for r in reservations)))


async def test_the_daily_cap_holds_under_ten_parallel_reservations(storage: Storage) -> None:
    got = await outcomes(storage, [reservation(session_hash=f"{i:064d}") for i in range(10)])
    assert sum(isinstance(x, int) for x in got) == 3
    assert [x for x in got if not isinstance(x, int)] == ["daily_cap"] * 7
    assert await storage.registrations.minted_on("2026-12-07") == 3
    # Giving one back (the homeserver did not mint it) frees a place.
    token_id = next(x for x in got if isinstance(x, int))
    await storage.registrations.release(token_id, "2026-12-07")
    assert isinstance(await storage.registrations.reserve(reservation()), int)
    assert await storage.registrations.minted_on("2026-12-07") == 3


async def test_one_token_per_external_account_under_ten_parallel_reservations(
    storage: Storage,
) -> None:
    binding = await storage.bindings.create("pub-registration", "@a:x", (), ("!r:x",), NOW, NOW)
    account = (("github", "12345"),)
    same = reservation(binding_id=binding.id, accounts=account, daily_cap=100)
    got = await outcomes(storage, [same] * 10)
    assert sum(isinstance(x, int) for x in got) == 1
    assert [x for x in got if not isinstance(x, int)] == ["account_has_token"] * 9
    # Another account of the same binding still gets one.
    other = reservation(binding_id=binding.id, accounts=(("github", "999"),), daily_cap=100)
    assert isinstance(await storage.registrations.reserve(other), int)


async def test_the_account_quota_counts_the_new_account(storage: Storage) -> None:
    binding = await storage.bindings.create("pub-quota", "@a:x", (), ("!r:x",), NOW, NOW)
    async with storage.db.acquire() as conn:
        assert await storage.signins.take_account_slot(
            conn, binding.id, "github", "42", "@old:x", 1, NOW
        )
    full = reservation(binding_id=binding.id, accounts=(("github", "42"),), daily_cap=100)
    assert await outcomes(storage, [full]) == ["account_full"]
    roomier = reservation(
        binding_id=binding.id, accounts=(("github", "42"),), daily_cap=100, max_ids=2
    )
    assert isinstance(await storage.registrations.reserve(roomier), int)
