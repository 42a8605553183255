"""A bounded, seeded fuzz of the web API, driven by web/openapi.json.

`fuzz_cases()` enumerates every path and method the description lists and builds, for
each, hostile requests of every kind: wrong methods, odd paths and queries, Origin and
Cookie headers that are missing, forged or not UTF-8, bodies of the wrong types, nested
too deep, in other encodings, too large, broken by random byte edits. `check_answer()`
says what is wrong with an answer: anything but a `{errcode, error}` 4xx (or a 2xx), and
a 5xx only where the description documents it (502, 503).

The same seed gives the same requests, so a failure names a case that can be replayed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
import random
from typing import Any

import attrs
from support.raw_http import RawResponse, build_request

OPENAPI = Path(__file__).resolve().parents[2] / "web" / "openapi.json"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE")
_SPLICE_BYTES = [b"\x00", b"\xff", b'"', b"\\", b"[", b"{", b"}", b"]", b":", b",", b"\xc3"]


def load_openapi() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text())


@attrs.frozen
class Case:
    name: str
    method: str
    target: str  # relative to the instance's base path
    headers: tuple[tuple[str | bytes, str | bytes], ...]
    body: bytes | None
    allowed_5xx: frozenset[int]  # documented for this operation
    framing_ok: bool = True  # False: aiohttp may refuse it before the plugin sees it

    def request(self, base_path: str, host: str) -> bytes:
        target = self.target if self.target.startswith("/") else base_path + self.target
        headers = list(self.headers)
        chunked = any(
            str(n).lower() == "transfer-encoding" for n, _ in headers if isinstance(n, str)
        )
        return build_request(
            self.method, target, host, headers, self.body, content_length=not chunked
        )


@attrs.frozen
class Context:
    """What a case needs from the running app: its origin, a session cookie, values that
    pass validation (so some requests get through to the services)."""

    origin: str
    cookie: str
    max_body: int
    plausible: dict[str, list[str]]


def _allowed_5xx(operation: dict[str, Any]) -> frozenset[int]:
    return frozenset(int(code) for code in operation.get("responses", {}) if code[0] == "5")


def _body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    return content.get("application/json", {}).get("schema")


def _type_confusion(max_length: int) -> list[Any]:
    return [
        None,
        True,
        0,
        -1,
        1.5,
        2**53 - 1,
        [],
        {},
        ["a"],
        {"$ne": ""},
        "",
        " ",
        "x" * (max_length + 1),
        "\u0000",
        "\ud800",
        "\u202e",
        "../../../etc/passwd",
        "%00",
        "😀" * 40,
        "a\r\nSet-Cookie: x=y",
    ]


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate stays \ud800


def _valid_object(schema: dict[str, Any], ctx: Context, rng: random.Random) -> dict[str, Any]:
    out = {}
    for name, prop in schema.get("properties", {}).items():
        pool = ctx.plausible.get(name) or ["x" * min(prop.get("maxLength", 8), 8)]
        out[name] = rng.choice(pool)
    return out


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts if p) + b"0\r\n\r\n"


def _body_variants(
    schema: dict[str, Any], ctx: Context, rng: random.Random
) -> list[tuple[str, bytes, list[tuple[str, str]]]]:
    """(name, body, extra headers) for one operation's body."""
    valid = _valid_object(schema, ctx, rng)
    raw = _dump(valid)
    out: list[tuple[str, bytes, list[tuple[str, str]]]] = [("valid", raw, [])]
    # types, missing and extra keys
    for name, prop in schema.get("properties", {}).items():
        for value in _type_confusion(prop.get("maxLength", 512)):
            out.append((f"{name}={value!r:.20}", _dump({**valid, name: value}), []))
        out.append((f"without {name}", _dump({k: v for k, v in valid.items() if k != name}), []))
    out.append(("extra keys", _dump({**valid, "__proto__": {"admin": True}, "": None}), []))
    out.append(("duplicate key", raw[:-1] + b", " + raw[1:], []))
    # structure
    for top in (b"[]", b"null", b"1", b"true", b'"s"', b"", b" ", b"{", b"}", b"{}{}"):
        out.append((f"top {top!r}", top, []))
    for depth in (31, 33, 1000, 6000):
        out.append((f"arrays deep {depth}", b"[" * depth + raw + b"]" * depth, []))
        out.append((f"objects deep {depth}", b'{"a":' * depth + raw + b"}" * depth, []))
    # numbers that are not JSON or not usable
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b"-0", b"0x10"):
        out.append((f"number {number[:12]!r}", b'{"n": ' + number + b", " + raw[1:], []))
    # encodings
    text = raw.decode()
    out += [
        ("utf-16", text.encode("utf-16"), []),
        ("utf-16-le", text.encode("utf-16-le"), []),
        ("utf-32", text.encode("utf-32"), []),
        ("utf-8 bom", b"\xef\xbb\xbf" + raw, []),
        ("latin-1", text.replace("x", "é").encode("latin-1"), []),
        ("invalid utf-8", raw.replace(b'"', b'"\xff', 1), []),
        ("overlong utf-8", raw.replace(b'"', b'"\xc0\xaf', 1), []),
        ("encoded surrogate", raw.replace(b'"', b'"\xed\xa0\x80', 1), []),
        ("lone surrogate escape", raw.replace(b'"', b'"\\udc00', 1), []),
    ]
    # sizes
    out += [
        ("padded to the limit", raw + b" " * (ctx.max_body - len(raw)), []),
        ("one byte over the limit", raw + b" " * (ctx.max_body + 1 - len(raw)), []),
        ("a megabyte", raw + b" " * (1 << 20), []),
    ]
    # content types and transfer/content encodings
    for content_type in (
        "text/plain",
        "application/json; charset=utf-16",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json, text/html",
        "\u00ff/\u00ff",
    ):
        out.append((f"content-type {content_type}", raw, [("Content-Type", content_type)]))
    out.append(("form body", b"token=abc&access_token=x", []))
    out.append(("chunked", _chunked(raw), [("Transfer-Encoding", "chunked")]))
    out.append(("gzip", gzip.compress(raw, mtime=0), [("Content-Encoding", "gzip")]))
    out.append(
        ("gzip bomb", gzip.compress(b" " * 3_000_000, mtime=0), [("Content-Encoding", "gzip")])
    )
    out.append(("not gzip", raw, [("Content-Encoding", "gzip")]))
    out.append(("unknown encoding", raw, [("Content-Encoding", "rot13")]))
    # random byte edits of the valid body
    for i in range(40):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            at = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[at:at] = rng.choice(_SPLICE_BYTES)
            elif op == 2:
                del data[at : at + rng.randint(1, 8)]
            elif op == 3:
                data[at:at] = data[: rng.randint(1, len(data) or 1)]
            else:
                del data[at:]
        out.append((f"mutation {i}", bytes(data), []))
    return out


