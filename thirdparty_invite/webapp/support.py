"""HTTP plumbing shared by the routes: JSON errors, bounded bodies, cookies (origins: origins.py).

Everything a client sends is hostile until parsed here: a body becomes a plain JSON object
within limits (or a 4xx), a cookie that is not a token is no cookie, an Origin that is not
exactly `scheme://host[:port]` is refused, and a client that hangs up mid-body is a quiet
log line, never "database unavailable".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import json
import logging
import math
import re
import sqlite3
import sys
import traceback
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError

from ..errors import UserFacingError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ---- which failures are the database's ----------------------------------------------

try:  # asyncpg is there whenever maubot runs on Postgres; SQLite-only installs may lack it.
    import asyncpg

    _DRIVER_ERRORS: tuple[type[BaseException], ...] = (
        sqlite3.OperationalError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,  # "pool is closed", "connection is closed"
        asyncpg.OperatorInterventionError,  # shutting down, cannot connect now, cancelled
        asyncpg.InsufficientResourcesError,  # too many connections, disk full
    )
except ImportError:  # pragma: no cover
    _DRIVER_ERRORS = (sqlite3.OperationalError,)

# The code that talks to the database: an OSError or timeout raised in here (connection
# refused, reset, DNS failure of the database host) is the database being unreachable.
_DATABASE_MODULES = ("asyncpg", "aiosqlite", "sqlite3", "mautrix.util.async_db")
# Frames skipped when finding where an error was raised: the standard library's sockets
# and event loop sit under every driver and every HTTP library alike.
_STDLIB = frozenset(sys.stdlib_module_names) - {"sqlite3"}


def _raised_by_database_code(error: BaseException) -> bool:
    """Whether the innermost frame outside the standard library that `error` passed
    through belongs to a database driver (not aiohttp, not mautrix's HTTP client)."""
    innermost = ""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] not in _STDLIB:
            innermost = module
    return innermost.startswith(_DATABASE_MODULES)


def is_database_error(error: BaseException) -> bool:
    """True only for errors saying the database cannot be used right now: the drivers'
    own connection/availability errors, and connection errors raised inside the drivers
    or the pool. A client hanging up, a homeserver resetting a connection, or a bad query
    (a bug) is not one."""
    if isinstance(error, sqlite3.OperationalError):
        # "no such table", "syntax error": a bug in a query, not an outage.
        text = str(error)
        return not (text.startswith("no such ") or "syntax error" in text)
    if isinstance(error, _DRIVER_ERRORS):
        return True
    if isinstance(error, (OSError, asyncio.TimeoutError)):
        return _raised_by_database_code(error)
    return False


# ---- errors as JSON -----------------------------------------------------------------


