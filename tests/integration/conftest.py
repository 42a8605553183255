"""Session-wide Synapse and maubot servers for the integration tests.

Fixtures:
- ``synapse``: a started :class:`devtools.synapse.SynapseServer` (one per session).
- ``maubot_server``: a started :class:`devtools.maubot_server.MaubotServer` (one per session).
- ``make_user``: ``await make_user("alice")`` registers ``@alice-<random>:<server>`` on the
  session Synapse, so tests never collide on user IDs.

When a test fails, the tails of the Synapse and maubot logs are attached to its report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
import secrets
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # make ``devtools`` importable however pytest is invoked
    sys.path.insert(0, str(REPO_ROOT))

from devtools.matrix_user import MatrixUser  # noqa: E402
from devtools.maubot_server import MaubotServer  # noqa: E402
from devtools.synapse import SynapseServer  # noqa: E402

_log_sources: dict[str, Callable[[], str]] = {}


@pytest.fixture(scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    _log_sources["synapse log tail"] = lambda: server.log_tail(40)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        _log_sources.pop("synapse log tail", None)


@pytest.fixture(scope="session")
async def maubot_server(
    tmp_path_factory: pytest.TempPathFactory, synapse: SynapseServer
) -> AsyncIterator[MaubotServer]:
    server = MaubotServer(tmp_path_factory.mktemp("maubot"), homeserver_url=synapse.base_url)
    _log_sources["maubot log tail"] = lambda: server.log_tail(60)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        _log_sources.pop("maubot log tail", None)


@pytest.fixture
def make_user(synapse: SynapseServer) -> Callable[..., Awaitable[MatrixUser]]:
    async def make(prefix: str = "user", *, admin: bool = False) -> MatrixUser:
        return await synapse.register_user(f"{prefix}-{secrets.token_hex(3)}", admin=admin)

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for title, source in _log_sources.items():
            try:
                report.sections.append((title, source()))
            except Exception as e:  # never hide the real failure
                report.sections.append((title, f"(could not read log: {e})"))
    return report
