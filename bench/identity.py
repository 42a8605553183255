"""The identity step: the plugin's POST api/session against Synapse's bare userinfo check.

    .venv/bin/python bench/identity.py [--requests M] [--concurrency C] [--rounds K]

Every plugin sign-in asks the homeserver's ``/_matrix/federation/v1/openid/userinfo`` once,
so that request alone is (a) "bare", the reference for (b) "plugin", the plugin's
``POST api/session``. Tokens for all rounds are minted up front; in each round the same M
tokens go first to userinfo (which does not consume them) and then once each to the plugin
(which refuses a token it has seen), each phase with C concurrent workers over one aiohttp
session.

A third, informational phase (c) "floor" sends ``GET api/session`` without a cookie: the
plugin answers 401 without any verification, so (c) is what a request through maubot's web
server costs at all. CPU time per request of Synapse, maubot and this script is printed for
each phase (from /proc), to show which process the time goes to.

Targets (DESIGN.md, "Performance"): maubot's CPU per sign-in (b) is at most Synapse's CPU
per bare userinfo (a), and the plugin's p99 is at most twice the bare call's p99, under 16
concurrent sign-ins. On one shared machine the two servers split the CPU, so throughput
ratios mostly measure that split; they are printed for information only. The exit code is
0 either way; the verdict is the "TARGET MET" / "TARGET MISSED" line.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
import os
from pathlib import Path
import secrets
import sys
import time

import aiohttp
import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Stack, figure, gather_limited, percentile, progress, run_main
from devtools.matrix_user import MatrixUser

TARGET_CPU_RATIO = 1.0  # maubot CPU per sign-in / Synapse CPU per bare userinfo
TARGET_P99_RATIO = 2.0  # plugin p99 / bare p99
USERS = 5
WARMUP = 20
USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0.0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@attrs.define
class Phase:
    name: str
    seconds: float = 0.0
    cpu: dict[str, float] = attrs.field(factory=dict)  # CPU seconds by process name
    latencies: list[float] = attrs.field(factory=list)
    errors: Counter[str] = attrs.field(factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    def add(self, other: Phase) -> None:
        self.seconds += other.seconds
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.latencies += other.latencies
        self.errors.update(other.errors)

    def p(self, fraction: float) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies, fraction) * 1000

    def cpu_ms(self, process: str) -> float:
        """CPU milliseconds of one process per request of this phase."""
        return self.cpu.get(process, 0.0) / self.requests * 1000 if self.requests else 0.0

    def describe(self) -> str:
        return (
            f"{self.throughput:7.1f} req/s  p50 {self.p(0.50):6.1f} ms  "
            f"p95 {self.p(0.95):6.1f} ms  p99 {self.p(0.99):6.1f} ms  "
            f"({self.requests} in {self.seconds:.2f} s)"
        )

    def describe_cpu(self) -> str:
        return "  ".join(f"{name} {self.cpu_ms(name):.3f}" for name in self.cpu)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per phase (M)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers (C)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bare then plugin")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be >= 1")
    return args


# One request of a phase: (HTTP status, errcode or "").
Request = Callable[[aiohttp.ClientSession, dict], Awaitable[tuple[int, str]]]


async def run_phase(
    name: str,
    session: aiohttp.ClientSession,
    request: Request,
    tokens: list[dict],
    workers: int,
    pids: dict[str, int | None],
) -> Phase:
    """Send one request per token with ``workers`` concurrent workers; time each one."""
    phase = Phase(name)
    pids = {**pids, "bench": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    pending = iter(tokens)

    async def worker() -> None:
        for token in pending:  # a shared iterator: each token is taken by one worker
            t0 = time.perf_counter()
            status, errcode = await request(session, token)
            phase.latencies.append(time.perf_counter() - t0)
            if status != 200:
                phase.errors[f"{status} {errcode}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    phase.seconds = time.perf_counter() - started
    phase.cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    return phase


async def errcode_of(resp: aiohttp.ClientResponse) -> str:
    if resp.status == 200:
        await resp.read()
        return ""
    try:
        return str((await resp.json(content_type=None)).get("errcode", ""))
    except (ValueError, AttributeError, aiohttp.ClientError):
        return ""


def bare_request(base_url: str) -> Request:
    async def request(session: aiohttp.ClientSession, token: dict) -> tuple[int, str]:
        params = {"access_token": token["access_token"]}
        async with session.get(base_url + USERINFO_PATH, params=params) as resp:
            return resp.status, await errcode_of(resp)

    return request


def plugin_request(web_url: str) -> Request:
    async def request(session: aiohttp.ClientSession, token: dict) -> tuple[int, str]:
        body = {
            "access_token": token["access_token"],
            "matrix_server_name": token["matrix_server_name"],
        }
        async with session.post(web_url + "api/session", json=body) as resp:
            return resp.status, await errcode_of(resp)

    return request


def floor_request(web_url: str) -> Request:
    """GET api/session without a cookie: the plugin answers 401 at once (no verification).

    What any request through maubot's web server costs: the floor under (b)."""

    async def request(session: aiohttp.ClientSession, token: dict) -> tuple[int, str]:
        async with session.get(web_url + "api/session") as resp:
            await resp.read()
            return (200 if resp.status == 401 else resp.status), ""

    return request


