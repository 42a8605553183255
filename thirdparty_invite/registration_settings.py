"""The `registration:` section: offering people who qualified an account on one homeserver.

Read by config.py's `read_settings` with the same reader (every wrong key named). Empty
`server_name`: registration is off, and `--register` is refused with a reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .matrix.ids import is_server_name

if TYPE_CHECKING:
    from .settings_reader import SettingsReader


@attrs.frozen
class RegistrationSettings:
    # The homeserver new accounts are made on ("" = off), as in its Matrix IDs.
    server_name: str = ""
    # Synapse's admin API: the base URL the bot reaches it at (often internal), and an
    # access token of a server admin. Neither ever reaches a page or a log line.
    admin_api_url: str = ""
    admin_token: str = attrs.field(default="", repr=False)
    # The homeserver's client-server URL as browsers reach it ("": the page finds it
    # through the server name's .well-known, as for a sign-in).
    client_url: str = ""
    # The homeserver's own sign-up page, offered with the token when the page cannot do a
    # stage the server asks for (a captcha, an email); "" = none offered.
    signup_url: str = ""
    # How long a minted token works, and how many tokens a day (UTC) may be minted.
    token_lifetime: float = 3600.0
    daily_cap: int = 20

    @property
    def enabled(self) -> bool:
        return bool(self.server_name)


def read_registration_settings(r: SettingsReader) -> RegistrationSettings:
    """The section, with a problem added to `r` per wrong key."""
    raw = r.raw("registration")
    if raw is not None and not isinstance(raw, dict):
        r.problems.append(f"registration: must be a mapping, not {raw!r}")
        return RegistrationSettings()
    known = {f.name for f in attrs.fields(RegistrationSettings)}
    for key in sorted(set(raw or {}) - known):
        r.problems.append(f"registration.{key}: is not a known key ({', '.join(sorted(known))})")
    server_name = r.string("registration.server_name").strip()
    admin_api_url = r.string("registration.admin_api_url").strip().rstrip("/")
    admin_token = r.string("registration.admin_token").strip()
    client_url = r.string("registration.client_url").strip().rstrip("/")
    signup_url = r.string("registration.signup_url").strip()
    settings = RegistrationSettings(
        server_name=server_name,
        admin_api_url=admin_api_url,
        admin_token=admin_token,
        client_url=client_url,
        signup_url=signup_url,
        token_lifetime=r.seconds("registration.token_lifetime", 3600, 60, 7 * 86400),
        daily_cap=r.integer("registration.daily_cap", 20, 1, 100_000),
    )
    for key, url in (
        ("admin_api_url", admin_api_url),
        ("client_url", client_url),
        ("signup_url", signup_url),
    ):
        if url and not url.startswith(("http://", "https://")):
            r.problems.append(f"registration.{key}: must be an http(s) URL, not {url!r}")
    if not server_name:
        return settings
    if not is_server_name(server_name):
        r.problems.append(
            f"registration.server_name: {server_name!r} is not a server name such as example.org"
        )
    if not admin_api_url:
        r.problems.append(
            "registration.admin_api_url: is needed when server_name is set (Synapse's "
            "address, e.g. http://localhost:8008)"
        )
    if not admin_token:
        r.problems.append(
            "registration.admin_token: is needed when server_name is set (an access token "
            "of a server admin of that Synapse)"
        )
    return settings
