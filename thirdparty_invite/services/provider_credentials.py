"""Each provider's `CredentialStore` (providers/listing.py), kept in the plugin's database
(storage/credentials.py) so that what a provider refreshes at run time survives restarts
and is shared by every instance on one database."""

from __future__ import annotations

from ..durations import now_ms
from ..providers.listing import CredentialStore
from ..storage.credentials import ProviderCredentialStore


class StoredCredentials(CredentialStore):
    def __init__(self, store: ProviderCredentialStore, provider_id: str) -> None:
        self._store = store
        self._provider_id = provider_id

    async def load(self, name: str) -> str | None:
        return await self._store.load(self._provider_id, name)

    async def save(self, name: str, value: str) -> None:
        await self._store.save(self._provider_id, name, value, now_ms())
