"""The stack the browser tests run against (devtools/stack.py): an OpenID provider, Synapse
using it for SSO, maubot with the plugin, a room admin and the bot."""

from __future__ import annotations

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

PASSWORD = "correct horse battery staple"
IDP_NAME = "Example Login"  # the single sign-on provider, as Synapse names it to users

# The running stack as the browser tests know it: `site.user()`, `site.room(...)`,
# `site.link(...)`, `site.expire_link(...)`, ...
Site = RunningStack


async def device_ids(user: MatrixUser) -> set[str]:
    """The user's devices: the page's temporary sign-in must leave this unchanged."""
    return {device["device_id"] for device in await user.devices()}
