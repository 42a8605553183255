"""Loopback plumbing shared by the harness: free ports, child process groups, HTTP polling.

Everything here binds or contacts 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import os
from pathlib import Path
import signal
import socket
import subprocess
import time
from typing import IO, Self

import aiohttp

LOOPBACK = "127.0.0.1"

# Process groups started by this Python process that have not been stopped yet. They are
# killed at interpreter exit so that a crashed test run or a Ctrl-C leaves nothing behind.
_live_groups: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_live_groups):
        _kill_group(pgid, signal.SIGKILL)
    _live_groups.clear()


def _child_setup(parent_pid: int) -> None:
    """Runs in the child before exec: die with the parent (Linux PR_SET_PDEATHSIG).

    Covers the cases atexit cannot: the harness process killed by SIGTERM/SIGKILL.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class ProcessGroup:
    """A child process started in its own session (= its own process group).

    ``stop()`` sends SIGTERM to the whole group, waits, then SIGKILLs it. Output goes to
    ``log_path`` (stdout and stderr together).
    """

    def __init__(self, argv: list[str], *, cwd: Path, log_path: Path, env: dict | None = None):
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_path
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.argv[0]} is already running")
        self._log_file = open(self.log_path, "ab")
        env = {**os.environ, **(self.env or {})}
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=functools.partial(_child_setup, os.getpid()),
        )
        _live_groups.add(self._proc.pid)

    async def stop(self, timeout: float = 10.0) -> None:
        """Terminate the group; kill it if it is still alive after ``timeout``. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid
        _kill_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, timeout)
        # Kill the whole group even if the leader exited: children may linger.
        _kill_group(pgid, signal.SIGKILL)
        if proc.poll() is None:
            await asyncio.to_thread(proc.wait)
        _live_groups.discard(pgid)
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


async def wait_http_ok(
    url: str,
    *,
    timeout: float,
    process: ProcessGroup | None = None,
    what: str = "server",
) -> float:
    """Poll ``url`` until it answers 2xx. Returns the seconds waited.

    Raises ``TimeoutError`` after ``timeout`` or ``RuntimeError`` when ``process`` exits
    first; both carry the tail of the process log.
    """
    start = time.monotonic()
    client_timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            if process is not None and not process.running:
                raise RuntimeError(
                    f"{what} exited with code {process.returncode} before answering {url}.\n"
                    f"--- tail of {process.log_path} ---\n{tail(process.log_path)}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url) as resp:
                    if resp.status < 300:
                        return time.monotonic() - start
            if time.monotonic() - start > timeout:
                log_tail = tail(process.log_path) if process is not None else ""
                raise TimeoutError(
                    f"{what} did not answer {url} within {timeout:.0f} s.\n"
                    f"--- log tail ---\n{log_tail}"
                )
            await asyncio.sleep(0.1)


class ManagedServer:
    """Lifecycle shared by the servers the harness runs: subclasses define start(), stop()
    (idempotent) and log_path (or log_text()), and keep their process in `_process`;
    restart, `async with`, `running`, `log_text` and `log_tail` come from here."""

    _process: ProcessGroup | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def log_text(self) -> str:
        """The server's log file ('' before it exists); override to add other files."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def restart(self) -> Self:
        """Stop and start again with the same port and state."""
        await self.stop()
        return await self.start()

    async def __aenter__(self) -> Self:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
