"""Loopback plumbing shared by the harness: free ports, child process groups, HTTP polling.

Everything here binds or contacts 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import logging
import os
from pathlib import Path
import signal
import socket
import subprocess
import time
from typing import IO, Self

import aiohttp

log = logging.getLogger(__name__)

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
    """A server the harness runs on a loopback port, started and stopped one way for all.

    ``start()``: pick a free port (unless one is fixed), write the config, start the
    process in its own group, wait until ``ready_url`` answers, and on a port someone else
    took meanwhile try again on another; then keep that port for every later start (the
    config and state name it). ``stop()`` (idempotent): SIGTERM, then SIGKILL, to the group.
    Also ``restart()``, ``async with``, ``running``, ``pid`` and the logs.

    Subclasses fill in the per-server parts: ``name``, ``ready_url``, ``log_path`` (and
    ``process_log_path`` when stdout/stderr go elsewhere), ``_configure()`` (write the config
    for ``self.port``), ``_command()`` (argv and cwd), and when needed
    ``_check_prerequisites()``, ``_started()`` (after it answered: log in, ...) and
    ``_stopping()`` (before the process stops: close sessions).
    """

    name = "server"
    startup_timeout = 60.0
    # Lower-case log text that says the port was taken (someone bound it after free_port).
    port_taken_markers: tuple[str, ...] = ("address already in use",)
    port_attempts = 3

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self._fixed_port = port
        self.port: int = port or 0
        self.startup_seconds: float | None = None
        self._process: ProcessGroup | None = None

    # -- per-server parts ------------------------------------------------------------------

    @property
    def ready_url(self) -> str:
        """Answers 2xx once the server serves."""
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def process_log_path(self) -> Path:
        """Where the process's stdout and stderr go (default: ``log_path``)."""
        return self.log_path

    def _check_prerequisites(self) -> None:
        """Raise with what to do when something the server needs is missing."""

    def _configure(self) -> None:
        """Write the config for ``self.port`` (before every attempt to start)."""
        raise NotImplementedError

    def _command(self) -> tuple[list[str], Path]:
        """(argv, cwd) of the server process."""
        raise NotImplementedError

    async def _started(self) -> None:
        """After the server answered ``ready_url``."""

    async def _stopping(self) -> None:
        """Before the process is stopped (also after a failed start)."""

    # -- addresses and logs ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} has no port before its first start()")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log_text(self) -> str:
        """The server's log, then the process's output when that is another, non-empty file
        ('' before either exists)."""
        parts = []
        for path in dict.fromkeys((self.log_path, self.process_log_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text.strip():
                parts.append(text)
        return "\n".join(parts)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        if self.running:
            return self
        self._check_prerequisites()
        self.workdir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else self.port_attempts
        for attempt in range(1, attempts + 1):
            self.port = self._fixed_port or free_port()
            self._configure()
            argv, cwd = self._command()
            self._process = ProcessGroup(argv, cwd=cwd, log_path=self.process_log_path)
            started = time.monotonic()
            self._process.start()
            try:
                await wait_http_ok(
                    self.ready_url,
                    timeout=self.startup_timeout,
                    process=self._process,
                    what=self.name,
                )
            except (TimeoutError, RuntimeError) as e:
                await self.stop()
                recent = self.log_tail(200).lower()
                if attempt < attempts and any(m in recent for m in self.port_taken_markers):
                    log.warning("%s: port %s was taken, retrying", self.name, self.port)
                    continue
                raise RuntimeError(f"{e}\n--- {self.name} log tail ---\n{self.log_tail()}") from e
            self.startup_seconds = time.monotonic() - started
            log.info("%s %s up in %.1f s", self.name, self.base_url, self.startup_seconds)
            self._fixed_port = self.port
            await self._started()
            return self
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL, to its group). Idempotent."""
        await self._stopping()
        if self._process is not None:
            await self._process.stop()
            self._process = None

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
