"""Who holds a rule now, as a provider lists it: the bulk side of re-checks.

A provider that can list the people who hold a rule (GitHub's organisation and team
members, Patreon's campaign members, GitLab's group members, Discord's guild members)
returns a `MemberListing` from `Provider.listing(rule)`, built with credentials the
operator configured for it (never a person's token). The re-check service walks it page
by page and never keeps the whole list: each page's members are compared with the
accounts admitted through the binding, and only those marks go to the database.

The contract every listing keeps, because a wrong "no" becomes a wrong kick:

* A page lists the external account ids (`ExternalAccount.id`: GitHub's numeric user
  id, Patreon's user id, ...) that hold the rule *on that page*. Someone who does not
  hold it (a pending invitation, a declined pledge, a member in screening) is left out.
* Anything the listing cannot read completely (a 5xx, a timeout, a rate limit, an answer
  in an unexpected shape, a page cut short, credentials refused) raises
  `ProviderUnavailable` and the re-check stops without concluding anything; it is tried
  again later (`retry_after`, when the provider said how long to wait), starting from
  the cursor of the first page not yet read.
* Pages that support conditional requests are asked with the ETag they had last time
  (`etags`, by page key); an unchanged page comes back with `members=None` (an HTTP 304):
  the service then reuses what it learnt from that page last time.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping

import attrs


@attrs.frozen
class ListingPage:
    # Names the page for its ETag: the page's URL or cursor, never a credential.
    key: str
    # External account ids holding the rule on this page; None: unchanged since `etag`.
    # (The service keeps each page's count, so that a listing much shorter than last time
    # stops the re-check before anyone is touched.)
    members: tuple[str, ...] | None
    etag: str | None = None
    # Where the page after this one starts (passed back as `cursor`); None: the last page.
    next_cursor: str | None = None
    # Requests this page cost, retries and extra look-ups included (re-check statistics).
    calls: int = 1


class MemberListing(abc.ABC):
    """The people who hold one rule, page by page, with the operator's credentials."""

    @abc.abstractmethod
    def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        """The pages from `cursor` (None: the first page) to the last. Raises
        ProviderUnavailable (with `retry_after` when the provider said) for anything
        that keeps the listing from being read completely and exactly."""


class CredentialStore(abc.ABC):
    """Where a provider keeps credentials that change while the bot runs (Patreon's
    creator token, refreshed with a refresh token that works once): the services give
    each provider one backed by the plugin's database; `MemoryCredentials` otherwise."""

    @abc.abstractmethod
    async def load(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def save(self, name: str, value: str) -> None: ...


class MemoryCredentials(CredentialStore):
    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def load(self, name: str) -> str | None:
        return self._values.get(name)

    async def save(self, name: str, value: str) -> None:
        self._values[name] = value
