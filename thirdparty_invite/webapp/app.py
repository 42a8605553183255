"""The one place the web front is wired: middleware, API routes and static pages.

Used by bot.py on every start or config change and by the tests, so the tests serve
exactly the routes and middleware maubot serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import logging
from typing import TYPE_CHECKING

import attrs

from ..config import RateLimit
from .api import WebAPI
from .bindings_api import BindingsAPI
from .manage_api import ROUTES as MANAGE_ROUTES
from .manage_api import ManageAPI
from .origins import OriginCheck
from .ratelimit import RateLimiter, rate_limit_middleware
from .registration_api import RegistrationAPI
from .session_cookie import SessionCookie
from .static import StaticFiles
from .support import error_middleware
from .webhooks import WebhookReceivers

if TYPE_CHECKING:
    from maubot.plugin_server import PluginWebApp

    from ..services.container import Services

# The public endpoints limited per client address, and the `rate_limits` key of each.
RATE_LIMITED_ROUTES = {
    "POST /api/session": "session",
    "POST /api/links/inspect": "link_inspect",
    "POST /api/links/claim": "link_claim",
    "POST /api/bindings/inspect": "link_inspect",
    "POST /api/oauth/start": "link_claim",
    # Each callback makes the bot call a provider, like each sign-in a homeserver.
    "GET /api/oauth/callback": "session",
    "POST /api/session/ticket": "session",
    "POST /api/register/offer": "link_inspect",
    "POST /api/register/session": "session",
    "POST /api/register/start": "link_claim",
    "POST /api/register/token": "link_claim",
    "POST /api/register/claim": "link_claim",
    "POST /api/webhooks/github": "webhook",
    "POST /api/webhooks/patreon": "webhook",
    # The admin panel: a bucket of its own (rules are checked as the admin types).
    **{f"POST /api/manage/{name}": "manage" for name in MANAGE_ROUTES},
}
# Webhooks come from a provider's few addresses in bursts (an organisation removing fifty
# people sends fifty deliveries at once), and GitHub does not retry a refused delivery:
# a generous bucket of their own, apart from the limits on people. It bounds the hashing
# unsigned requests cost; only signed ones reach the database.
WEBHOOK_LIMIT = RateLimit(burst=60, refill=0.5)
MANAGE_LIMIT = RateLimit(burst=60, refill=0.5)


def install_web_app(
    webapp: PluginWebApp,
    services: Services,
    read_file: Callable[[str], Awaitable[bytes]],
    log: logging.Logger,
) -> None:
    """Replace whatever the plugin's web app served with routes over `services`."""
    webapp.clear()
    settings = services.settings
    limiter = RateLimiter(
        {
            **attrs.asdict(settings.rate_limits, recurse=False),
            "webhook": WEBHOOK_LIMIT,
            "manage": MANAGE_LIMIT,
        }
    )
    # maubot wraps the handler in each middleware in the order added: the last is outermost,
    # so errors raised anywhere (the limiter included) still leave as {errcode, error}.
    webapp.add_middleware(
        rate_limit_middleware(limiter, RATE_LIMITED_ROUTES, settings.web.trusted_proxies, log)
    )
    webapp.add_middleware(error_middleware(log))
    cookie = SessionCookie(services.public_base_url)
    origin = OriginCheck(services.public_base_url, settings.web.trusted_origins)
    WebAPI(services, cookie, origin).register(webapp)
    BindingsAPI(services, cookie, origin).register(webapp)
    ManageAPI(services, cookie, origin).register(webapp)
    RegistrationAPI(services, cookie, origin).register(webapp)
    WebhookReceivers(services.webhooks).register(webapp)
    StaticFiles(read_file).register(webapp)
