"""Instance configuration: maubot's proxy config plus typed, validated views of its sections.

`read_settings` checks every key before anything uses it and reports *all* the wrong ones
at once, each by its dotted name, so an operator can fix a config in one go. The bot reads
and validates a new config before touching its running services: a wrong config is
refused and the bot keeps running on the settings it had (see bot.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
from mautrix.util.config import BaseProxyConfig, ConfigUpdateHelper

from .identity.verifier import IdentitySettings
from .matrix.ids import is_room_id, is_user_id
from .providers.registry import ProviderSettings, read_provider_settings
from .registration_settings import RegistrationSettings, read_registration_settings
from .settings_reader import RateLimit, SettingsReader

_COPIED_KEYS = (
    "operators",
    "accept_invites_from_anyone",
    "accept_direct_messages",
    "admin_room",
    "web.public_url",
    "web.session_lifetime",
    "web.max_body_bytes",
    "web.trusted_origins",
    "web.trusted_proxies",
    "web.client_name",
    "web.client_room_url",
    "web.show_external_accounts",
    "rate_limits.session",
    "rate_limits.link_inspect",
    "rate_limits.link_claim",
    "identity.server_urls",
    "identity.allow_private_addresses",
    "identity.allowed_networks",
    "identity.homeserver_allow",
    "identity.homeserver_deny",
    "identity.timeout",
    "identity.seen_token_lifetime",
    "identity.dns_nameservers",
    "links.default_expiry",
    "links.max_expiry",
    "invites.reason",
    "invites.max_attempts",
    "invites.max_backoff",
    "matrix.request_timeout",
    "rechecks.interval",
    "rechecks.max_shrink",
    "rechecks.kick_reason",
    "rechecks.token_key",
    "providers",
    "registration",
)


class ConfigError(ValueError):
    """The config cannot be used. `problems` lists one sentence per wrong key, each
    starting with the key's dotted name."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Config(BaseProxyConfig):
    def do_update(self, helper: ConfigUpdateHelper) -> None:
        for key in _COPIED_KEYS:
            helper.copy(key)


@attrs.frozen
class WebSettings:
    public_url: str
    session_lifetime: float
    max_body_bytes: int
    trusted_origins: tuple[str, ...]
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For is believed when
    # telling clients apart for rate limits. Empty: the connecting address is the client.
    trusted_proxies: tuple[str, ...] = ()
    # A web client offered next to matrix.to on the result page: its name and a URL
    # template with {room_id}; empty name: none offered.
    client_name: str = ""
    client_room_url: str = ""
    # The admin panel shows which external account (its name at the provider) admitted
    # each person; off by default, since room admins need not learn it.
    show_external_accounts: bool = False


_DEFAULT_LIMITS = {
    "session": RateLimit(10, 6.0),
    "link_inspect": RateLimit(30, 2.0),
    "link_claim": RateLimit(10, 6.0),
}


@attrs.frozen
class RateLimitSettings:
    session: RateLimit = _DEFAULT_LIMITS["session"]
    link_inspect: RateLimit = _DEFAULT_LIMITS["link_inspect"]
    link_claim: RateLimit = _DEFAULT_LIMITS["link_claim"]


@attrs.frozen
class LinkSettings:
    default_expiry: float | None
    max_expiry: float


@attrs.frozen
class InviteSettings:
    reason: str
    max_attempts: int
    max_backoff: float


@attrs.frozen
class RecheckSettings:
    # Seconds between re-checks of a binding (each one jittered by up to a tenth).
    interval: float = 6 * 3600.0
    # A listing this much shorter than the last complete one stops the re-check, which
    # then tells the admins instead of acting: an outage answering with a short list is
    # not a loss of members.
    max_shrink: float = 0.2
    # What a removed person reads; {rule} is the rule they no longer meet, in words.
    kick_reason: str = "You no longer meet this room's rule: {rule}."
    # Seals the refresh tokens kept for per-person re-checks (providers with
    # `keep_refresh_tokens`); None: no token is ever kept.
    token_key: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class MatrixSettings:
    # Bound on each call to the bot's homeserver made while answering a person (a web
    # request or a command); maubot's client itself waits as long as the server hangs.
    request_timeout: float = 5.0


