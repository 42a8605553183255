"""What the fake GitHub answers the OAuth app itself, with its client ID and secret as
HTTP Basic credentials (or with no credentials at all), never a person's token:

* `GET /repos/{owner}/{repo}`: public repositories only (a private or missing one is 404,
  a renamed one 301), without `permissions`; wrong credentials get 401.
* `DELETE /applications/{client_id}/token` with `{"access_token": ...}`: 204 and the token
  stops working at once; 401 for wrong client credentials (or another app's client ID in
  the path), 404 for a token this app was not given (or one already revoked), 422
  without a token.

FakeGitHub serves these (`github.app_side`); `github.revoked_tokens` counts revocations.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
import json
import secrets
from typing import TYPE_CHECKING
import urllib.parse

from aiohttp import web
from support.providers.fake_oauth import FakeClient, fixture

if TYPE_CHECKING:
    from support.providers.github import FakeGitHub

API = "/api/v3"
REST_DOCS = "https://docs.github.com/rest"


def not_found() -> web.Response:
    return web.json_response(fixture("github", "error-404-not-found.constructed.json"), status=404)


class GitHubAppSide:
    def __init__(self, github: FakeGitHub) -> None:
        self.github = github
        self.revoked = 0

    def add_routes(self, add: Callable[..., None]) -> None:
        # "revoke" is a place of its own: github.fail("revoke", ...) fails revocations only.
        add("DELETE", f"{API}/applications/{{client_id}}/token", self.revoke, "api", "revoke")

    def app(self, header: str) -> FakeClient | None:
        """The OAuth app whose client ID and secret an `Authorization: Basic` header holds."""
        if not header.startswith("Basic "):
            return None
        try:
            pair = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        client_id, _, secret = (urllib.parse.unquote_plus(p) for p in pair.partition(":"))
        client = self.github.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, secret):
            return None
        return client

    async def repository(self, request: web.Request) -> web.Response:
        """A repository asked as the app, or anonymously: public data only."""
        header = request.headers.get("Authorization", "")
        if header and self.app(header) is None:
            bad = fixture("github", "error-401-bad-credentials.json")
            return web.json_response(bad, status=401)
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        repo = self.github.repos.get(full_name.lower())
        if repo is None or repo.private:
            return not_found()
        if repo.moved_to is not None:
            location = f"{self.github.url}{API}/repositories/{repo.id}"
            body = {"message": "Moved Permanently", "url": location, "documentation_url": ""}
            return web.json_response(body, status=301, headers={"Location": location})
        owner, name = repo.full_name.split("/")
        body = {
            "id": repo.id,
            "name": name,
            "full_name": repo.full_name,
            "private": False,
            "owner": {"login": owner, "url": f"{self.github.url}{API}/users/{owner}"},
            "html_url": f"{self.github.url}/{repo.full_name}",
        }
        return web.json_response(body)

    async def revoke(self, request: web.Request) -> web.Response:
        """Delete an app token: the app's Basic credentials, `{"access_token": ...}`."""
        client = self.app(request.headers.get("Authorization", ""))
        if client is None or client.client_id != request.match_info["client_id"]:
            body = {"message": "Bad credentials", "documentation_url": REST_DOCS}
            return web.json_response(body, status=401)
        try:
            access_token = json.loads(await request.read())["access_token"]
        except (ValueError, KeyError, TypeError):
            access_token = None
        if not isinstance(access_token, str) or not access_token:
            body = {"message": "Validation Failed", "documentation_url": REST_DOCS}
            return web.json_response(body, status=422)
        issued = self.github._tokens.get(access_token)
        if issued is None or issued.revoked or issued.client_id != client.client_id:
            return not_found()
        issued.revoked = True
        self.revoked += 1
        return web.Response(status=204)
