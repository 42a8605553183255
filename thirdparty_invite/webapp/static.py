"""Serves the pages and scripts of web/ from the plugin archive (or its directory)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import hashlib
import mimetypes

from aiohttp import web

# The page talks to the user's homeserver, which can be anywhere, hence connect-src *.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src *; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# An invite link's page, a binding's (rooms open to people a provider vouches for), and the
# room admins' panel.
_PAGES = {
    "/": "index.html",
    "/invite": "invite.html",
    "/join": "join.html",
    "/manage": "manage.html",
}


class StaticFiles:
    def __init__(self, read_file: Callable[[str], Awaitable[bytes]]) -> None:
        self._read_file = read_file
        self._cache: dict[str, tuple[bytes, str]] = {}

    def register(self, router: web.UrlDispatcher) -> None:
        for path in _PAGES:
            router.add_get(path, self.page)
        router.add_get("/static/{name}", self.asset)
        router.add_get("/api/openapi.json", self.openapi)

    async def _load(self, name: str) -> tuple[bytes, str] | None:
        if name not in self._cache:
            try:
                data = await self._read_file(f"web/{name}")
            except (KeyError, FileNotFoundError, OSError):
                return None  # zip loader: KeyError; directory loader: FileNotFoundError
            self._cache[name] = (data, hashlib.sha256(data).hexdigest()[:16])
        return self._cache[name]

    async def _respond(self, request: web.Request, name: str, cache_control: str) -> web.Response:
        loaded = await self._load(name)
        if loaded is None:
            raise web.HTTPNotFound(reason="No such file.")
        data, digest = loaded
        etag = f'"{digest}"'
        headers = {
            "Cache-Control": cache_control,
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if suffix == ".html":
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
        headers["Content-Type"] = content_type
        return web.Response(body=data, headers=headers)

    async def page(self, request: web.Request) -> web.Response:
        return await self._respond(request, _PAGES[request.path], "no-cache")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if "/" in name or name.startswith(".") or ".." in name:
            raise web.HTTPNotFound(reason="No such file.")
        return await self._respond(request, name, "public, max-age=300, must-revalidate")

    async def openapi(self, request: web.Request) -> web.Response:
        return await self._respond(request, "openapi.json", "no-cache")
