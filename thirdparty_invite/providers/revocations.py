"""Token revocations that run in the background (RFC 7009): a person's outcome, and a check
cancelled at a stop, never wait for the provider's answer, and dropped is still not left
unrevoked. Each is bounded; `done()` (a provider's `close()`) waits for those running.
Best effort: a failure is logged by the OAuth client (never the token), and changes nothing
the person sees."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .oauth import OAuthClient

log = logging.getLogger(__name__)

REVOKE_TIMEOUT = 5.0  # seconds a background revocation may take


class BackgroundRevocations:
    """One provider's revocations in flight."""

    def __init__(self, timeout: float = REVOKE_TIMEOUT) -> None:
        self.timeout = timeout
        self._running: set[asyncio.Task[Any]] = set()

    def revoke_later(self, client: OAuthClient, url: str, token: str) -> None:
        """Revoke `token` at `url` (authenticating as `client`) in the background."""
        task = asyncio.get_running_loop().create_task(self._revoke(client, url, token))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _revoke(self, client: OAuthClient, url: str, token: str) -> None:
        try:
            await asyncio.wait_for(client.revoke_token(url, token), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            name = client.provider_name
            log.info("%s: revoking a token took longer than %s s", name, self.timeout)

    async def done(self) -> None:
        """Wait for the revocations still running (each bounded by the timeout)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
