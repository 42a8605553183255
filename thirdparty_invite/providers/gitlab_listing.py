"""The members of a GitLab group for re-checks: `GET /api/v4/groups/PATH/members/all`,
with the operator's group access token (`recheck: {token: ...}`, header `PRIVATE-TOKEN`).

`members/all` lists what `group:PATH` means (gitlab_members.py): direct, inherited and
shared-group members at their effective role, each once. A page lists the user ids of the
entries that hold the rule (active user, active membership, role at least the rule's);
the others are left out.

Paging: the members API pages by offset only (`page`, `per_page=100`), so the cursor is
the page number. The next page comes from `x-next-page` (empty on the last page), else
from the `Link` header's rel="next"; a page shorter than 100 is not taken for the last,
only those headers say so. Counting the entries is not the end's sign either: GitLab
leaves out `x-total` past 10,000 records. When `x-total` is sent and changes between
pages, the list moved while it was read (offset pages would then skip or repeat someone),
so the listing stops without concluding.

Conditional requests: GitLab's Rails stack puts a weak ETag on API answers (Rack::ETag)
and answers a matching `If-None-Match` with 304 (Rack::ConditionalGet). The page is still
computed by GitLab and still counts against its rate limit; only the body is saved. The
listing sends the ETag it had and reports an unchanged page as `members=None`.

Rate limits: a 429 carries `Retry-After` (and `RateLimit-Reset`, the epoch second the
window resets): ProviderUnavailable with `retry_after`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from .base import ProviderUnavailable
from .gitlab_members import Credential, GitLabAPI, group_url, next_page, standing
from .listing import ListingPage, MemberListing

PER_PAGE = 100  # GitLab's maximum


class GitLabMemberListing(MemberListing):
    """The user ids holding `group:PATH[:ROLE]`, page by page."""

    def __init__(
        self, api: GitLabAPI, base_url: str, path: str, min_level: int, credential: Credential
    ) -> None:
        self.api = api
        self.path = path
        self.min_level = min_level
        self._url = f"{group_url(base_url, path)}/members/all"
        self._credential = credential

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        page: int | None = int(cursor) if cursor and cursor.isdigit() else 1
        total: str | None = None
        while page is not None:
            key = f"{self.path}?page={page}"
            params = {"per_page": str(PER_PAGE), "page": str(page)}
            etag = (etags or {}).get(key)
            response = await self.api.get(self._url, self._credential, params=params, etag=etag)
            if response.status == 304 and etag:
                # Rack keeps the paging headers on a 304; without them the pages after
                # this one could not be found, and a listing that stops early removes.
                if response.header("x-next-page") is None and not response.header("link"):
                    raise ProviderUnavailable(
                        self.api.provider_name, "an unchanged page came without paging"
                    )
                following = next_page(response, page)
                yield ListingPage(key, None, etag, _cursor(following))
                page = following
                continue
            if response.status != 200 or not isinstance(response.body, list):
                raise self.api.unavailable(response, "the operator's GitLab token")
            page_total = response.header("x-total")
            if total is not None and page_total is not None and page_total != total:
                raise ProviderUnavailable(
                    self.api.provider_name, "the member list changed while it was read"
                )
            total = page_total if page_total is not None else total
            members = []
            for entry in response.body:
                found = standing(entry, self.min_level)
                if found == "malformed":
                    raise self.api.unavailable(response, "the operator's GitLab token")
                if found == "holds":
                    members.append(str(entry["id"]))
            following = next_page(response, page)
            yield ListingPage(key, tuple(members), response.header("etag"), _cursor(following))
            page = following


def _cursor(page: int | None) -> str | None:
    return None if page is None else str(page)
