"""Session-wide Synapse and maubot servers for the integration tests.

Fixtures:
- ``synapse``: a started :class:`devtools.synapse.SynapseServer` (one per session).
- ``maubot_server``: a started :class:`devtools.maubot_server.MaubotServer` (one per session).
- ``make_user``: ``await make_user("alice")`` registers ``@alice-<random>:<server>`` on the
  session Synapse, so tests never collide on user IDs.

When a test fails, the tails of the Synapse and maubot logs are attached to its report
(support/server_logs.py; the hook lives in tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
import secrets
import sys

import pytest
from support import server_logs

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # make ``devtools`` importable however pytest is invoked
    sys.path.insert(0, str(REPO_ROOT))

from devtools.matrix_user import MatrixUser  # noqa: E402
from devtools.maubot_server import MaubotServer  # noqa: E402
from devtools.synapse import SynapseServer  # noqa: E402


@pytest.fixture(scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server_logs.attach("synapse log tail", lambda: server.log_tail(40))
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        server_logs.detach("synapse log tail")


@pytest.fixture(scope="session")
async def maubot_server(
    tmp_path_factory: pytest.TempPathFactory, synapse: SynapseServer
) -> AsyncIterator[MaubotServer]:
    server = MaubotServer(tmp_path_factory.mktemp("maubot"), homeserver_url=synapse.base_url)
    server_logs.attach("maubot log tail", lambda: server.log_tail(60))
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        server_logs.detach("maubot log tail")


@pytest.fixture
def make_user(synapse: SynapseServer) -> Callable[..., Awaitable[MatrixUser]]:
    async def make(prefix: str = "user", *, admin: bool = False) -> MatrixUser:
        return await synapse.register_user(f"{prefix}-{secrets.token_hex(3)}", admin=admin)

    return make
