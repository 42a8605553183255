"""Shared plumbing of the benchmarks: the running stack (Synapse, maubot with the plugin),
figures and progress lines.

Everything listens on 127.0.0.1 only and lives in a temporary directory; ``Stack.stop()``
stops every process the stack started (call it in a ``finally``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from pathlib import Path
import shutil
import sys
import tempfile
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devtools.stack import RunningStack, running_stack  # noqa: E402


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def figure(name: str, value: object, note: str = "") -> None:
    """One figure per line, ``name: value  (note)``, flushed at once."""
    text = f"{name:<34} {value}"
    if note:
        text += f"  ({note})"
    print(text, flush=True)


def progress(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


async def gather_limited(limit: int, coros: Sequence[Any]) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` coroutines running at once."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))


class Stack:
    """:func:`devtools.stack.running_stack` in a temporary directory, with start()/stop()
    for the benches' try/finally; once started, it reads as the :class:`RunningStack`
    (``stack.synapse``, ``stack.web_url``, ``stack.signed_in(user)``, ...)."""

    def __init__(self, *, keep: bool = False, **options: Any) -> None:
        """``keep``: leave the work directory; ``options`` go to running_stack."""
        self.workdir = Path(tempfile.mkdtemp(prefix="tpi-bench-"))
        self.keep = keep
        self._options = options
        self._exit = contextlib.AsyncExitStack()
        self._running: RunningStack | None = None

    async def start(self) -> Stack:
        self._running = await self._exit.enter_async_context(
            running_stack(self.workdir, **self._options)
        )
        return self

    async def stop(self) -> None:
        """Stop what the stack started. Idempotent; safe after a failed start."""
        try:
            await self._exit.aclose()
        finally:
            self._running = None
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __getattr__(self, name: str) -> Any:
        running = self.__dict__.get("_running")
        if running is None:
            raise AttributeError(f"{name}: the bench stack is not running")
        return getattr(running, name)


def run_main(run: Callable[[Any], Awaitable[None]], args: Any) -> None:
    """Run a bench's coroutine; Ctrl-C ends it after its finally blocks stopped the servers."""
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted; everything was stopped", file=sys.stderr)
