"""What re-checking a GitHub organisation binding costs: the re-check service end to end.

    .venv/bin/python bench/recheck.py [--members 100 1000 10000] [--seats 100] [--rounds 5]
                                      [--postgres]

For each M, a local GitHub in its own process (bench/recheck_listing.py's LocalGitHub: M
members, one of them the operator whose token re-checks) and the plugin's own pieces in
this one: the ProviderRegistry with the GitHubProvider configured from the local GitHub's
section (`recheck: {token}`), BindingService, GrantService, LossPolicy, KeptTokens and
RecheckService over a real database (SQLite in a temporary file; PostgreSQL at
127.0.0.1:5432 with --postgres). A binding `github org:crowd` admits K seat holders
(--seats; the operator and members spread across the listing, from the first to the last)
through GrantService.grant with an account slot, as a sign-in does; its policy is notify.
Only the admins' notices go nowhere (a stand-in for the Matrix room, counted).

Per M, `RecheckService.recheck_now` is run:

* first: cold (no ETags); calls as the service counted them and as the local GitHub did;
* second: nothing changed, so every page should be a conditional request answered 304;
* last-page leaver: a seat holder on the last page leaves (one loss): what a change costs;
* first-page leaver: a seat holder on the first page leaves: GitHub pages by offset, so
  every page after it shifts and changes.

Time is the fastest of --rounds rounds (each on a fresh binding, so "first" is cold), per
page the median page (from one page's request to its progress written); peak memory is
tracemalloc's in this process during one more round (the local GitHub is not counted);
SQL statements are SQLite's own count (its trace callback). Target (issue 11): calls =
ceil(M/100) + at most 2, time linear in pages, peak memory flat in M, and the second
re-check only 304s.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import gc
import itertools
import logging
import math
from pathlib import Path
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # support.postgres, for --postgres

from mautrix.util.async_db import Database  # noqa: E402

from bench.common import figure, progress  # noqa: E402
from bench.recheck_listing import FLAT_MEMORY, LocalGitHub  # noqa: E402
from thirdparty_invite.config import RecheckSettings  # noqa: E402
from thirdparty_invite.net.guard import AddressPolicy  # noqa: E402
from thirdparty_invite.net.http import OutboundHTTP  # noqa: E402
from thirdparty_invite.providers.registry import (  # noqa: E402
    ProviderRegistry,
    read_provider_settings,
)
from thirdparty_invite.services.bindings import BindingService, BindingView  # noqa: E402
from thirdparty_invite.services.grants import GrantService, GrantSource  # noqa: E402
from thirdparty_invite.services.kept_tokens import KeptTokens  # noqa: E402
from thirdparty_invite.services.loss_policy import LossPolicy  # noqa: E402
from thirdparty_invite.services.provider_credentials import StoredCredentials  # noqa: E402
from thirdparty_invite.services.rechecks import RecheckService  # noqa: E402
from thirdparty_invite.storage import Storage, upgrade_table  # noqa: E402

ADMIN = "@admin:bench.example"
RECHECKS = ("first", "second", "last-page leaver", "first-page leaver")
# How much a page may cost more at the next M and still be "the same cost" (shared machine).
PAGE_NOISE = 1.5


class CrowdGitHub(LocalGitHub):
    """The local GitHub, and members leaving it."""

    async def leave(self, member_id: int) -> None:
        await self._ask(f"leave {member_id}")

    async def remove_first(self) -> None:
        await self._ask("remove 1")

    async def _ask(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        await self._line()


class Notices:
    """Where LossPolicy tells the admins (RoomOps' send_notice): counted, not sent."""

    bot_user_id = "@bot:bench.example"

    def __init__(self) -> None:
        self.sent = 0

    async def send_notice(self, room_id: str, text: str) -> None:
        self.sent += 1


class Meter:
    """Page times (the service writes its progress once per page) and SQL statements."""

    def __init__(self, storage: Storage) -> None:
        self.marks: list[float] = []
        self.statements = 0
        self.loss_statements = 0  # LossPolicy's, one per seat holder
        for store, name in ((storage.listings, "etags"), (storage.rechecks, "progress")):
            # Called once before the walk and once after each page: the page's cost is
            # the time between two of them.
            setattr(store, name, self._marking(getattr(store, name)))

    def _marking(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def marked(*args: Any) -> Any:
            self.marks.append(time.perf_counter())
            return await method(*args)

        return marked

    def count(self, statement: str) -> None:  # SQLite's trace callback (its worker thread)
        self.statements += 1
        if statement.startswith("DELETE FROM losses"):
            self.loss_statements += 1

    def reset(self) -> None:
        self.marks.clear()
        self.statements = self.loss_statements = 0

    def pages(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.marks)]


@contextlib.asynccontextmanager
async def plugin_database(postgres: bool, workdir: Path) -> AsyncIterator[Database]:
    """The plugin's database as maubot gives it: SQLite, or a PostgreSQL schema of its own."""
    log = logging.getLogger("bench.db")
    if not postgres:
        db = Database.create(f"sqlite:{workdir / 'plugin.db'}", upgrade_table=upgrade_table)
        await db.start()
        try:
            yield db
        finally:
            await db.stop()
        return
    from maubot.lib.plugin_db import ProxyPostgresDatabase
    from support.postgres import POSTGRES_URL

    pool = Database.create(POSTGRES_URL, log=log)
    await pool.start()
    db = ProxyPostgresDatabase(
        pool=pool,
        instance_id=f"bench_{secrets.token_hex(6)}",
        max_conns=3,
        upgrade_table=upgrade_table,
        log=log,
    )
    await db.start()
    try:
        yield db
    finally:
        await db.stop()
        await db.delete()
        await pool.stop()


async def count_statements(db: Database, meter: Meter) -> bool:
    """SQLite's trace callback on the plugin's connection; False on PostgreSQL."""
    if db.scheme.value not in ("sqlite", "sqlite3"):
        return False
    async with db.acquire() as conn:
        await conn.wrapped.set_trace_callback(meter.count)
    return True


def seat_accounts(started: dict[str, Any], members: int, seats: int) -> list[int]:
    """The operator and K-1 generated members spread evenly from the first to the last."""
    first, generated = started["first_generated"], members - 1
    wanted = min(seats - 1, generated)
    if wanted <= 1:
        picks = list(range(wanted))
    else:
        picks = sorted({round(n * (generated - 1) / (wanted - 1)) for n in range(wanted)})
    return [started["operator"]] + [first + n for n in picks]


class Bench:
    """The plugin side of one M: the services over one database, one provider registry."""

    def __init__(self, storage: Storage, registry: ProviderRegistry, meter: Meter) -> None:
        log = logging.getLogger("bench")
        self.storage, self.meter = storage, meter
        self.notices = Notices()
        settings = RecheckSettings()
        self.bindings = BindingService(storage, registry, settings.interval)
        self.grants = GrantService(storage, lambda: None)
        policy = LossPolicy(storage, self.notices, settings, "", lambda: None)  # type: ignore[arg-type]
        kept = KeptTokens(storage, None, log)
        self.service = RecheckService(storage, self.bindings, policy, kept, settings, log)

    async def binding(self, org: str, accounts: list[int], round_: int) -> BindingView:
        room = f"!round{round_}:bench.example"
        view = await self.bindings.create(ADMIN, f"github org:{org}", (room,))
        binding_id = view.binding.id
        for n, account in enumerate(accounts):
            user_id = f"@r{round_}seat{n}:bench.example"

            async def take_seat(
                conn: Any, now: int, user_id: str = user_id, account: int = account
            ) -> None:
                signins = self.storage.signins
                assert await signins.take_account_slot(
                    conn, binding_id, "github", str(account), user_id, 1, now
                )

            source = GrantSource(binding_id=binding_id, external_id=f"github:{account}")
            await self.grants.grant(user_id, view.binding.rooms, source, take_seat)
        return await self.bindings.set_policy(view, "notify", 0, ADMIN)

    async def recheck(self, github: LocalGitHub, view: BindingView, traced: bool) -> dict:
        await github.counts()  # from zero
        self.meter.reset()
        notices = self.notices.sent
        gc.collect()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        outcome = await self.service.recheck_now(view)
        ended = time.perf_counter()
        figures: dict[str, Any] = {"traced": traced, "seconds": ended - started}
        if traced:
            figures["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert outcome.outcome == "ok", outcome
        pages = self.meter.pages()
        figures |= {
            "calls": outcome.calls,
            "lost": outcome.lost,
            "checked": outcome.checked,
            "notices": self.notices.sent - notices,
            "statements": self.meter.statements,
            "loss_statements": self.meter.loss_statements,
            "page_seconds": pages,
            "pages": len(pages),
            "concluding": ended - self.meter.marks[-1],
            "server": await github.counts(),
        }
        return figures


async def measure(members: int, seats: int, rounds: int, postgres: bool) -> dict[str, Any]:
    github = CrowdGitHub(members)
    http = OutboundHTTP(timeout=30.0, policy=AddressPolicy())
    workdir = tempfile.TemporaryDirectory(prefix="tpi-bench-recheck-")
    registry: ProviderRegistry | None = None
    try:
        started = await github.start()
        problems: list[str] = []
        settings = read_provider_settings({"github": started["section"]}, problems)
        assert not problems, problems
        registry = ProviderRegistry(settings, http)
        async with plugin_database(postgres, Path(workdir.name)) as db:
            storage = Storage(db)
            for provider in registry.all():  # as the running plugin does
                provider.credentials = StoredCredentials(storage.credentials, provider.id)
            meter = Meter(storage)
            counted = await count_statements(db, meter)
            bench = Bench(storage, registry, meter)
            accounts = seat_accounts(started, members, seats)
            runs: dict[str, list[dict]] = {name: [] for name in RECHECKS}
            # The last round is traced (tracemalloc slows it: its time is not counted).
            for round_ in range(rounds + 1):
                traced = round_ == rounds
                view = await bench.binding(started["org"], accounts, round_)
                for name in RECHECKS[:2]:
                    runs[name].append(await bench.recheck(github, view, traced))
            await github.leave(accounts[-1])
            runs[RECHECKS[2]].append(await bench.recheck(github, view, False))
            await github.remove_first()
            runs[RECHECKS[3]].append(await bench.recheck(github, view, False))
        return {"members": members, "seats": len(accounts), "runs": runs, "counted": counted}
    finally:
        if registry is not None:
            await registry.close()
        await http.close()
        await github.stop()
        workdir.cleanup()


def summary(runs: list[dict]) -> dict[str, Any]:
    timed = [r for r in runs if not r["traced"]]
    served = [r["server"] for r in runs]
    return {
        "calls": max(r["calls"] for r in runs),
        "pages": max(r["pages"] for r in runs),
        "served": max(s["calls"] for s in served),
        "not_modified": min(s["not_modified"] for s in served),
        "charged": max(s["calls"] - s["not_modified"] for s in served),
        "membership": max(s["membership_reads"] for s in served),
        "lost": max(r["lost"] for r in runs),
        "checked": min(r["checked"] for r in runs),
        "notices": max(r["notices"] for r in runs),
        "statements": max(r["statements"] for r in runs),
        "loss_statements": max(r["loss_statements"] for r in runs),
        # The fastest round: the machine is shared, and only slowness is noise.
        "seconds": min(r["seconds"] for r in timed),
        "concluding": min(r["concluding"] for r in timed),
        "page": statistics.median(s for r in timed for s in r["page_seconds"]),
        "peak": max((r["peak"] for r in runs if r["traced"]), default=None),
    }


def report(results: list[dict[str, Any]]) -> bool:
    met = True
    firsts: list[dict[str, Any]] = []
    seconds: list[dict[str, Any]] = []
    for result in results:
        m, k = result["members"], result["seats"]
        target = math.ceil(m / 100) + 2
        figure(f"M={m}", f"{k} seat holders (K)", f"{math.ceil(m / 100)} pages of 100")
        for name in RECHECKS:
            s = summary(result["runs"][name])
            label = f"M={m} {name}:"
            figure(
                f"{label} calls",
                s["calls"],
                f"target <= {target}; the local GitHub answered {s['served']} listing calls, "
                f"{s['not_modified']} of them 304, {s['charged']} charged, "
                f"+{s['membership']} membership read",
            )
            figure(
                f"{label} time",
                f"{s['seconds'] * 1000:.0f} ms",
                f"{s['page'] * 1000:.1f} ms a page (median), "
                f"{s['concluding'] * 1000:.0f} ms concluding",
            )
            if s["peak"] is not None:
                figure(f"{label} peak memory", f"{s['peak'] / 1024:.0f} KiB")
            if result["counted"]:
                figure(
                    f"{label} SQL statements",
                    s["statements"],
                    f"{s['loss_statements']} of them DELETE FROM losses",
                )
            figure(
                f"{label} outcome",
                f"checked {s['checked']}, lost {s['lost']}",
                f"{s['notices']} notice(s) to the admins",
            )
            if name == "first":
                met &= s["calls"] <= target and s["lost"] == 0 and s["checked"] == k
                firsts.append(s)
            elif name == "second":
                met &= s["served"] == s["not_modified"] == s["calls"] == s["pages"]
                met &= s["charged"] == 0 and s["lost"] == 0
                seconds.append(s)
            elif name == "last-page leaver":
                met &= s["lost"] == 1 and s["notices"] == 1
            else:
                met &= s["lost"] == 2 and s["notices"] == 1  # the earlier loss acted on once
    small, large = results[0]["members"], results[-1]["members"]
    flat = True
    for name, runs in (("first", firsts), ("second", seconds)):
        growth = runs[-1]["peak"] / runs[0]["peak"]
        flat &= growth <= FLAT_MEMORY
        figure(
            f"peak memory {name}, M={small}->{large}",
            f"x{growth:.2f}",
            f"flat: at most x{FLAT_MEMORY}",
        )
    # Linear in pages: a page must not cost more as M grows (beyond the machine's noise);
    # the re-check is then pages x a page's cost, plus the conclusion (which follows K).
    per_page = [s["page"] * 1000 for s in firsts]
    linear = all(b <= PAGE_NOISE * a for a, b in itertools.pairwise(per_page))
    steps = " -> ".join(f"{ms:.1f}" for ms in per_page)
    figure("first, ms a page as M grows", steps, f"linear: never up by more than x{PAGE_NOISE}")
    met &= flat and linear
    return met


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    args = parser.parse_args()
    assert args.seats >= 2 and min(args.members) >= 3 and args.rounds >= 1
    results = []
    for members in args.members:
        progress(f"M = {members}")
        results.append(await measure(members, args.seats, args.rounds, args.postgres))
    met = report(results)
    firsts = [summary(r["runs"]["first"]) for r in results]
    calls = ", ".join(
        f"{r['members']}: {s['calls']}" for r, s in zip(results, firsts, strict=True)
    )
    print(f"TARGET {'MET' if met else 'MISSED'} (first re-check calls by M {calls})")


if __name__ == "__main__":
    asyncio.run(main())
