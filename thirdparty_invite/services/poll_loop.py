"""The background loop of a worker (the invite queue, the re-checks): a pass over what is
due, then a wait until the next is due or someone wakes it.

A failing pass (say the database is down) logs its traceback once and, while the same
trouble lasts, one short line per retry, so the log is not flooded every few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import logging


class PollLoop:
    def __init__(
        self,
        name: str,
        what: str,
        work: Callable[[], Awaitable[object]],
        seconds_until_due: Callable[[], Awaitable[float]],
        log: logging.Logger,
        retry_after: float,
    ) -> None:
        self.name = name
        self.what = what  # "Invite queue pass", for the log lines
        self.work = work
        self.seconds_until_due = seconds_until_due
        self.log = log
        self.retry_after = retry_after
        self.stopping = False
        self._wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None:
            self.stopping = False
            self.task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 0.0) -> bool:
        """Stop; the pass in progress may finish for `grace` seconds before it is
        cancelled (0: at once). True when the loop ended by itself."""
        task, self.task = self.task, None
        if task is None:
            return True
        self.stopping = True
        self._wake.set()
        if grace > 0:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=grace)
                return True
            except asyncio.TimeoutError:
                pass
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return False

    async def _run(self) -> None:
        failing = False
        while not self.stopping:
            # Cleared before the pass, not after: a wake-up (new work, or stop()) that
            # arrives during the pass is then not lost, and the wait below returns at once.
            self._wake.clear()
            try:
                await self.work()
                delay = await self.seconds_until_due()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if failing:
                    self.log.warning("%s failed again: %s", self.what, type(e).__name__)
                else:
                    self.log.exception("%s failed; retrying shortly", self.what)
                failing, delay = True, self.retry_after
            if self.stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
