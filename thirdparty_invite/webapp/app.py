"""The one place the web front is wired: middleware, API routes and static pages.

Used by bot.py on every start or config change and by the tests, so the tests serve
exactly the routes and middleware maubot serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import logging
from typing import TYPE_CHECKING

from .api import WebAPI
from .static import StaticFiles
from .support import error_middleware

if TYPE_CHECKING:
    from maubot.plugin_server import PluginWebApp

    from ..services.container import Services


def install_web_app(
    webapp: PluginWebApp,
    services: Services,
    read_file: Callable[[str], Awaitable[bytes]],
    log: logging.Logger,
) -> None:
    """Replace whatever the plugin's web app served with routes over `services`."""
    webapp.clear()
    webapp.add_middleware(error_middleware(log))
    WebAPI(services, log).register(webapp)
    StaticFiles(read_file).register(webapp)
