"""Invite throughput under Synapse's invite rate limit, with a maubot restart half-way.

    .venv/bin/python bench/invites.py [--invites N] [--rate R] [--burst B]

Synapse gets ``rc_invites`` per_room and per_issuer = R/s with burst B (per_user stays
relaxed), so the best any bot can do is N invites in about (N - B)/R seconds. N users are
registered and signed in to the plugin's web API before the clock starts; then all of them
claim one invite link at once, maubot is restarted once about N/2 invites have landed, and
the clock stops when the admin sees every one of them with membership "invite".

Target: elapsed / (N/R) <= 1.1, nobody lost, nobody invited twice. The exit code is 0 either
way; the verdict is the "TARGET MET" / "TARGET MISSED" line.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
import contextlib
import json
from pathlib import Path
import secrets
import sqlite3
import sys
import time
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stack, figure, gather_limited, progress, run_main
from devtools.matrix_user import MatrixUser
from devtools.plugin import find_link
from devtools.synapse import REFUSED_INVITE_LINE, limited_invites

TARGET_RATIO = 1.1
POLL_INTERVAL = 0.2
_INVITE_429 = REFUSED_INVITE_LINE


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invites", type=int, default=60, help="people to invite (N)")
    parser.add_argument("--rate", type=float, default=2.0, help="invites per second (R)")
    parser.add_argument(
        "--burst", type=int, default=10, help="burst count (B; Synapse's default is 10)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.invites < 2 or args.rate <= 0 or args.burst < 1:
        parser.error("need --invites >= 2, --rate > 0, --burst >= 1")
    return args


async def sign_in(stack: Stack, index: int) -> tuple[MatrixUser, aiohttp.ClientSession]:
    """Register a user and open a web session with a fresh OpenID token of theirs."""
    user = await stack.synapse.register_user(f"guest{index:03d}-{secrets.token_hex(2)}")
    return user, await stack.signed_in(user)


async def claim(http: aiohttp.ClientSession, token: str) -> int:
    async with http.post("api/links/claim", json={"token": token}) as resp:
        await resp.read()
        return resp.status


async def invite_events(admin: MatrixUser, room_id: str) -> list[dict]:
    """Every m.room.member invite event of the room (the whole timeline, oldest first)."""
    events: list[dict] = []
    params = {"dir": "b", "limit": "500", "filter": json.dumps({"types": ["m.room.member"]})}
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages"
    while True:
        page = await admin.request("GET", path, params=params)
        for evt in page.get("chunk", []):
            if evt.get("content", {}).get("membership") == "invite":
                events.append(evt)
        if not page.get("end") or not page.get("chunk"):
            break
        params["from"] = page["end"]
    return sorted(events, key=lambda e: e["origin_server_ts"])


def read_plugin_db(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(audit rows (action, target), queue rows (user_id, state, outcome, attempts))."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        audit = db.execute("SELECT action, target FROM audit_log").fetchall()
        queue = db.execute("SELECT user_id, state, outcome, attempts FROM invite_queue").fetchall()
    return audit, queue


async def run(args: argparse.Namespace) -> None:
    n, rate, burst = args.invites, args.rate, args.burst
    stack = Stack(rc_invites=limited_invites(per_second=rate, burst=burst), keep=args.keep)
    sessions: list[aiohttp.ClientSession] = []
    try:
        progress(f"starting Synapse and maubot in {stack.workdir}")
        await stack.start()
        assert stack.admin is not None and stack.maubot is not None
        admin, maubot = stack.admin, stack.maubot
        room_id = await stack.room("Invite bench")
        _, token = find_link(await stack.link(room_id, f"--uses {n}"))
        progress(f"registering {n} users and opening their web sessions")
        signed_in = await gather_limited(8, [sign_in(stack, i) for i in range(n)])
        users = [user for user, _ in signed_in]
        sessions = [http for _, http in signed_in]
        wanted = {user.user_id for user in users}
        # The bot's own invite (room creation) counted against per_room: let it drain.
        await asyncio.sleep(1 / rate + 0.5)

        progress("clock started: claiming")
        timeout = 3 * n / rate + 120
        started = time.monotonic()
        statuses = await asyncio.gather(*(claim(http, token) for http in sessions))
        claims_done = time.monotonic() - started
        restart_at_count: int | None = None
        restart_wall_ms = 0
        restart_seconds = web_back_seconds = float("nan")
        invited: set[str] = set()
        while True:
            members = await admin.members(room_id)
            invited = {u for u, m in members.items() if m == "invite" and u in wanted}
            if len(invited) == n or time.monotonic() - started > timeout:
                break
            if restart_at_count is None and len(invited) >= n // 2:
                restart_at_count = len(invited)
                progress(f"{len(invited)} invited: restarting maubot")
                restart_wall_ms = int(time.time() * 1000)
                t0 = time.monotonic()
                await maubot.restart()
                restart_seconds = time.monotonic() - t0
                web_back_seconds = restart_seconds + await stack.wait_web_ready()
                continue
            await asyncio.sleep(POLL_INTERVAL)
        elapsed = time.monotonic() - started
        progress("clock stopped: collecting evidence")

        events = await invite_events(admin, room_id)
        events = [e for e in events if e["state_key"] in wanted]
        invite_events_per_user = Counter(e["state_key"] for e in events)
        stamps = [e["origin_server_ts"] for e in events]
        before = [t for t in stamps if t < restart_wall_ms]
        after = [t for t in stamps if t >= restart_wall_ms]
        restart_gap = (min(after) - max(before)) / 1000 if before and after else float("nan")
        first_to_last = (stamps[-1] - stamps[0]) / 1000 if len(stamps) > 1 else float("nan")
        for http in sessions:
            await http.close()
        sessions = []
        await maubot.stop()  # the database is read with maubot stopped
        audit, queue = read_plugin_db(stack.plugin_database())
        synapse_429 = len(_INVITE_429.findall(stack.synapse.log_text()))
        # A final check over the whole timeline (not only the poll that stopped the clock).
        final_members = await admin.members(room_id)
    finally:
        for http in sessions:
            await http.close()
        await stack.stop()

    lost = sorted(u for u in wanted if final_members.get(u) != "invite")
    audit_invited = Counter(target for action, target in audit if action == "invited")
    audit_actions = Counter(action for action, target in audit if target in wanted)
    dup_audit = {u for u, count in audit_invited.items() if count > 1}
    retried_invited = {u for u, _state, outcome, att in queue if outcome == "invited" and att > 1}
    dup_homeserver = {u for u, count in invite_events_per_user.items() if count > 1}
    duplicated = dup_audit | retried_invited | dup_homeserver
    queue_states = Counter(f"{state}/{outcome}" for _u, state, outcome, _a in queue)
    ideal = n / rate
    ideal_burst = max(n - burst, 0) / rate
    ratio = elapsed / ideal
    ratio_burst = elapsed / ideal_burst if ideal_burst else float("nan")

    figure("invites (N)", n)
    figure("rate (R, invites/s)", f"{rate:g}", "rc_invites per_room and per_issuer")
    figure("burst (B)", burst)
    figure(
        "claims accepted (202)",
        f"{statuses.count(202)}/{n}",
        f"all answered in {claims_done:.2f} s",
    )
    figure("elapsed (s)", f"{elapsed:.2f}", "first claim sent -> all N seen as 'invite'")
    figure("first->last invite event (s)", f"{first_to_last:.2f}", "origin_server_ts")
    figure("ideal N/R (s)", f"{ideal:.2f}")
    figure("ratio elapsed/(N/R)", f"{ratio:.3f}", f"target <= {TARGET_RATIO}")
    figure("burst-adjusted ideal (N-B)/R (s)", f"{ideal_burst:.2f}")
    figure("ratio elapsed/((N-B)/R)", f"{ratio_burst:.3f}", "informational")
    figure("lost", len(lost), "users not 'invite' at the end" + (f": {lost}" if lost else ""))
    figure(
        "duplicated",
        len(duplicated),
        f"{len(dup_audit)} with >1 'invited' audit rows, {len(retried_invited)} queue rows "
        f"'invited' after attempts>1 (a retried non-429 failure: suspect, not proof), "
        f"{len(dup_homeserver)} with >1 invite event in the room",
    )
    figure("audit actions", dict(audit_actions), "already_invited = in flight at the restart")
    figure("queue rows", dict(queue_states))
    figure("restart at", f"{restart_at_count} invited")
    figure("restart: maubot stop+start (s)", f"{restart_seconds:.2f}", "until its API answers")
    figure("restart: plugin web API back (s)", f"{web_back_seconds:.2f}", "from restart start")
    figure("restart: invite gap (s)", f"{restart_gap:.2f}", "last invite before -> first after")
    figure("429s on /invite", synapse_429, "Synapse access log")
    met = ratio <= TARGET_RATIO and not lost and not duplicated
    print("TARGET MET" if met else "TARGET MISSED", flush=True)


def main() -> None:
    run_main(run, parse_args())


if __name__ == "__main__":
    main()
