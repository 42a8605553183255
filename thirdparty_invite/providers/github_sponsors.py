"""The sponsors of a GitHub account for re-checks: GraphQL `sponsorshipsAsMaintainer`,
100 a page by cursor (`pageInfo.endCursor`; GraphQL has no ETags), active sponsorships
only, private ones included. A sponsor is their `databaseId`, the id `GET /user` gave at
sign-in; with a minimum, one-time payments and smaller monthly tiers are left out.

GitHub shows private sponsorships only to the sponsored account itself and to an
organisation's owners, so the token must be one of those (`viewer`, `viewerCanAdminister`
say), and a sponsor GitHub does not show (`sponsorEntity: null`) stops the listing: they
may well hold the rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ProviderUnavailable
from .github_listing import PER_PAGE, GitHubListing
from .listing import ListingPage
from .oauth import ApiResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from .github import GitHubProvider
    from .github_app import ListingCredentials

SPONSORS_QUERY = """query($login: String!, $after: String) {
  viewer { login }
  repositoryOwner(login: $login) {
    __typename
    login
    ... on Organization { viewerCanAdminister }
    ... on Sponsorable {
      sponsorshipsAsMaintainer(first: 100, after: $after, activeOnly: true,
                               includePrivate: true) {
        pageInfo { hasNextPage endCursor }
        nodes {
          isOneTimePayment
          tier { monthlyPriceInCents }
          sponsorEntity { ... on User { databaseId } ... on Organization { databaseId } }
        }
      }
    }
  }
}"""


class SponsorListing(GitHubListing):
    """The active sponsors of an account, by GraphQL cursor; GraphQL has no ETags."""

    def __init__(
        self,
        provider: GitHubProvider,
        credentials: ListingCredentials,
        login: str,
        minimum: int | None,
    ) -> None:
        super().__init__(provider, credentials)
        self.login = login
        self.minimum = minimum
        self.what = f"the sponsors of {login}"

    async def pages(
        self, cursor: str | None = None, etags: Mapping[str, str] | None = None
    ) -> AsyncIterator[ListingPage]:
        after = cursor
        while True:
            variables = {"login": self.login, "after": after}
            body = {"query": SPONSORS_QUERY, "variables": variables}
            response = await self._send(self.provider.graphql_url, method="POST", body=body)
            calls = 1 + self.credentials.take_calls()
            if response.status != 200 or not isinstance(response.body, dict):
                raise self._refusal(response, self.what)
            members, after = self._page(response)
            del response  # one page in memory, not two
            key = f"sponsor:{self.login}:{variables['after'] or ''}"
            yield ListingPage(key, members, None, after, calls)
            if after is None:
                return

    def _page(self, response: ApiResponse) -> tuple[tuple[str, ...], str | None]:
        body = response.body
        errors = body.get("errors")
        if errors:
            kinds = sorted(
                {str(e.get("type")) for e in errors if isinstance(e, dict)}
                if isinstance(errors, list)
                else {"?"}
            )
            if "RATE_LIMITED" in kinds:
                wait = response.retry_after()
                wait = 60.0 if wait is None else max(wait, 1.0)
                raise ProviderUnavailable(self.name, f"rate limited listing {self.what}", wait)
            raise ProviderUnavailable(self.name, f"{self.what}: GraphQL {', '.join(kinds)}")
        try:
            data = body["data"]
            owner = data["repositoryOwner"]
            if owner is None:
                raise ValueError(f"there is no account {self.login}")
            self._sees_private(owner, data["viewer"]["login"])
            connection = owner["sponsorshipsAsMaintainer"]
            info, nodes = connection["pageInfo"], connection["nodes"]
            more, end = info["hasNextPage"], info["endCursor"]
            if not isinstance(nodes, list) or not isinstance(more, bool) or len(nodes) > PER_PAGE:
                raise ValueError("not a page of sponsorships")
            if more and (len(nodes) < PER_PAGE or not isinstance(end, str) or not end):
                raise ValueError(f"a page of {len(nodes)} sponsorships before the last")
            members = tuple(m for m in map(self._sponsor, nodes) if m is not None)
        except (KeyError, TypeError, ValueError) as e:
            detail = str(e) if isinstance(e, ValueError) else "an answer of another shape"
            raise ProviderUnavailable(self.name, f"{self.what}: {detail}") from None
        return members, end if more else None

    def _sees_private(self, owner: dict[str, Any], viewer: Any) -> None:
        """GitHub shows private sponsorships only to the sponsored account itself and to
        an organisation's owners: anyone else would see part of the sponsors."""
        if owner["__typename"] == "Organization" and owner["viewerCanAdminister"] is True:
            return
        if isinstance(viewer, str) and viewer.lower() == str(owner["login"]).lower():
            return
        raise ValueError(
            f"the re-check token is not {self.login}'s nor an owner's, so GitHub would hide "
            "the private sponsors"
        )

    def _sponsor(self, node: Any) -> str | None:
        """The sponsor's account id, None when the sponsorship is below the rule."""
        entity = node["sponsorEntity"]
        account = entity.get("databaseId") if isinstance(entity, dict) else None
        if isinstance(account, bool) or not isinstance(account, int):
            # Someone GitHub does not show the token: they may well hold the rule.
            raise ValueError("a sponsor the re-check token may not see")
        if self.minimum is None:
            return str(account)
        if node["isOneTimePayment"] is True:
            return None
        cents = node["tier"]["monthlyPriceInCents"]
        if isinstance(cents, bool) or not isinstance(cents, int):
            raise ValueError("a sponsorship without a monthly amount")
        return str(account) if cents >= self.minimum else None
