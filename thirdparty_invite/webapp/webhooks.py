"""Webhook receivers, one per source; services/webhooks.py checks and applies them.

POST /api/webhooks/github   GitHub's organisation, team, collaborator and sponsorship events
POST /api/webhooks/patreon  Patreon's member and pledge events
Described in web/openapi.json and docs/API.md; README says how to set each one up.

Servers call these, not browsers: no Origin or cookie is asked for; the signature is the
authentication. The body is read once, raw (the signature is over its exact bytes), with
the size limit held while reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .support import read_body

if TYPE_CHECKING:
    from ..services.webhooks import WebhookOutcome, WebhookService

# The events taken are a few kilobytes (a user, an organisation, a team or a repository,
# a member document); GitHub caps payloads at 25 MB, but only events we do not take
# (pushes of many commits) come near it. A megabyte leaves room for the largest of ours
# many times over, and bounds what an unsigned request makes the bot hash.
MAX_WEBHOOK_BODY = 1 << 20


class WebhookReceivers:
    def __init__(self, webhooks: WebhookService) -> None:
        self.webhooks = webhooks

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/webhooks/github", self.github)
        router.add_post("/api/webhooks/patreon", self.patreon)

    async def github(self, request: web.Request) -> web.Response:
        self.webhooks.provider("github")  # 404 before reading anything
        body = await read_body(request, MAX_WEBHOOK_BODY)
        return _answer(await self.webhooks.receive_github(request.headers, body))

    async def patreon(self, request: web.Request) -> web.Response:
        self.webhooks.provider("patreon")
        body = await read_body(request, MAX_WEBHOOK_BODY)
        return _answer(await self.webhooks.receive_patreon(request.headers, body))


def _answer(outcome: WebhookOutcome) -> web.Response:
    return web.json_response(
        {"outcome": outcome.outcome, "rechecks": outcome.scheduled}, status=outcome.http_status
    )
