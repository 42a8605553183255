"""HTTP/1.1 over a bare socket, for requests no polite client would send: bytes that are not
UTF-8 in a cookie or a body, lying Content-Lengths, odd methods and paths."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs


@attrs.frozen
class RawResponse:
    status: int
    headers: dict[str, str]  # lowercase names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def build_request(
    method: str | bytes,
    target: str | bytes,
    host: str,
    headers: list[tuple[str | bytes, str | bytes]] = (),
    body: bytes | None = None,
    *,
    content_length: bool = True,
) -> bytes:
    """Request bytes with `Connection: close`; Content-Length from the body unless told not
    to (then the caller's headers say how the body is framed)."""

    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode()

    lines = [raw(method) + b" " + raw(target) + b" HTTP/1.1", b"Host: " + raw(host)]
    lines += [raw(name) + b": " + raw(value) for name, value in headers]
    lines.append(b"Connection: close")
    if body is not None and content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawResponse(int(status_line.split(" ")[1]), headers, body)


async def send_raw(
    port: int, request: bytes, *, host: str = "127.0.0.1", timeout: float = 10
) -> RawResponse:
    """Send `request` on a fresh connection and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_response(data)


async def send_and_hang_up(port: int, request: bytes, *, host: str = "127.0.0.1") -> None:
    """Send `request` (typically shorter than its Content-Length) and close the socket."""
    _, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(0.1)  # let the server start on the request before the close
    writer.close()
    await writer.wait_closed()
