"""Calls to a JSON API over aiohttp, and its error answers, as the Matrix client API and
maubot's management API both give them (``{"errcode": ..., "error": ...}``)."""

from __future__ import annotations

from collections.abc import Mapping
import json
from typing import Any

import aiohttp


class APIError(Exception):
    """A non-2xx answer; ``body`` is the parsed JSON (or the text when it was none)."""

    def __init__(self, method: str, path: str, status: int, body: Any, detail: str = ""):
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.data: dict = body if isinstance(body, dict) else {}
        self.errcode: str | None = self.data.get("errcode")
        self.error: str | None = self.data.get("error")
        summary = f"{self.errcode}: {self.error}" if self.errcode else str(body)[:300]
        super().__init__(f"{method} {path} -> HTTP {status} {summary}{detail}")


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, Mapping[str, str]]:
    """(status, parsed JSON body or text, headers) of one request; ``{}`` for no body."""
    async with session.request(method, url, **kwargs) as resp:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode(errors="replace")
        return resp.status, body, resp.headers
