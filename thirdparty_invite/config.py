"""Instance configuration: maubot's proxy config plus typed views of its sections."""

from __future__ import annotations

from typing import Any

import attrs
from mautrix.util.config import BaseProxyConfig, ConfigUpdateHelper

from .durations import DurationError, parse_duration
from .identity.verifier import IdentitySettings

_COPIED_KEYS = (
    "operators",
    "accept_invites_from_anyone",
    "accept_direct_messages",
    "admin_room",
    "web.public_url",
    "web.session_lifetime",
    "web.max_body_bytes",
    "web.trusted_origins",
    "web.client_name",
    "web.client_room_url",
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
)


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key."""


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
    # A web client offered next to matrix.to on the result page: its name and a URL
    # template with {room_id}; empty name: none offered.
    client_name: str = ""
    client_room_url: str = ""


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
class Settings:
    operators: frozenset[str]
    accept_invites_from_anyone: bool
    accept_direct_messages: bool
    admin_room: str
    web: WebSettings
    identity: IdentitySettings
    links: LinkSettings
    invites: InviteSettings


def _duration(config: Any, key: str, *, allow_empty: bool = False) -> float | None:
    value = config[key]
    if allow_empty and value in ("", None):
        return None
    try:
        return parse_duration(value)
    except DurationError as e:
        raise ConfigError(f"{key}: {e}") from None


def _strings(config: Any, key: str) -> tuple[str, ...]:
    value = config[key] or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(value)


def read_settings(config: Any) -> Settings:
    """Typed, validated settings from the loaded config (raises ConfigError)."""
    server_urls = dict(config["identity.server_urls"] or {})
    for name, url in server_urls.items():
        if not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"identity.server_urls[{name}] must be an http(s) URL")
    client_room_url = str(config["web.client_room_url"] or "")
    if client_room_url and (
        not client_room_url.startswith("https://") or "{room_id}" not in client_room_url
    ):
        raise ConfigError("web.client_room_url must be an https:// URL containing {room_id}")
    max_body = int(config["web.max_body_bytes"])
    if not 1024 <= max_body <= 1_048_576:
        raise ConfigError("web.max_body_bytes must be between 1024 and 1048576")
    return Settings(
        operators=frozenset(_strings(config, "operators")),
        accept_invites_from_anyone=bool(config["accept_invites_from_anyone"]),
        accept_direct_messages=bool(config["accept_direct_messages"]),
        admin_room=str(config["admin_room"] or ""),
        web=WebSettings(
            public_url=str(config["web.public_url"] or "").rstrip("/"),
            session_lifetime=_duration(config, "web.session_lifetime"),
            max_body_bytes=max_body,
            trusted_origins=_strings(config, "web.trusted_origins"),
            client_name=str(config["web.client_name"] or "") if client_room_url else "",
            client_room_url=client_room_url,
        ),
        identity=IdentitySettings(
            server_urls={str(k): str(v) for k, v in server_urls.items()},
            allow_private_addresses=bool(config["identity.allow_private_addresses"]),
            homeserver_allow=_strings(config, "identity.homeserver_allow"),
            homeserver_deny=_strings(config, "identity.homeserver_deny"),
            timeout=float(config["identity.timeout"]),
            seen_token_ttl=_duration(config, "identity.seen_token_lifetime"),
            dns_nameservers=_strings(config, "identity.dns_nameservers"),
            allowed_networks=_strings(config, "identity.allowed_networks"),
        ),
        links=LinkSettings(
            default_expiry=_duration(config, "links.default_expiry", allow_empty=True),
            max_expiry=_duration(config, "links.max_expiry"),
        ),
        invites=InviteSettings(
            reason=str(config["invites.reason"]),
            max_attempts=int(config["invites.max_attempts"]),
            max_backoff=_duration(config, "invites.max_backoff"),
        ),
    )
