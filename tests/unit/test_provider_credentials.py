"""Provider credentials in the plugin's database (storage/credentials.py through
services/provider_credentials.py): a save replaces, on SQLite and PostgreSQL, and
Patreon's rotated creator pair survives a restart (a new provider on the same database
keeps listing after its configured refresh token was used up)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from support.providers.patreon import FakePatreon

from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.patreon import PatreonProvider
from thirdparty_invite.services.provider_credentials import StoredCredentials
from thirdparty_invite.storage import Storage


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[OutboundHTTP]:
    outbound = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
    yield outbound
    await outbound.close()


async def test_a_save_replaces_per_provider_and_name(storage: Storage) -> None:
    patreon = StoredCredentials(storage.credentials, "patreon")
    other = StoredCredentials(storage.credentials, "github")
    assert await patreon.load("creator_tokens") is None
    await patreon.save("creator_tokens", "one")
    await patreon.save("creator_tokens", "two")
    await other.save("creator_tokens", "theirs")
    assert await patreon.load("creator_tokens") == "two"
    assert await other.load("creator_tokens") == "theirs"
    assert await storage.db.fetchval("SELECT COUNT(*) FROM provider_credentials") == 2


async def test_patreons_rotated_pair_survives_a_restart(
    storage: Storage, http: OutboundHTTP
) -> None:
    async with FakePatreon() as patreon:
        patron = patreon.add_account("Pat")
        patreon.pledge(patron, "Gold")
        section = patreon.config_section(recheck=True)

        async def listed() -> set[str]:
            provider = PatreonProvider.from_config("patreon", section, http)
            assert isinstance(provider, PatreonProvider)
            provider.credentials = StoredCredentials(storage.credentials, provider.id)
            listing = provider.listing(provider.parse_rule("patron"))
            assert listing is not None
            return {m async for page in listing.pages() for m in page.members or ()}

        for _restart in range(3):
            patreon.expire_tokens()  # each time the access token has expired
            assert await listed() == {patron.id}
        assert patreon.creator_api.refreshes == 3  # each refresh used the last rotated token
