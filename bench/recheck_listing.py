"""What walking a GitHub organisation's member listing costs, as a re-check walks it.

    .venv/bin/python bench/recheck_listing.py [--members 100 1000 10000] [--rounds 3]

For each M, a local GitHub (tests/support/providers/github_crowd.py, in its own process,
so its memory is not counted) serves an organisation of M generated members, and the
plugin's `GitHubProvider.listing(org:...)` is walked twice with the re-check token:

* a first walk, keeping only each page's ETag and a count of members (as the re-check
  service does: pages are compared and dropped, never gathered);
* a second walk with those ETags, nothing changed: every page should answer 304.

Prints per walk: API calls (as the listing counted them, and as the local GitHub counted
them, 304s apart), wall time (the fastest of the rounds) and the median page's time, and the peak
memory the walk allocated (tracemalloc). Target (issue 11): calls = ceil(M/100) + at
most 2, time linear in pages, peak memory flat in M, and the second walk only 304s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
from pathlib import Path
import statistics
import sys
import time
import tracemalloc
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from thirdparty_invite.net.guard import AddressPolicy  # noqa: E402
from thirdparty_invite.net.http import OutboundHTTP  # noqa: E402
from thirdparty_invite.providers.github import GitHubProvider  # noqa: E402

# Peak memory may grow by this factor from the smallest M to the largest and still be flat
# (the ETags kept for the second walk, one per page, are the only thing that grows).
FLAT_MEMORY = 1.5


class LocalGitHub:
    """The fake GitHub with M members, in a child process."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> dict[str, Any]:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "support.providers.github_crowd",
            "--members",
            str(self.members),
            cwd=ROOT / "tests",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return await self._line()

    async def counts(self) -> dict[str, int]:
        """The calls it answered since the last time asked (and resets them)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"counts\n")
        await self.process.stdin.drain()
        return await self._line()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def _line(self) -> Any:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the local GitHub stopped")
        return json.loads(line)


async def walk(listing: Any, etags: dict[str, str] | None, traced: bool) -> dict[str, Any]:
    """One walk: calls, pages, members listed, 304s, seconds, peak bytes (when `traced`:
    tracemalloc slows the walk, so traced walks are not timed); the ETags."""
    kept: dict[str, str] = {}
    figures: dict[str, Any] = {"calls": 0, "pages": 0, "members": 0, "unchanged": 0}
    figures["traced"] = traced
    if traced:
        tracemalloc.start()
    started = last = time.perf_counter()
    durations: list[float] = []  # per page (untraced walks only: they are not measured)
    async for page in listing.pages(None, etags):
        if not traced:
            now = time.perf_counter()
            durations.append(now - last)
            last = now
        figures["calls"] += page.calls
        figures["pages"] += 1
        if page.members is None:
            figures["unchanged"] += 1
        else:
            figures["members"] += len(page.members)
        if page.etag:
            kept[page.key] = page.etag
    figures["seconds"] = time.perf_counter() - started
    figures["durations"] = durations
    if traced:
        figures["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    figures["etags"] = kept
    return figures


async def measure(members: int, rounds: int) -> dict[str, Any]:
    github = LocalGitHub(members)
    http = OutboundHTTP(timeout=30.0, policy=AddressPolicy())
    try:
        started = await github.start()
        provider = GitHubProvider.from_config("github", started["section"], http)
        listing = provider.listing(provider.parse_rule(f"org:{started['org']}"))
        assert listing is not None
        firsts, seconds = [], []
        for round_ in range(rounds + 1):
            # The provider is kept, as the re-check service keeps it: only the first walk
            # reads the token's own membership. The last round measures memory.
            traced = round_ == rounds
            first = await walk(listing, None, traced)
            first["server"] = await github.counts()
            second = await walk(listing, first["etags"], traced)
            second["server"] = await github.counts()
            firsts.append(first)
            seconds.append(second)
        return {"members": members, "first": firsts, "second": seconds}
    finally:
        await http.close()
        await github.stop()


def summary(walks: list[dict[str, Any]]) -> dict[str, Any]:
    worst = max(walks, key=lambda w: w["calls"])
    return {
        "calls": worst["calls"],
        "pages": worst["pages"],
        "members": worst["members"],
        "unchanged": min(w["unchanged"] for w in walks),
        "served": max(w["server"]["calls"] for w in walks),
        "served_304": min(w["server"]["not_modified"] for w in walks),
        # The fastest round: the machine is shared, and only slowness is noise.
        "seconds": min(w["seconds"] for w in walks if not w["traced"]),
        "peak": max(w["peak"] for w in walks if w["traced"]),
        # The median page: a page's own cost, whatever else the shared machine runs.
        "page": statistics.median(d for w in walks for d in w["durations"]),
    }


def report(results: list[dict[str, Any]]) -> bool:
    print(
        f"{'M':>6} {'walk':<7} {'calls':>6} {'target':>6} {'pages':>5} {'304s':>5} "
        f"{'charged':>7} {'time ms':>8} {'ms/page':>7} {'peak KiB':>8}"
    )
    met = True
    peaks = []
    per_page = []
    for result in results:
        m = result["members"]
        target = math.ceil(m / 100) + 2
        for name in ("first", "second"):
            s = summary(result[name])
            charged = s["served"] - s["served_304"]
            ms, page_ms = s["seconds"] * 1000, s["page"] * 1000
            print(
                f"{m:>6} {name:<7} {s['calls']:>6} {target:>6} {s['pages']:>5} "
                f"{s['served_304']:>5} {charged:>7} {ms:>8.1f} {page_ms:>7.2f} "
                f"{s['peak'] / 1024:>8.1f}"
            )
            if name == "first":
                met &= s["calls"] <= target and s["members"] == m
                peaks.append(s["peak"])
                per_page.append(page_ms)
            else:
                met &= s["unchanged"] == s["pages"] and charged == 0
    flat = max(peaks) <= FLAT_MEMORY * min(peaks)
    # Linear in pages: the median page must not cost more as M grows (by more than 1.5x,
    # for the noise of a shared machine); the walk is then pages x the page's cost.
    linear = all(b <= 1.5 * a for a, b in itertools.pairwise(per_page))
    print(
        f"peak memory from M={results[0]['members']} to M={results[-1]['members']}: "
        f"x{max(peaks) / min(peaks):.2f} (flat: at most x{FLAT_MEMORY})"
    )
    steps = " -> ".join(f"{ms:.2f}" for ms in per_page)
    print(f"first walk, ms per page as M grows: {steps} (linear: never up by more than x1.5)")
    met &= flat and linear
    return met


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = []
    for members in args.members:
        print(f"# M = {members}", file=sys.stderr, flush=True)
        results.append(await measure(members, args.rounds))
    met = report(results)
    print("TARGET MET" if met else "TARGET MISSED")


if __name__ == "__main__":
    asyncio.run(main())
