"""HTTP plumbing shared by the routes: JSON errors, bounded bodies, origin checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import json
import logging
import sqlite3
from typing import Any

from aiohttp import web
from yarl import URL

from ..errors import UserFacingError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

try:  # asyncpg is there whenever maubot runs on Postgres; SQLite-only installs may lack it.
    import asyncpg

    _DB_ERRORS: tuple[type[BaseException], ...] = (
        sqlite3.OperationalError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        ConnectionError,
    )
except ImportError:  # pragma: no cover
    _DB_ERRORS = (sqlite3.OperationalError, ConnectionError)


def json_error(errcode: str, message: str, status: int) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def error_middleware(log: logging.Logger) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every failure leaves as `{errcode, error}`; only real bugs are 500s."""

    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except UserFacingError as e:
            return json_error(e.errcode, e.message, e.http_status)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            errcode = {404: "M_UNRECOGNIZED", 405: "M_UNRECOGNIZED"}.get(e.status, "M_UNKNOWN")
            return json_error(errcode, e.reason, e.status)
        except _DB_ERRORS:
            log.exception("Database unavailable while handling %s", request.path)
            return json_error(
                "TPI_DATABASE_UNAVAILABLE",
                "The bot cannot reach its database right now. Try again in a minute; "
                "if it persists, tell the bot's operator.",
                503,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Unexpected error handling %s", request.path)
            return json_error("M_UNKNOWN", "Something went wrong on our side. Try again.", 500)

    return middleware


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over max_bytes before reading."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise UserFacingError("M_TOO_LARGE", f"The request body is over {max_bytes} bytes.", 413)
    body = bytearray()
    async for chunk in request.content.iter_chunked(4096):
        body.extend(chunk)
        if len(body) > max_bytes:
            raise UserFacingError(
                "M_TOO_LARGE", f"The request body is over {max_bytes} bytes.", 413
            )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UserFacingError("M_NOT_JSON", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UserFacingError("M_BAD_JSON", "The request body must be a JSON object.")
    return data


def require_string(data: dict[str, Any], key: str, max_length: int = 512) -> str:
    value = data.get(key)
    if value is None:
        raise UserFacingError("M_MISSING_PARAM", f"The request is missing '{key}'.")
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise UserFacingError(
            "M_INVALID_PARAM", f"'{key}' must be a non-empty string of at most {max_length}."
        )
    return value


def _origin_of(url: URL) -> str:
    return str(url.origin()).lower()


class OriginCheck:
    """Same-origin rule for state-changing requests.

    Browsers always send Origin on POST and DELETE and no page can forge it, so a request
    whose Origin is neither our public origin, the host it was sent to, nor an
    operator-trusted origin comes from someone else's page.
    """

    def __init__(self, public_base_url: URL, trusted_origins: tuple[str, ...]) -> None:
        self.allowed = {_origin_of(public_base_url)} | {
            o.rstrip("/").lower() for o in trusted_origins
        }

    def check(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if not origin:
            raise UserFacingError(
                "TPI_ORIGIN_REQUIRED",
                "This request must come from the invite page (no Origin header was sent).",
                403,
            )
        origin = origin.rstrip("/").lower()
        if origin in self.allowed:
            return
        try:
            origin_host = URL(origin).host_port_subcomponent
        except ValueError:
            origin_host = None
        if origin_host and origin_host.lower() == (request.host or "").lower():
            return
        raise UserFacingError(
            "TPI_ORIGIN_FORBIDDEN",
            "This request came from another site's page and was refused.",
            403,
        )