@attrs.frozen
class Settings:
    operators: frozenset[str]
    accept_invites_from_anyone: bool
    accept_direct_messages: bool
    admin_room: str
    web: WebSettings
    identity: IdentitySettings
    links: LinkSettings
    invites: InviteSettings
    rate_limits: RateLimitSettings = RateLimitSettings()
    matrix: MatrixSettings = MatrixSettings()
    rechecks: RecheckSettings = RecheckSettings()
    providers: ProviderSettings = attrs.field(factory=ProviderSettings)
    registration: RegistrationSettings = attrs.field(factory=RegistrationSettings)


def _http_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"[{name}] must be an http(s) URL, not {url!r}")


def _network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


def _origin(value: str) -> None:
    if not value.startswith(("http://", "https://")) or value.rstrip("/").count("/") != 2:
        raise ValueError(f"{value!r} is not an origin such as https://example.org")


def _user_id(value: str) -> None:
    if not is_user_id(value):
        raise ValueError(f"{value!r} is not a Matrix user ID such as @you:example.org")


def read_settings(config: Any) -> Settings:
    """Typed, validated settings from the loaded config; raises ConfigError naming every
    wrong key."""
    r = SettingsReader(config)
    client_room_url = r.string("web.client_room_url")
    if client_room_url and (
        not client_room_url.startswith("https://") or "{room_id}" not in client_room_url
    ):
        r.problems.append(
            "web.client_room_url: must be an https:// URL containing {room_id}, "
            f"not {client_room_url!r}"
        )
        client_room_url = ""
    admin_room = r.string("admin_room")
    if admin_room and not is_room_id(admin_room):
        r.problems.append(f"admin_room: must be a room ID (!...), not {admin_room!r}")
        admin_room = ""
    public_url = r.string("web.public_url")
    if public_url and not public_url.startswith(("http://", "https://")):
        r.problems.append(f"web.public_url: must be an http(s) URL, not {public_url!r}")
        public_url = ""
    settings = Settings(
        operators=frozenset(r.strings("operators", _user_id)),
        accept_invites_from_anyone=r.boolean("accept_invites_from_anyone", False),
        accept_direct_messages=r.boolean("accept_direct_messages", True),
        admin_room=admin_room,
        web=WebSettings(
            public_url=public_url.rstrip("/"),
            session_lifetime=r.seconds("web.session_lifetime", 3600, 60, 30 * 86400),
            max_body_bytes=r.integer("web.max_body_bytes", 16384, 1024, 1_048_576),
            trusted_origins=r.strings("web.trusted_origins", _origin),
            trusted_proxies=r.strings("web.trusted_proxies", _network),
            client_name=r.string("web.client_name") if client_room_url else "",
            client_room_url=client_room_url,
            show_external_accounts=r.boolean("web.show_external_accounts", False),
        ),
        rate_limits=RateLimitSettings(
            **{
                name: r.rate_limit(f"rate_limits.{name}", default)
                for name, default in _DEFAULT_LIMITS.items()
            }
        ),
        identity=IdentitySettings(
            server_urls=r.string_map("identity.server_urls", _http_url),
            allow_private_addresses=r.boolean("identity.allow_private_addresses", False),
            homeserver_allow=r.strings("identity.homeserver_allow"),
            homeserver_deny=r.strings("identity.homeserver_deny"),
            timeout=r.seconds("identity.timeout", 10, 1, 120),
            seen_token_ttl=r.seconds("identity.seen_token_lifetime", 3600, 60, 7 * 86400),
            dns_nameservers=r.strings("identity.dns_nameservers"),
            allowed_networks=r.strings("identity.allowed_networks", _network),
        ),
        links=LinkSettings(
            default_expiry=r.optional_seconds("links.default_expiry", 7 * 86400),
            max_expiry=r.seconds("links.max_expiry", 365 * 86400, 60),
        ),
        invites=InviteSettings(
            reason=r.string("invites.reason", "Invited by thirdparty_invite"),
            max_attempts=r.integer("invites.max_attempts", 8, 1, 1000),
            max_backoff=r.seconds("invites.max_backoff", 600, 1, 7 * 86400),
        ),
        matrix=MatrixSettings(request_timeout=r.seconds("matrix.request_timeout", 5, 1, 60)),
        rechecks=RecheckSettings(
            interval=r.seconds("rechecks.interval", 6 * 3600, 60, 30 * 86400),
            max_shrink=r.fraction("rechecks.max_shrink", 0.2),
            kick_reason=r.string("rechecks.kick_reason", RecheckSettings.kick_reason),
            token_key=r.token_key("rechecks.token_key"),
        ),
        providers=read_provider_settings(r.raw("providers"), r.problems),
        registration=read_registration_settings(r),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
