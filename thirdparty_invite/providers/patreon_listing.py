"""Patreon: the campaign's members, listed with the creator's token, for re-checks.

    GET <api_url>/v2/campaigns/{campaign_id}/members
        ?include=currently_entitled_tiers,user&fields[member]=...&page[count]=1000
        [&page[cursor]=<meta.pagination.cursors.next of the page before>]

Each member is judged as at sign-in (patreon_membership.py: amounts per month, gifts as
their tier, free members not patrons); the page lists the user ids (the `user`
relationship: the id a sign-in records) of those whose verdict is not "no". A verdict
that is unknown keeps its member on the list: unknown never counts as a loss.

The creator's access token comes from config (`recheck.creator_access_token`) and is
refreshed with the refresh token on a 401 (`POST <api_url>/token`,
grant_type=refresh_token). Patreon rotates the refresh token, so the new pair is saved
through the provider's `CredentialStore` and read from it first; the pair is tied to the
configured refresh token, so an operator who pastes a new pair into the config wins.

Patreon has no ETags here: every page is read. A 429 raises ProviderUnavailable with the
`retry_after_seconds` of its body; a page that is not shaped as documented raises too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from .base import ProviderUnavailable, Rule
from .listing import ListingPage, MemberListing
from .oauth import ApiResponse, failure_detail
from .patreon_membership import (
    Tier,
    UnreadableDocument,
    as_object,
    campaign_tiers_of,
    index_included,
    linkage,
    membership_verdict,
    read_member,
)
from .settings import refuse_unknown_settings, text_setting

if TYPE_CHECKING:
    from .patreon import PatreonProvider

log = logging.getLogger(__name__)

RECHECK_KEYS = ("creator_access_token", "creator_refresh_token")
CREDENTIAL = "creator_tokens"  # the name of the refreshed pair in the CredentialStore
PAGE_SIZE = 1000  # the largest page Patreon documents for the members endpoint
MEMBERS_QUERY = {
    "include": "currently_entitled_tiers,user",
    "fields[member]": "patron_status,currently_entitled_amount_cents,pledge_cadence,is_gifted",
    "fields[tier]": "title,amount_cents",
    "page[count]": str(PAGE_SIZE),
}
TIERS_QUERY = {"include": "tiers", "fields[tier]": "title,amount_cents"}


def read_recheck(section: Mapping[str, Any]) -> tuple[str, str] | None:
    """The creator's (access, refresh) tokens of `recheck:`; None when not configured."""
    raw = section.get("recheck")
    if raw is None or (isinstance(raw, dict) and not any(raw.values())):
        return None
    if not isinstance(raw, dict):
        raise ValueError(
            "recheck: must be a mapping of creator_access_token and creator_refresh_token"
        )
    try:
        refuse_unknown_settings(raw, RECHECK_KEYS)
        return text_setting(raw, RECHECK_KEYS[0]), text_setting(raw, RECHECK_KEYS[1])
    except ValueError as e:
        raise ValueError(f"recheck.{e}") from None


