"""Session-wide Synapse and maubot servers for the integration tests.

Fixtures:
- ``synapse``: a started :class:`devtools.synapse.SynapseServer` (one per session).
- ``maubot_server``: a started :class:`devtools.maubot_server.MaubotServer` (one per session).
- ``mbp``: the plugin, built once per session.
- ``stack``: per module, the plugin on the session servers with its own admin, bot and
  instance (:func:`devtools.stack.running_stack`); ``world`` is the same as a dict.
- ``make_user``: ``await make_user("alice")`` registers ``@alice-<random>:<server>`` on the
  session Synapse, so tests never collide on user IDs.

When a test fails, the tails of the servers' logs are attached to its report
(support/server_logs.py; the hook lives in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
import secrets

import pytest
import pytest_asyncio
from support import server_logs

from devtools.matrix_user import MatrixUser
from devtools.maubot_server import MaubotServer
from devtools.plugin import build_mbp
from devtools.stack import RunningStack, running_stack
from devtools.synapse import SynapseServer


@pytest.fixture(scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapseServer]:
    async with SynapseServer(tmp_path_factory.mktemp("synapse")) as server:
        with server_logs.attached([server]):
            yield server


@pytest.fixture(scope="session")
async def maubot_server(
    tmp_path_factory: pytest.TempPathFactory, synapse: SynapseServer
) -> AsyncIterator[MaubotServer]:
    workdir = tmp_path_factory.mktemp("maubot")
    async with MaubotServer(workdir, homeserver_url=synapse.base_url) as server:
        with server_logs.attached([server]):
            yield server


@pytest.fixture(scope="session")
async def mbp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return await asyncio.to_thread(build_mbp, tmp_path_factory.mktemp("build"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    synapse: SynapseServer,
    maubot_server: MaubotServer,
    mbp: Path,
) -> AsyncIterator[RunningStack]:
    async with running_stack(
        tmp_path_factory.mktemp("stack"), synapse=synapse, maubot=maubot_server, mbp=mbp
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def world(stack: RunningStack) -> dict:
    names = ("admin", "bot", "plugin", "synapse")
    return {name: getattr(stack, name) for name in names}


@pytest.fixture
def make_user(synapse: SynapseServer) -> Callable[..., Awaitable[MatrixUser]]:
    async def make(prefix: str = "user", *, admin: bool = False) -> MatrixUser:
        return await synapse.register_user(f"{prefix}-{secrets.token_hex(3)}", admin=admin)

    return make