def client(workers: int, origin: str | None = None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=workers),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"Origin": origin} if origin else None,
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def mint(users: list[MatrixUser], count: int) -> list[dict]:
    return await gather_limited(
        8, [users[i % len(users)].request_openid_token() for i in range(count)]
    )


async def run(args: argparse.Namespace) -> None:
    m, workers, rounds = args.requests, args.concurrency, args.rounds
    # The per-address limit on sign-ins is off: every request here comes from 127.0.0.1.
    stack = Stack(keep=args.keep, instance_config={"rate_limits": {"session": {"burst": 0}}})
    try:
        progress(f"starting Synapse and maubot in {stack.workdir}")
        await stack.start()
        users = [
            await stack.synapse.register_user(f"signin{i}-{secrets.token_hex(2)}")
            for i in range(USERS)
        ]
        progress(f"minting {rounds * m + WARMUP} OpenID tokens for {USERS} users")
        tokens = await mint(users, rounds * m + WARMUP)
        warmup, tokens = tokens[:WARMUP], tokens[WARMUP:]
        bare = bare_request(stack.synapse.base_url)
        plugin = plugin_request(stack.web_url)
        floor = floor_request(stack.web_url)
        totals = {name: Phase(name) for name in ("bare", "plugin", "floor")}
        # Which processes burn the CPU on this 2-core machine.
        pids = {"synapse": stack.synapse.pid, "maubot": stack.maubot.pid}
        per_round: list[tuple[Phase, Phase]] = []
        async with client(workers) as bare_http, client(workers, stack.origin) as plugin_http:
            # Warm-up: connection pools, caches and the plugin's own HTTP session.
            await run_phase("warmup", bare_http, bare, warmup, workers, pids)
            await run_phase("warmup", plugin_http, plugin, warmup, workers, pids)
            for r in range(rounds):
                batch = tokens[r * m : (r + 1) * m]
                progress(f"round {r + 1}/{rounds}: bare userinfo, then plugin api/session")
                a = await run_phase("bare", bare_http, bare, batch, workers, pids)
                b = await run_phase("plugin", plugin_http, plugin, batch, workers, pids)
                per_round.append((a, b))
                totals["bare"].add(a)
                totals["plugin"].add(b)
                totals["floor"].add(
                    await run_phase("floor", plugin_http, floor, batch, workers, pids)
                )
    finally:
        await stack.stop()

    figure("requests per phase (M)", m)
    figure("concurrency (C)", workers)
    figure("rounds", rounds, "each: bare userinfo, then plugin api/session, same tokens")
    for r, (a, b) in enumerate(per_round, 1):
        figure(f"round {r} bare", a.describe())
        figure(f"round {r} plugin", b.describe())
        figure(
            f"round {r} CPU ratio, p99 ratio",
            f"{b.cpu_ms('maubot') / a.cpu_ms('synapse'):.3f}  {b.p(0.99) / a.p(0.99):.3f}",
        )
    bare_total, plugin_total, floor_total = totals["bare"], totals["plugin"], totals["floor"]
    throughput_ratio = plugin_total.throughput / bare_total.throughput
    cpu_ratio = plugin_total.cpu_ms("maubot") / bare_total.cpu_ms("synapse")
    p99_ratio = plugin_total.p(0.99) / bare_total.p(0.99)
    figure("bare (all rounds)", bare_total.describe())
    figure("plugin (all rounds)", plugin_total.describe())
    figure(
        "floor (all rounds)",
        floor_total.describe(),
        "GET api/session, no cookie: 401, maubot web stack only",
    )
    figure("CPU ms/request, bare", bare_total.describe_cpu())
    figure("CPU ms/request, plugin", plugin_total.describe_cpu())
    figure("CPU ms/request, floor", floor_total.describe_cpu())
    figure(
        "CPU ratio maubot/synapse",
        f"{cpu_ratio:.3f}",
        f"maubot ms per sign-in / Synapse ms per bare userinfo; target <= {TARGET_CPU_RATIO}",
    )
    figure(
        "p99 ratio plugin/bare",
        f"{p99_ratio:.3f}",
        f"{plugin_total.p(0.99):.1f} ms / {bare_total.p(0.99):.1f} ms; "
        f"target <= {TARGET_P99_RATIO}",
    )
    figure("throughput ratio plugin/bare", f"{throughput_ratio:.3f}", "informational")
    figure(
        "bare non-200",
        sum(bare_total.errors.values()),
        ", ".join(f"{k}: {v}" for k, v in bare_total.errors.items()),
    )
    figure(
        "plugin non-200",
        sum(plugin_total.errors.values()),
        ", ".join(f"{k}: {v}" for k, v in plugin_total.errors.items()),
    )
    met = (
        cpu_ratio <= TARGET_CPU_RATIO
        and p99_ratio <= TARGET_P99_RATIO
        and not plugin_total.errors
        and not bare_total.errors
    )
    print("TARGET MET" if met else "TARGET MISSED", flush=True)


def main() -> None:
    run_main(run, parse_args())


if __name__ == "__main__":
    main()