def retry_after_of(response: ApiResponse) -> float | None:
    errors = response.body.get("errors") if isinstance(response.body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    wait = first.get("retry_after_seconds") if isinstance(first, dict) else None
    return response.retry_after(wait)


def failure_detail_of(response: ApiResponse) -> str:
    errors = response.body.get("errors") if isinstance(response.body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    wait = first.get("retry_after_seconds") if isinstance(first, dict) else None
    return failure_detail(response, wait)


def _fingerprint(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()[:16]


class CreatorToken:
    """The campaign creator's access token, refreshed when Patreon refuses it."""

    def __init__(self, provider: PatreonProvider, access_token: str, refresh_token: str):
        self._provider = provider
        self._configured = (access_token, refresh_token)
        self._configured_as = _fingerprint(refresh_token)
        self._lock = asyncio.Lock()  # a refresh token works once: one refresh at a time

    async def _pair(self) -> tuple[str, str]:
        stored = await self._provider.credentials.load(CREDENTIAL)
        try:
            saved = json.loads(stored) if stored else None
        except ValueError:
            saved = None
        if isinstance(saved, dict) and saved.get("configured_as") == self._configured_as:
            access, refresh = saved.get("access_token"), saved.get("refresh_token")
            if isinstance(access, str) and isinstance(refresh, str):
                return access, refresh
        return self._configured

    async def get(self, url: str, params: Mapping[str, str] | None) -> tuple[ApiResponse, int]:
        """GET as the creator (refreshing the token once on a 401), and the calls it took."""
        http = self._provider._oauth
        access, _ = await self._pair()
        response, calls = await http.get_json(url, access, params=params), 1
        if response.status == 401:
            await self._refresh(access)
            access, _ = await self._pair()
            response, calls = await http.get_json(url, access, params=params), calls + 2
        return response, calls

    async def _refresh(self, stale_access: str) -> None:
        provider = self._provider
        async with self._lock:
            access, refresh = await self._pair()
            if access != stale_access:
                return  # refreshed by someone else meanwhile
            form = {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": provider._oauth.client_id,
                "client_secret": provider.client_secret,
            }
            headers = {
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            # The one bounded request of the OAuth client (no public form POST there).
            response = await provider._oauth._send(
                "POST", provider._oauth.endpoints.token_url, data=form, headers=headers
            )
            body = response.body if isinstance(response.body, dict) else {}
            if response.status == 429:
                raise ProviderUnavailable(
                    provider.display_name,
                    failure_detail_of(response),
                    retry_after=retry_after_of(response),
                )
            new_access, new_refresh = body.get("access_token"), body.get("refresh_token")
            if response.status != 200 or not isinstance(new_access, str) or not new_access:
                if (await self._pair())[0] != access:
                    return  # another instance on this database refreshed it first
                log.warning(
                    "Patreon refused to refresh the creator's token (HTTP %s, %s): put a "
                    "fresh creator access and refresh token under providers.patreon.recheck",
                    response.status,
                    str(body.get("error", ""))[:100],
                )
                raise ProviderUnavailable(
                    provider.display_name, "it refused to refresh the creator's token"
                )
            if not isinstance(new_refresh, str) or not new_refresh:
                new_refresh = refresh  # not rotated this time
            saved = {
                "access_token": new_access,
                "refresh_token": new_refresh,
                "configured_as": self._configured_as,
            }
            await provider.credentials.save(CREDENTIAL, json.dumps(saved))


async def setup_problem(provider: PatreonProvider) -> str:
    """Why the creator's token cannot list `campaign_id` ("" when it can): the token
    belongs to the account that registered the client, so a campaign that is not among
    its campaigns means a client registered by someone other than its creator."""
    assert provider.creator is not None
    response, _ = await provider.creator.get(f"{provider.api_url}/v2/campaigns", None)
    if response.status != 200:
        raise ProviderUnavailable(provider.display_name, failure_detail_of(response))
    data = response.body.get("data") if isinstance(response.body, dict) else None
    if not isinstance(data, list):
        raise ProviderUnavailable(provider.display_name, "its campaign list could not be read")
    owned = {c.get("id") for c in data if isinstance(c, dict)}
    if provider.campaign_id in owned:
        return ""
    return (
        f"campaign_id {provider.campaign_id} is not a campaign of the account whose creator "
        f"token is configured (its campaigns: {', '.join(sorted(map(str, owned))) or 'none'})."
        " Register the Patreon client signed in as the campaign's creator and use that "
        "client's creator tokens: a client registered by someone else never sees the "
        "campaign's patrons at sign-in."
    )


class CampaignMembers(MemberListing):
    """Everyone holding one Patreon rule of the provider's campaign."""

    def __init__(self, provider: PatreonProvider, rule: Rule) -> None:
        assert provider.creator is not None
        self._provider = provider
        self._creator = provider.creator
        self._rule = rule

    def _unavailable(self, detail: str, response: ApiResponse | None = None) -> Exception:
        wait = retry_after_of(response) if response is not None else None
        return ProviderUnavailable(self._provider.display_name, detail, retry_after=wait)

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        provider, rule = self._provider, self._rule
        url = f"{provider.api_url}/v2/campaigns/{provider.campaign_id}/members"
        campaign_tiers, calls = None, 0
        if rule.kind == "tier":
            campaign_tiers, calls = await self._campaign_tiers()
        while True:
            params = dict(MEMBERS_QUERY)
            if cursor:
                params["page[cursor]"] = cursor
            response, spent = await self._creator.get(url, params)
            calls += spent
            if response.status != 200:
                raise self._unavailable(self._refusal(response), response)
            try:
                members, next_cursor = self._read_page(response.body, campaign_tiers)
            except UnreadableDocument as e:
                log.warning("Patreon member page not understood: %s", e)
                raise self._unavailable("a member page could not be read") from None
            if next_cursor is not None and next_cursor == cursor:
                raise self._unavailable("its member pages do not advance")
            key = f"cursor:{cursor}" if cursor else "first"
            yield ListingPage(key, members, next_cursor=next_cursor, calls=calls)
            if next_cursor is None:
                return
            cursor, calls = next_cursor, 0

    def _refusal(self, response: ApiResponse) -> str:
        if response.status == 401:
            return "it refused the creator's token, refreshed or not"
        if response.status in (403, 404):
            return (
                f"it does not let the creator's token list campaign "
                f"{self._provider.campaign_id} (HTTP {response.status}): is the client "
                "registered by the campaign's creator?"
            )
        return failure_detail_of(response)

    async def check_tier(self) -> str:
        """Why the rule's tier cannot be checked ("" when it is one of the campaign's)."""
        tiers, _ = await self._fetch_tiers()
        return self._missing_tier(tiers)

    async def _campaign_tiers(self) -> tuple[tuple[Tier, ...], int]:
        """The campaign's tiers, for what "tier X or above" costs; the named tier must be
        one of them (a renamed tier stops the re-check rather than read as a loss)."""
        tiers, calls = await self._fetch_tiers()
        missing = self._missing_tier(tiers)
        if missing:
            raise self._unavailable(missing)
        return tiers, calls

    async def _fetch_tiers(self) -> tuple[tuple[Tier, ...], int]:
        provider = self._provider
        url = f"{provider.api_url}/v2/campaigns/{provider.campaign_id}"
        response, calls = await self._creator.get(url, TIERS_QUERY)
        if response.status != 200:
            raise self._unavailable(self._refusal(response), response)
        try:
            body = as_object(response.body, "the answer")
            tiers = campaign_tiers_of(as_object(body.get("data"), "data"), index_included(body))
        except UnreadableDocument:
            tiers = None
        if tiers is None:
            raise self._unavailable("it did not list the campaign's tiers")
        return tiers, calls

    def _missing_tier(self, tiers: tuple[Tier, ...]) -> str:
        wanted = self._rule.args[0]
        key = " ".join(wanted.split()).casefold()
        if any(t.id == wanted or " ".join(t.title.split()).casefold() == key for t in tiers):
            return ""
        titles = ", ".join(t.title or t.id for t in tiers) or "none"
        return f"the campaign has no tier {wanted!r} (its tiers: {titles})"

    def _read_page(
        self, body: Any, campaign_tiers: tuple[Tier, ...] | None
    ) -> tuple[tuple[str, ...], str | None]:
        body = as_object(body, "the answer")
        data = body.get("data")
        if not isinstance(data, list):
            raise UnreadableDocument("data is not a list of members")
        index = index_included(body)
        cursors = as_object(
            as_object(as_object(body.get("meta"), "meta").get("pagination"), "pagination").get(
                "cursors"
            ),
            "cursors",
        )
        next_cursor = cursors.get("next")  # null or absent: the last page
        if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
            raise UnreadableDocument("cursors.next is not a cursor")
        holders = []
        for member in data:
            member = as_object(member, "a member")
            users = linkage(member, "user")
            if member.get("type") != "member" or len(users) != 1:
                raise UnreadableDocument("a member without its user")
            membership = read_member(member, index, campaign_tiers)
            verdict = membership_verdict(membership, self._rule.kind, self._rule.args)
            if verdict.holds is not False:  # unknown is never a loss
                holders.append(users[0])
        return tuple(holders), next_cursor