def _path_variants(path: str) -> list[tuple[str, bool]]:
    """(target relative to the base path, framing ok) near `path`."""
    rel = path.lstrip("/")
    return [
        (rel + "/", True),
        (rel.replace("/", "//"), True),
        (rel.upper(), True),
        (rel[:-1] + "%" + f"{ord(rel[-1]):02X}", True),
        (rel + "/..", True),
        (rel + "/%2e%2e/%2e%2e", True),
        (rel + "%00", True),
        (rel + ";x=1", True),
        (rel + "%ff%fe", True),
        (rel + "?" + "a=" * 2000, True),
        (rel + "?%ff=%fe&token=a&token=b", True),
        (rel + "#frag", True),
        (rel + "\u00e9", False),  # raw bytes in the request line: aiohttp's to refuse
    ]


def _header_variants(ctx: Context, rng: random.Random) -> list[tuple[str, list[tuple]]]:
    origin = [
        ("our origin", [("Origin", ctx.origin)]),
        ("no origin", []),
        ("origin null", [("Origin", "null")]),
        ("evil origin", [("Origin", "https://evil.example")]),
        ("userinfo origin", [("Origin", ctx.origin.replace("//", "//evil@"))]),
        ("origin bytes", [("Origin", b"\xff\xfe" + ctx.origin.encode())]),
        ("two origins", [("Origin", ctx.origin), ("Origin", "https://evil.example")]),
    ]
    cookie = [
        ("session", [("Cookie", f"tpi_session={ctx.cookie}")]),
        ("no cookie", []),
        ("cookie bytes", [("Cookie", b"tpi_session=\xff\xfe\xc3")]),
        ("long cookie", [("Cookie", "tpi_session=" + "A" * 6000)]),
        ("odd cookie", [("Cookie", 'tpi_session="a b"; tpi_session=; =;;')]),
        ("forwarded", [("Cookie", f"tpi_session={ctx.cookie}"), ("X-Forwarded-For", "x, ::")]),
    ]
    # Every origin with the session, every cookie with our origin, then random pairs.
    combos = [(f"{o[0]}+session", o[1] + cookie[0][1]) for o in origin]
    combos += [(f"our origin+{c[0]}", origin[0][1] + c[1]) for c in cookie[1:]]
    for _ in range(6):
        o, c = rng.choice(origin), rng.choice(cookie)
        combos.append((f"{o[0]}+{c[0]}", o[1] + c[1]))
    return combos


