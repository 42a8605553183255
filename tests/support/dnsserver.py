"""A small authoritative DNS server on a loopback UDP port, for tests.

It answers from a plain dict, so a test states the records it needs:

    records = {"hs.test": [("A", "127.0.0.1")],
               "_matrix-fed._tcp.hs.test": [("SRV", "10 5 8448 target.test.")]}
    async with DNSServer(records) as dns_server:
        settings = IdentitySettings(..., dns_nameservers=(dns_server.nameserver,))
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

RecordTable = Mapping[str, Sequence[tuple[str, str]]]


def _key(name: dns.name.Name | str) -> str:
    return str(name).rstrip(".").lower()


class _DNSProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not DNS: ignore, as a real server would
        response = self._server.answer(query)
        if response is not None and self._transport is not None:
            self._transport.sendto(response.to_wire(), addr)


class DNSServer:
    """Serves `records` (name -> [(type, rdata text)]) on 127.0.0.1:<random port>.

    Names in `servfail` get SERVFAIL; queries for names in `silent` get no answer at all (to
    exercise timeouts). Every question is recorded in `queries` as (name, type)."""

    def __init__(self, records: RecordTable | None = None, *, ttl: int = 300) -> None:
        self.records: dict[str, list[tuple[str, str]]] = {
            _key(name): list(entries) for name, entries in (records or {}).items()
        }
        self.ttl = ttl
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @property
    def nameserver(self) -> str:
        """The `host:port` form the verifier's `dns_nameservers` setting takes."""
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, *entries: tuple[str, str]) -> None:
        self.records[_key(name)] = list(entries)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = _key(question.name)
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.silent:
                return None
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response
            texts = [text for kind, text in self.records[name] if kind.upper() == rdtype]
            if texts:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, self.ttl, dns.rdataclass.IN, question.rdtype, texts
                    )
                )
        return response

    async def __aenter__(self) -> DNSServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DNSProtocol(self), local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
