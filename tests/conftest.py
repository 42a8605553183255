"""Fixtures shared by every test: the plugin database on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
import logging
from pathlib import Path
import secrets

from maubot.lib.plugin_db import ProxyPostgresDatabase
from mautrix.util.async_db import Database
import pytest
import pytest_asyncio
from support import server_logs
from support.postgres import POSTGRES_URL

from thirdparty_invite.storage import Storage, upgrade_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


async def _postgres_database() -> AsyncIterator[Database]:
    """A fresh per-instance schema, exactly as maubot gives a plugin on Postgres."""
    pool = Database.create(POSTGRES_URL, log=logging.getLogger("test.pg"))
    await pool.start()
    db = ProxyPostgresDatabase(
        pool=pool,
        instance_id=f"test_{secrets.token_hex(6)}",
        max_conns=3,
        upgrade_table=upgrade_table,
        log=logging.getLogger("test.pg.instance"),
    )
    await db.start()
    try:
        yield db
    finally:
        await db.stop()
        await db.delete()
        await pool.stop()


async def _sqlite_database(path: Path) -> AsyncIterator[Database]:
    db = Database.create(
        f"sqlite:{path}", upgrade_table=upgrade_table, log=logging.getLogger("test.sqlite")
    )
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


@pytest_asyncio.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    loop_scope="session",
)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async for db in _sqlite_database(tmp_path / "plugin.db"):
            yield db
    else:
        async for db in _postgres_database():
            yield db


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_database() -> AsyncIterator[Database]:
    async for db in _postgres_database():
        yield db


@pytest.fixture
def storage(database: Database) -> Storage:
    return Storage(database)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        report.sections.extend(server_logs.sections())
    return report