def fuzz_cases(openapi: dict[str, Any], ctx: Context, seed: int = 6454) -> list[Case]:
    """Every hostile request for every operation; DELETEs (which end the session) last."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for path, item in openapi["paths"].items():
        documented = {m.upper() for m in item if m.upper() in METHODS}
        ours = [("Origin", ctx.origin), ("Cookie", f"tpi_session={ctx.cookie}")]
        for method in METHODS:
            if method in documented or (method == "HEAD" and "GET" in documented):
                continue
            rel = path.lstrip("/")
            cases.append(Case(f"{method} {path}", method, rel, (), None, frozenset()))
            cases.append(
                Case(f"{method} {path} +body", method, rel, tuple(ours), b"{}", frozenset())
            )
        for target, framing_ok in _path_variants(path):
            for method in sorted(documented):
                cases.append(
                    Case(
                        f"{method} {target!r}",
                        method,
                        target,
                        tuple(ours),
                        b"{}" if method == "POST" else None,
                        # A variant may still reach the route (`{}` is all some take): it
                        # may answer what the route documents.
                        _allowed_5xx(item[method.lower()]),
                        framing_ok,
                    )
                )
        for method in sorted(documented):
            operation = item[method.lower()]
            allowed = _allowed_5xx(operation)
            schema = _body_schema(operation)
            name = f"{method} {path}"
            headers = _header_variants(ctx, rng)
            rel = path.lstrip("/")
            if schema is None:
                for label, extra in headers:
                    cases.append(Case(f"{name} {label}", method, rel, tuple(extra), None, allowed))
                cases.append(Case(f"{name} with a body", method, rel, tuple(ours), b"[[", allowed))
                if method == "GET":
                    cases.append(Case(f"HEAD {path}", "HEAD", rel, tuple(ours), None, allowed))
                continue
            valid = _dump(_valid_object(schema, ctx, rng))
            for label, extra in headers:
                cases.append(Case(f"{name} {label}", method, rel, tuple(extra), valid, allowed))
            for label, body, extra in _body_variants(schema, ctx, rng):
                headers_and_body = (*ours, *extra)
                cases.append(
                    Case(f"{name} body {label}", method, rel, headers_and_body, body, allowed)
                )
    return sorted(cases, key=lambda case: case.method == "DELETE")


def check_answer(case: Case, response: RawResponse) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    status = response.status
    if status >= 500 and status not in case.allowed_5xx:
        return f"status {status}"
    if not case.framing_ok:
        return None  # aiohttp's own 400 for a request it could not parse: plain text
    if case.method == "HEAD" or status == 204 or 300 <= status < 400:
        return None  # no body to judge; a redirect (an OAuth callback) is the route's answer
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"status {status} with content-type {response.headers.get('content-type')}"
    try:
        body = response.json()
    except ValueError:
        return f"status {status} with a body that is not JSON: {response.body[:80]!r}"
    if status < 400:
        return None if isinstance(body, dict) else f"status {status} with {body!r:.80}"
    expected_keys = {"errcode", "error"} | ({"retry_after_ms"} if status == 429 else set())
    if not isinstance(body, dict) or set(body) != expected_keys:
        return f"status {status} with {body!r:.120}"
    if not (isinstance(body["errcode"], str) and isinstance(body["error"], str) and body["error"]):
        return f"status {status} with {body!r:.120}"
    if status == 405 and "allow" not in response.headers:
        return "405 without Allow"
    return None
