"""thirdparty_invite: a maubot plugin that invites people who prove an entitlement."""

from __future__ import annotations

from .dependencies import missing_dependencies

_missing = missing_dependencies()
if _missing:
    # maubot imports this module to load the plugin; failing here would leave only an
    # ImportError traceback in its log. A stand-in whose start() explains is kinder.
    from .dependencies import make_placeholder_plugin

    InviteBot = make_placeholder_plugin(_missing)
else:
    from .bot import InviteBot

__all__ = ["InviteBot"]
