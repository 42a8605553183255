"""Signing in at the local OpenID provider (devtools/oidc) from Python, as a browser would:
follow the redirects, fill in its login form, stop at the redirect back to the callback."""

from __future__ import annotations

import re

import aiohttp
from yarl import URL

from devtools.oidc_provider import OIDCAccount


async def log_in(authorization_url: str, account: OIDCAccount, callback: str) -> dict[str, str]:
    """The query of the provider's redirect back to `callback` (code and state, or error)."""
    jar = aiohttp.CookieJar(unsafe=True)  # the provider is on an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        method, url, form = "GET", URL(authorization_url), None
        for _ in range(12):
            async with browser.request(method, url, data=form, allow_redirects=False) as resp:
                if resp.status in (302, 303):
                    url = url.join(URL(resp.headers["Location"]))
                    if str(url).startswith(callback):
                        return dict(url.query)
                    method, form = "GET", None
                    continue
                page = await resp.text()
                assert resp.status == 200, page
                action = re.search(r'<form method="post" action="([^"]+)"', page)
                assert action, page
                url = url.join(URL(action.group(1)))
                method = "POST"
                form = {"login": account.preferred_username, "password": account.password}
        raise AssertionError("the sign-in did not come back")
