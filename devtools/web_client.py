"""The plugin's web API as a browser uses it: its own cookie jar and an Origin header, and
signed in the way the invite page signs people in (an OpenID token from their homeserver,
posted to ``api/session``)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from aiohttp.abc import AbstractCookieJar
from yarl import URL

from devtools.matrix_user import MatrixUser


class SignInError(RuntimeError):
    """The plugin refused an OpenID token (or answered for someone else)."""


def web_client(
    web_url: str, *, cookies: bool = True, limit: int = 100, timeout: float = 120
) -> aiohttp.ClientSession:
    """A client of the plugin at ``web_url`` (relative paths such as ``api/invites``), with
    the Origin a page of the plugin sends and a jar that keeps cookies from 127.0.0.1."""
    jar: AbstractCookieJar = (
        aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar()
    )
    return aiohttp.ClientSession(
        base_url=web_url,
        headers={"Origin": str(URL(web_url).origin())},
        cookie_jar=jar,
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def signed_in_session(
    web_url: str, user: MatrixUser, *, limit: int = 100
) -> aiohttp.ClientSession:
    """A :func:`web_client` whose session cookie is ``user``'s: a fresh OpenID token from
    their homeserver, posted to ``api/session``. The caller closes it (``async with``)."""
    http = web_client(web_url, limit=limit)
    try:
        openid = await user.request_openid_token()
        async with http.post("api/session", json=openid) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise SignInError(f"api/session for {user.user_id}: HTTP {resp.status} {text}")
            signed_in_as = (await resp.json())["user_id"]
        if signed_in_as != user.user_id:
            raise SignInError(f"api/session for {user.user_id} signed in {signed_in_as}")
    except BaseException:
        await http.close()
        raise
    return http


async def wait_web_ready(web_url: str, timeout: float = 60.0) -> float:
    """Seconds until the plugin's routes answer (e.g. after a maubot restart): ``GET
    api/session`` without a cookie gets the plugin's own 401 "not signed in"."""
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(web_url + "api/session") as resp:
                    if resp.status in (200, 401):
                        return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"the plugin's web API at {web_url} did not answer in {timeout:.0f} s"
                )
            await asyncio.sleep(0.05)