def json_error(
    errcode: str,
    message: str,
    status: int,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.json_response(
        {"errcode": errcode, "error": message, **extra}, status=status, headers=headers
    )


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


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
            # 405 names the methods the route takes (RFC 9110: Allow is required there).
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            return json_error(errcode, e.reason, e.status, headers=allow)
        except ClientGone:
            # Nobody is left to read an answer; the access log still gets a status.
            log.info("Client went away while sending its request to %s", request.path)
            return json_error("M_NOT_JSON", "The request body ended early.", 400)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if is_database_error(e):
                log.exception("Database unavailable while handling %s", request.path)
                return json_error(
                    "TPI_DATABASE_UNAVAILABLE",
                    "The bot cannot reach its database right now. Try again in a minute; "
                    "if it persists, tell the bot's operator.",
                    503,
                )
            log.exception("Unexpected error handling %s", request.path)
            return json_error("M_UNKNOWN", "Something went wrong on our side. Try again.", 500)

    return middleware


# ---- request bodies -----------------------------------------------------------------

MAX_JSON_DEPTH = 32
# Integers a JSON number can carry between any two implementations (RFC 7493, I-JSON).
_MAX_SAFE_INTEGER = 2**53 - 1
# A JSON string (escapes included) or a bracket: enough to count nesting without parsing.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATES = re.compile("[\ud800-\udfff]")


def _too_large(max_bytes: int) -> UserFacingError:
    return UserFacingError("M_TOO_LARGE", f"The request body is over {max_bytes} bytes.", 413)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw request body, refusing bodies over max_bytes before reading them all.

    Raises ClientGone when the client hangs up mid-body, and a 400 when the body's
    transfer or content encoding is broken."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.content.iter_chunked(4096):
            body.extend(chunk)
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
    except (ConnectionError, ContentLengthError):  # "Connection lost": the client hung up
        raise ClientGone from None
    except (web.RequestPayloadError, HttpProcessingError):  # bad chunked encoding or gzip
        raise UserFacingError(
            "M_NOT_JSON", "The request body could not be read (broken encoding)."
        ) from None
    return bytes(body)


class _Refused(ValueError):
    """JSON that parses but that we will not take (M_BAD_JSON)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity: Python-only


def _parse_int(text: str) -> int:
    if len(text) > 17 or abs(value := int(text)) > _MAX_SAFE_INTEGER:
        raise _Refused("The request body has a number too large to use.")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise _Refused("The request body has a number too large to use.")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        # Two parsers could read different values from it: refuse rather than pick one.
        raise _Refused("The request body has the same key twice in one object.")
    return data


def _too_deep(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    """Strings with half of a UTF-16 pair (from a `\\ud800` escape) cannot be encoded to
    UTF-8, so no database, hash or homeserver could take them. Depth is bounded above."""
    if isinstance(value, str):
        return _SURROGATES.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def parse_json_object(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """A plain JSON object from UTF-8 bytes, or a 400: M_NOT_JSON when it is not JSON at
    all, M_BAD_JSON when it is JSON we do not take (too deep, duplicate keys, numbers out
    of range, lone surrogates, not an object)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UserFacingError("M_NOT_JSON", "The request body is not UTF-8 text.") from None
    if _too_deep(text, max_depth):
        raise UserFacingError(
            "M_BAD_JSON", f"The request body is nested more than {max_depth} levels deep."
        )
    try:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_unique_keys,
        )
    except _Refused as e:
        raise UserFacingError("M_BAD_JSON", str(e)) from None
    except (ValueError, RecursionError):  # RecursionError: only if the depth scan missed
        raise UserFacingError("M_NOT_JSON", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UserFacingError("M_BAD_JSON", "The request body must be a JSON object.")
    if _has_lone_surrogate(data):
        raise UserFacingError(
            "M_BAD_JSON", "The request body has a string that is not valid Unicode."
        )
    return data


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over max_bytes before reading.

    The Content-Type is not checked (as Synapse does not): the bytes must be UTF-8 JSON."""
    return parse_json_object(await read_body(request, max_bytes))


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def require_string(data: dict[str, Any], key: str, max_length: int = 512) -> str:
    value = data.get(key)
    if value is None:
        raise UserFacingError("M_MISSING_PARAM", f"The request is missing '{key}'.")
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_length
        or _CONTROL_CHARACTERS.search(value)
    ):
        raise UserFacingError(
            "M_INVALID_PARAM",
            f"'{key}' must be a non-empty string of at most {max_length} characters, "
            "without control characters.",
        )
    return value


# ---- cookies ------------------------------------------------------------------------

_COOKIE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def read_cookie(request: web.Request, name: str) -> str | None:
    """The cookie's value if it looks like one of our tokens (URL-safe base64), else None:
    bytes that are not UTF-8 or anything else a browser was never given is no cookie."""
    try:
        value = request.cookies.get(name)
    except (ValueError, UnicodeError):  # pragma: no cover - aiohttp's parser is lenient
        return None
    if value is None or not _COOKIE_TOKEN.fullmatch(value):
        return None
    return value
