"""Registration tokens on the homeserver new accounts are made on, behind a small interface.

`TokenMinter` is what the registration service needs: mint a token, read how it was used,
delete it. `SynapseAdminMinter` implements it over Synapse's admin API
(`/_synapse/admin/v1/registration_tokens`). It uses a plain aiohttp session from
net/http.py, not the bot's mautrix client: mautrix logs request and response bodies at
DEBUG, and those carry the tokens. The admin access token is sent in a header only; no
message raised or logged here contains it or a registration token.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import attrs

from ..net.guard import AddressPolicy
from ..net.http import OutboundHTTP, ResponseTooLarge, read_json_limited

MAX_ANSWER_BYTES = 64 * 1024
_TOKENS = "/v1/registration_tokens"


@attrs.frozen
class RegistrationToken:
    token: str = attrs.field(repr=False)
    uses_allowed: int | None
    pending: int  # registrations that started with it and have not finished
    completed: int  # accounts made with it
    expiry_time: int | None  # ms since the epoch


class MinterUnavailable(Exception):
    """The homeserver's admin API could not be used (down, refused the admin token, an
    answer in an unexpected shape). The message names no token."""


class TokenMinter(Protocol):
    async def mint(self, uses_allowed: int, expiry_time: int) -> RegistrationToken: ...

    async def get(self, token: str) -> RegistrationToken | None: ...

    async def delete(self, token: str) -> bool: ...

    async def account_created_at(self, user_id: str) -> int | None: ...

    async def close(self) -> None: ...


class SynapseAdminMinter:
    def __init__(self, base_url: str, admin_token: str, timeout: float = 10.0) -> None:
        self._admin = base_url.rstrip("/") + "/_synapse/admin"
        self._base = self._admin + _TOKENS
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        # Operator-configured address (often a private one): the direct session.
        self._http = OutboundHTTP(timeout=timeout, policy=AddressPolicy())

    def __repr__(self) -> str:  # never the admin token
        return f"SynapseAdminMinter({self._base!r})"

    async def mint(self, uses_allowed: int, expiry_time: int) -> RegistrationToken:
        body = {"uses_allowed": uses_allowed, "expiry_time": expiry_time}
        status, answer = await self._call("POST", self._base + "/new", body)
        if status != 200:
            raise MinterUnavailable(f"minting a registration token was refused ({status})")
        return _token(answer)

    async def get(self, token: str) -> RegistrationToken | None:
        status, answer = await self._call("GET", self._url(token))
        if status == 404:
            return None
        if status != 200:
            raise MinterUnavailable(f"reading a registration token was refused ({status})")
        return _token(answer)

    async def delete(self, token: str) -> bool:
        """True when it was deleted now, False when the homeserver had no such token."""
        status, _ = await self._call("DELETE", self._url(token))
        if status == 404:
            return False
        if status != 200:
            raise MinterUnavailable(f"deleting a registration token was refused ({status})")
        return True

    async def account_created_at(self, user_id: str) -> int | None:
        """When the homeserver made the account (ms), or None when it has no such user."""
        url = f"{self._admin}/v2/users/{quote(user_id, safe='')}"
        status, answer = await self._call("GET", url)
        if status == 404:
            return None
        created = answer.get("creation_ts") if isinstance(answer, dict) else None
        if status != 200 or isinstance(created, bool) or not isinstance(created, int):
            raise MinterUnavailable(f"reading an account was refused ({status})")
        # Synapse has said seconds here; a later version may say milliseconds.
        return created * 1000 if created < 10**11 else created

    async def close(self) -> None:
        await self._http.close()

    def _url(self, token: str) -> str:
        return f"{self._base}/{quote(token, safe='')}"

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        try:
            async with self._http.direct().request(
                method, url, json=body, headers=self._headers, allow_redirects=False
            ) as resp:
                if resp.status in (401, 403):
                    raise MinterUnavailable(
                        f"the homeserver refused the admin token ({resp.status}): check "
                        "registration.admin_token"
                    )
                try:
                    answer = await read_json_limited(resp, MAX_ANSWER_BYTES)
                except (ValueError, ResponseTooLarge):
                    answer = None
                return resp.status, answer
        except (aiohttp.ClientError, TimeoutError) as e:
            raise MinterUnavailable(
                f"the homeserver's admin API cannot be reached ({type(e).__name__})"
            ) from None


def _token(answer: Any) -> RegistrationToken:
    try:
        token = answer["token"]
        if not isinstance(token, str) or not token:
            raise TypeError
        return RegistrationToken(
            token=token,
            uses_allowed=_int_or_none(answer.get("uses_allowed")),
            pending=int(answer.get("pending") or 0),
            completed=int(answer.get("completed") or 0),
            expiry_time=_int_or_none(answer.get("expiry_time")),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise MinterUnavailable("the homeserver answered in an unexpected shape") from None


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value
